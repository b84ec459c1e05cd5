"""Clients (organizations) and admins, as the admin API reads and changes them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ...hotpath import decimal
from ..models import Admin, Organization
from .search import like_escape


def client(s: Session, client_id: str) -> Organization | None:
    """The organization of a client id given as text (a path segment); None for any other text."""
    return s.get(Organization, int(client_id)) if decimal(client_id) and len(client_id) < 12 else None


def every_client(s: Session) -> list[Organization]:
    return list(s.scalars(select(Organization).order_by(Organization.id)))


def client_page(s: Session, limit: int, offset: int, search: str | None = None) -> tuple[list[Organization], int]:
    """A page of clients by id and their total; ``search``: text in the slug or the name, any case."""
    cond = []
    if search:
        like = "%" + like_escape(search.lower()) + "%"
        cond.append(func.lower(Organization.slug).like(like, escape="\\")
                    | func.lower(func.coalesce(Organization.name, "")).like(like, escape="\\"))
    total = s.scalar(select(func.count()).select_from(Organization).where(*cond)) or 0
    rows = s.scalars(select(Organization).where(*cond).order_by(Organization.id).limit(limit).offset(offset))
    return list(rows), total


def admin_by_email(s: Session, email: str) -> Admin | None:
    return s.scalar(select(Admin).where(Admin.email == email))
