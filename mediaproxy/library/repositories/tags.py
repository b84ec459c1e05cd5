"""A /v2 image's tags, and the album memberships listed beside them."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..models import AlbumImage, Media, MediaTag
from .search import like_escape


def replace(s: Session, media_id: str, tags: list[str]) -> None:
    s.execute(delete(MediaTag).where(MediaTag.media_id == media_id))
    for t in tags:
        s.add(MediaTag(media_id=media_id, tag=t))
    s.flush()


def of_media(s: Session, ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {i: [] for i in ids}
    if ids:
        for mid, tag in s.execute(select(MediaTag.media_id, MediaTag.tag).where(MediaTag.media_id.in_(ids))
                                  .order_by(MediaTag.media_id, MediaTag.tag)):
            out[mid].append(tag)
    return out


def albums_of_media(s: Session, ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {i: [] for i in ids}
    if ids:
        for aid, mid in s.execute(select(AlbumImage.album_id, AlbumImage.media_id)
                                  .where(AlbumImage.media_id.in_(ids)).order_by(AlbumImage.added_at)):
            out[mid].append(aid)
    return out


def counts(s: Session, org_id: int | None, prefix: str | None, limit: int) -> list[tuple[str, int]]:
    q = select(MediaTag.tag, func.count()).join(Media, Media.id == MediaTag.media_id)
    if org_id is not None:
        q = q.where(Media.org_id == org_id)
    if prefix:
        q = q.where(MediaTag.tag.like(like_escape(prefix.lower()) + "%", escape="\\"))
    q = q.group_by(MediaTag.tag).order_by(func.count().desc(), MediaTag.tag).limit(limit)
    return [(t, n) for t, n in s.execute(q)]


def drop_media(s: Session, media_id: str) -> None:
    s.execute(delete(MediaTag).where(MediaTag.media_id == media_id))
