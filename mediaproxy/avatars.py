"""The six default avatars of the static-assets host (``avatars/{0..5}.png``,
index = ``user_id % 6``), drawn by the project itself.

Each is a disc of its own colour on a transparent background with a white
face whose mouth differs too, so that two avatars side by side never look
alike even to a colour-blind eye. The shapes are few and bold: at 16 px the
disc, the eyes and the mouth still read; at 512 px every edge is a vector
edge. The drawing is SVG rendered by libvips (our own SVG, at demo time; the
image routes never load SVG from storage).
"""

from __future__ import annotations

import pyvips

COUNT = 6
SIZE = 512  # the drawing's own size; the stored PNGs are this size

# (colour, mouth): colours differ in hue and in lightness
_AVATARS = (
    ("#5865f2", "smile"),
    ("#3ba55c", "open"),
    ("#faa61a", "wink"),
    ("#ed4245", "flat"),
    ("#747f8d", "grin"),
    ("#eb459e", "cat"),
)
_EYES = '<ellipse cx="186" cy="214" rx="34" ry="46"/><ellipse cx="326" cy="214" rx="34" ry="46"/>'
_STROKE = 'fill="none" stroke="#fff" stroke-width="36" stroke-linecap="round" stroke-linejoin="round"'
_MOUTHS = {
    "smile": f'<path d="M166 316 Q256 400 346 316" {_STROKE}/>',
    "open": '<circle cx="256" cy="346" r="44"/>',
    "flat": f'<path d="M186 344 H326" {_STROKE}/>',
    "grin": '<path d="M150 300 H362 A106 106 0 0 1 150 300 Z"/>',
    "cat": f'<path d="M170 318 Q213 378 256 318 Q299 378 342 318" {_STROKE}/>',
}


def svg(index: int) -> bytes:
    """The drawing of default avatar ``index`` (0..5) as SVG."""
    colour, mouth = _AVATARS[index]
    if mouth == "wink":  # the left eye closed, a smile
        eyes = f'<path d="M150 222 Q186 186 222 222" {_STROKE}/><ellipse cx="326" cy="214" rx="34" ry="46"/>'
        mouth_svg = _MOUTHS["smile"]
    else:
        eyes, mouth_svg = _EYES, _MOUTHS[mouth]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" viewBox="0 0 {SIZE} {SIZE}">'
        f'<circle cx="256" cy="256" r="256" fill="{colour}"/>'
        f'<g fill="#fff">{eyes}{mouth_svg}</g></svg>'
    ).encode()


def png(index: int, size: int = SIZE) -> bytes:
    """Default avatar ``index`` as a ``size``×``size`` RGBA PNG."""
    if not pyvips.type_find("VipsForeignLoad", "svgload_buffer"):
        raise RuntimeError("this libvips has no SVG loader (librsvg): the default avatars cannot be drawn")
    im = pyvips.Image.svgload_buffer(svg(index), scale=size / SIZE)
    return im.pngsave_buffer(compression=9, keep="none")
