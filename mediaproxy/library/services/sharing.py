"""Who may see a /v2 image: its owner, or a valid token — a share link of the image, or an
access token of an album that holds it. Tokens (image share links, album access tokens) are
256-bit random strings shown once; only their SHA-256 is stored. A token is valid while it is
neither expired nor revoked."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ...errors import NotFound
from ..ids import is_id
from ..models import Album, Media, Organization, ShareToken, now
from ..repositories import albums, images, tags, tokens
from .base import Core

TOKEN_BYTES = 32


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


class Sharing:
    def __init__(self, core: Core, versions):
        self.core = core
        self.versions = versions  # services.versions.Versions: an image's delete

    def served(self, s: Session, media_id: str) -> Served | None:
        """The serving row of a ready /v2 image, by id alone (ids are global)."""
        if not is_id(media_id):
            return None
        row = images.served_row(s, media_id)
        return Served(*row) if row is not None else None

    def served_many(self, s: Session, media_ids: list[str], dialects: tuple[str, ...] = ("v2",)) -> dict[str, Served]:
        """``served`` of several ids in one query: the ready media of these dialects among them, by id
        (``("v2", "avatar")``: the /v2 images and the avatars)."""
        ids = [i for i in media_ids if is_id(i)]
        if not ids:
            return {}
        return {r[0]: Served(*r) for r in images.served_rows(s, ids, dialects)}

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
        album_owner = tokens.album_owner_holding(s, row.target_id, img.org_id, img.id)
        return album_owner is not None and album_owner == img.owner

    def sees_as_owner(self, s: Session, album: Album, user: str | None, token: str | None) -> bool:
        """Whether this request sees the album with its owner's eyes: the owner, or a valid token of it."""
        if user is not None and user == album.owner:
            return True
        row = self.valid_token(s, token, "album") if token else None
        return row is not None and row.target_id == album.id

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
        row = tokens.by_digest(s, token_digest(token))
        if row is None or row.revoked_at is not None or (kind is not None and row.kind != kind):
            return None
        if row.expires_at is not None and row.expires_at <= now():
            return None
        return row

    def revoke_token(self, s: Session, org: Organization, kind: str, target_id: str, token: str) -> None:
        row = tokens.of_target(s, org.id, kind, target_id, token_digest(token or ""))
        if row is None:
            raise NotFound("no such token")
        if row.revoked_at is None:
            row.revoked_at = now()
        s.flush()

    def tokens(self, s: Session, kind: str, target_id: str) -> list[ShareToken]:
        return tokens.listed(s, kind, target_id)

    # -- an image's end ---------------------------------------------------------------------------

    def delete_image(self, s: Session, media: Media) -> None:
        """A /v2 image with its share links, memberships and tags; its bytes once that commits."""
        tokens.drop_target(s, "image", media.id)
        albums.drop_memberships(s, media_id=media.id)
        tags.drop_media(s, media.id)
        s.flush()
        self.versions.delete(s, media)
