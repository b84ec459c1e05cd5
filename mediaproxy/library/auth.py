"""API keys and organizations.

A key is ``mpk_{prefix}_{secret}``: 12 hex characters of prefix (the lookup
index) and 256 bits of secret. Only the prefix and the SHA-256 of the whole
key are stored; a presented key is found by its prefix and compared to the
digest in constant time. (A fast hash is right here: the secret has 256 bits
of entropy, so nothing is gained by slowing down a guess; argon2 is for
passwords, which have little.)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import BadRequest, Unauthorized
from .models import ApiKey, Organization

SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62})")
_KEY = re.compile(r"mpk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_slug(slug: str) -> str:
    if not SLUG.fullmatch(slug or ""):
        raise BadRequest("organization slug must be 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
    return slug


def organization(session: Session, slug: str, create: bool = False) -> Organization | None:
    org = session.scalar(select(Organization).where(Organization.slug == slug))
    if org is None and create:
        org = Organization(slug=check_slug(slug), name=slug)
        session.add(org)
        session.flush()
    return org


def create_key(session: Session, slug: str, name: str = "") -> str:
    """A new key for the organization (created if needed); the only time the key is seen whole."""
    org = organization(session, check_slug(slug), create=True)
    prefix = secrets.token_hex(6)
    key = f"mpk_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(org_id=org.id, prefix=prefix, digest=digest(key), name=name))
    session.flush()
    return key


def authenticate(session: Session, key: str | None) -> Organization:
    """The organization of a valid, unrevoked key; ``Unauthorized`` otherwise."""
    if not key:
        raise Unauthorized("missing API key (X-API-Key or Authorization: Bearer)")
    m = _KEY.fullmatch(key.strip())
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == m.group(1))) if m else None
    # Compare even when nothing matched, so a wrong prefix costs the same as a wrong secret.
    ok = hmac.compare_digest(row.digest if row is not None else "0" * 64, digest(key.strip()))
    if row is None or not ok or row.revoked_at is not None:
        raise Unauthorized("invalid API key")
    return row.org
