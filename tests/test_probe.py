"""Metadata without HTTP: images (libvips), video and audio (PyAV), BlurHash."""

from __future__ import annotations

import io

import blurhash
import pytest
import pyvips

from mediaproxy.errors import BadRequest, TooLarge
from mediaproxy.media import pipeline, placeholder, probe

from . import avclips, media

LIMITS = pipeline.Limits(max_pixels=100_000_000, max_frames=1000, max_animation_pixels=400_000_000)


def av_meta(data: bytes) -> probe.Metadata:
    return probe.audio_video(io.BytesIO(data), len(data))


@pytest.mark.parametrize(
    "data, kind",
    [
        (media.jpeg(8, 8), "image"),
        (media.png(8, 8), "image"),
        (media.animation(8, 8, 2), "image"),
        (media.webp(8, 8), "image"),
        (media.gradient(16, 16).heifsave_buffer(compression="av1"), "image"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "av"),
        (b"\x1aE\xdf\xa3\x9fB\x86\x81\x01", "av"),
        (b"ID3\x04\x00", "av"),
        (b"OggS\x00\x02", "av"),
        (b"", "av"),
    ],
)
def test_sniff(data, kind):
    assert probe.sniff(data[:1024]) == kind


def test_still_image():
    meta = probe.image(media.jpeg(640, 480), LIMITS)
    assert (meta.type, meta.format, meta.mime_type) == ("image", "jpeg", "image/jpeg")
    assert (meta.width, meta.height, meta.animated, meta.frame_count) == (640, 480, False, 1)
    assert meta.duration is None and meta.fps is None and meta.codec is None and meta.has_audio is False
    assert len(meta.frames) == 1 and max(meta.frames[0].width, meta.frames[0].height) == 320


def test_exif_orientation_gives_upright_size():
    meta = probe.image(media.oriented_jpeg(200, 100, 6), LIMITS)
    assert (meta.width, meta.height) == (100, 200)
    assert (meta.frames[0].width, meta.frames[0].height) == (100, 200)


def test_animated_gif_timing():
    meta = probe.image(media.animation(120, 90, frames=6, delay=70), LIMITS)
    assert (meta.format, meta.animated, meta.frame_count) == ("gif", True, 6)
    assert meta.duration == pytest.approx(0.42)
    assert meta.fps == pytest.approx(6 / 0.42, abs=1e-3)
    assert len(meta.frames) == 3  # pages 0, 2, 4 are scored


def test_animated_webp():
    meta = probe.image(media.animation(64, 48, frames=4, delay=100, fmt="webp"), LIMITS)
    assert (meta.format, meta.animated, meta.frame_count, meta.duration) == ("webp", True, 4, 0.4)
    assert meta.fps == pytest.approx(10.0)


def test_pixel_limit_is_413():
    with pytest.raises(TooLarge):
        probe.image(media.png(300, 200), pipeline.Limits(10_000, 10, 10_000))


@pytest.mark.parametrize("data", [media.jpeg(64, 64)[:300], b"\x89PNG\r\n\x1a\n" + b"\x00" * 64])
def test_corrupt_image_is_400(data):
    with pytest.raises(BadRequest):
        probe.image(data, LIMITS)


def test_mp4():
    data = avclips.make(avclips.MP4)
    meta = av_meta(data)
    assert (meta.type, meta.format, meta.mime_type, meta.codec, meta.audio_codec) == (
        "video", "mp4", "video/mp4", "h264", "aac")
    assert (meta.width, meta.height, meta.fps, meta.frame_count, meta.has_audio) == (160, 90, 10.0, 30, True)
    assert meta.duration == pytest.approx(3.0, abs=0.05)
    assert meta.bitrate == pytest.approx(len(data) * 8 / meta.duration, rel=0.02)
    assert len(meta.frames) == probe.SCORED_FRAMES


def test_rotated_phone_video_reports_its_upright_size():
    data = avclips.rotated_mp4(avclips.make(avclips.Spec("mp4", "libx264", None, seconds=1)), 90)
    meta = av_meta(data)
    assert (meta.width, meta.height) == (90, 160)
    assert (meta.frames[0].width, meta.frames[0].height) == (90, 160)


def test_video_without_audio_and_quicktime():
    meta = av_meta(avclips.make(avclips.Spec("mov", "libx264", None)))
    assert (meta.format, meta.mime_type, meta.has_audio, meta.audio_codec) == ("mov", "video/quicktime", False, None)


@pytest.mark.parametrize(
    "spec, fmt, codec",
    [
        (avclips.Spec("mp4", "libx265", None, seconds=1), "mp4", "hevc"),
        (avclips.Spec("webm", "libvpx", None, seconds=1), "webm", "vp8"),
        (avclips.Spec("webm", "libsvtav1", None, seconds=1), "webm", "av1"),
    ],
)
def test_other_web_codecs(spec, fmt, codec):
    meta = av_meta(avclips.make(spec))
    assert (meta.type, meta.format, meta.codec, meta.width, meta.height) == ("video", fmt, codec, 160, 90)
    assert meta.frame_count == 10 and len(meta.frames) == probe.SCORED_FRAMES


def test_m4a_audio():
    meta = av_meta(avclips.make(avclips.Spec("ipod", None, "aac")))
    assert (meta.type, meta.format, meta.mime_type, meta.codec) == ("audio", "m4a", "audio/mp4", "aac")
    assert meta.frames == [] and meta.width is None


def test_analyse_fills_blurhash_and_nsfw():
    meta = probe.analyse(probe.image(media.jpeg(320, 240), LIMITS), nsfw_threshold=0.5)
    assert isinstance(meta.blurhash, str) and isinstance(meta.nsfw_score, float)
    assert meta.nsfw_detected is False and meta.nsfw_labels == []
    off = probe.analyse(probe.image(media.jpeg(320, 240), LIMITS), 0.5, nsfw_enabled=False)
    assert off.blurhash == meta.blurhash and off.nsfw_score is None and off.nsfw_detected is None
    audio = probe.analyse(av_meta(avclips.make(avclips.MP3)), 0.5)
    assert audio.blurhash is None and audio.nsfw_score is None


@pytest.mark.parametrize("size, comps", [((300, 200), (4, 3)), ((200, 300), (3, 4)), ((64, 64), (4, 3))])
def test_blurhash_components_follow_the_aspect(size, comps):
    h = placeholder.encode(media.gradient(*size))
    assert blurhash.components(h) == comps
    assert len(h) == 4 + 2 * comps[0] * comps[1]


def test_blurhash_keeps_the_colours():
    # Left half red, right half blue: the decoded placeholder is reddish left, bluish right.
    im = media.bands(200, 100, [(220, 20, 20), (20, 20, 220)], vertical=False)
    h = placeholder.encode(im)
    pixels = blurhash.decode(h, 20, 10)
    left, right = pixels[5][1], pixels[5][18]
    assert left[0] > 150 and left[2] < 100, left
    assert right[2] > 150 and right[0] < 100, right
    # A solid colour decodes (at its centre) to about that colour.
    h = placeholder.encode(pyvips.Image.black(64, 48).new_from_image([30, 140, 90]).cast("uchar"))
    centre = blurhash.decode(h, 9, 9)[4][4]
    assert all(abs(a - b) <= 12 for a, b in zip(centre, (30, 140, 90), strict=True)), centre
