"""Placeholder: routes are added by the issue that builds this family."""

from __future__ import annotations

import falcon

from ..context import Context


def add_routes(app: falcon.App, ctx: Context) -> None:
    return None
