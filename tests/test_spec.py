"""Query → canonical TransformSpec: defaults, aliases, bad values."""

from __future__ import annotations

import pytest

from mediaproxy.errors import BadRequest
from mediaproxy.media.spec import (
    ATTACHMENT,
    BANNER,
    BOX,
    SIZES,
    SOURCE,
    SQUARE,
    parse_spec,
)


def canon(profile, query, ext="png") -> str:
    return parse_spec(profile, query, ext).canonical()


def test_size_list_is_the_contracts():
    assert sorted(SIZES) == [16, 20, 22, 24, 28, 32, 40, 44, 48, 56, 60, 64, 80, 96, 100, 128, 160, 240, 256,
                             300, 320, 480, 512, 600, 640, 1024, 1280, 1536, 2048, 3072, 4096]


@pytest.mark.parametrize("profile", [SQUARE, BOX])
def test_default_size_is_128(profile):
    spec = parse_spec(profile, {}, "png")
    assert (spec.width, spec.height) == (128, 128)
    assert canon(profile, {}) == canon(profile, {"size": "128"})


def test_square_crops_box_fits_inside():
    assert parse_spec(SQUARE, {"size": "64"}, "png").fit == "cover"
    assert parse_spec(SQUARE, {"size": "64", "fit": "contain"}, "png").fit == "contain"
    assert parse_spec(BOX, {"size": "64", "fit": "cover"}, "png").fit == "inside"  # emojis/stickers keep aspect


def test_banner_size_is_a_box_and_dims_keep_aspect():
    spec = parse_spec(BANNER, {"size": "300"}, "png")
    assert (spec.width, spec.height, spec.fit) == (300, 300, "inside")
    spec = parse_spec(BANNER, {"width": "300"}, "png")
    assert (spec.width, spec.height) == (300, None)
    spec = parse_spec(BANNER, {}, "png")
    assert not spec.resize
    # width/height win over size
    spec = parse_spec(BANNER, {"size": "64", "width": "300"}, "png")
    assert (spec.width, spec.height) == (300, None)


@pytest.mark.parametrize(
    "a, b",
    [
        ({"format": "jpg"}, {"format": "jpeg"}),
        ({"format": "JPG"}, {"format": "jpeg"}),
        ({"position": "centre"}, {"position": "center"}),
        ({"position": "centre"}, {}),
        ({"fit": "cover"}, {}),
        ({"quality": "high"}, {"quality": "80"}),
        ({"quality": "low"}, {"quality": "20"}),
        ({"quality": "080"}, {"quality": "80"}),
        ({"size": "0128"}, {"size": "128"}),
        ({"format": "jpeg"}, {"format": "jpeg", "quality": "80"}),  # the JPEG default, spelled out
        ({"format": "jpeg", "quality": "lossless"}, {"format": "jpeg", "quality": "100"}),
        ({"format": "webp"}, {"format": "webp", "quality": "80"}),  # the WebP default
        ({"format": "webp"}, {"format": "webp", "quality": "high"}),  # ... is `high` (the platform's API reference)
        ({"format": "png", "quality": "10"}, {"format": "png"}),  # quality does not apply to PNG
        ({"format": "gif", "quality": "lossless"}, {"format": "gif"}),
        ({"animated": "1"}, {"animated": "true"}),
        ({"animated": "FALSE"}, {"animated": "0"}),
        ({"unknown": "x", "v": "3"}, {}),  # unknown parameters are ignored
        ({"size": ["999", "64"]}, {"size": "64"}),  # repeated: the last one counts
    ],
)
def test_equal_specs_have_equal_canonical_text(a, b):
    assert canon(SQUARE, a) == canon(SQUARE, b)


def test_ext_and_format_fold():
    # `.jpg?format=webp` and `.webp` ask for the same bytes
    assert canon(SQUARE, {"format": "webp"}, ext="jpeg") == canon(SQUARE, {}, ext="webp")


def test_position_only_matters_when_it_can():
    # Without a resize (banners at their own size) neither fit nor position changes the bytes.
    assert canon(BANNER, {"position": "top", "fit": "fill"}) == canon(BANNER, {})
    # fill/inside/outside do not crop: position is irrelevant
    for fit in ("fill", "inside", "outside"):
        q = {"width": "100", "height": "50", "fit": fit}
        assert canon(BANNER, {**q, "position": "top"}) == canon(BANNER, q)
    q = {"width": "100", "height": "50"}
    assert canon(BANNER, {**q, "position": "top"}) != canon(BANNER, q)


@pytest.mark.parametrize(
    "a, b",
    [
        ({"size": "64"}, {"size": "128"}),
        ({"format": "png"}, {"format": "webp"}),
        ({"format": "webp", "quality": "80"}, {"format": "webp", "quality": "81"}),
        ({"format": "webp", "quality": "lossless"}, {"format": "webp", "quality": "100"}),
        ({"fit": "cover"}, {"fit": "contain"}),
        ({"position": "top"}, {"position": "bottom"}),
        ({"position": "entropy"}, {"position": "attention"}),
        ({"format": "webp", "animated": "true"}, {"format": "webp", "animated": "false"}),
        ({"format": "webp", "animated": "true"}, {"format": "webp"}),
    ],
)
def test_different_specs_have_different_canonical_text(a, b):
    assert canon(SQUARE, a) != canon(SQUARE, b)


@pytest.mark.parametrize("profile", [SQUARE, BOX, BANNER])
def test_animation_key_follows_the_output_format(profile):
    """Same bytes out <=> same key: `animated` only counts where it changes the output."""
    q = {"size": "64"}
    gif = {canon(profile, {**q, **a}, "gif") for a in ({}, {"animated": "false"}, {"animated": "true"})}
    assert len(gif) == 1  # GIF output is animated whatever `animated` says
    assert canon(profile, q, "webp") == canon(profile, {**q, "animated": "false"}, "webp")
    assert canon(profile, q, "webp") != canon(profile, {**q, "animated": "true"}, "webp")
    for ext in ("png", "jpeg", "avif"):  # never animated
        assert canon(profile, q, ext) == canon(profile, {**q, "animated": "true"}, ext)


def test_attachment_animation_key():
    q = {"width": "64"}
    assert canon(ATTACHMENT, q, None) == canon(ATTACHMENT, {**q, "animated": "false"}, None)
    assert canon(ATTACHMENT, q, None) != canon(ATTACHMENT, {**q, "animated": "true"}, None)
    for fmt in ("gif", "webp"):
        assert canon(ATTACHMENT, {**q, "format": fmt}, None) != canon(ATTACHMENT, {**q, "format": fmt,
                                                                                   "animated": "true"}, None)
    assert canon(ATTACHMENT, {**q, "format": "png"}, None) == canon(ATTACHMENT, {**q, "format": "png",
                                                                               "animated": "true"}, None)


@pytest.mark.parametrize(
    "query",
    [
        {"size": v} for v in ("0", "1", "15", "17", "129", "4097", "5000", "-1", "abc", "", "128.0", "1e2",
                              "²", "１２８", " 128", "0x80", "99999999999999999999")
    ]
    + [{"format": v} for v in ("bmp", "tiff", "svg", "json", "", "jpeg2000")]
    + [{"quality": v} for v in ("0", "101", "-1", "abc", "medium", "", "50.5", "²", "1000")]
    + [{"fit": v} for v in ("crop", "scale-down", "", "covers")]
    + [{"position": v} for v in ("middle", "north", "", "topleft")]
    + [{"animated": v} for v in ("yes", "2", "", "truee")],
)
def test_bad_values_are_bad_requests(query):
    with pytest.raises(BadRequest):
        parse_spec(SQUARE, query, "png")


@pytest.mark.parametrize("value", ["0", "4097", "-5", "abc", "", "1.5", "²", "٣", "10000000"])
@pytest.mark.parametrize("name", ["width", "height"])
def test_bad_dimensions_are_bad_requests(name, value):
    with pytest.raises(BadRequest):
        parse_spec(BANNER, {name: value}, "png")


def test_dimension_bounds():
    assert parse_spec(BANNER, {"width": "1", "height": "4096"}, "png").height == 4096
    # width/height are ignored on the square routes (they take `size`)
    assert parse_spec(SQUARE, {"width": "abc"}, "png").width == 128


def test_attachment_profile_passthrough():
    assert parse_spec(ATTACHMENT, {}, None).canonical() == "passthrough"
    assert parse_spec(ATTACHMENT, {"quality": "lossless"}, None).canonical() == "passthrough"
    # animated=false is the default: alone it asks for nothing
    assert parse_spec(ATTACHMENT, {"animated": "false"}, None).canonical() == "passthrough"
    assert parse_spec(ATTACHMENT, {"animated": "0", "quality": "lossless"}, None).canonical() == "passthrough"
    assert parse_spec(ATTACHMENT, {"animated": "true"}, None).transform
    spec = parse_spec(ATTACHMENT, {"width": "10"}, None)
    assert spec.transform and spec.format == SOURCE and spec.lossless


def test_square_routes_stay_square_whatever_the_fit():
    assert canon(SQUARE, {"size": "64", "fit": "inside"}) == canon(SQUARE, {"size": "64", "fit": "contain"})
    assert canon(SQUARE, {"size": "64", "fit": "outside"}) == canon(SQUARE, {"size": "64", "fit": "cover"})
    assert parse_spec(BANNER, {"width": "64", "height": "64", "fit": "inside"}, "png").fit == "inside"


def test_quality_auto_is_its_own_key():
    """quality=auto (any case) is a target, not a number: a key of its own, apart from every fixed quality."""
    auto = canon(SQUARE, {"format": "webp", "quality": "auto"})
    assert auto == canon(SQUARE, {"format": "webp", "quality": "AUTO"})
    others = {canon(SQUARE, {"format": "webp", "quality": q}) for q in ("high", "low", "lossless", "60", "1")}
    assert auto not in others | {canon(SQUARE, {"format": "webp"})}
    for fmt in ("jpeg", "avif"):
        assert canon(SQUARE, {"format": fmt, "quality": "auto"}) != canon(SQUARE, {"format": fmt})
    spec = parse_spec(SQUARE, {"quality": "auto"}, "webp")
    assert spec.auto == "good" and spec.quality is None and not spec.lossless
    assert spec.quality_for("webp") == 80  # what the encoder falls back to where auto does not apply


def test_quality_auto_keeps_the_presets_meaning():
    for preset, number in (("high", 80), ("low", 20), ("lossless", 100)):
        spec = parse_spec(SQUARE, {"quality": preset}, "webp")
        assert spec.auto is None and spec.quality == number


def test_quality_auto_does_not_apply_to_png_and_gif():
    for ext in ("png", "gif"):
        assert canon(SQUARE, {"quality": "auto"}, ext) == canon(SQUARE, {}, ext)


def test_quality_auto_on_attachments_is_a_transform():
    """Attachments default to lossless and serve the stored bytes when nothing is asked: auto asks."""
    spec = parse_spec(ATTACHMENT, {"quality": "auto"}, None)
    assert spec.transform and not spec.lossless and spec.auto == "good"
    assert spec.canonical() != parse_spec(ATTACHMENT, {"width": "10"}, None).canonical()


@pytest.mark.parametrize("value", ["auto:eco", "autox", "Auto ", "eco", "good"])
def test_quality_auto_spellings_are_bad_requests(value):
    with pytest.raises(BadRequest, match="auto"):
        parse_spec(SQUARE, {"quality": value}, "png")
