"""What the session check costs an admin request, in process.

    .venv/bin/python -m bench.admin_session [--database-url URL] [--rounds 5] [--calls 2000]
                                            [--out results/admin-session.json]

Every admin request turns its access token into an admin (``auth.admin_from_token``): the JWT is
verified, then the admin's row is read. Since logouts end sessions at once, that read is one
query joining the admin's row to its session's (by primary key) and refusing a revoked session.
Timed here, interleaved per round, on one database (a temporary SQLite file unless
``--database-url`` names another, e.g. PostgreSQL):

- ``with session``: ``auth.admin_from_token`` as shipped;
- ``without``: the same JWT verification and the admin's row alone (``Session.get``), as before
  sessions were checked;
- ``without, prebuilt``: the admin's row alone by a statement built once, as the shipped check's
  is: the difference to ``with session`` is what the join to the session costs;
- ``request``: a whole ``GET /v2/admin/auth/me`` through the WSGI app in process (no socket).

Each call uses a fresh ORM session, as a request does. Prints the medians (µs), the ratios and
what the check adds to a request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--database-url")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--out")
    args = ap.parse_args()

    import jwt
    from falcon import testing
    from sqlalchemy import bindparam, select

    from mediaproxy.app import create_app
    from mediaproxy.library import auth
    from mediaproxy.library.db import Database
    from mediaproxy.library.models import Admin
    from mediaproxy.settings import Settings

    tmp = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite:///{tmp.name}/bench.db"
    secret = "bench-secret-" + "x" * 32
    db = Database(url)
    db.upgrade()
    with db.transaction() as s:
        admin = auth.create_admin(s, f"bench-{time.monotonic_ns()}@example.com", "a long bench password")
        _, sid = auth.issue_refresh(s, admin)
        access = auth.access_token(admin, sid, secret)

    def with_session() -> None:
        s = db.session()
        try:
            auth.admin_from_token(s, access, secret)
        finally:
            s.close()

    def without() -> None:
        s = db.session()
        try:
            claims = jwt.decode(access, auth.jwt_key(secret), algorithms=["HS256"],
                                options={"require": ["exp", "iat", "sub"]})
            a = s.get(Admin, int(claims["sub"]))
            assert a is not None and a.token_version == claims["ver"]
        finally:
            s.close()

    admin_alone = select(Admin).where(Admin.id == bindparam("admin_id"))

    def without_prebuilt() -> None:
        s = db.session()
        try:
            claims = jwt.decode(access, auth.jwt_key(secret), algorithms=["HS256"],
                                options={"require": ["exp", "iat", "sub"]})
            a = s.execute(admin_alone, {"admin_id": int(claims["sub"])}).scalar()
            assert a is not None and a.token_version == claims["ver"]
        finally:
            s.close()

    env = {**os.environ, "MEDIAPROXY_MODE": "library", "MEDIAPROXY_DATABASE_URL": url,
           "MEDIAPROXY_SECRET_KEY": secret, "MEDIAPROXY_STORAGE_DIR": f"{tmp.name}/storage",
           "MEDIAPROXY_CACHE_DIR": f"{tmp.name}/cache", "MEDIAPROXY_QUEUE_URL": f"sqlite:///{tmp.name}/q.db"}
    client = testing.TestClient(create_app(Settings.from_env(env)))
    headers = {"Authorization": f"Bearer {access}"}

    def request() -> None:
        r = client.simulate_get("/v2/admin/auth/me", headers=headers)
        assert r.status_code == 200, r.text

    cases = {"with session": with_session, "without": without, "without, prebuilt": without_prebuilt,
             "request": request}
    for fn in cases.values():  # warm up: connections, statement caches, imports
        for _ in range(50):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            times = []
            for _ in range(args.calls // args.rounds):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            samples[name].extend(times)
    med = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
    added = med["with session"] - med["without, prebuilt"]
    result = {"database": url.split(":", 1)[0].split("+")[0], "calls": args.calls,
              "median_us": {k: round(v, 1) for k, v in med.items()},
              "ratio_vs_before": round(med["with session"] / med["without"], 3),
              "ratio_vs_prebuilt": round(med["with session"] / med["without, prebuilt"], 3),
              "added_us": round(added, 1), "added_share_of_request": round(added / med["request"], 3)}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    db.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
