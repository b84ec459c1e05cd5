"""The admin portal: a small client application of the project's own JavaScript (ES modules, no
build step) served at ``MEDIAPROXY_PORTAL_PATH`` (``/admin/``) by the library modes, over the
``/v2`` admin API (docs/portal.md).

- ``web.py``: the pages and static files (strict CSP), the cookie session (the refresh token in
  an ``HttpOnly; SameSite=Strict`` cookie, CSRF-checked) and the short-lived signed image URLs
  through which the admin sees every image, private ones included, without making any public.
- ``api.py``: the verbs of the admin API the portal needs and the API lacked (share links, album
  images and tokens, upload counts over time, a client's keys, signed thumbnail URLs), over the
  same services and auth functions as the client API.
"""

from __future__ import annotations

from . import api as admin_extra
from . import web


def add_routes(app, api) -> None:
    """Called by the library's wiring (library/build.py) with the /v2 image service's ``V2``
    (prefix, library), beside the admin API's routes."""
    admin_extra.add_routes(app, api)
    web.add_routes(app, api)
