"""``mediaproxy`` command: sign external URLs, seed the demo objects."""

from __future__ import annotations

import argparse
import os
import sys

from .errors import ConfigError
from .settings import Settings


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo
    from .storage import make_storage

    env = dict(os.environ)
    env.setdefault("MEDIAPROXY_DEMO", "1")
    settings = Settings.from_env(env)
    examples = demo.seed(make_storage(settings), settings.cdn_bucket)
    base = args.base_url.rstrip("/")
    print(f"Demo objects written to {settings.storage}. Try:")
    for description, path in examples:
        print(f"  {description:34s} {base}{path}")
    from .signing import sign_path

    url = "https://upload.wikimedia.org/wikipedia/commons/4/47/PNG_transparency_demonstration_1.png"
    print(f"  {'signed external image (internet)':34s} {base}/external/{sign_path(url, settings.secret_key)}?width=200")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from .signing import sign_path

    settings = Settings.from_env(os.environ)
    path = f"/external/{sign_path(args.url, settings.secret_key)}"
    print(args.base_url.rstrip("/") + path if args.base_url else path)
    return 0


def _library_settings() -> Settings:
    # The database and key commands sign nothing: they run without MEDIAPROXY_SECRET_KEY.
    env = dict(os.environ)
    env.setdefault("MEDIAPROXY_SECRET_KEY", "unused-by-this-command")
    return Settings.from_env(env)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from .library.db import Database, current, upgrade_locked

    settings = _library_settings()
    db = Database(settings.library.database_url)
    before = current(db.engine)
    upgrade_locked(db)
    after = current(db.engine)
    print(f"database at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from .errors import MediaError
    from .library import auth
    from .library.db import Database, upgrade_locked

    settings = _library_settings()
    db = Database(settings.library.database_url)
    upgrade_locked(db)
    try:
        with db.transaction() as s:
            key = auth.create_key(s, args.org, args.name or "")
    except MediaError as exc:
        print(f"mediaproxy: {exc.reason}", file=sys.stderr)
        return 2
    print(f"New API key for organization {args.org!r} (shown once; store it now):")
    print(key)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from .library.jobs import run_worker

    logging.basicConfig(level=os.environ.get("MEDIAPROXY_LOG_LEVEL", "INFO").upper(), format="%(message)s")
    run_worker(Settings.from_env(os.environ))
    return 0


def cmd_admin_create(args: argparse.Namespace) -> int:
    """Seed 004's first admin: the password comes from standard input (one line), never argv."""
    from .errors import MediaError
    from .library import auth
    from .library.db import Database, upgrade_locked

    settings = _library_settings()
    password = sys.stdin.readline().rstrip("\r\n")
    db = Database(settings.library.database_url)
    upgrade_locked(db)
    try:
        with db.transaction() as s:
            admin = auth.create_admin(s, args.email, password, args.name)
            email = admin.email
    except MediaError as exc:
        print(f"mediaproxy: {exc.reason}", file=sys.stderr)
        return 2
    print(f"admin {email} created")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mediaproxy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="write the demo objects into local storage and print example URLs")
    p.add_argument("--base-url", default="http://127.0.0.1:8000")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("sign", help="print the signed /external path for a URL (uses MEDIAPROXY_SECRET_KEY)")
    p.add_argument("url")
    p.add_argument("--base-url", default="")
    p.set_defaults(func=cmd_sign)
    p = sub.add_parser("db", help="the media library's database")
    dbsub = p.add_subparsers(dest="db_command", required=True)
    q = dbsub.add_parser("upgrade", help="apply the migrations (idempotent)")
    q.set_defaults(func=cmd_db_upgrade)
    p = sub.add_parser("keys", help="API keys of the media library")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    q = ksub.add_parser("create", help="create a key (and the organization if needed); the key is the last line")
    q.add_argument("--org", required=True, help="organization slug (a-z, 0-9, '-')")
    q.add_argument("--name", default="", help="a label for the key")
    q.set_defaults(func=cmd_keys_create)
    p = sub.add_parser("worker", help="run the library's job worker (huey consumer)")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("admin", help="admins of seed 004's admin API")
    asub = p.add_subparsers(dest="admin_command", required=True)
    q = asub.add_parser("create", help="create an admin; the password is read from standard input")
    q.add_argument("--email", required=True)
    q.add_argument("--name", default="")
    q.set_defaults(func=cmd_admin_create)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"mediaproxy: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
