"""Avatars: one pointer per (client, user) to a media record, moved by compare-and-set."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..models import Avatar, Media


def of_user(s: Session, org_id: int, user: str, fresh: bool = False) -> Avatar | None:
    """The user's avatar row; ``fresh``: as the database has it now, not as the session read it."""
    q = select(Avatar).where(Avatar.org_id == org_id, Avatar.external_user_id == user)
    return s.scalar(q.execution_options(populate_existing=True) if fresh else q)


def move(s: Session, avatar_id: int, old_media_id: str, media_id: str, at) -> bool:
    """Point the avatar at ``media_id`` if it still points at ``old_media_id``."""
    return s.execute(update(Avatar).where(Avatar.id == avatar_id, Avatar.media_id == old_media_id)
                     .values(media_id=media_id, updated_at=at)
                     .execution_options(synchronize_session=False)).rowcount == 1


def page(s: Session, org_id: int | None, limit: int, offset: int) -> tuple[list[tuple[Avatar, Media]], int]:
    cond = [] if org_id is None else [Avatar.org_id == org_id]
    total = s.scalar(select(func.count()).select_from(Avatar).where(*cond)) or 0
    rows = s.execute(select(Avatar, Media).join(Media, Media.id == Avatar.media_id).where(*cond)
                     .order_by(Avatar.updated_at.desc(), Avatar.id.desc()).limit(limit).offset(offset)).all()
    return [(a, m) for a, m in rows], total
