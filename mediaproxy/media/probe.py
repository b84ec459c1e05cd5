"""Metadata of one media file: images through libvips, video and audio
through PyAV (in-process), plus the frames the NSFW model and the placeholder
are computed from.

Images are read from their header (``pipeline.probe``) and decoded once, at
most 320 pixels on the long side with shrink-on-load, for the NSFW model and
the BlurHash. Video is demuxed from a seekable file (over storage, ranged
reads), and only a few frames are decoded.

See docs/internal.md for what every field means; fields that do not apply to
a kind of media are ``None`` (JSON ``null``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import BinaryIO

import av
import pyvips

from ..errors import BadRequest
from . import nsfw, pipeline, placeholder, video

KINDS = ("image", "video", "audio")
# (thumbnail_buffer does not pass its own fail_on to the loader: it goes in
# the option string, so a truncated or corrupt body is a 400, not a grey image.)
# Frames of a video (or pages of an animation) scored by the NSFW model: at
# 0, 1/3 and 2/3 of the duration; the highest score wins.
SCORED_FRAMES = 3

IMAGE_MIME = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "heic": "image/heic",
    "tiff": "image/tiff",
}
_HEIF_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


@dataclass
class Metadata:
    type: str  # image, video or audio
    format: str
    mime_type: str
    size: int
    content_hash: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    animated: bool | None = None
    frame_count: int | None = None
    fps: float | None = None
    bitrate: int | None = None
    codec: str | None = None
    has_audio: bool = False
    audio_codec: str | None = None
    blurhash: str | None = None
    nsfw_score: float | None = None
    nsfw_detected: bool | None = None
    nsfw_labels: list[str] | None = None
    frames: list[pyvips.Image] = field(default_factory=list, repr=False)  # what NSFW/blurhash look at

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "frames"}


def sniff(head: bytes) -> str:
    """'image' when the first bytes are an image format libvips reads, else 'av'."""
    if head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n" or head[:4] == b"GIF8":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "image"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] == b"<" and b"<svg" in head:
        return "image"
    return "av"


# ---- images ---------------------------------------------------------------


def _delays(head: pyvips.Image, pages: int) -> list[int]:
    if head.get_typeof("delay"):
        delays = list(head.get("delay"))[:pages]
        if delays:
            return delays
    if head.get_typeof("gif-delay"):
        return [head.get("gif-delay") * 10] * pages
    return []


def image(buf: bytes, limits: pipeline.Limits) -> Metadata:
    p = pipeline.probe(buf)
    pipeline.check_limits(p, limits, animate=False)
    meta = Metadata(
        type="image",
        format=p.format,
        mime_type=IMAGE_MIME.get(p.format, "application/octet-stream"),
        size=len(buf),
        width=p.width,
        height=p.height,
        animated=p.animated,
        frame_count=p.pages if p.animated else 1,
    )
    try:
        if p.animated:
            head = pyvips.Image.new_from_buffer(buf, "", n=-1)
            delays = _delays(head, p.pages)
            total_ms = sum(delays)
            if total_ms > 0:
                meta.duration = round(total_ms / 1000, 3)
                meta.fps = round(p.pages / (total_ms / 1000), 3)
        # Decoded once into memory (a corrupt body fails here, as a 400), then
        # shared by the NSFW model and the BlurHash.
        if p.animated:
            meta.frames = [
                pyvips.Image.thumbnail_buffer(
                    buf, nsfw.SIZE, height=nsfw.SIZE, size="down", option_string=f"page={page},fail_on=error"
                ).copy_memory()
                for page in _spread(p.pages, SCORED_FRAMES)
            ]
        else:
            im = pyvips.Image.thumbnail_buffer(
                buf, nsfw.SIZE, height=nsfw.SIZE, size="down", option_string="fail_on=error"
            )
            meta.frames = [im.copy_memory()]
    except pyvips.Error:
        raise BadRequest("undecodable image") from None
    return meta


def _spread(n: int, k: int) -> list[int]:
    """Up to k distinct indexes spread evenly over range(n), starting at 0."""
    return sorted({i * n // k for i in range(min(n, k))})


# ---- video and audio ------------------------------------------------------

# (container, has video) → (format, MIME type)
def _av_format(container: av.container.InputContainer, head: bytes, has_video: bool) -> tuple[str, str]:
    name = container.format.name
    if name.startswith("mov,"):
        brand = str(container.metadata.get("major_brand", "")).strip().lower()
        if brand == "qt":
            return "mov", "video/quicktime"
        if not has_video:
            return "m4a", "audio/mp4"
        return "mp4", "video/mp4"
    if name == "matroska,webm":
        if b"webm" in head[:64]:
            return "webm", "video/webm" if has_video else "audio/webm"
        return "mkv", "video/x-matroska" if has_video else "audio/x-matroska"
    simple = {
        "ogg": ("ogg", "video/ogg" if has_video else "audio/ogg"),
        "mp3": ("mp3", "audio/mpeg"),
        "wav": ("wav", "audio/wav"),
        "flac": ("flac", "audio/flac"),
        "aac": ("aac", "audio/aac"),
    }
    return simple[name]


def _rate(stream: av.video.stream.VideoStream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return rate
    return None


def _container_duration(container: av.container.InputContainer) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    best = None
    for stream in container.streams:
        if stream.duration is not None and stream.time_base:
            d = float(stream.duration * stream.time_base)
            best = d if best is None else max(best, d)
    return best


def audio_video(source: BinaryIO, size: int, max_pixels: int | None = None) -> Metadata:
    """Metadata of a video or audio file read through a seekable file; frames
    over ``max_pixels`` are refused (413) before any is decoded."""
    head = source.read(64)
    source.seek(0)
    container = video.open_container(source)
    try:
        return _audio_video(container, head, size, max_pixels)
    finally:
        container.close()


def _audio_video(container: av.container.InputContainer, head: bytes, size: int, max_pixels: int | None) -> Metadata:
    video.check_container(container)
    vstream = video.video_stream(container)
    astream = container.streams.audio[0] if container.streams.audio else None
    if vstream is None and astream is None:
        raise BadRequest("no audio or video stream")
    fmt, mime = _av_format(container, head, vstream is not None)
    duration = _container_duration(container)
    meta = Metadata(
        type="video" if vstream is not None else "audio",
        format=fmt,
        mime_type=mime,
        size=size,
        duration=round(duration, 3) if duration is not None else None,
        has_audio=astream is not None,
        audio_codec=video.codec_name(astream) if astream is not None else None,
    )
    if container.bit_rate:
        meta.bitrate = int(container.bit_rate)
    elif duration:
        meta.bitrate = int(size * 8 / duration)
    if vstream is None:
        meta.codec = meta.audio_codec
        return meta
    vstream = video.playable_video(container)
    meta.codec = video.codec_name(vstream)
    meta.width, meta.height = vstream.width, vstream.height
    rate = _rate(vstream)
    if rate:
        meta.fps = round(float(rate), 3)
    vduration = video.duration_of(container, vstream)
    if meta.duration is None and vduration:
        meta.duration = round(vduration, 3)
        if not meta.bitrate:
            meta.bitrate = int(size * 8 / vduration)
    if vstream.frames:
        meta.frame_count = int(vstream.frames)
    elif rate and vduration:
        meta.frame_count = round(vduration * float(rate))  # estimate: the container keeps no count
    stamps = [i * vduration / SCORED_FRAMES for i in range(SCORED_FRAMES)] if vduration else [0.0]
    for i, (_, im) in enumerate(video.iter_frames_at(container, vstream, stamps, max_pixels)):
        if i == 0:
            meta.width, meta.height = im.width, im.height  # upright: the display rotation applied
        # Only NSFW scoring (320 px) and the BlurHash (32 px) look at the frames: keep them small,
        # so the full-size decoded frames are freed one by one.
        meta.frames.append(im.thumbnail_image(nsfw.SIZE, height=nsfw.SIZE, size="down").copy_memory())
    return meta


# ---- what the frames say --------------------------------------------------


def analyse(meta: Metadata, nsfw_threshold: float, nsfw_enabled: bool = True) -> Metadata:
    """Fill in the BlurHash (of the first frame) and the NSFW score (highest over the frames)."""
    if not meta.frames:
        return meta
    meta.blurhash = placeholder.encode(meta.frames[0])
    detector = nsfw.detector() if nsfw_enabled else None
    if detector is not None:
        result = detector.score([nsfw.prepare(im) for im in meta.frames], nsfw_threshold)
        meta.nsfw_score = round(result.score, 6)
        meta.nsfw_detected = result.score >= nsfw_threshold
        meta.nsfw_labels = list(result.labels)
    return meta
