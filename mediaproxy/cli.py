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
    storage = make_storage(settings)
    examples = demo.seed(storage, settings.cdn_bucket)
    static_examples = demo.seed_static(storage, settings.static_bucket)
    base = args.base_url.rstrip("/")
    print(f"Demo objects written to {settings.storage}. Try:")
    for description, path in examples:
        print(f"  {description:34s} {base}{path}")
    from .signing import sign_path

    url = "https://upload.wikimedia.org/wikipedia/commons/4/47/PNG_transparency_demonstration_1.png"
    print(f"  {'signed external image (internet)':34s} {base}/external/{sign_path(url, settings.secret_key)}?width=200")
    static_base = args.static_base_url.rstrip("/")
    print(f"Static-assets host (MEDIAPROXY_MODE=static) at {static_base}:")
    for description, path in static_examples:
        print(f"  {description:34s} {static_base}{path}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from .signing import sign_path

    settings = Settings.from_env(os.environ)
    path = f"/external/{sign_path(args.url, settings.secret_key)}"
    print(args.base_url.rstrip("/") + path if args.base_url else path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mediaproxy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="write the demo objects into local storage and print example URLs")
    p.add_argument("--base-url", default="http://127.0.0.1:8000")
    p.add_argument("--static-base-url", default="http://127.0.0.1:8001", help="the static-assets host")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("sign", help="print the signed /external path for a URL (uses MEDIAPROXY_SECRET_KEY)")
    p.add_argument("url")
    p.add_argument("--base-url", default="")
    p.set_defaults(func=cmd_sign)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"mediaproxy: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
