"""Video and audio through PyAV (FFmpeg's libraries, in-process).

``grab_frame`` seeks to a timestamp and decodes one frame into a pyvips
image; callers resize and encode it like any other image.
"""

from __future__ import annotations

from typing import BinaryIO

import av
import pyvips

from ..errors import BadRequest

_AV_ERRORS = (av.error.FFmpegError, ValueError, IndexError, EOFError, OSError)


def open_container(source: BinaryIO | str) -> av.container.InputContainer:
    try:
        return av.open(source, mode="r", metadata_errors="ignore")
    except _AV_ERRORS:
        raise BadRequest("undecodable media") from None


def duration_of(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def frame_to_image(frame: av.VideoFrame) -> pyvips.Image:
    rgb = frame.to_ndarray(format="rgb24")
    h, w, _ = rgb.shape
    return pyvips.Image.new_from_memory(rgb.tobytes(), w, h, 3, "uchar").copy(interpretation="srgb")


def grab_frame(container: av.container.InputContainer, timestamp: float = 0.0) -> tuple[float, pyvips.Image]:
    """(actual timestamp, frame) for the first frame at or after ``timestamp``;
    a timestamp past the end gives the last frame."""
    if not container.streams.video:
        raise BadRequest("no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    timestamp = max(0.0, float(timestamp))
    tb = stream.time_base
    try:
        if timestamp > 0 and tb:
            container.seek(int(timestamp / tb), stream=stream, backward=True, any_frame=False)
        last = None
        for frame in container.decode(stream):
            t = float(frame.pts * tb) if frame.pts is not None and tb else 0.0
            last = (t, frame)
            if t + 1e-6 >= timestamp:
                break
        if last is None and timestamp > 0:
            # Seeked past the last keyframe's frames: start over and keep the last frame.
            container.seek(0, stream=stream)
            for frame in container.decode(stream):
                t = float(frame.pts * tb) if frame.pts is not None and tb else 0.0
                last = (t, frame)
    except _AV_ERRORS:
        raise BadRequest("undecodable video") from None
    if last is None:
        raise BadRequest("video has no decodable frame")
    return last[0], frame_to_image(last[1])
