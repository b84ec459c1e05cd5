"""Refresh a shipped CDN address list from its provider's published URLs.

    python -m mediaproxy.data.refresh cloudflare          # rewrite mediaproxy/data/cloudflare.txt
    python -m mediaproxy.data.refresh cloudflare -o FILE  # write elsewhere (then use @FILE)

Every line fetched must parse as an IP network, and the result must not be
empty, or nothing is written: a bad download never empties an allow-list.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent

PROVIDERS: dict[str, dict[str, object]] = {
    "cloudflare": {
        "urls": ["https://www.cloudflare.com/ips-v4", "https://www.cloudflare.com/ips-v6"],
        "about": [
            "Cloudflare's published edge address ranges, for the client IP allow-list:",
            "  MEDIAPROXY_TRUSTED_CLIENT_CIDRS=@cloudflare",
            "Source: https://www.cloudflare.com/ips-v4 and https://www.cloudflare.com/ips-v6",
        ],
    },
}


def parse_list(text: str) -> list[str]:
    """Networks from a provider's text list (one a line); ValueError for anything else."""
    nets = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            nets.append(str(ipaddress.ip_network(line, strict=False)))
    return nets


def render(provider: str, nets: list[str], now: datetime | None = None) -> str:
    about = PROVIDERS[provider]["about"]
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
    lines = [f"# {line}" for line in about]  # type: ignore[union-attr]
    lines += [
        f"# Refresh with: python -m mediaproxy.data.refresh {provider}",
        "# One network per line; '#' starts a comment.",
        f"# Snapshot: {stamp}.",
        *nets,
    ]
    return "\n".join(lines) + "\n"


def fetch(urls: list[str], timeout: float = 10.0) -> list[str]:
    nets: list[str] = []
    for url in urls:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            nets += parse_list(resp.read().decode("utf-8"))
    if not nets:
        raise ValueError("the provider's lists are empty")
    return nets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mediaproxy.data.refresh", description=__doc__)
    parser.add_argument("provider", choices=sorted(PROVIDERS))
    parser.add_argument("-o", "--output", help="file to write (default: the shipped list)")
    parser.add_argument("--url", action="append", help="list URL(s) to read instead of the provider's")
    args = parser.parse_args(argv)
    urls = args.url or PROVIDERS[args.provider]["urls"]
    try:
        nets = fetch(urls)  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:
        print(f"refresh failed, nothing written: {exc}", file=sys.stderr)
        return 1
    out = Path(args.output) if args.output else DATA_DIR / f"{args.provider}.txt"
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(render(args.provider, nets), encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {len(nets)} networks to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
