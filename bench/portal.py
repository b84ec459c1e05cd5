"""The admin portal's images grid in a real browser, over 10,000 images.

    .venv/bin/python -m bench.portal [--images 10000] [--runs 10] [--requests 300] [--compare ../before]
                                     [--out bench/results]

One gunicorn on the embedded defaults (MEDIAPROXY_MODE=all, SQLite, local storage, the disk result
cache), 10,000 `/v2` images of one client recorded through the library service (distinct stored
JPEGs, 50 distinct pictures, placeholders computed), an admin made by `mediaproxy admin create`.
Debian's chromium (Playwright, by path, as tests/browser.py launches it) signs in once, opens the
grid (100 thumbnails) once to warm the result cache, then, per run, opens `/admin/#/images` in a
new tab with the browser's own HTTP cache cleared: the time from navigation start to the last
thumbnail decoded (the portal's `mp-grid-ready` mark, set once every `<img>` of the page has
loaded and `decode()`d); then once more in another tab with the browser's cache as the first
left it (an operator coming back to the grid).

`--compare CHECKOUT`: a second gunicorn running another checkout's code (`git worktree add
../before main`: the portal before a change) over the same database, storage and result cache, its grid opened in
the same runs, interleaved: the ratio of the two is this change's, whatever the machine's load.

Then the page's requests alone, one keep-alive client: `GET /v2/admin/images?limit=100` (the
grid's page of 10,000), `GET /v2/admin/images/thumbnails` (its 100 thumbnails in one answer),
`GET /v2/admin/images/signed` (100 signed URLs, what the grid used before) and `GET /admin/`
(the document), p50/p99 of `--requests` each.

The floor, interleaved with the grid's runs: a page that already holds 100 URLs loading the
grid's thumbnail bytes from nginx as 100 files, in the same browser with its cache cleared (what
any page of 100 images costs on this machine at that moment).

Targets: grid interactive ≤ 1 s (warm server cache), page request ≤ 50 ms p99. Prints the
figures of this run; writes portal.json only with --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from email import message_from_bytes
from email.policy import HTTP
from pathlib import Path

import requests

from tests.browser import launch

from . import common

PASSWORD = "bench portal password"
EMAIL = "bench@example.com"
MARK = "performance.getEntriesByName('mp-grid-ready')[0].startTime"
# the floor: a page that already knows the 100 URLs, loading the same bytes from nginx
BASELINE = ("<!doctype html><body><script>const u = URLS; let n = 0; for (const s of u) { const i = new Image(); "
            "i.width = i.height = 150; i.onload = () => i.decode().finally(() => { if (++n === u.length) "
            "{ performance.mark('mp-grid-ready'); document.body.dataset.ready = '1'; } }); i.src = s; "
            "document.body.append(i); }</script>")
TRACE = ("performance.getEntriesByType('resource').map(e => [e.name.slice(-60), Math.round(e.startTime), "
         "Math.round(e.requestStart), Math.round(e.responseStart), Math.round(e.responseEnd), e.transferSize])")


def seed(env: dict, n: int) -> None:
    """``n`` images of the client ``bench``, through the library service (as an upload records them)."""
    from mediaproxy.context import Context
    from mediaproxy.library import auth
    from mediaproxy.library.build import build_library
    from mediaproxy.settings import Settings

    settings = Settings.from_env(env)
    lib = build_library(settings, Context.build(settings))
    lib.db.upgrade()
    pictures = [common.jpeg(320, 213, seed=i, q=80) for i in range(50)]
    hashes = [lib.versions.placeholder_hashes(str(i), "image/jpeg", p) for i, p in enumerate(pictures)]
    with lib.db.transaction() as s:
        org = auth.organization(s, "bench", create=True)
        org_id = org.id
    done = 0
    while done < n:
        with lib.db.transaction() as s:
            org = s.get(type(org), org_id)
            for i in range(done, min(n, done + 500)):
                up = lib.ingest.begin_upload(org, f"photo-{i:05d}.jpg")
                up.write(pictures[i % 50])
                obj, _ = up.finish()
                m = lib.ingest.create_media(s, up, obj, owner=f"user-{i % 40}", dialect="v2",
                                            fields={"description": f"picture {i}", "is_private": i % 7 == 0})
                m.blur_hash, m.thumb_hash = hashes[i % 50]
        done = min(n, done + 500)
        print(f"  seeded {done} images", flush=True)
    lib.db.dispose()


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]


def timed(session: requests.Session, url: str, headers: dict | None = None) -> float:
    t0 = time.perf_counter()
    r = session.get(url, headers=headers)
    dt = time.perf_counter() - t0
    assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return dt * 1000


def parts(r: requests.Response) -> dict[str, bytes]:
    """A multipart/form-data answer's parts by name."""
    msg = message_from_bytes(b"Content-Type: " + r.headers["Content-Type"].encode() + b"\r\n\r\n" + r.content,
                             policy=HTTP)
    return {p.get_param("name", header="content-disposition"): p.get_payload(decode=True) for p in msg.iter_parts()}


def grid(ctx, url: str, clear: bool, trace: bool = False) -> float:
    """Open the grid in a new tab (the browser's cache cleared first, or not): ms to the last thumbnail decoded."""
    page = ctx.new_page()
    if clear:
        ctx.new_cdp_session(page).send("Network.clearBrowserCache")
    page.goto(url)
    page.wait_for_selector("ul.grid[data-ready=true]", timeout=120_000)
    ms = page.evaluate(MARK)
    n = page.eval_on_selector_all("ul.grid .frame.loaded", "els => els.length")
    assert n == 100, f"{n} thumbnails decoded at {url}"
    if trace:
        for e in page.evaluate(TRACE):
            print("   ", e)
        print("    marks", page.evaluate("performance.getEntriesByType('mark')"
                                      ".map(e => [e.name, Math.round(e.startTime)])"))
    page.close()
    return ms


def ms_stats(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1),
            "all": [round(x, 1) for x in values]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--compare", type=Path, metavar="CHECKOUT", help="also open the grid of another checkout's "
                    "code (a checkout of the commit before a change) in the same runs, over the same data")
    ap.add_argument("--out", type=Path, metavar="DIR", help="write portal.json into DIR (bench/results: the "
                    "committed figures); without it nothing is written")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    trace = bool(os.environ.get("BENCH_PORTAL_TRACE"))
    load = common.wait_quiet(limit=1.5, max_wait=float(os.environ.get("BENCH_MAX_WAIT", "120")))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {"MEDIAPROXY_MODE": "all", "MEDIAPROXY_DATABASE_URL": f"sqlite:///{work}/lib.db",
               "MEDIAPROXY_QUEUE_URL": f"sqlite:///{work}/q.db", "MEDIAPROXY_SECRET_KEY": "bench-secret",
               "MEDIAPROXY_STORAGE": str(work / "storage"), "MEDIAPROXY_CACHE_DIR": str(work / "cache")}
        (work / "storage" / "library").mkdir(parents=True)
        t0 = time.monotonic()
        seed(env, args.images)
        seeding = time.monotonic() - t0
        with contextlib.ExitStack() as stack:
            srv = stack.enter_context(common.Server(work, env))
            old = stack.enter_context(common.Server(work, env, name="compare", root=args.compare.resolve())) \
                if args.compare else None
            # this checkout's code, as the server's (a venv shared between checkouts runs another's)
            subprocess.run([str(common.VENV_BIN / "mediaproxy"), "admin", "create", "--email", EMAIL], cwd=common.ROOT,
                           env={**srv.env, "PYTHONPATH": str(common.ROOT)}, input=PASSWORD + "\n",
                           capture_output=True, text=True, check=True)
            base = srv.url("")
            token = requests.post(f"{base}/v2/admin/auth/login", json={"email": EMAIL, "password": PASSWORD},
                                  timeout=30).json()["accessToken"]
            auth = {"Authorization": f"Bearer {token}"}
            # both servers share the database and the secret: one sign-in (its cookies are the host's) serves both
            grids = {"portal": f"{base}/admin/#/images"}
            if old is not None:
                grids["before"] = old.url("/admin/#/images")
            with sync_playwright() as pw:
                ctx = launch(pw, work / "profile")
                page = ctx.new_page()
                page.goto(f"{base}/admin/#/signin")
                page.get_by_label("Email").fill(EMAIL)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("heading", name="Dashboard").wait_for(timeout=60_000)
                page.goto(grids["portal"])  # warms the server's result cache
                page.wait_for_selector("ul.grid[data-ready=true]", timeout=120_000)
                ids = page.eval_on_selector_all("ul.grid li.cell", "els => els.map(e => e.dataset.id)")
                size = page.evaluate("document.querySelector('ul.grid .frame canvas').width")
                page.close()
                if old is not None:
                    grid(ctx, grids["before"], clear=True)  # its own thumbnails' size, cached once
                thumbs = parts(requests.get(f"{base}/v2/admin/images/thumbnails", headers=auth, timeout=60, params={
                    "ids": ",".join(ids), "w": size, "h": size}))
                static = work / "static"
                static.mkdir()
                for d in (work, static):  # nginx's workers (nobody) read them
                    d.chmod(0o755)
                for i, image_id in enumerate(ids):  # the grid's 100 thumbnails, as files for nginx
                    (static / f"{i}.webp").write_bytes(thumbs[image_id])
                    (static / f"{i}.webp").chmod(0o644)
                series: dict[str, list[float]] = {k: [] for k in (*grids, *(f"{g}, revisit" for g in grids), "static")}
                with common.Nginx(static) as nginx:
                    baseline = BASELINE.replace("URLS", json.dumps([f"/{i}.webp" for i in range(len(ids))]))
                    floor = f"http://127.0.0.1:{nginx.port}/floor.html"
                    for _ in range(args.runs):  # interleaved: each grid (then again, its cache warm), the floor
                        for name, url in grids.items():
                            series[name].append(grid(ctx, url, clear=True, trace=trace))
                            series[f"{name}, revisit"].append(grid(ctx, url, clear=False))
                        page = ctx.new_page()
                        ctx.new_cdp_session(page).send("Network.clearBrowserCache")
                        page.route(floor, lambda r: r.fulfill(body=baseline, content_type="text/html"))
                        page.goto(floor)
                        page.wait_for_selector("body[data-ready]", state="attached", timeout=60_000)
                        series["static"].append(page.evaluate(MARK))
                        page.close()
                ctx.close()
            s = requests.Session()
            page_json = s.get(f"{base}/v2/admin/images?limit=100", headers=auth).json()
            ids = ",".join(i["id"] for i in page_json["items"])
            urls = {
                "images page (GET /v2/admin/images?limit=100)": (f"{base}/v2/admin/images?limit=100", auth),
                "thumbnails (GET /v2/admin/images/thumbnails, 100 ids)":
                    (f"{base}/v2/admin/images/thumbnails?ids={ids}&w={size}&h={size}", auth),
                "signed URLs (GET /v2/admin/images/signed, 100 ids)":
                    (f"{base}/v2/admin/images/signed?ids={ids}&w=200&h=200&fit=cover", auth),
                "document (GET /admin/)": (f"{base}/admin/", None),
            }
            thumb_urls = list(s.get(urls["signed URLs (GET /v2/admin/images/signed, 100 ids)"][0],
                                    headers=auth).json()["urls"].values())
            lat: dict[str, list[float]] = {k: [] for k in urls}
            lat["a thumbnail by its signed URL (GET /admin/media/..., warm)"] = []
            for n in range(args.requests):  # interleaved
                for k, (u, h) in urls.items():
                    lat[k].append(timed(s, u, h))
                lat["a thumbnail by its signed URL (GET /admin/media/..., warm)"].append(
                    timed(s, thumb_urls[n % len(thumb_urls)]))
    floor_ms = statistics.median(series["static"])
    result = {
        "images": args.images, "total_listed": page_json["total"], "runs": args.runs, "seeding_s": round(seeding, 1),
        "thumbnail_px": size,
        "grid_ready_ms": ms_stats(series["portal"]),
        "grid_revisit_ms": ms_stats(series["portal, revisit"]),
        "static_floor_ms": ms_stats(series["static"]),
        "grid_vs_static_floor": round(statistics.median(series["portal"]) / floor_ms, 2),
        **({"compared_with": str(args.compare), "before_grid_ready_ms": ms_stats(series["before"]),
            "before_grid_revisit_ms": ms_stats(series["before, revisit"]),
            "grid_vs_before": round(statistics.median(series["portal"]) / statistics.median(series["before"]), 2)}
           if args.compare else {}),
        "requests_ms": {k: {"p50": round(pct(v, 50), 2), "p99": round(pct(v, 99), 2)} for k, v in lat.items()},
        **load, "loadavg_1m_at_end": round(common.loadavg(), 2),
    }
    g = result["grid_ready_ms"]
    print(f"grid of 100 thumbnails ({size} px) over {page_json['total']:,} images, navigation start → last decoded, "
          f"browser cache cleared: median {g['median']} ms, max {g['max']} ms (target ≤ 1000 ms: "
          f"{g['median'] / 1000:.2f}× of it); again with the browser's cache warm: median "
          f"{result['grid_revisit_ms']['median']} ms")
    if args.compare:
        print(f"the grid of {args.compare} in the same runs: median {result['before_grid_ready_ms']['median']} ms "
              f"(revisit {result['before_grid_revisit_ms']['median']} ms); this one is {result['grid_vs_before']}× it")
    print(f"the same 100 thumbnails as static files from nginx, in the same browser: median "
          f"{result['static_floor_ms']['median']} ms; the grid is {result['grid_vs_static_floor']}× that")
    for k, v in result["requests_ms"].items():
        print(f"{k}: p50 {v['p50']} ms, p99 {v['p99']} ms (target ≤ 50 ms p99: {v['p99'] / 50:.2f}× of it)")
    print(f"load average {result['loadavg_1m_at_start']} at start, {result['loadavg_1m_at_end']} at the end")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "portal.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
