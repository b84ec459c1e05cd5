"""WSGI entry point: ``gunicorn -c gunicorn.conf.py mediaproxy.wsgi:app``."""

from __future__ import annotations

import logging
import os
import sys

from .app import create_app
from .errors import ConfigError
from .settings import Settings

logging.basicConfig(level=os.environ.get("MEDIAPROXY_LOG_LEVEL", "INFO").upper(), format="%(message)s")

try:
    settings = Settings.from_env(os.environ)
except ConfigError as exc:
    sys.stderr.write(f"mediaproxy: configuration error: {exc}\n")
    raise SystemExit(2) from None

app = create_app(settings)
