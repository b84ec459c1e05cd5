"""Share links and album access tokens: stored by their SHA-256 only."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..models import Album, AlbumImage, ShareToken


def by_digest(s: Session, digest: str) -> ShareToken | None:
    return s.scalar(select(ShareToken).where(ShareToken.digest == digest))


def of_target(s: Session, org_id: int, kind: str, target_id: str, digest: str) -> ShareToken | None:
    return s.scalar(select(ShareToken).where(ShareToken.digest == digest, ShareToken.org_id == org_id,
                                             ShareToken.kind == kind, ShareToken.target_id == target_id))


def listed(s: Session, kind: str, target_id: str) -> list[ShareToken]:
    return list(s.scalars(select(ShareToken).where(ShareToken.kind == kind, ShareToken.target_id == target_id)
                          .order_by(ShareToken.created_at)))


def drop_target(s: Session, kind: str, target_id: str) -> None:
    s.execute(delete(ShareToken).where(ShareToken.kind == kind, ShareToken.target_id == target_id))


def album_owner_holding(s: Session, album_id: str, org_id: int, media_id: str) -> str | None:
    """The owner of the album if it holds the image; None otherwise."""
    return s.scalar(select(Album.owner).join(AlbumImage, AlbumImage.album_id == Album.id)
                    .where(Album.id == album_id, Album.org_id == org_id, AlbumImage.media_id == media_id))
