"""PyAV frame grabbing: seeking per frame, clamping, codec and container refusal,
and reading only the byte ranges needed from storage."""

from __future__ import annotations

import io

import pytest

from mediaproxy.errors import BadRequest, TooLarge
from mediaproxy.media import video
from mediaproxy.storage.local import LocalStorage
from mediaproxy.storage.reader import ObjectReader

from . import avclips


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    return {
        "mp4": avclips.make(avclips.MP4),
        "webm": avclips.make(avclips.WEBM),
        "av1": avclips.make(avclips.Spec("webm", "libsvtav1", None)),
    }


def _open(data: bytes):
    container = video.open_container(io.BytesIO(data))
    return container, video.playable_video(container)


def _index(im) -> int:
    return avclips.frame_index(im.getpoint(im.width // 2, im.height // 2)[0])


@pytest.mark.parametrize("kind", ["mp4", "webm", "av1"])
def test_frames_at_seeks_to_each_timestamp_in_any_order(clips, kind):
    container, stream = _open(clips[kind])
    asked = [0.0, 1.05, 0.5, 2.25, 0.0, 2.9]
    got = video.frames_at(container, stream, asked)
    for ts, (t, im) in zip(asked, got, strict=True):
        # the first frame at or after the timestamp (frames are 0.1 s apart)
        expected = min(29, -(-round(ts * 100) // 10))
        assert _index(im) == expected, (ts, t)
        assert t == pytest.approx(expected / 10, abs=1e-3)
        assert (im.width, im.height) == (160, 90)


@pytest.mark.parametrize("ts", [2.95, 3.0, 60.0, 1e6])
def test_past_the_end_gives_the_last_frame(clips, ts):
    container, stream = _open(clips["mp4"])
    t, im = video.frames_at(container, stream, [ts])[0]
    assert _index(im) == 29 and t == pytest.approx(2.9, abs=1e-3)


def test_grab_frame_keeps_its_signature(clips):
    container = video.open_container(io.BytesIO(clips["webm"]))
    t, im = video.grab_frame(container, 0.3)
    assert t == pytest.approx(0.3, abs=1e-3) and _index(im) == 3
    t, im = video.grab_frame(container)  # back to the start on the same container
    assert t == 0.0 and _index(im) == 0


def test_duration(clips):
    container, stream = _open(clips["mp4"])
    assert video.duration_of(container, stream) == pytest.approx(3.0, abs=0.01)


def test_seeking_reads_only_part_of_a_stored_video(tmp_path):
    # 20 s at 1 keyframe/s of incompressible noise-like frames: a few MB.
    spec = avclips.Spec("mp4", "libx264", None, width=160, height=90, fps=10, seconds=20, gop=10)
    data = avclips.make(spec, noisy=True)
    storage = LocalStorage(tmp_path)
    storage.put("uploads", "v.mp4", data)
    reader = ObjectReader(storage, "uploads", "v.mp4", block=16 * 1024)
    container = video.open_container(reader)
    stream = video.playable_video(container)
    t, _ = video.frames_at(container, stream, [15.0])[0]
    assert t == pytest.approx(15.0, abs=1e-3)
    assert reader.size > 1_000_000
    assert reader.fetched < reader.size / 4, (reader.fetched, reader.size)


def test_non_web_codec_is_refused():
    container = video.open_container(io.BytesIO(avclips.make(avclips.MPEG4_PART2)))
    with pytest.raises(BadRequest, match="unsupported video codec: mpeg4"):
        video.playable_video(container)


def test_other_containers_are_refused():
    data = avclips.make(avclips.Spec("avi", "libx264", None))
    container = video.open_container(io.BytesIO(data))
    with pytest.raises(BadRequest, match="unsupported container format: avi"):
        video.playable_video(container)


def test_audio_only_has_no_video_stream():
    container = video.open_container(io.BytesIO(avclips.make(avclips.MP3)))
    with pytest.raises(BadRequest, match="no video stream"):
        video.playable_video(container)


@pytest.mark.parametrize("data", [b"", b"not a video at all" * 100, b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500])
def test_garbage_is_a_bad_request(data):
    with pytest.raises(BadRequest):
        container = video.open_container(io.BytesIO(data))
        video.frames_at(container, video.playable_video(container), [0.0])


def test_truncated_video_is_a_bad_request(clips):
    data = clips["mp4"]
    with pytest.raises(BadRequest):
        container = video.open_container(io.BytesIO(data[: len(data) // 2]))
        video.frames_at(container, video.playable_video(container), [0.0])


@pytest.mark.parametrize(
    "degrees, size, green_at",
    [(0, (160, 90), "left"), (90, (90, 160), "top"), (180, (160, 90), "right"), (270, (90, 160), "bottom")],
)
def test_phone_rotation_is_applied(degrees, size, green_at):
    # Left half of every frame is the frame colour (frame 0: no red, full green), right half blue.
    data = avclips.rotated_mp4(avclips.make(avclips.Spec("mp4", "libx264", None, seconds=1), split=True), degrees)
    container, stream = _open(data)
    _, im = video.frames_at(container, stream, [0.0])[0]
    assert (im.width, im.height) == size
    w, h = im.width, im.height
    probes = {
        "left": (w // 4, h // 2),
        "right": (3 * w // 4, h // 2),
        "top": (w // 2, h // 4),
        "bottom": (w // 2, 3 * h // 4),
    }
    green = im.getpoint(*probes[green_at])
    assert green[1] > 200 and green[2] < 180, green  # the frame colour (0, 255, 128)
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[green_at]
    blue = im.getpoint(*probes[opposite])
    assert blue[2] > 200 and blue[1] < 60, blue


def _one_keyframe() -> bytes:
    """10 s, 100 frames, a single keyframe (as screen recorders write)."""
    return avclips.make(avclips.Spec("mp4", "libx264", None, seconds=10, gop=1000),
                        video_options={"x264-params": "keyint=1000:scenecut=0"})


def test_one_keyframe_video_is_decoded_forward_once_not_per_timestamp():
    container, stream = _open(_one_keyframe())
    frames = video._Frames(container, stream, None)
    stamps = [i * 10.0 / 10 for i in range(10)]
    for ts in stamps:
        t, frame = frames.at(ts)
        assert t == pytest.approx(ts, abs=1e-3)
        red = video.frame_to_image(frame).getpoint(80, 45)[0]
        assert avclips.frame_index(red) == round(ts * 10) % 32  # the colour code wraps every 32 frames
    # Seeking back to the only keyframe for every timestamp would decode ~460 frames.
    assert frames.decoded <= 100


def test_dense_keyframes_are_still_reached_by_seeking(clips):
    container, stream = _open(clips["mp4"])  # a keyframe every second
    frames = video._Frames(container, stream, None)
    frames.at(0.0)
    t, _ = frames.at(2.9)
    assert t == pytest.approx(2.9, abs=1e-3)
    assert frames.decoded <= 12  # frame 0, then the GOP from 2.0 s: not all 30 frames


def test_duration_is_scanned_when_the_container_has_none():
    live = avclips.make(avclips.Spec("webm", "libvpx-vp9", None), container_options={"live": "1"})
    container, stream = _open(live)
    assert stream.duration is None and container.duration is None  # what a browser's MediaRecorder writes
    duration = video.duration_of(container, stream)
    assert duration == pytest.approx(3.0, abs=0.11)
    got = video.frames_at(container, stream, [i * duration / 5 for i in range(5)])
    assert [_index(im) for _, im in got] == [0, 6, 12, 18, 24]


def test_frames_over_the_pixel_cap_are_refused_before_decoding(clips):
    container, stream = _open(clips["mp4"])  # 160x90
    with pytest.raises(TooLarge):
        video.frames_at(container, stream, [0.0], max_pixels=160 * 90 - 1)
    assert video.frames_at(container, stream, [0.0], max_pixels=160 * 90)
