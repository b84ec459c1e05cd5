"""Video and audio generated with PyAV for tests (no binaries in the repository)."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np


def _frame(width: int, height: int, i: int) -> np.ndarray:
    """Frame i: a solid colour that changes per frame (red at frame 0), so a poster is recognisable."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:, :] = ((255 - 40 * i) % 256, (40 * i) % 256, 32)
    return img


def video(width: int = 320, height: int = 240, frames: int = 10, fps: int = 10, container: str = "mp4",
          codec: str = "libx264", audio: bool = False) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:  # mp4: moov at the end, as cameras write it
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        astream = out.add_stream("aac" if container == "mp4" else "libopus", rate=48000) if audio else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_frame(width, height, i), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            _tone(out, astream, seconds=frames / fps)
    return buf.getvalue()


def _tone(out, stream, seconds: float) -> None:
    rate = 48000
    n = int(rate * seconds)
    t = np.arange(n) / rate
    samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    size = stream.codec_context.frame_size or 1024
    pts = 0
    for start in range(0, n, size):
        chunk = samples[start : start + size]
        if len(chunk) < size:
            chunk = np.pad(chunk, (0, size - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = pts
        frame.time_base = Fraction(1, rate)
        pts += size
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def audio(seconds: float = 1.0, container: str = "mp4") -> bytes:
    """AAC in an MP4 (m4a) container, or Opus in Ogg (container="ogg")."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream("aac" if container == "mp4" else "libopus", rate=48000)
        _tone(out, stream, seconds)
    return buf.getvalue()
