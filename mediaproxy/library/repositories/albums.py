"""Albums and their images."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..models import Album, AlbumImage, Media


def page(s: Session, org_id: int | None, user: str | None, limit: int, offset: int) -> tuple[list[Album], int]:
    cond = []
    if org_id is not None:
        cond.append(Album.org_id == org_id)
    if user is not None:
        cond.append((Album.owner == user) | Album.is_public.is_(True))
    total = s.scalar(select(func.count()).select_from(Album).where(*cond)) or 0
    rows = s.scalars(select(Album).where(*cond).order_by(Album.created_at.desc(), Album.id.desc())
                     .limit(limit).offset(offset))
    return list(rows), total


def image_counts(s: Session, album_ids: list[str]) -> dict[str, int]:
    """Each album's images its owner may see: the public ones and the owner's own."""
    if not album_ids:
        return {}
    return dict(s.execute(
        select(AlbumImage.album_id, func.count())
        .join(Album, Album.id == AlbumImage.album_id).join(Media, Media.id == AlbumImage.media_id)
        .where(AlbumImage.album_id.in_(album_ids), Media.state == "ready",
               Media.is_private.is_(False) | (Media.owner == Album.owner))
        .group_by(AlbumImage.album_id)).all())


def v2_images(s: Session, org_id: int, ids: list[str]) -> set[str]:
    """Which of ``ids`` are the organization's /v2 images."""
    return set(s.scalars(select(Media.id).where(Media.id.in_(ids), Media.org_id == org_id, Media.dialect == "v2")))


def members(s: Session, album_id: str, ids: list[str]) -> set[str]:
    return set(s.scalars(select(AlbumImage.media_id).where(AlbumImage.album_id == album_id,
                                                           AlbumImage.media_id.in_(ids))))


def remove(s: Session, album_id: str, ids: list[str]) -> int:
    return s.execute(delete(AlbumImage).where(AlbumImage.album_id == album_id,
                                              AlbumImage.media_id.in_(ids))).rowcount or 0


def drop_memberships(s: Session, album_id: str | None = None, media_id: str | None = None) -> None:
    q = delete(AlbumImage)
    q = q.where(AlbumImage.album_id == album_id) if album_id is not None else q.where(AlbumImage.media_id == media_id)
    s.execute(q)
