"""``mediaproxy`` command: check the configuration, put objects into storage,
purge cached results, sign external URLs, seed the demo.

Every command reads the same settings the server reads (``MEDIAPROXY_*``), so
``put`` writes where the server looks and ``purge`` empties the cache it uses.
Exit status: 0 done, 1 the command failed (a file, storage), 2 bad usage or
an invalid setting (one line on stderr naming it).
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from . import __version__
from .errors import ConfigError, MediaError
from .settings import DEMO_SECRET, LIBRARY_MODES, Settings


def _settings(demo_default: bool = False) -> Settings:
    env = dict(os.environ)
    if demo_default:
        env.setdefault("MEDIAPROXY_DEMO", "1")
    return Settings.from_env(env)


def cmd_check_config(args: argparse.Namespace) -> int:
    from .storage import prepare

    settings = _settings()
    notes = prepare(settings, create=False)
    rows = [(f"{s.path} = {', '.join(map(str, v)) or '(none)' if isinstance(v, list) else v}", s.env, is_set)
            for s, v, is_set in settings.report()]
    width = min(56, max(len(line) for line, _, _ in rows))  # a long list does not push every comment right
    for line, variable, is_set in rows:
        print(f"{line:{width}}  # {variable}{'' if is_set else ' (default)'}")
    for level, message in notes:
        print(f"{level}: {message}", file=sys.stderr)
    for message in settings.warnings():
        print(f"warning: {message}", file=sys.stderr)
    print("configuration OK")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo
    from .signing import sign_path
    from .storage import make_storage

    settings = _settings(demo_default=True)
    storage = make_storage(settings)
    examples = demo.seed(storage, settings.cdn_bucket)
    static_examples = demo.seed_static(storage, settings.static_bucket)
    base = args.base_url.rstrip("/")
    print(f"Demo objects written to {settings.storage}. Try:")
    for description, path in examples:
        print(f"  {description:34s} {base}{path}")
    url = "https://upload.wikimedia.org/wikipedia/commons/4/47/PNG_transparency_demonstration_1.png"
    print(f"  {'signed external image (internet)':34s} {base}/external/{sign_path(url, settings.secret_key)}?width=200")
    static_base = args.static_base_url.rstrip("/")
    print(f"Static-assets host (MEDIAPROXY_MODE=static) at {static_base}:")
    for description, path in static_examples:
        print(f"  {description:34s} {static_base}{path}")
    video_key = demo.seed_uploads(storage, settings.uploads_bucket)
    video = f"s3://{settings.uploads_bucket}/{video_key}"
    secret = settings.internal_secret
    print()
    if secret == DEMO_SECRET:
        print(f"Internal endpoints; X-Internal-Secret is the public demo key {secret!r} (never in production):")
    else:
        print("Internal endpoints; X-Internal-Secret is your MEDIAPROXY_INTERNAL_SECRET (or MEDIAPROXY_SECRET_KEY):")
    hdr = f"-H 'X-Internal-Secret: {secret}' -H 'Content-Type: application/json'"
    print(f"  curl -s {hdr} -d '{{\"url\": \"{video}\"}}' {base}/_metadata")
    print(f"  curl -s {hdr} -d '{{\"video_url\": \"{video}\", \"timestamp\": 1.5}}' {base}/_thumbnail -o thumb.jpg")
    print(f"  curl -s {hdr} -d '{{\"video_url\": \"{video}\", \"count\": 4}}' {base}/_frames")
    if settings.mode in LIBRARY_MODES:
        from .library import demo as library_demo

        print("The media library (MEDIAPROXY_MODE=" + settings.mode + "): one image uploaded through it. Try:")
        for description, value in library_demo.seed(settings, base):
            print(f"  {description:34s} {value}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from .netguard import Fetcher
    from .routes.external import decode_target
    from .signing import encode_url, sign_path

    settings = _settings()

    class _Name(Exception):
        pass

    def unresolved(host: str, port: int) -> list[str]:
        raise _Name  # a host name: the server resolves and checks it at fetch time

    try:
        decode_target(encode_url(args.url))
        Fetcher.from_settings(settings, resolver=unresolved).target(args.url)
    except _Name:
        pass
    except MediaError as exc:
        print(f"mediaproxy sign: {args.url!r}: {exc.reason} (the server would answer {exc.status})",
              file=sys.stderr)
        return 2
    path = f"/external/{sign_path(args.url, settings.secret_key)}"
    print(args.base_url.rstrip("/") + path if args.base_url else path)
    return 0


def _files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file():
                yield path


def guess_type(path: Path, data: bytes) -> str | None:
    """By file name, else by content (object keys of the image families have no extension)."""
    from .media.sniff import sniff

    by_name = mimetypes.guess_type(path.name)[0]
    if by_name and by_name != "application/octet-stream":
        return by_name
    return sniff(data[:4096]) or by_name


def cmd_put(args: argparse.Namespace) -> int:
    from .storage import make_storage

    settings = _settings()
    bucket = args.bucket or settings.cdn_bucket
    src = Path(args.path)
    if src.is_dir():
        if args.key:
            print("mediaproxy put: --key names one object; use --prefix with a directory", file=sys.stderr)
            return 2
        prefix = (args.prefix or "").strip("/")
        pairs = [(p, "/".join(filter(None, [prefix, p.relative_to(src).as_posix()]))) for p in _files(src)]
    elif src.is_file():
        key = args.key or "/".join(filter(None, [(args.prefix or "").strip("/"), src.name]))
        pairs = [(src, key.lstrip("/"))]
    else:
        print(f"mediaproxy put: {args.path}: no such file or directory", file=sys.stderr)
        return 1
    storage = make_storage(settings)
    for path, key in pairs:
        data = path.read_bytes()
        ctype = args.content_type or guess_type(path, data)
        try:
            storage.put(bucket, key, data, ctype)
        except MediaError as exc:
            print(f"mediaproxy put: {path} -> {bucket}/{key}: {exc.reason}", file=sys.stderr)
            return 1
        print(f"{bucket}/{key}\t{len(data)}\t{ctype or '-'}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from .cache import ResultCache

    settings = _settings()
    if settings.cache_dir is None:
        print("mediaproxy purge: the result cache is off (MEDIAPROXY_CACHE_DIR is empty): nothing to purge")
        return 0
    bucket = args.bucket or settings.cdn_bucket
    cache = ResultCache(settings.cache_dir, settings.cache_size)
    try:
        removed = cache.purge(bucket, args.key, prefix=args.prefix)
    finally:
        cache.close()
    what = "under prefix" if args.prefix else "of"
    print(f"purged {removed} cached entr{'y' if removed == 1 else 'ies'} {what} {bucket}/{args.key}")
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


def _iso(dt) -> str:
    return "-" if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_keys_list(args: argparse.Namespace) -> int:
    """One line per key, tab-separated under a header: prefix, organization, name, created,
    revoked ('-' while valid). Secrets are never stored, so never shown."""
    from .library import auth
    from .library.db import Database, upgrade_locked

    settings = _library_settings()
    db = Database(settings.library.database_url)
    upgrade_locked(db)
    with db.transaction() as s:
        rows = [(k.prefix, o.slug, k.name, _iso(k.created_at), _iso(k.revoked_at))
                for k, o in auth.list_keys(s, args.org)]
    print("prefix\torg\tname\tcreated\trevoked")
    for row in rows:
        print("\t".join(v.replace("\t", " ").replace("\n", " ") for v in row))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from .library import auth
    from .library.db import Database, upgrade_locked

    prefix = auth.key_prefix(args.prefix)
    if prefix is None:
        print("mediaproxy: give a key's prefix (12 hex digits, as `keys list` prints it) or the key",
              file=sys.stderr)
        return 2
    settings = _library_settings()
    db = Database(settings.library.database_url)
    upgrade_locked(db)
    with db.transaction() as s:
        row = auth.revoke_key(s, prefix)
        if row is None:
            print(f"mediaproxy: no key with prefix {prefix}", file=sys.stderr)
            return 1
        slug, revoked = row.org.slug, _iso(row.revoked_at)
    print(f"key {prefix} of organization {slug!r} revoked at {revoked}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from . import logs
    from .library.build import run_worker

    settings = Settings.from_env(os.environ)
    logs.configure(settings.server.log_level)  # the same JSON lines as the web workers
    run_worker(settings)
    return 0


def cmd_janitor(args: argparse.Namespace) -> int:
    """Abort incomplete uploads and delete objects no record points at, once older than the grace."""
    from .context import Context
    from .library.db import Database
    from .library.janitor import minimum_grace, sweep
    from .library.services import Library

    settings = _library_settings()
    grace = settings.library.janitor_grace if args.grace is None else args.grace
    if grace < 0:
        print("mediaproxy: janitor: --grace must be 0 or more seconds", file=sys.stderr)
        return 2
    if grace < minimum_grace(settings) and not args.force:
        print(f"mediaproxy: janitor: a grace of {grace:g} s is shorter than an upload or a job's output can be in "
              f"flight ({minimum_grace(settings):g} s: MEDIAPROXY_BODY_TIMEOUT + MEDIAPROXY_S3_WRITE_TIMEOUT, "
              "MEDIAPROXY_JOB_RETRY_BUDGET + MEDIAPROXY_JOB_LEASE) and would delete live bytes; "
              "--force if nothing is running", file=sys.stderr)
        return 2
    lib = Library(Context.build(settings), Database(settings.library.database_url))
    try:
        done = sweep(lib, grace, dry_run=args.dry_run)
    except MediaError as exc:
        print(f"mediaproxy: janitor: {exc.reason}", file=sys.stderr)
        return 1
    verb = "would remove" if args.dry_run else "removed"
    for key in done.incomplete:
        print(f"incomplete upload {lib.bucket}/{key}")
    for key in done.orphans:
        print(f"orphan {lib.bucket}/{key}")
    print(f"{verb} {len(done.incomplete)} incomplete upload(s) and {len(done.orphans)} orphan(s) older than "
          f"{grace:g} s; {done.young} younger left alone" + (f"; {len(done.failed)} failed" if done.failed else ""))
    return 1 if done.failed else 0


def cmd_admin_create(args: argparse.Namespace) -> int:
    """The first admin of the /v2 admin API: the password comes from standard input (one line), never argv."""
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediaproxy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"mediaproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check-config", help="validate the settings and print them, secrets masked")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("put", help="store a file, or every file under a directory, in a bucket (either backend)")
    p.add_argument("path", help="a file, or a directory (its files are stored under their relative paths)")
    p.add_argument("--bucket", help="target bucket (default: MEDIAPROXY_CDN_BUCKET)")
    p.add_argument("--key", help="object key of a single file (default: --prefix + the file's name)")
    p.add_argument("--prefix", default="", help="key prefix, e.g. avatars/80351110224678912")
    p.add_argument("--content-type", help="Content-Type to store (default: guessed from the name, else the bytes)")
    p.set_defaults(func=cmd_put)

    p = sub.add_parser("purge", help="delete the cached results of one object key, or of every key under a prefix")
    p.add_argument("key", help="object key, e.g. avatars/80351110224678912/8342729096ea3675442027381ff50dfe")
    p.add_argument("--bucket", help="bucket of the object (default: MEDIAPROXY_CDN_BUCKET; ':external' for URLs)")
    p.add_argument("--prefix", action="store_true", help="treat KEY as a prefix: purge every key that starts with it")
    p.set_defaults(func=cmd_purge)

    p = sub.add_parser("sign", help="print the signed /external path for a URL (uses MEDIAPROXY_SECRET_KEY)")
    p.add_argument("url", help="an http(s) URL the server may fetch")
    p.add_argument("--base-url", default="", help="prefix the printed path with this, e.g. https://media.example.com")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("demo", help="write the demo objects into storage and print example URLs and curl lines")
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="server URL the examples point at")
    p.add_argument("--static-base-url", default="http://127.0.0.1:8001", help="the static-assets host's URL")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("db", help="the media library's database")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="COMMAND", help="upgrade")
    q = dbsub.add_parser("upgrade", help="apply the migrations (idempotent)")
    q.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("keys", help="API keys of the media library")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="COMMAND", help="create, list, revoke")
    q = ksub.add_parser("create", help="create a key (and the organization if needed); the key is the last line")
    q.add_argument("--org", required=True, help="organization slug (a-z, 0-9, '-')")
    q.add_argument("--name", default="", help="a label for the key")
    q.set_defaults(func=cmd_keys_create)
    q = ksub.add_parser("list", help="list the keys (prefix, org, name, created, revoked); never a secret")
    q.add_argument("--org", help="only this organization's keys")
    q.set_defaults(func=cmd_keys_list)
    q = ksub.add_parser("revoke", help="revoke a key by its prefix: refused from the next request on")
    q.add_argument("prefix", help="the key's prefix as `keys list` prints it (or the whole key)")
    q.set_defaults(func=cmd_keys_revoke)

    p = sub.add_parser("worker", help="run the library's job worker (huey consumer)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("janitor", help="abort the library's incomplete uploads and delete objects no record "
                                        "points at, once older than MEDIAPROXY_JANITOR_GRACE")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.add_argument("--grace", type=float, default=None, metavar="SECONDS",
                   help="leave alone what is younger than this (default: MEDIAPROXY_JANITOR_GRACE); "
                        "refused when shorter than an upload or a job's output can be in flight")
    p.add_argument("--force", action="store_true",
                   help="accept a grace shorter than that (only when no server or worker is running)")
    p.set_defaults(func=cmd_janitor)

    p = sub.add_parser("admin", help="admins of the /v2 admin API")
    asub = p.add_subparsers(dest="admin_command", required=True, metavar="COMMAND", help="create")
    q = asub.add_parser("create", help="create an admin; the password is read from standard input")
    q.add_argument("--email", required=True, help="the admin's e-mail address (the login)")
    q.add_argument("--name", default="", help="a display name")
    q.set_defaults(func=cmd_admin_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except ConfigError as exc:
        print(f"mediaproxy: configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`mediaproxy demo | head`): stop quietly. Python would
        # report the pipe again when it flushes stdout at exit, so point it elsewhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
