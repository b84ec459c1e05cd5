"""The /v2 image service's images: the one row serving needs, and the list with its filters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import AlbumImage, Media, MediaTag, StoredObject
from .media import current_object, media_query
from .search import like_escape


def served_row(s: Session, media_id: str):
    """(id, org_id, owner, is_private, bucket, key, type, updated_at) of a ready /v2 image."""
    return s.execute(
        current_object(select(Media.id, Media.org_id, Media.owner, Media.is_private, StoredObject.bucket,
                              StoredObject.key, StoredObject.mime_type, Media.updated_at))
        .where(Media.id == media_id, Media.state == "ready", Media.dialect == "v2")).first()


def served_rows(s: Session, media_ids: list[str], dialects: tuple[str, ...]):
    """``served_row`` of several ids in one query: the ready media of these dialects among them."""
    return s.execute(
        current_object(select(Media.id, Media.org_id, Media.owner, Media.is_private, StoredObject.bucket,
                              StoredObject.key, StoredObject.mime_type, Media.updated_at))
        .where(Media.id.in_(media_ids), Media.state == "ready", Media.dialect.in_(dialects))).all()


def page(s: Session, org_id: int | None, *, viewers: list[str] | None, limit: int, offset: int,
         tag: str | None = None, album_id: str | None = None, private: bool | None = None,
         owner: str | None = None, since: datetime | None = None, until: datetime | None = None,
         search: str | None = None) -> tuple[list[Media], int]:
    """A page of ready /v2 images, newest first, and their total. ``viewers``: the users whose
    private images are listed too (None: every private image, the admin's view)."""
    cond = [Media.dialect == "v2", Media.state == "ready"]
    if org_id is not None:
        cond.append(Media.org_id == org_id)
    if viewers is not None:  # a private image is listed to its owner only
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
    q = media_query().where(*cond).order_by(Media.created_at.desc(), Media.id.desc()).limit(limit).offset(offset)
    return list(s.scalars(q)), total


def batch(s: Session, org_id: int, ids: list[str]) -> dict[str, Media]:
    return {m.id: m for m in s.scalars(media_query().where(Media.org_id == org_id, Media.id.in_(ids)))}


def of_org(s: Session, org_id: int, media_id: str) -> Media | None:
    return s.scalar(media_query().where(Media.id == media_id, Media.org_id == org_id))
