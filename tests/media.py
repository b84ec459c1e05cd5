"""Test media generated with pyvips (no binaries in the repository)."""

from __future__ import annotations

import pyvips


def gradient(width: int, height: int) -> pyvips.Image:
    """R grows left→right, G grows top→bottom: any crop is recognisable by its colours."""
    xyz = pyvips.Image.xyz(width, height)
    r = (xyz[0] * 255 / max(1, width - 1)).cast("uchar")
    g = (xyz[1] * 255 / max(1, height - 1)).cast("uchar")
    b = pyvips.Image.black(width, height).cast("uchar") + 64
    return r.bandjoin([g, b.cast("uchar")]).copy(interpretation="srgb")


def jpeg(width: int = 640, height: int = 480, q: int = 90) -> bytes:
    return gradient(width, height).jpegsave_buffer(Q=q)


def png(width: int = 300, height: int = 200, alpha: bool = False) -> bytes:
    im = gradient(width, height)
    if alpha:
        im = im.bandjoin(128).copy(interpretation="srgb")
    return im.pngsave_buffer()


def webp(width: int = 300, height: int = 200) -> bytes:
    return gradient(width, height).webpsave_buffer(Q=90)


def bands(width: int, height: int, colours: list[tuple[int, int, int]], vertical: bool = True) -> pyvips.Image:
    """Equal horizontal stripes (top→bottom) or vertical stripes (left→right) of solid colours."""
    n = len(colours)
    parts = []
    for i, c in enumerate(colours):
        if vertical:
            h = height * (i + 1) // n - height * i // n
            parts.append(pyvips.Image.black(width, h).new_from_image(list(c)).cast("uchar"))
        else:
            w = width * (i + 1) // n - width * i // n
            parts.append(pyvips.Image.black(w, height).new_from_image(list(c)).cast("uchar"))
    return pyvips.Image.arrayjoin(parts, across=1 if vertical else n).copy(interpretation="srgb")


def animation(width: int = 120, height: int = 90, frames: int = 6, delay: int = 70, fmt: str = "gif") -> bytes:
    pages = [
        pyvips.Image.black(width, height).new_from_image([40 * i % 256, 255 - 40 * i % 256, 100]).cast("uchar")
        for i in range(frames)
    ]
    strip = pyvips.Image.arrayjoin(pages, across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", height)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [delay] * frames)
    strip.set_type(pyvips.GValue.gint_type, "loop", 0)
    if fmt == "gif":
        return strip.gifsave_buffer()
    return strip.webpsave_buffer(Q=80)


def oriented_jpeg(width: int = 200, height: int = 100, orientation: int = 6) -> bytes:
    """A landscape JPEG whose EXIF says to rotate it (6: 90° clockwise → upright is portrait)."""
    im = bands(width, height, [(255, 0, 0), (0, 0, 255)], vertical=False).copy()
    im.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return im.jpegsave_buffer(Q=95)


def decode(data: bytes, all_frames: bool = False) -> pyvips.Image:
    if all_frames:
        return pyvips.Image.new_from_buffer(data, "", n=-1)
    return pyvips.Image.new_from_buffer(data, "")


def loader(data: bytes) -> str:
    return decode(data).get("vips-loader").replace("load_buffer", "")


def pages(data: bytes) -> int:
    im = decode(data)
    return im.get("n-pages") if im.get_typeof("n-pages") else 1


def pixel(data: bytes, x: int, y: int) -> list[float]:
    return decode(data).getpoint(x, y)


def edit_header(draw, source: bytes, end: int, meaningful: list[int]) -> bytes:
    """``source`` with up to 4 byte edits (set, insert, delete) at or before offset ``end``, or cut
    there: a hypothesis ``draw`` picks them, the bytes from ``meaningful`` (markers, lengths, chunk
    names) or any. For fuzzing a header reader against the library it stands in for."""
    from hypothesis import strategies as st

    data = bytearray(source)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, end))
        kind = draw(st.sampled_from(["set", "set", "insert", "delete", "cut"]))
        byte = draw(st.sampled_from(meaningful) | st.integers(0, 255))
        if kind == "set":
            data[at] = byte
        elif kind == "insert":
            data.insert(at, byte)
        elif kind == "delete":
            del data[at]
        else:
            del data[at:]
            break
    return bytes(data)
