"""The PNG probe: what libvips' header read answers for a plain PNG, from its chunks read in Python.

Every PNG miss is probed before it is decoded; libvips' header read of a PNG costs ~0.3 ms (a
loader built around the buffer, its chunks parsed), a few percent of a small output's CPU
(docs/performance.md), where reading the chunks before the image data costs tens of µs.
As for JPEG (``media/jpeg.py``), only the plain case is answered here; anything else, and anything
libvips might read differently, answers None and libvips decides.
"""

from __future__ import annotations

import struct
import zlib

from .jpeg import exif_orientation

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# colour type → the bit depths it allows: grey, RGB, palette, grey with alpha, RGB with alpha
_COLOUR_TYPES = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Chunks read before the image data whatever they hold: ancillary chunks of the PNG specification
# that carry nothing the probe reports, and that libpng (libvips' PNG loader) drops with a warning
# when they are malformed. An ICC profile (iCCP) is not among them: libpng drops one whose
# compressed data is corrupt, and knowing that takes inflating it, so libvips reads those PNGs.
_PASSED = frozenset((b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD", b"pHYs", b"tIME", b"tEXt", b"zTXt", b"iTXt"))
# A side libvips reads without a second thought; anything larger is left to it (its own limit).
MAX_SIDE = 65_535
# Chunks read before giving up: a real PNG has a handful before its image data.
MAX_CHUNKS = 64


def header(buf: bytes | memoryview) -> tuple[int, int, bool, int] | None:
    """(width, height, has alpha, EXIF orientation) from the chunks before the image data, or None.
    The size is the stored one (before the orientation is applied); such a PNG has no ICC profile.

    Alpha as libvips loads it: an alpha channel (grey or RGB with alpha) or a transparency chunk
    (tRNS). None, and libvips decides, for anything unusual: a header that is not IHDR or does not
    parse, a side over MAX_SIDE, a chunk that runs past the buffer or fails its CRC, a palette or
    transparency chunk out of place or of the wrong size, a second EXIF chunk or one whose
    orientation does not read as JPEG's (``jpeg.exif_orientation``), an ICC profile, an animation
    (APNG), any chunk this probe does not know before the image data, or more than MAX_CHUNKS of them.
    """
    mv = memoryview(buf)
    if bytes(mv[:8]) != SIGNATURE or len(mv) < 33:
        return None
    length, kind = struct.unpack(">I4s", mv[8:16])
    if kind != b"IHDR" or length != 13:
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", mv[16:29])
    allowed = _COLOUR_TYPES.get(colour)
    if (allowed is None or depth not in allowed or compression != 0 or filtering != 0 or interlace > 1
            or not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE)):
        return None
    if struct.unpack(">I", mv[29:33])[0] != zlib.crc32(mv[12:29]):
        return None
    alpha, palette, orientation = colour in (4, 6), 0, None
    at, n = 33, len(mv)
    for _ in range(MAX_CHUNKS):
        if at + 8 > n:
            return None
        length, kind = struct.unpack(">I4s", mv[at:at + 8])
        if length > 0x7FFFFFFF or at + 12 + length > n:
            return None
        if kind == b"IDAT":
            if colour == 3 and not palette:
                return None
            return width, height, alpha, 1 if orientation is None else orientation
        if struct.unpack(">I", mv[at + 8 + length:at + 12 + length])[0] != zlib.crc32(mv[at + 4:at + 8 + length]):
            return None
        if kind == b"PLTE":
            entries, extra = divmod(length, 3)
            if palette or alpha or colour in (0, 4) or extra or not 0 < entries <= min(256, 1 << depth):
                return None
            palette = entries
        elif kind == b"tRNS":  # its size is the colour type's (a palette's: at most one per entry)
            if alpha or length != {0: 2, 2: 6}.get(colour, length) or (colour == 3 and not 0 < length <= palette):
                return None
            alpha = True
        elif kind == b"eXIf":  # libvips reads the orientation from it
            if orientation is not None:
                return None
            orientation = exif_orientation(bytes(mv[at + 8:at + 8 + length]))
            if orientation is None:
                return None
        elif kind not in _PASSED:  # acTL, IEND, a second IHDR, unknown or private chunks
            return None
        at += 12 + length
    return None
