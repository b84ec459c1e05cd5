"""A poster image for a video: its first frame (PyAV, in-process), through the
image pipeline like any other source, so ``width``/``height``/``fit``/
``format``/``quality`` mean what they mean everywhere.

The source is a seekable file (``ObjectReader`` over storage reads only the
byte ranges the demuxer asks for), never the whole video in memory.
"""

from __future__ import annotations

from typing import BinaryIO

import pyvips

from ..errors import ProcessingError
from . import pipeline, video
from .spec import TransformSpec


def poster(source: BinaryIO, spec: TransformSpec, limits: pipeline.Limits, timestamp: float = 0.0) -> pipeline.Output:
    container = video.open_container(source)
    try:
        _, frame = video.grab_frame(container, timestamp, limits.max_pixels)
    finally:
        container.close()
    try:
        # Uncompressed TIFF: a memcpy, which the pipeline decodes with shrink-on-load like any image.
        buf = frame.tiffsave_buffer(compression="none")
    except pyvips.Error:
        raise ProcessingError("poster frame encoding failed") from None
    return pipeline.transform(buf, spec, limits)
