"""quality=auto in process: the choice per image, its bound, its determinism; the imgix parser's auto=compress."""

from __future__ import annotations

import numpy as np
import pytest
import pyvips

from mediaproxy.media import autoquality, imgix, pipeline
from mediaproxy.media.spec import BANNER, SQUARE, parse_spec
from mediaproxy.routes.external import asks_nothing

from . import media

LIMITS = pipeline.Limits(max_pixels=50_000_000, max_frames=100, max_animation_pixels=100_000_000)


def _image(arr: np.ndarray) -> pyvips.Image:
    return pyvips.Image.new_from_array(np.ascontiguousarray(arr)).copy(interpretation="srgb")


def flat(n: int = 256) -> pyvips.Image:
    """An easy image: a smooth two-colour gradient."""
    y, x = np.mgrid[0:n, 0:n]
    return _image(np.stack([x * 200 // n + 30, y * 150 // n + 60, np.full((n, n), 90)], axis=2).astype(np.uint8))


def noisy(n: int = 256) -> pyvips.Image:
    """A hard one: fine detail everywhere (seeded noise over a gradient)."""
    rng = np.random.default_rng(7)
    base = np.asarray(flat(n).numpy(), np.int32)
    return _image(np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8))


def photo_like(n: int = 256) -> pyvips.Image:
    """Smooth areas and edges: blurred blocks of random colours with a little grain."""
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    im = _image(blocks).resize(n / 8, kernel="nearest").gaussblur(3)
    grain = rng.normal(0, 6, (n, n, 3))
    return _image(np.clip(np.asarray(im.numpy(), np.float64) + grain, 0, 255).astype(np.uint8))


def recording(fmt: str):
    """The pipeline's own encoder for ``fmt`` at a given quality, recording each quality asked for."""
    asked: list[int] = []
    spec = parse_spec(SQUARE, {"size": "256"}, fmt)

    def encoder(im: pyvips.Image, q: int) -> bytes:
        asked.append(q)
        from dataclasses import replace
        return pipeline._encode(im, fmt, replace(spec, quality=q), False)

    return encoder, asked


@pytest.mark.parametrize("fmt", ["webp", "jpeg", "avif"])
def test_easy_image_gets_a_lower_quality_than_a_hard_one(fmt):
    size = 128 if fmt == "jpeg" else 256
    enc, _ = recording(fmt)
    q_flat, _ = autoquality.choose(flat(size), fmt, "good", enc)
    q_noisy, _ = autoquality.choose(noisy(size), fmt, "good", enc)
    assert q_flat < q_noisy
    assert q_flat >= autoquality.QMIN and q_noisy <= autoquality.QMAX


@pytest.mark.parametrize("fmt", ["webp", "jpeg", "avif"])
@pytest.mark.parametrize("make", [flat, noisy, photo_like])
def test_encodes_are_bounded(fmt, make):
    enc, asked = recording(fmt)
    q, body = autoquality.choose(make(), fmt, "good", enc)
    assert 1 <= len(asked) <= autoquality.MAX_ENCODES
    assert len(set(asked)) == len(asked)  # no quality encoded twice
    assert q in asked and body


@pytest.mark.parametrize("make", [flat, noisy, photo_like])
def test_the_choice_is_the_lowest_candidate_that_reaches_the_target(make):
    """Else the lowest within PLATEAU_POINTS of the best candidate (past it, quality buys nothing)."""
    enc, asked = recording("webp")
    im = make()
    q, _ = autoquality.choose(im, "webp", "good", enc)
    ref = [autoquality._sample(v) for v in autoquality._views(im, "webp")]
    scores = {a: autoquality.estimate(ref, enc(im, a), "webp") for a in list(asked)}
    goal = autoquality.TARGETS["webp"]["good"]
    passing = [a for a, s in scores.items() if s >= goal]
    near_best = [a for a, s in scores.items() if s >= max(scores.values()) - autoquality.PLATEAU_POINTS]
    assert q == (min(passing) if passing else min(near_best))


def test_eco_is_not_above_good():
    enc, _ = recording("webp")
    for make in (flat, noisy, photo_like):
        assert autoquality.choose(make(), "webp", "eco", enc)[0] <= autoquality.choose(make(), "webp", "good", enc)[0]


def _src(im: pyvips.Image) -> bytes:
    return im.resize(4, kernel="nearest").pngsave_buffer(compression=1)


@pytest.mark.parametrize("ext", ["webp", "jpeg", "avif"])
def test_transform_is_deterministic(ext):
    src = _src(photo_like(128))
    spec = parse_spec(SQUARE, {"size": "256", "quality": "auto"}, ext)
    bodies = {pipeline.transform(src, spec, LIMITS).body for _ in range(3)}
    assert len(bodies) == 1


def test_transform_auto_saves_bytes_on_an_easy_image():
    src = _src(flat(128))
    auto = pipeline.transform(src, parse_spec(SQUARE, {"size": "256", "quality": "auto"}, "webp"), LIMITS)
    high = pipeline.transform(src, parse_spec(SQUARE, {"size": "256"}, "webp"), LIMITS)
    assert (auto.width, auto.height, auto.content_type) == (256, 256, "image/webp")
    assert len(auto.body) < len(high.body)


def test_alpha_outputs_keep_the_targets_first_quality():
    """WebP/AVIF with alpha: one encode at the target's first quality (the estimate is not fitted there);
    JPEG flattens alpha onto white and is judged as it is sent."""
    src = media.png(600, 400, alpha=True)
    for fmt in ("webp", "avif"):
        auto = pipeline.transform(src, parse_spec(SQUARE, {"size": "64", "quality": "auto"}, fmt), LIMITS)
        high = pipeline.transform(src, parse_spec(SQUARE, {"size": "64"}, fmt), LIMITS)
        assert auto.body == high.body and media.decode(auto.body).hasalpha()
    rgba = flat(64).bandjoin(128).copy(interpretation="srgb")
    enc, asked = recording("webp")
    assert autoquality.choose(rgba, "webp", "eco", enc)[0] == autoquality.START["webp"]["eco"] and len(asked) == 1
    enc, asked = recording("jpeg")
    q, body = autoquality.choose(rgba, "jpeg", "good", enc)
    assert q in asked and media.decode(body).bands == 3


def test_transform_auto_on_large_outputs():
    """Large outputs are judged on a sample of tiles."""
    big = _src(photo_like(300))
    out = pipeline.transform(big, parse_spec(BANNER, {"width": "1000", "quality": "auto"}, "webp"), LIMITS)
    assert (out.width, out.height) == (1000, 1000)


def test_sample_is_a_mosaic_of_evenly_spread_tiles():
    a = np.arange(800 * 600 * 3, dtype=np.int64).reshape(600, 800, 3).astype(np.uint8)
    s = autoquality._sample(a)
    assert s.shape[0] * s.shape[1] <= autoquality.SAMPLE_PIXELS
    assert (s[:64, :64] == a[:64, :64]).all() and (s[-64:, -64:] == a[-64:, -64:]).all()
    small = a[:200, :200]
    assert autoquality._sample(small) is small


def test_animation_keeps_the_default_quality():
    """Every candidate would cost every frame's encode: animated outputs keep the format's default."""
    src = media.animation(fmt="gif")
    auto = parse_spec(SQUARE, {"size": "64", "quality": "auto", "animated": "true"}, "webp")
    high = parse_spec(SQUARE, {"size": "64", "animated": "true"}, "webp")
    assert pipeline.transform(src, auto, LIMITS).body == pipeline.transform(src, high, LIMITS).body


def test_features_are_exact_for_identical_pixels():
    a = np.asarray(photo_like(64).numpy())
    f = autoquality._features(a, a)
    assert f[0] == 0 and f[2] == 0 and f[5] == 0 and f[3] == 0 and f[4] == 0


# ---------------------------------------------------------------- the library's imgix-style parameters


def test_imgix_auto_compress_asks_for_the_eco_target():
    spec = imgix.parse({"w": "300", "auto": "compress"}, None, "jpeg")
    assert spec.auto == "eco" and spec.quality is None
    assert spec.canonical() != imgix.parse({"w": "300"}, None, "jpeg").canonical()
    # an explicit q wins over compress
    spec = imgix.parse({"w": "300", "auto": "compress", "q": "70"}, None, "jpeg")
    assert spec.auto is None and spec.quality == 70
    both = imgix.parse({"w": "300", "auto": "format,compress"}, "image/webp", "jpeg")
    assert (both.format, both.auto) == ("webp", "eco")


def test_external_quality_auto_asks_for_a_transform():
    assert asks_nothing(parse_spec(BANNER, {}, None))
    assert not asks_nothing(parse_spec(BANNER, {"quality": "auto"}, None))


@pytest.mark.parametrize("fmt", ["webp", "jpeg", "avif"])
@pytest.mark.parametrize("dims", [(1, 1), (8, 8), (15, 40), (16, 16), (17, 200)])
def test_tiny_outputs(fmt, dims):
    """Outputs too small for the estimate's windows get one encode at the target's first quality."""
    enc, asked = recording(fmt)
    im = photo_like().crop(0, 0, *dims)
    q, body = autoquality.choose(im, fmt, "good", enc)
    assert body and q in asked and len(asked) <= autoquality.MAX_ENCODES
    if min(dims) < autoquality.MIN_SIDE:
        assert asked == [autoquality.START[fmt]["good"]]
    src = _src(photo_like(64))
    spec = parse_spec(BANNER, {"width": "1", "height": "1", "fit": "cover", "quality": "auto"}, fmt)
    out = pipeline.transform(src, spec, LIMITS)
    assert (out.width, out.height) == (1, 1)


@pytest.mark.parametrize("fmt", ["webp", "jpeg", "avif"])
def test_outputs_over_max_pixels_get_one_encode(fmt):
    """Each candidate is a whole encode and decode of the output: above MAX_PIXELS, quality=auto
    would cost up to MAX_ENCODES times a fixed quality's CPU (AVIF at 2048 px: ~50 s for one
    request), so such outputs get one encode at the target's first quality."""
    side = int(autoquality.MAX_PIXELS ** 0.5) + 8
    enc, asked = recording(fmt)
    q, body = autoquality.choose(noisy(side), fmt, "good", enc)
    assert asked == [autoquality.START[fmt]["good"]] and q == asked[0] and body
    enc, asked = recording(fmt)
    autoquality.choose(noisy(256), fmt, "good", enc)
    assert len(asked) > 1  # a thumbnail is still judged


def test_alpha_views_are_flattened_on_the_sample_only():
    """A JPEG output with alpha is judged over white on the sample's pixels: flattening the whole
    output in int32 first made one 4000x4000 request peak at ~840 MiB (a fixed quality: ~150)."""
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (1200, 1000, 4), dtype=np.uint8)
    im = pyvips.Image.new_from_array(a).copy(interpretation="srgb")
    (view,) = autoquality._views(im, "jpeg")
    assert view.shape[0] * view.shape[1] <= autoquality.SAMPLE_PIXELS and view.shape[2] == 3
    s = autoquality._sample(a).astype(np.int32)
    over_white = ((s[..., :3] * s[..., 3:] + 255 * (255 - s[..., 3:]) + 127) // 255).astype(np.uint8)
    assert (view == over_white).all()


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_a_large_output_at_quality_auto_is_the_fixed_quality_s_bytes(fmt):
    """Through the pipeline: a 1100 px wide quality=auto is the target's first quality, encoded once."""
    src = noisy(1100).jpegsave_buffer(Q=95)
    auto = parse_spec(BANNER, {"width": "1100", "quality": "auto"}, fmt)
    fixed = parse_spec(BANNER, {"width": "1100", "quality": str(autoquality.START[fmt]["good"])}, fmt)
    assert auto.canonical() != fixed.canonical()  # their own cache keys all the same
    assert pipeline.transform(src, auto, LIMITS).body == pipeline.transform(src, fixed, LIMITS).body


def test_a_10_bit_avif_candidate_is_judged_on_its_pixels():
    """A 10-bit AVIF decodes to 16-bit samples: the estimate reads them scaled to 8 bits (a cast clipped
    every sample over 255 to white), so a 10-bit candidate scores as its 8-bit twin does."""
    im = photo_like(128)
    ref = autoquality._views(im, "avif")
    scores = []
    for bits in (8, 10):
        body = im.heifsave_buffer(Q=60, compression="av1", effort=2, bitdepth=bits, subsample_mode="off", keep="none")
        assert pyvips.Image.new_from_buffer(body, "").format == ("uchar" if bits == 8 else "ushort")
        scores.append(autoquality.estimate(ref, body, "avif"))
    assert abs(scores[0] - scores[1]) < 5 and scores[1] > 50
