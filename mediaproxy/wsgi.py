"""WSGI entry point: ``gunicorn -c gunicorn.conf.py mediaproxy.wsgi:app``."""

from __future__ import annotations

import os
import sys

from . import logs
from .app import create_app
from .errors import ConfigError
from .settings import Settings

# gunicorn's Arbiter.WORKER_BOOT_ERROR: a worker exiting with it makes the
# master stop instead of respawning it forever. gunicorn.conf.py validates the
# same settings before any fork; this is the second line of defence (another
# config file, or a setting that only fails in the worker).
WORKER_BOOT_ERROR = 3

try:
    settings = Settings.from_env(os.environ)
except ConfigError as exc:
    sys.stderr.write(f"mediaproxy: configuration error: {exc}\n")
    sys.stderr.flush()
    raise SystemExit(WORKER_BOOT_ERROR) from None

# Log lines are written in batches every 0.1 s (a WARNING or worse at once): a write per
# access line cost a cache hit a system call and a GIL hand-off (mediaproxy/logs.py).
logs.configure(settings.server.log_level, batch_interval=0.1)
app = create_app(settings)
