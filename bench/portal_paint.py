"""Ways to show a grid's 100 thumbnails once their one answer has arrived, in the same chromium.

    .venv/bin/python -m bench.portal_paint [--runs 8] [--out bench/results]

No server: Playwright answers a page and one `multipart/form-data` answer of 100 WebP thumbnails
(168 px, cut from 50 distinct JPEG pictures, as the portal's grid gets them at 1280 px) at a
fake origin. Each page reads the answer with `Response.formData()`, then shows the 100 pictures
in a grid of the portal's layout, one of these ways, interleaved run by run:

- `img`: an `<img>` per picture from a `blob:` URL, `decode()`d;
- `img over a placeholder, fading in`: the same over a canvas per cell (the BlurHash placeholder),
  each `<img>` fading in over 0.2 s (the portal's grid before it drew into its placeholders);
- `bitmap into the placeholder`: `createImageBitmap` of each part drawn into the cell's canvas
  that held the placeholder (the portal's grid now).

Measured: the time from the answer read to the last picture shown (decoded, or drawn), medians.
Prints this run's figures and ratios; writes portal_paint.json only with --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import pyvips
from urllib3 import encode_multipart_formdata

from tests.browser import launch

from . import common

PAGE = ("<!doctype html><style>ul{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;"
        "list-style:none;padding:0}li{position:relative;aspect-ratio:1;background:#e3e7ee}li>*{position:absolute;"
        "inset:0;width:100%;height:100%;object-fit:cover}</style><ul id=g></ul><script type=module>"
        "const form = await (await fetch('/thumbnails')).formData(); performance.mark('answer');"
        "const g = document.getElementById('g'); const shown = [];"
        "const placeholder = () => { const c = document.createElement('canvas'); c.width = c.height = 16;"
        " c.getContext('2d').fillRect(0, 0, 16, 16); return c; };"
        "for (const [id, blob] of form) { const li = document.createElement('li'); g.append(li); SHOW }"
        "await Promise.all(shown); performance.mark('shown'); document.body.dataset.ready = 1;</script>")
IMG = ("const i = document.createElement('img'); i.decoding = 'async'; li.append(i);"
       "shown.push(new Promise(r => { i.onload = () => i.decode().finally(() => { URL.revokeObjectURL(i.src); r(); });"
       " })); i.src = URL.createObjectURL(blob);")
FADING = ("li.append(placeholder()); const i = document.createElement('img'); i.style.opacity = 0;"
          "i.style.transition = 'opacity 0.2s'; li.append(i);"
          "shown.push(new Promise(r => { i.onload = () => i.decode().finally(() => { i.style.opacity = 1;"
          " URL.revokeObjectURL(i.src); r(); }); })); i.src = URL.createObjectURL(blob);")
BITMAP = ("const c = placeholder(); li.append(c); shown.push(createImageBitmap(blob).then(b => { c.width = b.width;"
          " c.height = b.height; c.getContext('2d').drawImage(b, 0, 0); b.close(); }));")
WAYS = {"img": IMG, "img over a placeholder, fading in": FADING, "bitmap into the placeholder": BITMAP}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--out", type=Path, metavar="DIR", help="write portal_paint.json into DIR")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    pictures = [pyvips.Image.thumbnail_buffer(common.jpeg(320, 213, seed=i % 50, q=80), 168, height=168,
                                              crop="centre").webpsave_buffer() for i in range(100)]
    body, ctype = encode_multipart_formdata([(f"id{i}", (f"{i}.webp", p, "image/webp"))
                                             for i, p in enumerate(pictures)])
    load = {"loadavg_1m_at_start": round(common.loadavg(), 2)}
    ms: dict[str, list[float]] = {k: [] for k in WAYS}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        ctx = launch(pw, Path(tmp) / "profile")
        for _ in range(args.runs):
            for name, show in WAYS.items():
                page = ctx.new_page()
                html = PAGE.replace("SHOW", show)
                page.route("http://grid.test/", lambda r, _q, html=html: r.fulfill(body=html, content_type="text/html"))
                page.route("http://grid.test/thumbnails", lambda r, _q: r.fulfill(body=body,
                                                                                   headers={"Content-Type": ctype}))
                page.goto("http://grid.test/")
                page.wait_for_selector("body[data-ready]", state="attached", timeout=60_000)
                ms[name].append(page.evaluate("performance.getEntriesByName('shown')[0].startTime - "
                                              "performance.getEntriesByName('answer')[0].startTime"))
                page.close()
        ctx.close()
    medians = {k: round(statistics.median(v), 1) for k, v in ms.items()}
    base = medians["bitmap into the placeholder"]
    result = {"runs": args.runs, "thumbnails": 100, "px": 168, "answer_to_shown_ms": medians,
              "vs_bitmap": {k: round(v / base, 2) for k, v in medians.items()},
              "all": {k: [round(x) for x in v] for k, v in ms.items()}, **load,
              "loadavg_1m_at_end": round(common.loadavg(), 2)}
    for k, v in medians.items():
        print(f"{k}: answer read → last picture shown, median {v} ms ({result['vs_bitmap'][k]}× the bitmaps)")
    print(f"load average {result['loadavg_1m_at_start']} at start, {result['loadavg_1m_at_end']} at the end")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "portal_paint.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
