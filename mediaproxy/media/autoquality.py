"""``quality=auto``: the encoder's quality chosen per image for a target perceived quality.

A fixed quality number wastes bytes on easy images and starves hard ones: on the same
256 px WebP at quality 80, SSIMULACRA2 ranges from the 60s (subtle low-contrast texture)
to the 90s (flat graphics). Here the output (already resampled, a few hundred pixels a
side) is encoded at up to ``MAX_ENCODES`` candidate qualities; each candidate is decoded
and scored against the pixels it was encoded from by a fast estimate of SSIMULACRA2, and
the lowest quality whose estimate reaches the target is kept.

The estimate (``estimate``) is a linear model, per output format, of six SSIM-like features
(luma SSIM in 8×8 windows at a 4-pixel stride and its 4-norm, luma SSIM at half scale, the
edge "artifact"/"detail lost" ratios SSIMULACRA2 itself uses, chroma SSIM), fitted against
SSIMULACRA2 on a calibration corpus disjoint from the benchmark's held-out photos
(bench/quality.py ``--auto-calibrate``; figures in docs/performance.md). It costs a few
milliseconds a candidate at 256×256, where SSIMULACRA2 takes about a second. Graphics with
alpha and animations are not judged (``choose``; the pipeline's ``_encode_auto``).

Deterministic: every window and block sum is an exact integer (NumPy int32), and what follows
is a fixed sequence of float64 operations, so the same pixels give the same estimate, the
same choice and the same bytes (the ETag depends on them).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyvips

# The targets (spec.AUTO_TARGETS), on SSIMULACRA2's scale against the pixels before encoding, the same
# for every format (a perceived quality, not an encoder's number): `good` about what the defaults
# (`high`; AVIF 60) give a typical photo at 128-256 px, `eco` (the library's auto=compress) about what
# its former fixed quality 60 (AVIF 45) gave. The scores of the calibration corpus at each quality:
# bench/results/autoquality-calibration.md.
TARGETS = {fmt: {"good": 75.0, "eco": 65.0} for fmt in ("webp", "jpeg", "avif")}
# Per format: the first quality tried per target (the format's default, and auto=compress's former
# quality), the typical points of SSIMULACRA2 per quality step around it (the calibration corpus's
# median slope), the range auto chooses in.
START = {"webp": {"good": 80, "eco": 60}, "jpeg": {"good": 80, "eco": 60}, "avif": {"good": 60, "eco": 45}}
SLOPE = {"webp": 0.474, "jpeg": 0.222, "avif": 0.542}
QMIN, QMAX = 20, 95
# A first candidate this close above the target is kept without trying another (the estimate's own
# error is larger: 3-5 points rms).
GOOD_ENOUGH = 2.5
# Below this many points per quality step, more quality buys nothing (a plateau); within this many
# points of the best candidate's estimate, the lowest quality is as good.
FLAT_SLOPE = 0.1
PLATEAU_POINTS = 1.0
MIN_STEP = 3
MIN_SIDE = 16  # smaller outputs are not judged (one encode at the target's first quality)
# Larger outputs are not judged either: each candidate is a whole encode and decode of the output, so
# up to MAX_ENCODES of them cost 3-5x a fixed quality's CPU at 2048-4096 px (AVIF 2048 px: ~50 s of
# CPU for one request), while the estimate only ever reads a SAMPLE_PIXELS mosaic of it.
MAX_PIXELS = 1024 * 1024
# Worst case per request: this many encodes, decodes and estimates of the output.
MAX_ENCODES = 3
FORMATS = frozenset(("webp", "jpeg", "avif"))

# Linear models: SSIMULACRA2 ≈ coef · [log features..., 1] (``_features``), fitted by
# bench/quality.py --auto-calibrate (bench/results/autoquality-calibration.md).
MODEL: dict[str, tuple[float, ...]] = {
    "webp": (-0.0, -0.0, -8.4725, -0.0, -0.7005, -0.1478, 30.8554),
    "jpeg": (-0.0341, -0.4003, -1.4672, -3.061, -0.2949, -1.9046, 46.9289),
    "avif": (-0.0, -0.0, -3.8244, -0.0, -4.7706, -0.378, 34.352),
}

Encoder = Callable[[pyvips.Image, int], bytes]


def _pixels(im: pyvips.Image) -> np.ndarray:
    """H×W×bands uint8 of an image: 8-bit as is, 16-bit (a 10-bit AVIF candidate decodes to libvips'
    rgb16 or grey16) scaled down to 8 bits, not clipped."""
    if im.interpretation in ("rgb16", "grey16"):
        im = im.colourspace("srgb" if im.interpretation == "rgb16" else "b-w")
    if im.format != "uchar":
        im = im.cast("uchar")
    return np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8, shape=(im.height, im.width, im.bands))


def _blocks(p: np.ndarray, n: int) -> np.ndarray:
    """Sums over n×n blocks (the plane cropped to a multiple of n)."""
    h, w = p.shape[0] // n * n, p.shape[1] // n * n
    rows = p[0:h:n, :w].copy()
    for i in range(1, n):
        rows += p[i:h:n, :w]
    out = rows[:, 0::n].copy()
    for i in range(1, n):
        out += rows[:, i::n]
    return out


def _windows(p: np.ndarray) -> tuple[np.ndarray, int]:
    """Sums over 8×8 windows at a 4-pixel stride (2×2 of the 4×4 block sums), and the pixels in each."""
    b = _blocks(p, 4)
    if b.shape[0] < 2 or b.shape[1] < 2:
        return b, 16
    return b[:-1, :-1] + b[1:, :-1] + b[:-1, 1:] + b[1:, 1:], 64


def _ssim(a: np.ndarray, b: np.ndarray, peak: int, k2: float) -> np.ndarray:
    """SSIM per window of two 8-bit-range integer planes (int32: every sum below is exact in it)."""
    sa, n = _windows(a)
    sb, _ = _windows(b)
    va = n * _windows(a * a)[0] - sa * sa  # n² × the variances and covariance
    vb = n * _windows(b * b)[0] - sb * sb
    cab = n * _windows(a * b)[0] - sa * sb
    c1, c2 = (0.01 * peak * n) ** 2, (k2 * peak * n) ** 2
    fa, fb = sa.astype(np.float64), sb.astype(np.float64)
    return ((2 * fa * fb + c1) * (2 * cab + c2)) / ((fa * fa + fb * fb + c1) * (va + vb.astype(np.float64) + c2))


def _planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 Y, Cb, Cr rounded to 0..255, as int32."""
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    y = (77 * r + 150 * g + 29 * b + 128) >> 8
    cb = (-43 * r - 85 * g + 128 * b + 32896) >> 8
    cr = (128 * r - 107 * g - 21 * b + 32896) >> 8
    return y, cb, cr


def _local_mean(p: np.ndarray) -> np.ndarray:
    """25 × the mean over each pixel's 5×5 neighbourhood (edges repeated)."""
    q = np.pad(p, 2, mode="edge")
    h, w = p.shape
    rows = q[0:h] + q[1:h + 1] + q[2:h + 2] + q[3:h + 3] + q[4:h + 4]
    return rows[:, 0:w] + rows[:, 1:w + 1] + rows[:, 2:w + 2] + rows[:, 3:w + 3] + rows[:, 4:w + 4]


def _l4(x: np.ndarray) -> float:
    x2 = x * x
    return float(np.mean(x2 * x2) ** 0.25)


def _features(ref: np.ndarray, out: np.ndarray) -> list[float]:
    """What the model reads, from two H×W×3 uint8 arrays: luma SSIM (mean and 4-norm of 1 − SSIM),
    luma SSIM at half scale, the edge ratios of SSIMULACRA2 (ringing and blocking added, detail
    lost; 4-norms) and chroma SSIM."""
    ry, rcb, rcr = _planes(ref)
    oy, ocb, ocr = _planes(out)
    dy = 1 - _ssim(ry, oy, 255, 0.03)
    dy2 = 1 - _ssim(_blocks(ry, 2), _blocks(oy, 2), 255 * 4, 0.03)
    er = np.abs(ry * 25 - _local_mean(ry))
    eo = np.abs(oy * 25 - _local_mean(oy))
    ratio = (er + 25.0 * 255) / (eo + 25.0 * 255)  # the edge ratio (1 + edge/255) of the reference over the output
    dc = 1 - (_ssim(rcb, ocb, 255, 0.03) + _ssim(rcr, ocr, 255, 0.03)) / 2
    return [float(dy.mean()), _l4(np.maximum(dy, 0)), float(dy2.mean()), _l4(np.maximum(1 / ratio - 1, 0)),
            _l4(np.maximum(ratio - 1, 0)), float(dc.mean())]


FEATURES = ("luma 1-SSIM", "luma 1-SSIM 4-norm", "half-scale luma 1-SSIM", "artifact 4-norm", "detail lost 4-norm",
            "chroma 1-SSIM")


def estimate_features(feats: list[float], fmt: str) -> float:
    coef = MODEL[fmt]
    return coef[-1] + sum(c * math.log(max(f, 1e-5)) for c, f in zip(coef, feats, strict=False))


def _views(im: pyvips.Image, fmt: str) -> list[np.ndarray]:
    """The H×W×3 arrays a candidate is judged on (``_sample``: at most a mosaic of SAMPLE_PIXELS): an
    opaque image as is; with alpha (JPEG output only, see ``choose``), over white, as JPEG flattens it."""
    if im.bands in (1, 2):
        im = im.colourspace("srgb")
    # sampled before anything else: flattening a whole 4000x4000 output in int32 took ~700 MiB
    a = _sample(_pixels(im))
    if a.shape[2] == 3:
        return [a]
    rgb, alpha = a[..., :3].astype(np.int32), a[..., 3:4].astype(np.int32)
    return [((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)]


# Outputs over this many pixels are judged on a mosaic of TILE×TILE tiles spread evenly over them, of
# about this many pixels: the estimate's cost stays that of a 256×256 output.
SAMPLE_PIXELS = 256 * 256
TILE = 64


def _sample(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    if h * w <= SAMPLE_PIXELS * 3 // 2 or h < 2 * TILE or w < 2 * TILE:
        return a
    side = max(1, math.isqrt(SAMPLE_PIXELS // (TILE * TILE)))  # tiles a side (4 for 256×256)
    ys = [round(i * (h - TILE) / (side - 1)) for i in range(side)] if side > 1 else [(h - TILE) // 2]
    xs = [round(i * (w - TILE) / (side - 1)) for i in range(side)] if side > 1 else [(w - TILE) // 2]
    return np.concatenate([np.concatenate([a[y:y + TILE, x:x + TILE] for x in xs], axis=1) for y in ys], axis=0)


def estimate(ref: list[np.ndarray], body: bytes, fmt: str) -> float:
    """Estimated SSIMULACRA2 of ``body`` (an encoded candidate) against the views of its source."""
    out = _views(pyvips.Image.new_from_buffer(body, ""), fmt)
    if len(out) < len(ref):  # JPEG: alpha flattened
        out = out * len(ref)
    score = min(estimate_features(_features(r, o[..., :3]), fmt) for r, o in zip(ref, out, strict=True))
    return score if math.isfinite(score) else -math.inf


def encode(im: pyvips.Image, fmt: str, target: str, encoder: Encoder) -> bytes:
    return choose(im, fmt, target, encoder)[1]


def choose(im: pyvips.Image, fmt: str, target: str, encoder: Encoder) -> tuple[int, bytes]:
    """(quality, bytes) of the lowest-quality candidate whose estimate reaches the target, in at most
    MAX_ENCODES encodes.

    The first candidate is the quality that reaches the target on a median image; the second steps by
    the typical slope of the score against quality. Then either the two straddle the target and the third
    interpolates between them; or quality stopped buying score (a plateau: flat colour, gradients, whose
    score the format's chroma subsampling caps below the target) and the third looks as far below the
    first, to see whether the plateau goes on down; or the third steps on by the two's own slope. The
    choice is the lowest quality that reached the target, else the lowest within PLATEAU_POINTS of the
    best estimate (the quality past which more buys nothing)."""
    if ((im.hasalpha() and fmt != "jpeg") or min(im.width, im.height) < MIN_SIDE
            or im.width * im.height > MAX_PIXELS):
        # Graphics with alpha (emojis, stickers) keep the target's first quality: the estimate, fitted on
        # opaque images, chose qualities that lost SSIMULACRA2 points there (docs/performance.md). So do
        # outputs too small for its 8×8 windows at half scale, and outputs too large to encode three times.
        return START[fmt][target], encoder(im, START[fmt][target])
    im = im.copy_memory()  # encoded up to three times: decode and resample once
    ref = _views(im, fmt)
    goal = TARGETS[fmt][target]
    tried: dict[int, tuple[float, bytes]] = {}

    def attempt(q: int) -> float:
        body = encoder(im, q)
        tried[q] = (estimate(ref, body, fmt), body)
        return tried[q][0]

    q0 = START[fmt][target]
    s0 = attempt(q0)
    if not goal <= s0 < goal + GOOD_ENOUGH:
        q1 = _clamp(q0 + _step(goal - s0, SLOPE[fmt]))
        if q1 != q0:
            s1 = attempt(q1)
            slope = (s1 - s0) / (q1 - q0)
            lo, hi = (q0, q1) if q0 < q1 else (q1, q0)
            slo, shi = tried[lo][0], tried[hi][0]
            if slo < goal <= shi:  # straddled: interpolate
                q2 = lo + max(1, min(hi - lo - 1, math.ceil((goal - slo) * (hi - lo) / max(shi - slo, 1e-9))))
            elif s1 < goal and slope < FLAT_SLOPE:  # climbing buys nothing: does the plateau go on down?
                q2 = _clamp(q0 - (q1 - q0))
            else:  # both short of it, or both past it: step on by their own slope
                q2 = _clamp(q1 + _step(goal - s1, slope if slope > FLAT_SLOPE else SLOPE[fmt]))
            if q2 not in tried and len(tried) < MAX_ENCODES:
                attempt(q2)
    passing = [q for q, (s, _) in tried.items() if s >= goal]
    if passing:
        q = min(passing)
    else:
        best = max(s for s, _ in tried.values())
        q = min(q for q, (s, _) in tried.items() if s >= best - PLATEAU_POINTS)
    return q, tried[q][1]


def _step(gap: float, slope: float) -> int:
    """Quality steps to close ``gap`` points at ``slope`` points a step, rounded away from zero, at least
    MIN_STEP (closer candidates differ by less than the estimate's noise)."""
    steps = gap / slope
    return max(MIN_STEP, math.ceil(steps)) if steps > 0 else min(-MIN_STEP, math.floor(steps))


def _clamp(q: int) -> int:
    return max(QMIN, min(QMAX, q))
