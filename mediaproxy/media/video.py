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
import numpy as np
import pyvips

from ..errors import BadRequest, TooLarge

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
    """Seconds of video. When neither the stream nor the container says (a WebM
    recorded live by a browser has no Duration element), the packets are
    scanned, without decoding, for the last presentation time."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return _scan_duration(container, stream)


def _scan_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    tb, start, end = stream.time_base, _start(stream), None
    if not tb:
        return 0.0
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
        container.seek(start, stream=stream, backward=True, any_frame=False)
    except _AV_ERRORS:
        pass
    return max(0.0, float((end - start) * tb)) if end is not None else 0.0


def check_size(stream: av.video.stream.VideoStream, max_pixels: int | None) -> None:
    """Refuse (413) a video whose frames are over the pixel cap, before any is decoded."""
    if max_pixels is None:
        return
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > max_pixels:
        raise TooLarge(f"video is {width}x{height}, over the {max_pixels} pixel limit")


def frame_to_image(frame: av.VideoFrame) -> pyvips.Image:
    """The frame as an 8-bit sRGB pyvips image, upright: a phone's rotation
    (the container's display matrix) is applied, as players do."""
    rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    h, w, _ = rgb.shape
    # pyvips keeps a reference to the array's memory: no second copy of the pixels.
    im = pyvips.Image.new_from_memory(rgb.data, w, h, 3, "uchar").copy(interpretation="srgb")
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


class _Frames:
    """Frames of one stream at increasing timestamps.

    For each timestamp it either decodes on from where it is, or seeks to the
    keyframe before the timestamp, whichever the last seek suggests is
    cheaper: with a keyframe every few seconds it seeks per frame; in a video
    with one keyframe (a screen recording) it decodes forward once instead of
    going back to that keyframe for every timestamp.
    """

    def __init__(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 max_pixels: int | None):
        check_size(stream, max_pixels)
        self.container, self.stream, self.max_pixels = container, stream, max_pixels
        self.tb, self.start = stream.time_base, _start(stream)
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self.decoder: Iterator[av.VideoFrame] | None = None
        self.current: tuple[float, av.VideoFrame] | None = None
        self.exhausted = False
        self.seek_cost = 0  # frames the last seek decoded before reaching its timestamp
        self.decoded = 0  # frames decoded in all (tests and logs read it)

    def _seek(self, timestamp: float) -> None:
        if self.tb:
            target = self.start + math.floor(timestamp / self.tb + 1e-6)
            self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        self.decoder, self.current, self.exhausted = self.container.decode(self.stream), None, False

    def _decode_until(self, timestamp: float) -> int:
        decoded = 0
        assert self.decoder is not None
        for frame in self.decoder:
            decoded += 1
            self.decoded += 1
            if self.max_pixels is not None and frame.width * frame.height > self.max_pixels:
                raise TooLarge(f"video frame is {frame.width}x{frame.height}, over the pixel limit")
            t = _seconds(frame, self.start, self.tb)
            self.current = (t, frame)
            if t + 1e-6 >= timestamp:
                return decoded
        self.exhausted = True
        return decoded

    def at(self, timestamp: float) -> tuple[float, av.VideoFrame]:
        """(actual timestamp, frame) for the first frame at or after ``timestamp``;
        past the end, the last frame."""
        timestamp = max(0.0, float(timestamp))
        cur = self.current
        try:
            if cur is not None and timestamp >= cur[0]:
                if self.exhausted or cur[0] + 1e-6 >= timestamp:
                    return cur
                if (timestamp - cur[0]) * self.fps <= max(self.seek_cost, self.fps):
                    self._decode_until(timestamp)
                    return self.current  # type: ignore[return-value]
            self._seek(timestamp)
            self.seek_cost = self._decode_until(timestamp)
            if self.current is None:
                # The seek landed past every frame: start over and keep the last one.
                self._seek(0.0)
                self._decode_until(math.inf)
        except _AV_ERRORS:
            raise BadRequest("undecodable video") from None
        if self.current is None:
            raise BadRequest("video has no decodable frame")
        return self.current


def iter_frames_at(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    timestamps: Iterable[float],
    max_pixels: int | None = None,
) -> Iterator[tuple[float, pyvips.Image]]:
    """One decoded frame per timestamp (the first at or after it; past the end,
    the last), as pyvips images, one at a time (a caller that shrinks each never
    holds them all full-size). Frames over ``max_pixels`` are refused (413)."""
    if not stream.codec_context.is_open:
        stream.thread_type = "AUTO"
    frames = _Frames(container, stream, max_pixels)
    for ts in timestamps:
        t, frame = frames.at(ts)
        try:
            image = frame_to_image(frame)
        except _AV_ERRORS:
            raise BadRequest("undecodable video frame") from None
        yield t, image


def frames_at(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    timestamps: Iterable[float],
    max_pixels: int | None = None,
) -> list[tuple[float, pyvips.Image]]:
    return list(iter_frames_at(container, stream, timestamps, max_pixels))


def grab_frame(
    container: av.container.InputContainer, timestamp: float = 0.0, max_pixels: int | None = None
) -> tuple[float, pyvips.Image]:
    """(actual timestamp, frame) for the first frame at or after ``timestamp``;
    a timestamp past the end gives the last frame."""
    stream = video_stream(container)
    if stream is None:
        raise BadRequest("no video stream")
    return frames_at(container, stream, [timestamp], max_pixels)[0]
