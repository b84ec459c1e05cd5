"""The /v2 image service's verbs over the library core: tags, who may see an image, share links and album
tokens, albums, avatars and a client's statistics. Records only; the bytes, versions, variants
and deletes are the core's (``service.Library``), so a /v2 image is an ordinary media
record (``dialect='v2'``) that every other dialect and the origin's public URLs know.

Tokens (image share links, album access tokens) are 256-bit random strings shown once; only
their SHA-256 is stored. A token is valid while it is neither expired nor revoked.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ..errors import BadRequest, NotFound, Overloaded
from ..hotpath import decimal
from .ids import is_id, new_id
from .models import Album, AlbumImage, Avatar, Media, MediaTag, Organization, ShareToken, StoredObject, now
from .repositories import media as media_repo
from .repositories import stats
from .repositories.media import current_object, media_query
from .repositories.search import like_escape
from .service import Library

TAG_MAX = 64
TAGS_MAX = 32
TOKEN_BYTES = 32


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def clean_tags(raw: list[str] | None) -> list[str]:
    """Trimmed, lower-cased, de-duplicated tags, in the order given; 400 for a bad one."""
    out: list[str] = []
    for t in raw or []:
        if not isinstance(t, str):
            raise BadRequest("tags must be strings")
        t = t.strip().lower()
        if not t:
            continue
        if len(t) > TAG_MAX or not t.isprintable():
            raise BadRequest(f"a tag must be printable and at most {TAG_MAX} characters")
        if t not in out:
            out.append(t)
    if len(out) > TAGS_MAX:
        raise BadRequest(f"at most {TAGS_MAX} tags")
    return out


@dataclass(frozen=True)
class Served:
    """What serving an image needs: one row, read in one query."""

    id: str
    org_id: int
    owner: str | None
    is_private: bool
    bucket: str
    key: str
    mime_type: str
    updated_at: datetime


class Gallery:
    def __init__(self, lib: Library):
        self.lib = lib

    # -- tags ----------------------------------------------------------------------------------

    def set_tags(self, s: Session, media_id: str, tags: list[str]) -> None:
        s.execute(delete(MediaTag).where(MediaTag.media_id == media_id))
        for t in tags:
            s.add(MediaTag(media_id=media_id, tag=t))
        s.flush()

    def tags_of(self, s: Session, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            for mid, tag in s.execute(select(MediaTag.media_id, MediaTag.tag).where(MediaTag.media_id.in_(ids))
                                      .order_by(MediaTag.media_id, MediaTag.tag)):
                out[mid].append(tag)
        return out

    def albums_of(self, s: Session, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            for aid, mid in s.execute(select(AlbumImage.album_id, AlbumImage.media_id)
                                      .where(AlbumImage.media_id.in_(ids)).order_by(AlbumImage.added_at)):
                out[mid].append(aid)
        return out

    def tag_counts(self, s: Session, org_id: int | None, search: str | None, limit: int) -> list[dict]:
        q = select(MediaTag.tag, func.count()).join(Media, Media.id == MediaTag.media_id)
        if org_id is not None:
            q = q.where(Media.org_id == org_id)
        if search:
            q = q.where(MediaTag.tag.like(like_escape(search.lower()) + "%", escape="\\"))
        q = q.group_by(MediaTag.tag).order_by(func.count().desc(), MediaTag.tag).limit(limit)
        return [{"tag": t, "count": n} for t, n in s.execute(q)]

    # -- images ----------------------------------------------------------------------------------

    def image(self, s: Session, org: Organization, media_id: str, user: str | None = None,
              owner_only: bool = False) -> Media:
        """A /v2 image of the client; another client's, or (``owner_only``) another user's
        private one, is the same 404 as one that does not exist."""
        media = self.lib.get(s, org, media_id)
        if media.dialect != "v2":
            raise NotFound("no such image")
        if owner_only and media.is_private and media.owner != user:
            raise NotFound("no such image")
        return media

    def served(self, s: Session, media_id: str) -> Served | None:
        """The serving row of a ready /v2 image, by id alone (ids are global)."""
        if not is_id(media_id):
            return None
        row = s.execute(
            current_object(select(Media.id, Media.org_id, Media.owner, Media.is_private, StoredObject.bucket,
                                  StoredObject.key, StoredObject.mime_type, Media.updated_at))
            .where(Media.id == media_id, Media.state == "ready", Media.dialect == "v2")).first()
        return Served(*row) if row is not None else None

    def served_many(self, s: Session, media_ids: list[str], dialects: tuple[str, ...] = ("v2",)) -> dict[str, Served]:
        """``served`` of several ids in one query: the ready media of these dialects among them, by id
        (``("v2", "avatar")``: the /v2 images and the avatars)."""
        ids = [i for i in media_ids if is_id(i)]
        if not ids:
            return {}
        rows = s.execute(
            current_object(select(Media.id, Media.org_id, Media.owner, Media.is_private, StoredObject.bucket,
                                  StoredObject.key, StoredObject.mime_type, Media.updated_at))
            .where(Media.id.in_(ids), Media.state == "ready", Media.dialect.in_(dialects))).all()
        return {r[0]: Served(*r) for r in rows}

    def may_view(self, s: Session, img: Served, org: Organization | None, user: str | None,
                 token: str | None) -> bool:
        if not img.is_private:
            return True
        if org is not None and org.id == img.org_id and user is not None and user == img.owner:
            return True
        if not token:
            return False
        row = self.valid_token(s, token)
        if row is None or row.org_id != img.org_id:
            return False
        if row.kind == "image":
            return row.target_id == img.id
        # an album's token grants what the album's owner may see now: the image must still be in
        # the album and (being private) still be the album owner's own
        album_owner = s.scalar(select(Album.owner).join(AlbumImage, AlbumImage.album_id == Album.id)
                               .where(Album.id == row.target_id, Album.org_id == img.org_id,
                                      AlbumImage.media_id == img.id))
        return album_owner is not None and album_owner == img.owner

    def sees_as_owner(self, s: Session, album: Album, user: str | None, token: str | None) -> bool:
        """Whether this request sees the album with its owner's eyes: the owner, or a valid token of it."""
        if user is not None and user == album.owner:
            return True
        row = self.valid_token(s, token, "album") if token else None
        return row is not None and row.target_id == album.id

    def list_images(self, s: Session, org_id: int | None, *, user: str | None, limit: int, offset: int,
                    tag: str | None = None, album_id: str | None = None, private: bool | None = None,
                    owner: str | None = None, since: datetime | None = None, until: datetime | None = None,
                    all_private: bool = False, also_sees: str | None = None,
                    search: str | None = None) -> tuple[list[Media], int]:
        """``also_sees``: another user whose private images are listed too (an album's owner, to
        whoever holds the album's token: never more than that owner could list). ``search``: text
        found in the file name or the description, whatever the case."""
        cond = [Media.dialect == "v2", Media.state == "ready"]
        if org_id is not None:
            cond.append(Media.org_id == org_id)
        if not all_private:  # a private image is listed to its owner only
            viewers = [u for u in (user, also_sees) if u is not None]
            cond.append(Media.is_private.is_(False) | Media.owner.in_(viewers) if viewers
                        else Media.is_private.is_(False))
        if private is not None:
            cond.append(Media.is_private.is_(private))
        if owner is not None:
            cond.append(Media.owner == owner)
        if since is not None:
            cond.append(Media.created_at >= since)
        if until is not None:
            cond.append(Media.created_at < until)
        if tag:
            cond.append(Media.id.in_(select(MediaTag.media_id).where(MediaTag.tag == tag.strip().lower())))
        if album_id:
            cond.append(Media.id.in_(select(AlbumImage.media_id).where(AlbumImage.album_id == album_id)))
        if search:
            like = "%" + like_escape(search.lower()) + "%"
            cond.append(func.lower(Media.filename).like(like, escape="\\")
                        | func.lower(func.coalesce(Media.description, "")).like(like, escape="\\"))
        total = s.scalar(select(func.count()).select_from(Media).where(*cond)) or 0
        q = (media_query().where(*cond).order_by(Media.created_at.desc(), Media.id.desc())
             .limit(limit).offset(offset))
        return list(s.scalars(q)), total

    # -- tokens ---------------------------------------------------------------------------------

    def create_token(self, s: Session, org: Organization, kind: str, target_id: str, user: str | None,
                     expires_in: int | None) -> tuple[str, ShareToken]:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        row = ShareToken(org_id=org.id, kind=kind, target_id=target_id, digest=token_digest(token),
                         created_by=user,
                         expires_at=None if expires_in is None else now() + timedelta(seconds=expires_in))
        s.add(row)
        s.flush()
        return token, row

    def valid_token(self, s: Session, token: str, kind: str | None = None) -> ShareToken | None:
        if not token or len(token) > 128:
            return None
        row = s.scalar(select(ShareToken).where(ShareToken.digest == token_digest(token)))
        if row is None or row.revoked_at is not None or (kind is not None and row.kind != kind):
            return None
        if row.expires_at is not None and row.expires_at <= now():
            return None
        return row

    def revoke_token(self, s: Session, org: Organization, kind: str, target_id: str, token: str) -> None:
        row = s.scalar(select(ShareToken).where(ShareToken.digest == token_digest(token or ""),
                                                ShareToken.org_id == org.id, ShareToken.kind == kind,
                                                ShareToken.target_id == target_id))
        if row is None:
            raise NotFound("no such token")
        if row.revoked_at is None:
            row.revoked_at = now()
        s.flush()

    def tokens(self, s: Session, kind: str, target_id: str) -> list[ShareToken]:
        return list(s.scalars(select(ShareToken).where(ShareToken.kind == kind, ShareToken.target_id == target_id)
                              .order_by(ShareToken.created_at)))

    # -- albums ---------------------------------------------------------------------------------

    def create_album(self, s: Session, org: Organization, user: str, fields: dict) -> Album:
        album = Album(id=new_id(), org_id=org.id, owner=user, **fields)
        s.add(album)
        s.flush()
        return album

    def album(self, s: Session, org_id: int | None, album_id: str, user: str | None = None,
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
                row = self.valid_token(s, token, "album")
                if row is not None and row.target_id == album.id:
                    return album
        raise NotFound("no such album")

    def update_album(self, s: Session, album: Album, fields: dict) -> Album:
        """Change the album's ``name``, ``description``, ``is_public`` or ``external_id``."""
        for name, value in fields.items():
            setattr(album, name, value)
        s.flush()
        return album

    def list_albums(self, s: Session, org_id: int | None, user: str | None, limit: int,
                    offset: int) -> tuple[list[Album], int]:
        cond = []
        if org_id is not None:
            cond.append(Album.org_id == org_id)
        if user is not None:
            cond.append((Album.owner == user) | Album.is_public.is_(True))
        total = s.scalar(select(func.count()).select_from(Album).where(*cond)) or 0
        rows = s.scalars(select(Album).where(*cond).order_by(Album.created_at.desc(), Album.id.desc())
                         .limit(limit).offset(offset))
        return list(rows), total

    def image_counts(self, s: Session, album_ids: list[str]) -> dict[str, int]:
        """Each album's ``imageCount``: the images its owner may see in it (the public ones and the
        owner's own), what its token shows — never counting another user's private image that was
        added while it was public."""
        if not album_ids:
            return {}
        return dict(s.execute(
            select(AlbumImage.album_id, func.count())
            .join(Album, Album.id == AlbumImage.album_id).join(Media, Media.id == AlbumImage.media_id)
            .where(AlbumImage.album_id.in_(album_ids), Media.state == "ready",
                   Media.is_private.is_(False) | (Media.owner == Album.owner))
            .group_by(AlbumImage.album_id)).all())

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

    def add_to_album(self, s: Session, album: Album, media_ids: list[str]) -> int:
        """Add the client's /v2 images (all must exist: 404 names the first that does not)."""
        wanted = list(dict.fromkeys(media_ids))
        found = set(s.scalars(select(Media.id).where(Media.id.in_([i for i in wanted if is_id(i)]),
                                                     Media.org_id == album.org_id, Media.dialect == "v2")))
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFound(f"no such image: {missing[0]}")
        have = set(s.scalars(select(AlbumImage.media_id).where(AlbumImage.album_id == album.id,
                                                               AlbumImage.media_id.in_(wanted))))
        added = 0
        for i in wanted:
            if i not in have:
                s.add(AlbumImage(album_id=album.id, media_id=i))
                added += 1
        album.updated_at = now()
        s.flush()
        return added

    def remove_from_album(self, s: Session, album: Album, media_ids: list[str]) -> int:
        n = s.execute(delete(AlbumImage).where(AlbumImage.album_id == album.id,
                                               AlbumImage.media_id.in_(media_ids))).rowcount
        album.updated_at = now()
        s.flush()
        return n or 0

    def delete_album(self, s: Session, album: Album) -> None:
        """The album, its memberships and tokens; the images stay."""
        s.execute(delete(ShareToken).where(ShareToken.kind == "album", ShareToken.target_id == album.id))
        s.execute(delete(AlbumImage).where(AlbumImage.album_id == album.id))
        s.delete(album)
        s.flush()

    def delete_image(self, s: Session, media: Media) -> None:
        s.execute(delete(ShareToken).where(ShareToken.kind == "image", ShareToken.target_id == media.id))
        s.execute(delete(AlbumImage).where(AlbumImage.media_id == media.id))
        s.execute(delete(MediaTag).where(MediaTag.media_id == media.id))
        s.flush()
        self.lib.delete(s, media)

    # -- avatars ----------------------------------------------------------------------------------

    def avatar_by_id(self, s: Session, avatar_id: str) -> Avatar | None:
        """An avatar by its id given as text (the admin API's path); None for any other text."""
        return s.get(Avatar, int(avatar_id)) if decimal(avatar_id) and len(avatar_id) < 12 else None

    def avatar_media(self, s: Session, row: Avatar) -> Media:
        return s.get(Media, row.media_id)

    def avatar(self, s: Session, org_id: int, user: str) -> Avatar | None:
        return s.scalar(select(Avatar).where(Avatar.org_id == org_id, Avatar.external_user_id == user))

    def set_avatar(self, s: Session, org: Organization, user: str, media: Media) -> Media | None:
        """Point the user's avatar at ``media``; the replaced media (to be deleted by the caller).

        Concurrent uploads for one user: the pointer moves by compare-and-set (the row still points
        where we read it), and a lost race (a unique-key clash, a stale SQLite snapshot) reads again,
        so exactly one avatar is left and every replaced one is handed back for deletion."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                row = self.avatar(s, org.id, user)
                if row is None:
                    s.add(Avatar(org_id=org.id, external_user_id=user, media_id=media.id))
                    s.commit()
                    return None
                old_id = row.media_id
                moved = s.execute(update(Avatar).where(Avatar.id == row.id, Avatar.media_id == old_id)
                                  .values(media_id=media.id, updated_at=now())).rowcount
                if moved:
                    s.commit()
                    return s.scalar(media_query().where(Media.id == old_id))
                s.rollback()
            except (IntegrityError, OperationalError):
                s.rollback()
            time.sleep(0.01)
        raise Overloaded("the avatar is being replaced by another request; retry")

    def drop_media(self, s: Session, media: Media) -> None:
        """Delete a media nothing points at any more, retrying a lost SQLite snapshot (another
        request wrote between this one's read and its write) for up to five seconds."""
        deadline = time.monotonic() + 5
        while True:
            try:
                self.lib.delete(s, media)
                s.commit()
                return
            except OperationalError:
                s.rollback()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
                media = s.scalar(media_query().where(Media.id == media.id))
                if media is None:
                    return

    def delete_avatar(self, s: Session, row: Avatar) -> None:
        media = s.scalar(media_query().where(Media.id == row.media_id))
        s.delete(row)
        s.flush()
        if media is not None:
            self.lib.delete(s, media)
        s.commit()

    def list_avatars(self, s: Session, org_id: int | None, limit: int, offset: int) -> tuple[list, int]:
        cond = [] if org_id is None else [Avatar.org_id == org_id]
        total = s.scalar(select(func.count()).select_from(Avatar).where(*cond)) or 0
        rows = s.execute(select(Avatar, Media).join(Media, Media.id == Avatar.media_id).where(*cond)
                         .order_by(Avatar.updated_at.desc(), Avatar.id.desc()).limit(limit).offset(offset)).all()
        return [(a, m) for a, m in rows], total

    # -- statistics -------------------------------------------------------------------------------

    def stats(self, s: Session, org_id: int) -> dict:
        """The client's media, whichever API stored them: ``images`` (with ``privateImages`` and
        ``imageBytes``) counts every ready record but avatars — uploads of the /api/v1 API, of
        the presigned /media API and of /v2 — each with its original's size (identical /media uploads,
        stored once, count once per record; variants and cached renditions are not counted);
        ``byApi`` splits them by API. Avatars, albums and ``totalBytes`` (images' and avatars')
        follow."""
        return stats.of_organizations(s, [org_id])[org_id]

    def stats_of(self, s: Session, org_ids: list[int]) -> dict[int, dict]:
        """``stats`` of several clients, in three queries whatever their number."""
        return stats.of_organizations(s, org_ids)
