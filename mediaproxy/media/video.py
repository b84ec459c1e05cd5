"""Video and audio through PyAV (FFmpeg's libraries, in-process).

``grab_frame`` seeks to a timestamp and decodes one frame into a pyvips
image; callers resize and encode it like any other image. ``frames_at`` does
the same for several timestamps on one open container, seeking per frame, so
only the group of pictures around each timestamp is read and decoded, never
the whole video.

Timestamps are seconds from the start of the video stream (its first
presentation time is 0, whatever offset the container stores).

Only web-playable video codecs are decoded (:data:`VIDEO_CODECS`): the rest
of FFmpeg's many decoders are old, rarely used and a needless attack surface
for a server that decodes uploads. Containers are limited to
:data:`CONTAINERS` for the same reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import av
import pyvips

from ..errors import BadRequest

_AV_ERRORS = (av.error.FFmpegError, ValueError, IndexError, EOFError, OSError, RuntimeError)

# Video codecs decoded for frames (FFmpeg codec names): what browsers play.
VIDEO_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1"})
# Demuxers accepted (FFmpeg's names for them).
CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "ogg", "mp3", "wav", "flac", "aac"})


def open_container(source: BinaryIO | str) -> av.container.InputContainer:
    try:
        return av.open(source, mode="r", metadata_errors="ignore")
    except _AV_ERRORS:
        raise BadRequest("undecodable media") from None


def check_container(container: av.container.InputContainer) -> None:
    name = container.format.name
    if name not in CONTAINERS:
        raise BadRequest(f"unsupported container format: {name.split(',')[0]}")


def codec_name(stream: av.stream.Stream) -> str:
    """FFmpeg's name of the codec (``h264``, ``mp3``), not of the decoder (``mp3float``)."""
    return stream.codec_context.codec.canonical_name


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first real video stream (cover art in audio files is not video)."""
    for stream in container.streams.video:
        if av.stream.Disposition.attached_pic not in stream.disposition:
            return stream
    return None


def playable_video(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The video stream, if there is one in a codec we decode; else BadRequest."""
    check_container(container)
    stream = video_stream(container)
    if stream is None:
        raise BadRequest("no video stream")
    name = codec_name(stream)
    if name not in VIDEO_CODECS:
        raise BadRequest(f"unsupported video codec: {name} (supported: {', '.join(sorted(VIDEO_CODECS))})")
    return stream


def duration_of(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def frame_to_image(frame: av.VideoFrame) -> pyvips.Image:
    """The frame as an 8-bit sRGB pyvips image, upright: a phone's rotation
    (the container's display matrix) is applied, as players do."""
    rgb = frame.to_ndarray(format="rgb24")
    h, w, _ = rgb.shape
    im = pyvips.Image.new_from_memory(rgb.tobytes(), w, h, 3, "uchar").copy(interpretation="srgb")
    # FFmpeg gives the rotation counter-clockwise; libvips' d90 turns clockwise.
    angle = -round(getattr(frame, "rotation", 0) or 0) % 360
    if angle in (90, 180, 270):
        im = im.rot(f"d{angle}")
    return im


def _start(stream: av.video.stream.VideoStream) -> int:
    return stream.start_time if stream.start_time is not None else 0


def _seconds(frame: av.VideoFrame, start: int, tb) -> float:
    if frame.pts is None or not tb:
        return 0.0
    return max(0.0, float((frame.pts - start) * tb))


def frame_at(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, timestamp: float
) -> tuple[float, av.VideoFrame]:
    """(actual timestamp, frame) for the first frame at or after ``timestamp``;
    past the end, the last frame. Seeks to the keyframe before it first, so
    it decodes at most one group of pictures."""
    timestamp = max(0.0, float(timestamp))
    tb = stream.time_base
    start = _start(stream)
    last: tuple[float, av.VideoFrame] | None = None
    try:
        if tb:
            target = start + math.floor(timestamp / tb + 1e-6)
            container.seek(target, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            t = _seconds(frame, start, tb)
            last = (t, frame)
            if t + 1e-6 >= timestamp:
                break
        if last is None:
            # The seek landed past every frame: start over and keep the last one.
            container.seek(start, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                last = (_seconds(frame, start, tb), frame)
    except _AV_ERRORS:
        raise BadRequest("undecodable video") from None
    if last is None:
        raise BadRequest("video has no decodable frame")
    return last


def iter_frames_at(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, timestamps: Iterable[float]
) -> Iterator[tuple[float, pyvips.Image]]:
    """One decoded frame per timestamp (see ``frame_at``), as pyvips images,
    one at a time (a caller that shrinks each never holds them all full-size)."""
    if not stream.codec_context.is_open:
        stream.thread_type = "AUTO"
    for ts in timestamps:
        t, frame = frame_at(container, stream, ts)
        try:
            image = frame_to_image(frame)
        except _AV_ERRORS:
            raise BadRequest("undecodable video frame") from None
        yield t, image


def frames_at(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, timestamps: Iterable[float]
) -> list[tuple[float, pyvips.Image]]:
    return list(iter_frames_at(container, stream, timestamps))


def grab_frame(container: av.container.InputContainer, timestamp: float = 0.0) -> tuple[float, pyvips.Image]:
    """(actual timestamp, frame) for the first frame at or after ``timestamp``;
    a timestamp past the end gives the last frame."""
    stream = video_stream(container)
    if stream is None:
        raise BadRequest("no video stream")
    return frames_at(container, stream, [timestamp])[0]
