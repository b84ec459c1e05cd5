"""Video and audio clips for the internal endpoints' tests, generated with PyAV.

Video frame ``i`` is a solid colour whose red channel is ``8 * i`` (and green
``255 - 8 * i``), so a decoded frame tells which frame it is: ``frame_index``.
Audio is a 440 Hz sine. Everything is small: by default 3 s at 10 fps,
160×90, a keyframe every 10 frames (1 s), so seeking is exercised.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import av
import numpy as np

STEP = 8


@dataclass(frozen=True)
class Spec:
    container: str  # PyAV/FFmpeg muxer name: mp4, webm, mov, mp3, ogg, …
    vcodec: str | None  # encoder: libx264, libvpx-vp9, libsvtav1, mpeg4, …
    acodec: str | None  # encoder: aac, libopus, libmp3lame, …
    width: int = 160
    height: int = 90
    fps: int = 10
    seconds: float = 3.0
    gop: int = 10

    @property
    def frames(self) -> int:
        return round(self.fps * self.seconds)


def colour(i: int) -> tuple[int, int, int]:
    return (STEP * i % 256, 255 - STEP * i % 256, 128)


def frame_index(red: float) -> int:
    return round(red / STEP)


def _audio(stream, seconds: float):
    rate = stream.rate
    size = stream.codec_context.frame_size or 1024
    fmt = stream.codec_context.format.name
    total = int(rate * seconds)
    pts = 0
    while pts < total:
        t = np.arange(pts, pts + size) / rate
        s = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        if fmt == "fltp":
            data = np.stack([s, s])
        elif fmt == "flt":
            data = np.stack([s, s], axis=1).reshape(1, -1)
        elif fmt == "s16p":
            data = np.stack([(s * 32767).astype(np.int16)] * 2)
        elif fmt == "s16":
            data = (np.stack([s, s], axis=1) * 32767).astype(np.int16).reshape(1, -1)
        elif fmt == "s32p":
            data = np.stack([(s * 2**31 * 0.99).astype(np.int32)] * 2)
        else:
            raise ValueError(f"sample format {fmt}")
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
        frame.sample_rate = rate
        frame.pts = pts
        yield frame
        pts += size


def _video_frames(spec: Spec, noisy: bool, split: bool, seed: int = 7):
    rng = np.random.default_rng(seed)
    for i in range(spec.frames):
        if noisy:
            arr = rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)
        else:
            arr = np.empty((spec.height, spec.width, 3), np.uint8)
            arr[:] = colour(i)
            if split:
                arr[:, spec.width // 2 :] = (0, 0, 255)
        frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
        frame.pts = i
        yield frame


def make(spec: Spec, noisy: bool = False, split: bool = False, video_options: dict | None = None,
         container_options: dict | None = None) -> bytes:
    """The clip; ``noisy`` makes every frame random noise (large, incompressible);
    ``split`` paints the right half of every frame blue; the options go to the
    encoder and the muxer (e.g. ``{"live": "1"}``: a WebM with no duration)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=spec.container, options=container_options or {}) as out:
        vs = astream = None
        if spec.vcodec:
            opts = {"preset": "ultrafast", "crf": "10"} if noisy else {}
            opts.update(video_options or {})
            vs = out.add_stream(spec.vcodec, rate=spec.fps, options=opts)
            vs.width, vs.height, vs.pix_fmt = spec.width, spec.height, "yuv420p"
            vs.gop_size = spec.gop
        if spec.acodec:
            astream = out.add_stream(spec.acodec, rate=48000 if spec.acodec == "libopus" else 44100)
            astream.layout = "stereo"
        if vs is not None:
            for frame in _video_frames(spec, noisy, split):
                out.mux(vs.encode(frame))
            out.mux(vs.encode())
        if astream is not None:
            for frame in _audio(astream, spec.seconds):
                out.mux(astream.encode(frame))
            out.mux(astream.encode())
    return buf.getvalue()


MP4 = Spec("mp4", "libx264", "aac")
WEBM = Spec("webm", "libvpx-vp9", "libopus")
MP3 = Spec("mp3", None, "libmp3lame")
OPUS = Spec("ogg", None, "libopus")
MPEG4_PART2 = Spec("mp4", "mpeg4", None)  # decodable, but not a web codec: refused


# tkhd matrices (16.16 fixed point a, b, u, c, d, v, x, y, w) for a display
# rotation, as phones write them: "90" is what ``ffmpeg -metadata:s:v rotate=90`` writes.
ROTATIONS = {
    0: (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30),
    90: (0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30),
    180: (-(1 << 16), 0, 0, 0, -(1 << 16), 0, 0, 0, 1 << 30),
    270: (0, -(1 << 16), 0, 1 << 16, 0, 0, 0, 0, 1 << 30),
}


def rotated_mp4(data: bytes, degrees: int) -> bytes:
    """An MP4 whose (only, version 0) video track header asks players to rotate it clockwise."""
    out = bytearray(data)
    at = out.index(b"tkhd")
    assert out[at + 4] == 0, "tkhd version 0 expected"
    matrix = at + 4 + 40  # version+flags, times, track id, reserved, duration, reserved, layer, group, volume
    out[matrix : matrix + 36] = struct.pack(">9i", *ROTATIONS[degrees])
    return bytes(out)
