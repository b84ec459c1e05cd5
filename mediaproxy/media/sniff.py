"""Media types from the first bytes of a file, and which types are safe to
show inline from this origin.

Magic numbers decide for binary formats (they cannot carry script). Text that
looks like markup is reported as the active type it would be taken for, so
that callers never serve it as something a browser renders.
"""

from __future__ import annotations

MEDIA_PREFIXES = ("image/", "video/", "audio/")

# Types a browser shows without running anything from this origin.
PASSIVE = frozenset(
    (
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/heic",
        "image/heif",
        "image/bmp",
        "image/tiff",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "image/jxl",
        "application/pdf",
        "text/plain",
        "application/json",
        "application/zip",
        "application/gzip",
        "application/x-tar",
        "application/x-7z-compressed",
        "application/octet-stream",
    )
)
# Images that can carry script or markup (never inline, never "media").
ACTIVE_IMAGES = frozenset(("image/svg+xml", "image/svg"))

_FTYP_BRANDS = {
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"hevc": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"qt  ": "video/quicktime",
    b"3gp4": "video/3gpp",
    b"3gp5": "video/3gpp",
    b"3g2a": "video/3gpp2",
}
_MARKUP = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe", b"<!--", b"<title", b"<style")


def normalize_type(value: str | None) -> str:
    """``Image/PNG; charset=x`` → ``image/png``; empty for nothing."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


def is_media_type(ctype: str) -> bool:
    """Image, video or audio, and not an active image type such as SVG."""
    return ctype.startswith(MEDIA_PREFIXES) and ctype not in ACTIVE_IMAGES


def is_passive(ctype: str) -> bool:
    """Safe to render inline from this origin (with nosniff)."""
    return ctype in PASSIVE or (is_media_type(ctype) and ctype not in ACTIVE_IMAGES)


def _mpeg_audio(head: bytes) -> bool:
    # MPEG audio frame sync: 11 set bits, a valid version and layer.
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0


def sniff(head: bytes | memoryview) -> str | None:
    """The media type the bytes are, or None when unknown."""
    head = bytes(head[:4096])
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(head[8:12])
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12], "video/mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head.startswith(b"OggS"):
        return "video/ogg" if b"theora" in head[:128] else "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "audio/aac"  # ADTS
    if _mpeg_audio(head):
        return "audio/mpeg"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \x0d\x0a\x87\x0a"):
        return "image/jxl"
    if head.startswith(b"BM") and len(head) >= 26 and head[14] in (12, 40, 52, 56, 64, 108, 124):
        return "image/bmp"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    return _sniff_text(head)


def _sniff_text(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip(b" \t\r\n\x0c").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "image/svg+xml"
    if text.startswith(b"<?xml"):
        return "text/xml"
    if text.startswith(_MARKUP):
        return "text/html"
    return None


def reconcile(declared: str, sniffed: str) -> str:
    """Stored/declared type vs. a sniffed media type: the magic bytes win, except that a declared
    audio/video type stands against a sniffed one (one container, e.g. MP4, holds either)."""
    av = ("video/", "audio/")
    if declared.startswith(av) and sniffed.startswith(av):
        return declared
    return sniffed
