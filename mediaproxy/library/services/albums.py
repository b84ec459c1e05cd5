"""Albums: a user's named sets of /v2 images, public to the client's users or shown by token."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ...errors import NotFound
from ..ids import is_id, new_id
from ..models import Album, AlbumImage, Organization, now
from ..repositories import albums, tokens
from ..repositories import media as media_repo
from .base import Core


class Albums:
    def __init__(self, core: Core, sharing):
        self.core = core
        self.sharing = sharing  # services.sharing.Sharing: an album's tokens

    def create(self, s: Session, org: Organization, user: str, fields: dict) -> Album:
        album = Album(id=new_id(), org_id=org.id, owner=user, **fields)
        s.add(album)
        s.flush()
        return album

    def get(self, s: Session, org_id: int | None, album_id: str, user: str | None = None,
            token: str | None = None, write: bool = False) -> Album:
        """The album if the user may see it (owner; or public; or a valid token of it) — or change it
        (owner only). Anything else is the same 404 as an album that does not exist."""
        album = s.get(Album, album_id) if is_id(album_id) else None
        if album is None or (org_id is not None and album.org_id != org_id):
            raise NotFound("no such album")
        if org_id is None:
            return album  # the admin API
        if user is not None and album.owner == user:
            return album
        if not write:
            if album.is_public and user is not None:
                return album
            if token:
                row = self.sharing.valid_token(s, token, "album")
                if row is not None and row.target_id == album.id:
                    return album
        raise NotFound("no such album")

    def update(self, s: Session, album: Album, fields: dict) -> Album:
        """Change the album's ``name``, ``description``, ``is_public`` or ``external_id``."""
        for name, value in fields.items():
            setattr(album, name, value)
        s.flush()
        return album

    def page(self, s: Session, org_id: int | None, user: str | None, limit: int,
             offset: int) -> tuple[list[Album], int]:
        return albums.page(s, org_id, user, limit, offset)

    def image_counts(self, s: Session, album_ids: list[str]) -> dict[str, int]:
        """Each album's ``imageCount``: the images its owner may see in it (the public ones and the
        owner's own), what its token shows — never counting another user's private image that was
        added while it was public."""
        return albums.image_counts(s, album_ids)

    def check_addable(self, s: Session, album: Album, media_ids: list[str]) -> None:
        """404 for the first of ``media_ids`` that may not enter the album: not the client's media
        ("no such media"), not a /v2 image, or another user's private image (its tokens would show
        it). One query for the whole list."""
        found = media_repo.kinds(s, album.org_id, media_ids)
        for i in media_ids:
            if i not in found:
                raise NotFound("no such media")
            dialect, private, owner = found[i]
            if dialect != "v2":
                raise NotFound("no such image")
            if private and owner != album.owner:
                raise NotFound(f"no such image: {i}")

    def add(self, s: Session, album: Album, media_ids: list[str]) -> int:
        """Add the client's /v2 images (all must exist: 404 names the first that does not)."""
        wanted = list(dict.fromkeys(media_ids))
        found = albums.v2_images(s, album.org_id, [i for i in wanted if is_id(i)])
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFound(f"no such image: {missing[0]}")
        have = albums.members(s, album.id, wanted)
        added = 0
        for i in wanted:
            if i not in have:
                s.add(AlbumImage(album_id=album.id, media_id=i))
                added += 1
        album.updated_at = now()
        s.flush()
        return added

    def remove(self, s: Session, album: Album, media_ids: list[str]) -> int:
        n = albums.remove(s, album.id, media_ids)
        album.updated_at = now()
        s.flush()
        return n

    def delete(self, s: Session, album: Album) -> None:
        """The album, its memberships and tokens; the images stay."""
        tokens.drop_target(s, "album", album.id)
        albums.drop_memberships(s, album_id=album.id)
        s.delete(album)
        s.flush()
