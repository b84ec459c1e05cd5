"""The demo's admin (``MEDIAPROXY_DEMO=1`` only): ``demo-admin@example.com`` with a new random
password each time the demo is seeded (its earlier sessions end), printed by ``scripts/serve``
beside the portal's URL. Never made outside the demo."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from ..library import auth
from ..library.models import Admin

DEMO_ADMIN = "demo-admin@example.com"


def seed(settings, s, base: str) -> list[tuple[str, str]]:
    if not settings.demo:
        return []
    password = secrets.token_urlsafe(12)
    admin = s.scalar(select(Admin).where(Admin.email == DEMO_ADMIN))
    if admin is None:
        auth.create_admin(s, DEMO_ADMIN, password, "Demo admin")
    else:
        admin.password_hash = auth.hash_password(password)
        auth.end_every_session(s, admin)
    return [("admin portal (demo admin)", f"{base}{settings.library.portal_path}/"),
            ("  sign in with (demo only)", f"{DEMO_ADMIN} / {password}")]
