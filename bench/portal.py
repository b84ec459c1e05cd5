"""The admin portal's images grid in a real browser, over 10,000 images.

    .venv/bin/python -m bench.portal [--images 10000] [--runs 10] [--requests 300] [--out bench/results]

One gunicorn on the embedded defaults (MEDIAPROXY_MODE=all, SQLite, local storage, the disk result
cache), 10,000 `/v2` images of one client recorded through the library service (distinct stored
JPEGs, 50 distinct pictures, placeholders computed), an admin made by `mediaproxy admin create`.
Debian's chromium (Playwright, by path) signs in once, opens the grid (100 thumbnails) once to
warm the result cache, then, per run, opens `/admin/#/images` in a new tab with the browser's
own HTTP cache cleared: the time from navigation start to the last thumbnail decoded (the
portal's `mp-grid-ready` mark, set once every `<img>` of the page has loaded and `decode()`d).

Then the page's requests alone, one keep-alive client: `GET /v2/admin/images?limit=100` (the
grid's page of 10,000), `GET /v2/admin/images/signed` (its 100 URLs) and `GET /admin/` (the
document), p50/p99 of `--requests` each.

The floor, interleaved with the grid's runs: a page that already holds the 100 URLs loading the
same thumbnail bytes from nginx, in the same browser with its cache cleared (what any page of 100
images costs on this machine at that moment); the ratio grid / floor says how much the portal adds.

Targets: grid interactive ≤ 1 s (warm server cache), page request ≤ 50 ms p99. Prints the
figures of this run; writes portal.json only with --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
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
    hashes = [lib._placeholder_hashes(str(i), "image/jpeg", p) for i, p in enumerate(pictures)]
    with lib.db.transaction() as s:
        org = auth.organization(s, "bench", create=True)
        org_id = org.id
    done = 0
    while done < n:
        with lib.db.transaction() as s:
            org = s.get(type(org), org_id)
            for i in range(done, min(n, done + 500)):
                up = lib.begin_upload(org, f"photo-{i:05d}.jpg")
                up.write(pictures[i % 50])
                obj, _ = up.finish()
                m = lib.create_media(s, up, obj, owner=f"user-{i % 40}", dialect="v2",
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--out", type=Path, metavar="DIR", help="write portal.json into DIR (bench/results: the "
                    "committed figures); without it nothing is written")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

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
        with common.Server(work, env) as srv:
            # this checkout's code, as the server's (a venv shared between checkouts runs another's)
            subprocess.run([str(common.VENV_BIN / "mediaproxy"), "admin", "create", "--email", EMAIL], cwd=common.ROOT,
                           env={**srv.env, "PYTHONPATH": str(common.ROOT)}, input=PASSWORD + "\n",
                           capture_output=True, text=True, check=True)
            base = srv.url("")
            with sync_playwright() as pw:
                ctx = launch(pw, work / "profile")
                page = ctx.new_page()
                page.goto(f"{base}/admin/#/signin")
                page.get_by_label("Email").fill(EMAIL)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("heading", name="Dashboard").wait_for(timeout=60_000)
                page.goto(f"{base}/admin/#/images")  # warms the server's result cache
                page.wait_for_selector("ul.grid[data-ready=true]", timeout=120_000)
                assert page.locator("ul.grid li.cell").count() == 100
                srcs = page.eval_on_selector_all("ul.grid img", "els => els.map(e => e.src)")
                page.close()
                static = work / "static"
                static.mkdir()
                for d in (work, static):  # nginx's workers (nobody) read them
                    d.chmod(0o755)
                for i, u in enumerate(srcs):  # the same 100 thumbnails, as files for nginx
                    (static / f"{i}.webp").write_bytes(requests.get(u, timeout=30).content)
                    (static / f"{i}.webp").chmod(0o644)
                grid_ms, static_ms, thumbs = [], [], 0
                with common.Nginx(static) as nginx:
                    baseline = BASELINE.replace("URLS", json.dumps(
                        [f"/{i}.webp" for i in range(len(srcs))]))
                    for _ in range(args.runs):  # interleaved: the portal, then the same images from nginx
                        for target in ("portal", "static"):
                            page = ctx.new_page()
                            cdp = ctx.new_cdp_session(page)
                            cdp.send("Network.clearBrowserCache")
                            if target == "static":  # the page itself from Playwright, its images from nginx
                                floor = f"http://127.0.0.1:{nginx.port}/floor.html"
                                page.route(floor, lambda r: r.fulfill(body=baseline, content_type="text/html"))
                                page.goto(floor)
                                page.wait_for_selector("body[data-ready]", state="attached", timeout=60_000)
                                static_ms.append(page.evaluate(MARK))
                                page.close()
                                continue
                            page.goto(f"{base}/admin/#/images")
                            page.wait_for_selector("ul.grid[data-ready=true]", timeout=60_000)
                            grid_ms.append(page.evaluate(MARK))
                            thumbs = page.eval_on_selector_all("ul.grid img",
                                                               "els => els.filter(e => e.naturalWidth).length")
                            if os.environ.get("BENCH_PORTAL_TRACE"):
                                for e in page.evaluate(TRACE):
                                    print("   ", e)
                            page.close()
                ctx.close()
            token = requests.post(f"{base}/v2/admin/auth/login", json={"email": EMAIL, "password": PASSWORD},
                                  timeout=30).json()["accessToken"]
            auth = {"Authorization": f"Bearer {token}"}
            s = requests.Session()
            page_json = s.get(f"{base}/v2/admin/images?limit=100", headers=auth).json()
            ids = ",".join(i["id"] for i in page_json["items"])
            urls = {
                "images page (GET /v2/admin/images?limit=100)": (f"{base}/v2/admin/images?limit=100", auth),
                "signed URLs (GET /v2/admin/images/signed, 100 ids)":
                    (f"{base}/v2/admin/images/signed?ids={ids}&w=200&h=200&fit=cover", auth),
                "document (GET /admin/)": (f"{base}/admin/", None),
            }
            thumb_urls = list(s.get(urls["signed URLs (GET /v2/admin/images/signed, 100 ids)"][0],
                                    headers=auth).json()["urls"].values())
            lat: dict[str, list[float]] = {k: [] for k in urls}
            lat["a thumbnail (GET /admin/media/..., warm)"] = []
            for n in range(args.requests):  # interleaved
                for k, (u, h) in urls.items():
                    lat[k].append(timed(s, u, h))
                lat["a thumbnail (GET /admin/media/..., warm)"].append(timed(s, thumb_urls[n % len(thumb_urls)]))
    result = {
        "images": args.images, "total_listed": page_json["total"], "runs": args.runs, "seeding_s": round(seeding, 1),
        "grid_ready_ms": {"median": round(statistics.median(grid_ms), 1), "max": round(max(grid_ms), 1),
                          "all": [round(x, 1) for x in grid_ms]},
        "static_floor_ms": {"median": round(statistics.median(static_ms), 1), "max": round(max(static_ms), 1),
                            "all": [round(x, 1) for x in static_ms]},
        "grid_vs_static_floor": round(statistics.median(grid_ms) / statistics.median(static_ms), 2),
        "thumbnails_decoded": thumbs,
        "requests_ms": {k: {"p50": round(pct(v, 50), 2), "p99": round(pct(v, 99), 2)} for k, v in lat.items()},
        **load, "loadavg_1m_at_end": round(common.loadavg(), 2),
    }
    print(f"grid of {thumbs} thumbnails over {page_json['total']:,} images, navigation start → last decoded: "
          f"median {result['grid_ready_ms']['median']} ms, max {result['grid_ready_ms']['max']} ms "
          f"(target ≤ 1000 ms: {result['grid_ready_ms']['median'] / 1000:.2f}× of it)")
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
