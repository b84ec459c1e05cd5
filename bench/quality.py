"""Quality per byte: mediaproxy's pipeline against sharp, Pillow (as thumbor uses it) and plain libvips.

    .venv/bin/python bench/quality.py [--cases a,b,c,d,e,anim] [--photos N] [--butteraugli]
        [--variants NAME,...] [--encoders mediaproxy,sharp,pillow,libvips] [--auto] [--out DIR [--name NAME]]
    .venv/bin/python bench/quality.py --auto-calibrate [--out DIR]

``--auto`` adds quality=auto (media/autoquality.py) to each case: its bytes against the bytes
mediaproxy's and sharp's fixed-quality curves need for the same mean score and for the same worst
image's score, and its CPU against the fixed default's. ``--auto-calibrate`` fits its estimate on a
calibration corpus disjoint from the held-out photos and prints the model's constants.

Needs the ``bench`` extra (scikit-image for the corpus, ssimulacra2, Pillow),
Node with npm (sharp 0.35 is installed from npm into a temporary directory on
every run) and ``butteraugli_main`` (Debian's ``libjxl-devtools``, installed
from apt when missing and ``--butteraugli`` is given).

Corpus: the colour photographs shipped inside scikit-image (no downloads),
centre-cropped and resized (Lanczos3) to the source size of each case and
saved as JPEG q90; graphics with alpha (scikit-image's logo and shapes
rendered here with antialiased edges) as PNG; animations rendered here (a pan
over a photo, moving shapes) and saved as GIF by libvips.

| case | source | output |
|---|---|---|
| a | 1024x1024 JPEG | 256x256 WebP |
| b | 1024x1024 JPEG | 128x128 JPEG |
| c | 512x512 PNG with alpha | 64x64 WebP |
| d | 2048x1536 JPEG | 800x600 WebP |
| e | 1024x1024 JPEG | 256x256 AVIF |
| anim | 256x256 GIF, 12 frames | 128x128 animated WebP |

References, two of them: the source decoded upright in sRGB, downscaled with
Lanczos3 (alpha premultiplied) either in linear light (converted to float
linear light and back to 8-bit sRGB) or in gamma space (on the sRGB values,
as most pipelines and viewers scale). A pipeline that resamples one way
scores better against the reference made the same way; a lead that holds
under both does not depend on which one believes. Every output is decoded by
libvips and scored against each: SSIMULACRA2 (the ``ssimulacra2`` package
from PyPI; higher is better; on alpha, the worse of the image over a dark and
a light background; on animations, the mean over frames) and, with
``--butteraugli``, butteraugli's max-norm distance (``butteraugli_main`` from
libjxl; lower is better; default outputs only, it is slow). CPU per image is
measured beside (process CPU time, so libvips' threads count).

Each encoder is swept over its quality setting; its rate-distortion curve is
the total bytes of the case's corpus against the mean score. "Bytes to reach
sharp's default" is each curve interpolated (linearly in score against log
bytes) at the mean score of sharp's default output, divided by sharp's
default bytes. "Points at equal bytes" is the curve read the other way, at
sharp's default bytes. Ratios are printed; results are written only with
``--out DIR`` (DIR/quality.json and .md, or NAME.json and .md; ``--out bench/results``
replaces the committed figures). A peer that
cannot do a case (plain libvips's animated centre crop) is left out of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyvips
from common import add_out_argument, need, write_results

from mediaproxy.media import pipeline
from mediaproxy.media.spec import BANNER, BOX, SQUARE, TransformSpec, parse_spec

pyvips.cache_set_max(0)

SHARP_VERSION = "0.35"
PHOTOS = ("astronaut.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "chelsea.png",
          "hubble_deep_field.jpg", "retina.jpg", "ihc.png")


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    kind: str  # photo | alpha | anim
    src_w: int
    src_h: int
    out_w: int
    out_h: int
    fmt: str
    sweep: tuple[int, ...]


SWEEP = (20, 30, 40, 50, 60, 70, 80, 90, 95)
CASES = {
    "a": Case("a", "1024² JPEG → 256² WebP", "photo", 1024, 1024, 256, 256, "webp", SWEEP),
    "b": Case("b", "1024² JPEG → 128² JPEG", "photo", 1024, 1024, 128, 128, "jpeg", SWEEP),
    "c": Case("c", "alpha PNG → 64² WebP", "alpha", 512, 512, 64, 64, "webp", SWEEP),
    "d": Case("d", "2048×1536 JPEG → 800×600 WebP", "photo", 2048, 1536, 800, 600, "webp", SWEEP),
    "e": Case("e", "1024² JPEG → 256² AVIF", "photo", 1024, 1024, 256, 256, "avif",
              (20, 30, 40, 50, 60, 70, 80, 90)),
    "anim": Case("anim", "GIF 256² → 128² animated WebP", "anim", 256, 256, 128, 128, "webp", SWEEP),
}


# ---------------------------------------------------------------- corpus

def _skimage_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def _fit(im: pyvips.Image, w: int, h: int) -> pyvips.Image:
    """Centre crop to w:h, then Lanczos3 to w x h (up or down)."""
    scale = max(w / im.width, h / im.height)
    cw, ch = min(im.width, round(w / scale)), min(im.height, round(h / scale))
    im = im.crop((im.width - cw) // 2, (im.height - ch) // 2, cw, ch)
    return im.resize(w / cw, vscale=h / ch, kernel="lanczos3")


def photo_sources(case: Case, n: int) -> list[tuple[str, bytes]]:
    out = []
    for name in PHOTOS[:n]:
        im = pyvips.Image.new_from_file(str(_skimage_dir() / name))
        im = _fit(im.colourspace("srgb")[:3], case.src_w, case.src_h).cast("uchar")
        out.append((name.split(".")[0], im.jpegsave_buffer(Q=90, keep="none")))
    return out


def _disc_layer(size: int, cx: float, cy: float, r: float, rgb: tuple[int, int, int]) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    inside = ((x - cx) ** 2 + (y - cy) ** 2) <= r * r
    layer = np.zeros((size, size, 4), np.float32)
    layer[inside] = (*rgb, 255)
    return layer


def _over(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    a = src[..., 3:4] / 255
    out = dst.copy()
    out[..., :3] = src[..., :3] * a + dst[..., :3] * (1 - a)
    out[..., 3:4] = src[..., 3:4] + dst[..., 3:4] * (1 - a)
    return out


def _graphic(seed: int, size: int = 512, ss: int = 4) -> pyvips.Image:
    """Flat-colour shapes on transparency, rendered 4x larger and box-filtered: antialiased edges."""
    rng = np.random.default_rng(seed)
    big = size * ss
    canvas = np.zeros((big, big, 4), np.float32)
    for _ in range(6):
        rgb = tuple(int(v) for v in rng.integers(0, 256, 3))
        layer = _disc_layer(big, *rng.uniform(0.2, 0.8, 2) * big, rng.uniform(0.08, 0.25) * big, rgb)
        canvas = _over(canvas, layer)
    # a ring and a diagonal bar: thin features at the 64 px output
    y, x = np.mgrid[0:big, 0:big]
    d = np.hypot(x - big / 2, y - big / 2)
    ring = (np.abs(d - big * 0.4) < big * 0.02)
    bar = np.abs((x - y) / math.sqrt(2)) < big * 0.015
    for mask, rgb in ((ring, (20, 20, 30)), (bar, (250, 250, 245))):
        layer = np.zeros_like(canvas)
        layer[mask] = (*rgb, 255)
        canvas = _over(canvas, layer)
    small = canvas.reshape(size, ss, size, ss, 4).mean(axis=(1, 3))
    # premultiplied average -> straight alpha
    return pyvips.Image.new_from_array(np.ascontiguousarray(small)).copy(interpretation="srgb").cast("uchar")


def alpha_sources(case: Case, n: int) -> list[tuple[str, bytes]]:
    logo = pyvips.Image.new_from_file(str(_skimage_dir() / "logo.png"))
    logo = logo.resize(case.src_w / logo.width, kernel="lanczos3")
    out = [("logo", logo.cast("uchar").pngsave_buffer())]
    for seed in range(1, max(2, n)):
        out.append((f"shapes{seed}", _graphic(seed, case.src_w).pngsave_buffer()))
    return out[:max(2, n)]


def anim_sources(case: Case, n: int) -> list[tuple[str, bytes]]:
    frames_n, size = 12, case.src_w
    out = []
    for name in ("astronaut.png", "coffee.png")[:max(1, n - 1)]:
        im = pyvips.Image.new_from_file(str(_skimage_dir() / name)).colourspace("srgb")[:3]
        im = _fit(im, 384, 384)
        frames = [im.crop(i * 8, i * 6, size, size) for i in range(frames_n)]  # a pan
        out.append((name.split(".")[0], frames))
    shapes = []
    for i in range(frames_n):
        g = _graphic(7, size, ss=2).flatten(background=[255, 255, 255])
        shapes.append(g.wrap(x=i * 11, y=i * 5))  # scrolling flat graphics
    out.append(("shapes", shapes))
    result = []
    for name, frames in out:
        strip = pyvips.Image.arrayjoin([f.cast("uchar") for f in frames], across=1).copy()
        strip.set_type(pyvips.GValue.gint_type, "page-height", size)
        strip.set_type(pyvips.GValue.array_int_type, "delay", [80] * frames_n)
        strip.set_type(pyvips.GValue.gint_type, "loop", 0)
        result.append((name, strip.gifsave_buffer(keep="none")))
    return result


def sources(case: Case, n: int) -> list[tuple[str, bytes]]:
    return {"photo": photo_sources, "alpha": alpha_sources, "anim": anim_sources}[case.kind](case, n)


# ---------------------------------------------------------------- reference and metrics

def _frames(im: pyvips.Image) -> list[pyvips.Image]:
    ph = im.get("page-height") if im.get_typeof("page-height") else im.height
    return [im.crop(0, y, im.width, ph) for y in range(0, im.height, ph)]


def decode_frames(buf: bytes) -> list[pyvips.Image]:
    multi = pipeline.sniff(buf) in ("VipsForeignLoadNsgifBuffer", "VipsForeignLoadWebpBuffer")
    im = pyvips.Image.new_from_buffer(buf, "n=-1" if multi else "")
    if im.get_typeof("icc-profile-data"):
        im = im.icc_transform("srgb")
    frames = _frames(im)
    return [f.autorot().colourspace("srgb").cast("uchar") for f in frames]


def reference(buf: bytes, case: Case, linear: bool = True) -> list[np.ndarray]:
    """The source upright in sRGB, Lanczos3 (premultiplied alpha) to the output size: in linear light
    (``linear``) or on the sRGB values themselves (gamma space, as most pipelines and viewers scale)."""
    refs = []
    for f in decode_frames(buf):
        rgb = f[:3].colourspace("scrgb") if linear else f[:3].cast("float")  # float either way

        def to_srgb(im: pyvips.Image) -> np.ndarray:
            if linear:
                return _to_array(im.copy(interpretation="scrgb").colourspace("srgb"))
            return _to_array(im)

        if f.hasalpha():
            alpha = f[f.bands - 1].cast("float") / 255
            im = _fit_reduce((rgb * alpha).bandjoin(alpha), case.out_w, case.out_h)
            a = np.clip(_float_array(im[3]), 0, 1)
            straight = _float_array(im[:3]) / np.maximum(a, 1e-6)
            out = np.concatenate([to_srgb(pyvips.Image.new_from_array(np.ascontiguousarray(straight))),
                                  np.rint(a * 255).astype(np.uint8)], axis=2)
        else:
            out = to_srgb(_fit_reduce(rgb, case.out_w, case.out_h))
        refs.append(out)
    return refs


REFERENCES = {"linear": True, "gamma": False}  # the two downscaled references every output is scored against


def _float_array(im: pyvips.Image) -> np.ndarray:
    return np.ndarray(buffer=im.cast("float").write_to_memory(), dtype=np.float32,
                      shape=(im.height, im.width, im.bands))


def _fit_reduce(im: pyvips.Image, w: int, h: int) -> pyvips.Image:
    scale = max(w / im.width, h / im.height)
    cw, ch = round(w / scale), round(h / scale)
    im = im.crop((im.width - cw) // 2, (im.height - ch) // 2, cw, ch)
    return im.reduce(cw / w, ch / h, kernel="lanczos3")


def _to_array(im: pyvips.Image) -> np.ndarray:
    arr = _float_array(im)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _blend(rgba: np.ndarray, bg: float) -> np.ndarray:
    if rgba.shape[2] == 3:
        return rgba
    a = rgba[..., 3:4].astype(np.float64) / 255
    rgb = rgba[..., :3] * a + bg * 255 * (1 - a)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _as_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.shape[2] in (1, 2):  # grey (+alpha)
        arr = np.concatenate([arr[..., :1]] * 3 + ([arr[..., 1:2]] if arr.shape[2] == 2 else []), axis=2)
    return arr


class Scorer:
    def __init__(self, tmp: Path, butteraugli: bool):
        self.tmp = tmp
        self.butteraugli = need("butteraugli_main", "libjxl-devtools") if butteraugli else None

    def _png(self, arr: np.ndarray, name: str) -> str:
        path = self.tmp / name
        pyvips.Image.new_from_array(arr).copy(interpretation="srgb").pngsave(str(path), compression=1)
        return str(path)

    def score(self, refs: dict[str, list[np.ndarray]], buf: bytes, with_butteraugli: bool = False) -> dict:
        """SSIMULACRA2 (and butteraugli) of ``buf`` against each reference: keys ``ssimulacra2``,
        ``butteraugli`` for the linear-light one, ``..._gamma`` for the gamma-space one."""
        outs = [_as_rgb(_to_array(f)) for f in decode_frames(buf)]
        result = {}
        for ref_name, frames in refs.items():
            suffix = "" if ref_name == "linear" else f"_{ref_name}"
            for key, value in self._score_frames(frames, outs, with_butteraugli).items():
                result[key + suffix] = value
        return result

    def _score_frames(self, refs: list[np.ndarray], outs: list[np.ndarray], with_butteraugli: bool) -> dict:
        from ssimulacra2 import compute_ssimulacra2

        if len(outs) != len(refs):
            raise RuntimeError(f"{len(outs)} frames out for {len(refs)} in")
        s2, ba = [], []
        for ref, out in zip(refs, outs, strict=True):
            ref = _as_rgb(ref)
            if ref.shape[:2] != out.shape[:2]:
                raise RuntimeError(f"output is {out.shape[1]}x{out.shape[0]}, reference {ref.shape[1]}x{ref.shape[0]}")
            if ref.shape[2] == 4 and out.shape[2] == 3:
                out = np.concatenate([out, np.full((*out.shape[:2], 1), 255, np.uint8)], axis=2)
            worst, worst_ba = 100.0, 0.0
            for bg in ((0.1, 0.9) if ref.shape[2] == 4 else (0.5,)):
                r, o = self._png(_blend(ref, bg), "ref.png"), self._png(_blend(out, bg), "out.png")
                worst = min(worst, compute_ssimulacra2(r, o))
                if with_butteraugli and self.butteraugli:
                    res = subprocess.run([self.butteraugli, r, o], capture_output=True, text=True, check=True)
                    worst_ba = max(worst_ba, float(res.stdout.split()[0]))
            s2.append(worst)
            ba.append(worst_ba)
        result = {"ssimulacra2": float(np.mean(s2))}
        if with_butteraugli and self.butteraugli:
            result["butteraugli"] = float(np.mean(ba))
        return result


# ---------------------------------------------------------------- encoders

class Sharp:
    """One node process with sharp (concurrency 1, no cache) taking one JSON job per line."""

    SCRIPT = r"""
const sharp = require('sharp');
const fs = require('fs');
sharp.concurrency(1); sharp.cache(false);
const rl = require('readline').createInterface({ input: process.stdin });
const queue = [];
let busy = false;
async function next() {
  if (busy || !queue.length) return;
  busy = true;
  const j = queue.shift();
  try {
    const input = fs.readFileSync(j.in);
    const t = process.cpuUsage();  // the process's CPU (libvips' threads included) for the transform alone
    let p = sharp(input, { animated: j.animated }).resize(j.w, j.h);
    p = p[j.format](j.q == null ? {} : { quality: j.q });
    const out = await p.toBuffer();
    const u = process.cpuUsage(t);
    fs.writeFileSync(j.out, out);
    process.stdout.write('ok ' + (u.user + u.system) + '\n');
  } catch (e) { process.stdout.write('error ' + e.message.replace(/\n/g, ' ') + '\n'); }
  busy = false; next();
}
rl.on('line', l => { queue.push(JSON.parse(l)); next(); });
"""

    def __init__(self, tmp: Path):
        self.dir = tmp / "sharp"
        self.dir.mkdir()
        npm = need("npm", "npm")
        print(f"installing sharp@{SHARP_VERSION} from npm into {self.dir}", flush=True)
        subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(self.dir),
                        f"sharp@{SHARP_VERSION}"], check=True, stdout=subprocess.DEVNULL)
        (self.dir / "serve.js").write_text(self.SCRIPT)
        self.proc = subprocess.Popen(["node", str(self.dir / "serve.js")], cwd=self.dir, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, process_group=0)
        self.version = json.loads((self.dir / "node_modules" / "sharp" / "package.json").read_text())["version"]
        self.n = 0
        self.last_cpu_ms = 0.0

    def __call__(self, src: bytes, case: Case, q: int | None) -> bytes:
        self.n += 1
        inp, out = self.dir / f"in{self.n}", self.dir / f"out{self.n}.{case.fmt}"
        inp.write_bytes(src)
        job = {"in": str(inp), "out": str(out), "w": case.out_w, "h": case.out_h, "format": case.fmt, "q": q,
               "animated": case.kind == "anim"}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().strip()
        if not reply.startswith("ok "):
            raise RuntimeError(f"sharp: {reply}")
        self.last_cpu_ms = int(reply.split()[1]) / 1000
        data = out.read_bytes()
        inp.unlink()
        out.unlink()
        return data

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


_LIMITS = pipeline.Limits(max_pixels=100_000_000, max_frames=1000, max_animation_pixels=400_000_000)


def mediaproxy(src: bytes, case: Case, q: int | None) -> bytes:
    return pipeline.transform(src, mediaproxy_spec(case, q), _LIMITS).body


def mediaproxy_spec(case: Case, q: int | None) -> TransformSpec:
    """The spec of the route that serves the case: avatars' square, banners' width, emojis' box."""
    params = {"format": case.fmt}
    if q is not None:
        params["quality"] = str(q)
    if case.name == "d":
        spec = parse_spec(BANNER, {**params, "width": str(case.out_w)})
    elif case.kind == "anim":
        # stickers, emojis: an animated WebP only when asked for (the contract's `animated=true`)
        spec = parse_spec(BOX, {**params, "size": str(case.out_w), "animated": "true"})
    else:
        spec = parse_spec(SQUARE, {**params, "size": str(case.out_w)})
    return spec


# mediaproxy's pipeline with some of its settings (media/pipeline.py's constants) changed: the settings tried
# for the Pareto fronts of docs/performance.md, scored beside the shipped ones (--variants NAME,...).
_NO_LINEAR, _NO_SHARP_YUV = {"LINEAR_MAX_PIXELS": 0}, {"WEBP_SHARP_YUV_PIXELS": 0}
VARIANTS: dict[str, dict[str, object]] = {
    "linear": {"LINEAR_MAX_PIXELS": 512 * 512},
    "linear-sharpyuv-e4": {"LINEAR_MAX_PIXELS": 512 * 512, "WEBP_SHARP_YUV_PIXELS": 256 * 256, "WEBP_EFFORT": 4},
    "linear-e4": {"LINEAR_MAX_PIXELS": 512 * 512, **_NO_SHARP_YUV, "WEBP_EFFORT": 4},
    "gamma": _NO_LINEAR,
    "gamma-sharpyuv-e4": {**_NO_LINEAR, "WEBP_SHARP_YUV_PIXELS": 256 * 256, "WEBP_EFFORT": 4},
    "gamma-sharpyuv-e2": {**_NO_LINEAR, "WEBP_SHARP_YUV_PIXELS": 256 * 256, "WEBP_EFFORT": 2},
    "gamma-e2": {**_NO_LINEAR, **_NO_SHARP_YUV, "WEBP_EFFORT": 2},
    "gamma-e3": {**_NO_LINEAR, **_NO_SHARP_YUV, "WEBP_EFFORT": 3},
    "gamma-e4": {**_NO_LINEAR, **_NO_SHARP_YUV, "WEBP_EFFORT": 4},
    "gamma-e6": {**_NO_LINEAR, **_NO_SHARP_YUV, "WEBP_EFFORT": 6},
    "direct-e4": {**_NO_LINEAR, **_NO_SHARP_YUV, "WEBP_EFFORT": 4, "DCT_DIRECT_PIXELS": 256 * 256},
    "direct-sharpyuv-e4": {**_NO_LINEAR, "WEBP_SHARP_YUV_PIXELS": 256 * 256, "WEBP_EFFORT": 4,
                           "DCT_DIRECT_PIXELS": 256 * 256},
    "dct-any-scale": {"DCT_FAST_MARGIN": 99.0},
    "avif-e2": {"AVIF_EFFORT_SMALL": 2, "AVIF_SUBSAMPLE": "off"},
    "avif-e3": {"AVIF_EFFORT_SMALL": 3, "AVIF_SUBSAMPLE": "off"},
    "avif-e4": {"AVIF_EFFORT_SMALL": 4, "AVIF_SUBSAMPLE": "off"},
    "avif-e6": {"AVIF_EFFORT_SMALL": 6, "AVIF_SUBSAMPLE": "off"},
    "avif-e2-420": {"AVIF_EFFORT_SMALL": 2, "AVIF_SUBSAMPLE": "on"},
    "avif-e3-420": {"AVIF_EFFORT_SMALL": 3, "AVIF_SUBSAMPLE": "on"},
    "avif-gamma-e2": {**_NO_LINEAR, "AVIF_EFFORT_SMALL": 2, "AVIF_SUBSAMPLE": "off"},
    "avif-gamma-e3": {**_NO_LINEAR, "AVIF_EFFORT_SMALL": 3, "AVIF_SUBSAMPLE": "off"},
    "avif-8bit": {"AVIF_BITDEPTH_SMALL": 8},
    "avif-10bit": {"AVIF_BITDEPTH_SMALL": 10},
    # which library does a step (the same settings): libvips' WebP saver, libvips' Lanczos3 on alpha
    "webp-libvips": {"WEBP_PILLOW": False},
    "resample-libvips": {"RESAMPLE_PILLOW": False},
    "small-e4": {"WEBP_EFFORT_SMALL": 4},
    # small frames without sharp YUV, so through Pillow's libwebp (the faster saver) at effort 2 or 4
    "small-plain-e2": {**_NO_SHARP_YUV, "WEBP_EFFORT": 2},
    "small-plain-e4": {**_NO_SHARP_YUV, "WEBP_EFFORT": 4},
    "large-e3": {"WEBP_EFFORT_LARGE": 3},
    "large-e4": {"WEBP_EFFORT_LARGE": 4},
    "large-picture": {"WEBP_PRESET_LARGE": "picture"},
    "large-drawing": {"WEBP_PRESET_LARGE": "drawing"},
    "large-icon": {"WEBP_PRESET_LARGE": "icon"},
}


def mediaproxy_with(settings: dict[str, object]) -> Callable:
    def enc(src: bytes, case: Case, q: int | None) -> bytes:
        saved = {k: getattr(pipeline, k) for k in settings}
        try:
            for k, v in settings.items():
                setattr(pipeline, k, v)
            return mediaproxy(src, case, q)
        finally:
            for k, v in saved.items():
                setattr(pipeline, k, v)
    return enc


_VIPS_SAVE = {"webp": "webpsave_buffer", "jpeg": "jpegsave_buffer", "avif": "heifsave_buffer"}


def plain_libvips(src: bytes, case: Case, q: int | None) -> bytes:
    """The textbook libvips call: thumbnail_buffer, then the saver's defaults."""
    opts = "n=-1" if case.kind == "anim" else ""
    im = pyvips.Image.thumbnail_buffer(src, case.out_w, height=case.out_h, crop="centre", option_string=opts)
    kwargs: dict = {"keep": "none"}
    if q is not None:
        kwargs["Q"] = q
    if case.fmt == "avif":
        kwargs["compression"] = "av1"
    return getattr(im, _VIPS_SAVE[case.fmt])(**kwargs)


def pillow_thumbor(src: bytes, case: Case, q: int | None) -> bytes:
    """Pillow the way thumbor's PIL engine drives it: draft() decode, LANCZOS resize, quality 80."""
    import io

    from PIL import Image, ImageSequence

    im = Image.open(io.BytesIO(src))
    quality = 80 if q is None else q
    out = io.BytesIO()
    if case.kind == "anim":
        frames, durations = [], []
        for frame in ImageSequence.Iterator(im):
            frames.append(frame.convert("RGBA").resize((case.out_w, case.out_h), Image.LANCZOS))
            durations.append(frame.info.get("duration", 100))
        frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], duration=durations,
                       loop=im.info.get("loop", 0), quality=quality)
        return out.getvalue()
    if im.format == "JPEG":
        im.draft("RGB", (case.out_w, case.out_h))
    im = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
    im = im.resize((case.out_w, case.out_h), Image.LANCZOS)
    if case.fmt == "jpeg":
        im.convert("RGB").save(out, "JPEG", quality=quality, optimize=True)
    elif case.fmt == "webp":
        im.save(out, "WEBP", quality=quality)
    else:
        im.save(out, "AVIF", quality=quality)
    return out.getvalue()


# ---------------------------------------------------------------- quality=auto

# The calibration corpus of quality=auto's estimate: scikit-image's other images (textures, text,
# scans, graphics; three greys given a colour ramp) and two easy ones drawn here (a smooth colour
# gradient, a blurred graphic), never the held-out photos above that every result is scored on.
CALIBRATION = ("brick.png", "grass.png", "gravel.png", "camera.png", "moon.png", "coins.png", "page.png", "text.png",
               "horse.png", "clock_motion.png", "cell.png", "color.png", "chessboard_RGB.png", "microaneurysms.png",
               "phantom.png", "gradient", "blurred-color")
_TINTED = ("camera.png", "moon.png", "coins.png")
# The case each format's model is fitted on, and the fixed qualities whose median score becomes each
# target: `good` = the format's default (`high`), `eco` = the library's former auto=compress quality.
AUTO_FITS = {"webp": ("a", 80, 60), "jpeg": ("b", 80, 60), "avif": ("e", 60, 45)}
AUTO_GRID = tuple(range(20, 100, 5))


def calibration_sources(case: Case) -> list[tuple[str, bytes]]:
    out = []
    for name in CALIBRATION:
        if name == "gradient":
            xyz = pyvips.Image.xyz(512, 512)
            im = (xyz[0] * 0.4 + 40).bandjoin([xyz[1] * 0.3 + 80, (xyz[0] + xyz[1]) * 0.15 + 30])
            im = im.cast("uchar").copy(interpretation="srgb")
        elif name == "blurred-color":
            im = pyvips.Image.new_from_file(str(_skimage_dir() / "color.png"))[:3].gaussblur(12)
        else:
            im = pyvips.Image.new_from_file(str(_skimage_dir() / name))
        if im.bands in (2, 4):
            im = im[:im.bands - 1]
        im = im.colourspace("srgb")
        if im.bands == 1:
            im = im.bandjoin([im, im])
        if name in _TINTED:
            ramp = pyvips.Image.xyz(im.width, im.height)[0] / im.width
            im = (im.cast("float") * (ramp * [0.5, 0.2, -0.3] + [0.8, 1.0, 1.1])).cast("uchar")
        im = _fit(im[:3], case.src_w, case.src_h).cast("uchar")
        out.append((name.split(".")[0], im.jpegsave_buffer(Q=90, keep="none")))
    return out


def _rgb(im: pyvips.Image) -> np.ndarray:
    return _as_rgb(_to_array(im.colourspace("srgb") if im.bands < 3 else im))[..., :3]


def fit_auto_model(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of SSIMULACRA2 on the logs of the features (qualities 40-95, the range auto chooses in),
    every feature's weight constrained to be ≤ 0: each is a distortion, and more of one must never raise the
    estimate (unconstrained, collinear features got weights of either sign that extrapolated to a flat
    gradient's score falling as its quality rose). Non-negative least squares on the negated logs, the
    intercept as the difference of two non-negative terms."""
    from scipy.optimize import nnls

    fit = [r for r in rows if r["q"] >= 40]
    x = np.array([[-math.log(max(f, 1e-5)) for f in r["feats"]] + [1.0, -1.0] for r in fit])
    y = np.array([r["ssimulacra2"] for r in fit])
    w, _ = nnls(x, y)
    coef = np.array([-v for v in w[:-2]] + [w[-2] - w[-1]])
    design = np.array([[math.log(max(f, 1e-5)) for f in r["feats"]] + [1.0] for r in fit])
    return coef, y - design @ coef


def calibrate_auto(tmp: Path) -> dict:
    """Fit quality=auto's estimate: per format, SSIMULACRA2 of each candidate (against the pixels it was
    encoded from) regressed on the logs of autoquality's features, over the calibration corpus and the
    quality grid; the targets, first qualities and slopes from the same sweeps."""
    from ssimulacra2 import compute_ssimulacra2

    from mediaproxy.media import autoquality

    def png(arr: np.ndarray, name: str) -> str:
        path = tmp / name
        pyvips.Image.new_from_array(arr).copy(interpretation="srgb").pngsave(str(path), compression=1)
        return str(path)

    fitted: dict = {}
    for fmt, (case_name, q_good, q_eco) in AUTO_FITS.items():
        case = CASES[case_name]
        rows = []
        for name, src in calibration_sources(case):
            spec = mediaproxy_spec(case, None)
            before = pyvips.Image.new_from_buffer(
                pipeline.transform(src, dataclasses.replace(spec, format="png"), _LIMITS).body, "")
            ref = _rgb(before)
            ref_png = png(ref, "cal-ref.png")
            for q in AUTO_GRID:
                body = pipeline._encode(before, fmt, dataclasses.replace(spec, quality=q), False)
                out = _rgb(pyvips.Image.new_from_buffer(body, ""))
                feats = autoquality._features(autoquality._sample(ref), autoquality._sample(out))
                rows.append({"image": name, "q": q, "bytes": len(body), "feats": feats,
                             "ssimulacra2": compute_ssimulacra2(ref_png, png(out, "cal-out.png"))})
            print(f"  calibration {fmt} {name}: " + " ".join(f"{r['ssimulacra2']:.0f}" for r in rows[-len(AUTO_GRID):]),
                  flush=True)
        coef, resid = fit_auto_model(rows)
        med = {q: float(np.median([r["ssimulacra2"] for r in rows if r["q"] == q])) for q in AUTO_GRID}
        slopes = []
        for name in {r["image"] for r in rows}:
            d = {r["q"]: r["ssimulacra2"] for r in rows if r["image"] == name}
            slopes.append((d[q_good + 10] - d[q_good - 10]) / 20)
        fitted[fmt] = {"case": case_name, "model": [round(float(c), 4) for c in coef],
                       "rmse": round(float(np.sqrt(np.mean(resid ** 2))), 2),
                       "max_error": round(float(np.abs(resid).max()), 2),
                       "targets": {"good": round(med[q_good], 1), "eco": round(med[q_eco], 1)},
                       "start": {"good": q_good, "eco": q_eco},
                       "slope": round(float(np.median(slopes)), 3), "rows": rows}
        print(f"  {fmt}: MODEL {fitted[fmt]['model']}, rmse {fitted[fmt]['rmse']}, targets {fitted[fmt]['targets']}, "
              f"slope {fitted[fmt]['slope']}", flush=True)
    return fitted


def calibration_markdown(fitted: dict) -> str:
    md = ["# quality=auto's calibration (bench/quality.py --auto-calibrate)\n",
          "SSIMULACRA2 of each candidate against the pixels it was encoded from, regressed on the logs of "
          "media/autoquality.py's features (qualities 40-95), on the calibration corpus (" + ", ".join(CALIBRATION)
          + "), disjoint from the held-out photos.\n",
          "| format (case) | model | rmse | max error | median score at the default / at 60 (AVIF 45) "
          "| slope (points per quality step) |",
          "|---|---|---:|---:|---:|---:|"]
    for fmt, f in fitted.items():
        md.append(f"| {fmt} ({f['case']}) | {f['model']} | {f['rmse']} | {f['max_error']} | "
                  f"{f['targets']['good']} / {f['targets']['eco']} | {f['slope']} |")
    return "\n".join(md)


# ---------------------------------------------------------------- curves

def curve_at_score(points: list[tuple[float, float]], score: float) -> float | None:
    """Bytes at ``score`` on a (bytes, score) curve: linear in score vs log(bytes) between neighbours."""
    pts = sorted(points, key=lambda p: p[1])
    for (b0, s0), (b1, s1) in itertools.pairwise(pts):
        if s0 <= score <= s1 and s1 > s0:
            t = (score - s0) / (s1 - s0)
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return None


def curve_at_bytes(points: list[tuple[float, float]], nbytes: float) -> float | None:
    pts = sorted(points)
    for (b0, s0), (b1, s1) in itertools.pairwise(pts):
        if b0 <= nbytes <= b1 and b1 > b0:
            t = (math.log(nbytes) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return s0 + t * (s1 - s0)
    return None


def _timed(enc: Callable, src: bytes, case: Case, q: int | None) -> tuple[bytes, float]:
    """The output and the CPU it took (ms): this process's CPU time, libvips' threads included, or what
    the encoder reports for its own process (sharp)."""
    t = time.process_time()
    out = enc(src, case, q)
    cpu = (time.process_time() - t) * 1000
    return out, getattr(enc, "last_cpu_ms", cpu)


def _sweep(case: Case, enc_name: str, enc: Callable, corpus: list, refs: dict, scorer: Scorer,
           butteraugli: bool, cpu_repeat: int) -> dict:
    rows = {}
    for q in (None, *case.sweep):
        total, scores, cpu_total = 0, [], 0.0
        for name, buf in corpus:
            out, cpu = _timed(enc, buf, case, q)
            if q is None:  # the default's CPU: the least of a few runs (CPU time moves with the neighbours' load)
                cpu = min([cpu, *(_timed(enc, buf, case, q)[1] for _ in range(cpu_repeat - 1))])
            cpu_total += cpu
            total += len(out)
            scores.append(scorer.score(refs[name], out, with_butteraugli=butteraugli and q is None))
        row: dict = {"bytes": total, "cpu_ms": round(cpu_total / len(corpus), 2)}
        for key in scores[0]:
            row[key] = round(float(np.mean([s[key] for s in scores])), 3)
            row[f"worst_{key}"] = round(float(min(s[key] for s in scores)), 3)
        rows["default" if q is None else str(q)] = row
        print(f"  {case.name} {enc_name:16} q={q!s:7} {total:8d} B  cpu {row['cpu_ms']:7.2f} ms  ssimulacra2 "
              f"{row['ssimulacra2']:6.2f} / gamma {row['ssimulacra2_gamma']:6.2f}"
              + (f"  butteraugli {row['butteraugli']:.3f} / {row['butteraugli_gamma']:.3f}"
                 if "butteraugli" in row else ""), flush=True)
    return rows


def mediaproxy_auto(src: bytes, case: Case, q: int | None) -> bytes:
    spec = mediaproxy_spec(case, None)
    return pipeline.transform(src, dataclasses.replace(spec, auto="good"), _LIMITS).body


def run_auto(case: Case, corpus: list, refs: dict, scorer: Scorer, result: dict, cpu_repeat: int) -> dict:
    """quality=auto on the case's corpus: its bytes against the bytes sharp's and mediaproxy's fixed-quality
    curves need for the same mean score and for the same worst image's score, and its CPU against the fixed
    default's, measured alternately on each image (the least of ``cpu_repeat`` runs each)."""
    total, scores, cpu_auto, cpu_fixed = 0, [], 0.0, 0.0
    for name, buf in corpus:
        runs_auto, runs_fixed = [], []
        for _ in range(max(1, cpu_repeat)):
            out, cpu = _timed(mediaproxy_auto, buf, case, None)
            runs_auto.append(cpu)
            runs_fixed.append(_timed(mediaproxy, buf, case, None)[1])
        cpu_auto += min(runs_auto)
        cpu_fixed += min(runs_fixed)
        total += len(out)
        scores.append(scorer.score(refs[name], out))
    row: dict = {"bytes": total, "cpu_ms": round(cpu_auto / len(corpus), 2),
                 "fixed_default_cpu_ms": round(cpu_fixed / len(corpus), 2)}
    row["cpu_over_fixed_default"] = round(cpu_auto / max(cpu_fixed, 1e-9), 3)
    for ref in REFERENCES:
        key = "ssimulacra2" if ref == "linear" else f"ssimulacra2_{ref}"
        mean, worst = float(np.mean([s[key] for s in scores])), float(min(s[key] for s in scores))
        row[key], row[f"worst_{key}"] = round(mean, 3), round(worst, 3)
        vs = {}
        for enc in ("sharp", "mediaproxy"):
            rows = result["encoders"].get(enc)
            if rows is None:
                continue
            pts = [(r["bytes"], r[key]) for k, r in rows.items() if not k.startswith("_") and k != "default"]
            worst_pts = [(r["bytes"], r[f"worst_{key}"]) for k, r in rows.items()
                         if not k.startswith("_") and k != "default"]
            at_mean, at_worst = curve_at_score(pts, mean), curve_at_score(worst_pts, worst)
            vs[enc] = {"bytes_at_equal_mean_score": round(total / at_mean, 3) if at_mean else None,
                       "bytes_at_equal_worst_score": round(total / at_worst, 3) if at_worst else None,
                       "default_mean_score": rows["default"][key],
                       "default_worst_score": rows["default"][f"worst_{key}"],
                       "default_bytes": rows["default"]["bytes"]}
        row[f"vs_{ref}"] = vs
    print(f"  {case.name} mediaproxy auto  {total:8d} B  cpu {row['cpu_ms']:7.2f} ms "
          f"({row['cpu_over_fixed_default']}× the fixed default's)  ssimulacra2 {row['ssimulacra2']:6.2f} "
          f"(worst {row['worst_ssimulacra2']:.2f}) / gamma "
          f"{row['ssimulacra2_gamma']:6.2f} (worst {row['worst_ssimulacra2_gamma']:.2f})", flush=True)
    return row


def run_case(case: Case, encoders: dict[str, Callable], scorer: Scorer, n_photos: int, butteraugli: bool,
             cpu_repeat: int = 3, auto: bool = False) -> dict:
    corpus = sources(case, n_photos)
    refs = {name: {ref: reference(buf, case, linear) for ref, linear in REFERENCES.items()} for name, buf in corpus}
    result: dict = {"title": case.title, "images": [name for name, _ in corpus], "encoders": {}}
    for enc_name, enc in encoders.items():
        if enc_name == "pillow" and case.fmt == "avif" and not _pillow_avif():
            continue
        try:
            result["encoders"][enc_name] = _sweep(case, enc_name, enc, corpus, refs, scorer, butteraugli, cpu_repeat)
        except Exception as exc:  # a peer that cannot do a case (e.g. plain libvips' animated crop) is left out
            print(f"  {case.name} {enc_name}: failed ({exc}); left out", flush=True)
            result.setdefault("failed", {})[enc_name] = str(exc)
    sharp_default = result["encoders"]["sharp"]["default"]
    for rows in result["encoders"].values():
        vs = {}
        for ref in REFERENCES:
            key = "ssimulacra2" if ref == "linear" else f"ssimulacra2_{ref}"
            points = [(r["bytes"], r[key]) for k, r in rows.items() if k != "default"]
            at = curve_at_score(points, sharp_default[key])
            pts = curve_at_bytes(points, sharp_default["bytes"])
            vs[ref] = {
                "bytes_to_reach_sharp_default": round(at / sharp_default["bytes"], 3) if at else None,
                "points_at_sharp_default_bytes": round(pts - sharp_default[key], 2) if pts is not None else None,
                "default_score_minus_sharp": round(rows["default"][key] - sharp_default[key], 2),
            }
        vs["default_bytes_over_sharp"] = round(rows["default"]["bytes"] / sharp_default["bytes"], 3)
        vs["default_cpu_over_sharp"] = round(rows["default"]["cpu_ms"] / max(sharp_default["cpu_ms"], 1e-6), 3)
        rows["_vs_sharp"] = vs
    if auto and case.kind != "anim" and "mediaproxy" in result["encoders"]:
        result["auto"] = run_auto(case, corpus, refs, scorer, result, cpu_repeat)
    return result


def _pillow_avif() -> bool:
    from PIL import features

    return bool(features.check("avif"))


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}×"


def _pts(v: float | None) -> str:
    return "—" if v is None else f"{v:+.2f}"


def markdown(results: dict, meta: dict) -> str:
    md = ["# Quality per byte (bench/quality.py)\n",
          f"{meta['note']}\n",
          "Ratios against sharp's default output (sharp's default settings, mean SSIMULACRA2 over the case's "
          "corpus), each under the two references (linear light / gamma space): bytes each encoder's quality "
          "sweep needs to reach sharp's default score (≤ 0.95 under both is the target for mediaproxy), its "
          "score at sharp's bytes, and its own default output. CPU: mean per image of the default setting "
          "(the least of a few runs), in-process for everything but sharp, which reports its own process's.\n",
          "| case | encoder | CPU ms (÷ sharp) | bytes to reach sharp's default score, linear / gamma "
          "| points at sharp's bytes | default bytes | default score − sharp's | default butteraugli |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    for case in results.values():
        for enc, rows in case["encoders"].items():
            v = rows["_vs_sharp"]
            d = rows["default"]
            lin, gam = v["linear"], v["gamma"]
            ba = f"{d['butteraugli']:.3f} / {d['butteraugli_gamma']:.3f}" if "butteraugli" in d else "—"
            md.append(f"| {case['title']} | {enc} | {d['cpu_ms']:.1f} ({v['default_cpu_over_sharp']:.2f}×) | "
                      f"{_x(lin['bytes_to_reach_sharp_default'])} / {_x(gam['bytes_to_reach_sharp_default'])} | "
                      f"{_pts(lin['points_at_sharp_default_bytes'])} / {_pts(gam['points_at_sharp_default_bytes'])} | "
                      f"{d['bytes']:,} ({v['default_bytes_over_sharp']:.2f}×) | "
                      f"{_pts(lin['default_score_minus_sharp'])} / {_pts(gam['default_score_minus_sharp'])} | {ba} |")
    autos = {c: r["auto"] for c, r in results.items() if "auto" in r}
    if autos:
        md += ["", "## quality=auto\n",
               "Its total bytes over the corpus divided by the bytes each fixed-quality curve needs for the same mean "
               "SSIMULACRA2, and for the same worst image's SSIMULACRA2 (linear / gamma reference); its CPU per image "
               "against mediaproxy's fixed default, measured alternately.\n",
               "| case | CPU ms (÷ fixed default) | bytes (÷ mediaproxy default) | mean score, linear / gamma "
               "(default's) | worst image (default's) | ÷ sharp's curve at equal mean | ÷ mediaproxy's at equal mean "
               "| ÷ sharp's at equal worst | ÷ mediaproxy's at equal worst |",
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c, a in autos.items():
            lin, gam = a["vs_linear"], a["vs_gamma"]

            def pair(enc: str, field: str, lin=lin, gam=gam) -> str:
                return f"{_x(lin.get(enc, {}).get(field))} / {_x(gam.get(enc, {}).get(field))}"

            md.append(f"| {results[c]['title']} | {a['cpu_ms']:.1f} ({a['cpu_over_fixed_default']:.2f}×) | "
                      f"{a['bytes']:,} ({a['bytes'] / lin['mediaproxy']['default_bytes']:.2f}×) | "
                      f"{a['ssimulacra2']:.2f} / {a['ssimulacra2_gamma']:.2f} "
                      f"({lin['mediaproxy']['default_mean_score']:.2f} / "
                      f"{gam['mediaproxy']['default_mean_score']:.2f}) | "
                      f"{a['worst_ssimulacra2']:.2f} / {a['worst_ssimulacra2_gamma']:.2f} "
                      f"({lin['mediaproxy']['default_worst_score']:.2f} / "
                      f"{gam['mediaproxy']['default_worst_score']:.2f}) | "
                      f"{pair('sharp', 'bytes_at_equal_mean_score')} | "
                      f"{pair('mediaproxy', 'bytes_at_equal_mean_score')} | "
                      f"{pair('sharp', 'bytes_at_equal_worst_score')} | "
                      f"{pair('mediaproxy', 'bytes_at_equal_worst_score')} |")
    md += ["", "## Sweeps (total bytes over the corpus / mean SSIMULACRA2, linear-light / gamma-space reference)\n"]
    for case in results.values():
        md.append(f"### {case['title']} ({', '.join(case['images'])})\n")
        encs = list(case["encoders"])
        qs = [k for k in case["encoders"]["sharp"] if not k.startswith("_")]
        md.append("| quality | " + " | ".join(encs) + " |")
        md.append("|---|" + "---:|" * len(encs))
        for q in qs:
            cells = []
            for e in encs:
                r = case["encoders"][e].get(q)
                cells.append(f"{r['bytes']:,} / {r['ssimulacra2']:.2f} / {r['ssimulacra2_gamma']:.2f}" if r else "")
            md.append(f"| {q} | " + " | ".join(cells) + " |")
        md.append("")
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--photos", type=int, default=6, help=f"photos per photo case (at most {len(PHOTOS)})")
    ap.add_argument("--encoders", default="mediaproxy,sharp,pillow,libvips")
    ap.add_argument("--butteraugli", action="store_true", help="also butteraugli on the default outputs")
    ap.add_argument("--variants", default="", help="also mediaproxy with other settings: " + ", ".join(VARIANTS))
    ap.add_argument("--cpu-repeat", type=int, default=3, help="runs of each default output for its CPU time")
    ap.add_argument("--auto", action="store_true", help="also quality=auto: bytes at the score it reaches against "
                    "sharp's and mediaproxy's curves, worst image's score, CPU against the fixed default")
    ap.add_argument("--auto-calibrate", action="store_true", help="only fit quality=auto's estimate on the "
                    "calibration corpus and print media/autoquality.py's constants")
    add_out_argument(ap)
    ap.add_argument("--name", default="quality", help="results file name (bench/results/NAME.json, .md)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    if args.auto_calibrate:
        try:
            fitted = calibrate_auto(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        write_results("autoquality-calibration", {"formats": fitted}, calibration_markdown(fitted), args.out)
        return
    sharp = Sharp(tmp)
    try:
        all_encoders = {"mediaproxy": mediaproxy, "sharp": sharp, "pillow": pillow_thumbor, "libvips": plain_libvips}
        names = [e for e in args.encoders.split(",") if e]
        if "sharp" not in names:
            names.append("sharp")
        encoders = {e: all_encoders[e] for e in names}
        for v in (v for v in args.variants.split(",") if v):
            encoders[f"mediaproxy {v}"] = mediaproxy_with(VARIANTS[v])
        scorer = Scorer(tmp, args.butteraugli)
        results = {}
        for c in args.cases.split(","):
            print(f"case {c}: {CASES[c].title}", flush=True)
            results[c] = run_case(CASES[c], encoders, scorer, args.photos, args.butteraugli, args.cpu_repeat,
                                  args.auto)
    finally:
        sharp.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    meta = {
        "sharp": sharp.version, "libvips (pyvips)": ".".join(str(pyvips.version(i)) for i in range(3)),
        "pipeline_version": pipeline.PIPELINE_VERSION, "photos": args.photos,
        "loadavg_1m": round(os.getloadavg()[0], 2), "cases": list(results),
        "variants": {v: VARIANTS[v] for v in args.variants.split(",") if v},
    }
    meta["note"] = (f"sharp {meta['sharp']}, pyvips' libvips {meta['libvips (pyvips)']}, mediaproxy pipeline "
                    f"{meta['pipeline_version']}, {args.photos} photos per photo case; Pillow as thumbor drives it "
                    "(draft, LANCZOS, quality 80); libvips = thumbnail_buffer + the saver's defaults. "
                    f"Single-threaded encoders, load {meta['loadavg_1m']} at the end (a shared machine: "
                    "timings are not the point here, sizes and scores do not depend on load).")
    write_results(args.name, {"meta": meta, "cases": results}, markdown(results, meta), args.out)
    for c, r in results.items():
        for enc, rows in r["encoders"].items():
            if enc.startswith("mediaproxy"):
                v = rows["_vs_sharp"]
                print(f"{c}: {enc}: bytes to reach sharp's default {_x(v['linear']['bytes_to_reach_sharp_default'])} "
                      f"linear / {_x(v['gamma']['bytes_to_reach_sharp_default'])} gamma, default score "
                      f"{_pts(v['linear']['default_score_minus_sharp'])} / "
                      f"{_pts(v['gamma']['default_score_minus_sharp'])} vs sharp, "
                      f"CPU {v['default_cpu_over_sharp']}× sharp's")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
