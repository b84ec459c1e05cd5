"""Process set-up that the origin and the library's job worker share: libvips' cache and logging.

Neutral on purpose: ``app.py`` (the web processes) and ``library/build.py`` (the job worker) both
call ``configure_vips``, and neither imports the other for it."""

from __future__ import annotations

import logging

import pyvips

from .. import logs
from ..settings import Settings


def configure_vips(settings: Settings) -> None:
    # A server transforms each source once per spec and caches the result
    # itself: libvips' operation cache only holds memory.
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    # libvips' own chatter ("thumbnailing ...", one line per operation) reaches
    # Python logging through pyvips at INFO: keep the log to one line per request.
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    logs.install()  # ...and its per-tile warnings folded into the request's fault line
