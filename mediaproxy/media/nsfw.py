"""NSFW scoring with NudeNet's 320n detector on onnxruntime.

The model is ``320n.onnx`` from the ``nudenet`` wheel: a YOLOv8-style object
detector (input ``1×3×320×320`` RGB in 0..1; output ``1×22×2100``: for each of
2100 candidate boxes, ``cx, cy, w, h`` then one independent sigmoid
probability per class in :data:`LABELS`). Only the file is used: nudenet's own
Python module imports OpenCV, so the package is located without importing it
and the pre-processing is done here with pyvips and numpy.

Pre-processing (what nudenet does, minus OpenCV): the image is made upright
(EXIF orientation), converted to 8-bit sRGB with alpha flattened onto black,
resized so its long side is 320 (aspect kept) and padded with black on the right
and bottom to 320×320 — the same as nudenet's "pad to a square at the
bottom-right, then resize to 320", with libvips' antialiased shrink instead of
OpenCV's bilinear one.

**What the score means.** ``score`` is the highest probability the detector
gives, for any box anywhere in the image, to one of the five explicit classes
in :data:`EXPLICIT` (exposed female breast, exposed female or male genitalia,
exposed buttocks, exposed anus). It is a detector confidence in 0..1, not a
calibrated probability that the image is pornographic: ~0 means the model sees
no exposed intimate body part; values above ~0.5 mean it found one with some
confidence. Covered body parts, faces, feet, armpits, bellies and an exposed
male chest do not count. ``labels`` are the explicit classes whose own
highest probability reaches the threshold.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from dataclasses import dataclass

import numpy as np
import pyvips

log = logging.getLogger("mediaproxy.nsfw")

SIZE = 320

# nudenet's class order (the model's output channels 4..21).
LABELS = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
EXPLICIT = (
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
)
_EXPLICIT_IDX = np.array([LABELS.index(name) for name in EXPLICIT])


def model_path() -> str:
    """Where the nudenet wheel put 320n.onnx (found without importing nudenet)."""
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nudenet package (which ships 320n.onnx) is not installed")
    return os.path.join(next(iter(spec.submodule_search_locations)), "320n.onnx")


@dataclass(frozen=True, slots=True)
class Result:
    score: float  # highest explicit-class probability, 0..1
    labels: tuple[str, ...]  # explicit classes at or over the threshold
    classes: dict[str, float]  # every class's highest probability (for diagnostics and tests)


def prepare(im: pyvips.Image) -> np.ndarray:
    """An upright pyvips image → the model's input tensor (1, 3, 320, 320) float32."""
    im = im.autorot()
    if max(im.width, im.height) != SIZE:
        im = im.thumbnail_image(SIZE, height=SIZE)
    im = rgb8(im)
    im = im.embed(0, 0, SIZE, SIZE, extend="black")
    arr = np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8, shape=(SIZE, SIZE, 3))
    return (arr.transpose(2, 0, 1)[np.newaxis].astype(np.float32)) / np.float32(255.0)


def prepare_buffer(buf: bytes) -> np.ndarray:
    """Encoded image bytes → the input tensor, decoding with shrink-on-load."""
    im = pyvips.Image.thumbnail_buffer(buf, SIZE, height=SIZE, option_string="fail_on=error")
    return prepare(im)


def rgb8(im: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB, three bands, alpha flattened onto black."""
    if im.interpretation not in ("srgb", "b-w") or im.format != "uchar":
        im = im.colourspace("srgb")
    if im.hasalpha():
        im = im.flatten(background=[0] * (im.bands - 1))
    if im.bands == 1:
        im = im.bandjoin([im, im])
    elif im.bands > 3:
        im = im.extract_band(0, n=3)
    return im.cast("uchar").copy(interpretation="srgb")


class Detector:
    """One onnxruntime session over 320n.onnx."""

    def __init__(self, path: str | None = None, threads: int = 1):
        import onnxruntime as ort  # imported here: image routes never pay for it

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(path or model_path(), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def class_scores(self, tensor: np.ndarray) -> np.ndarray:
        """(18,) highest probability of each class over all candidate boxes."""
        out = self.session.run(None, {self.input_name: tensor})[0]  # (1, 22, 2100)
        return out[0, 4:, :].max(axis=1)

    def score(self, tensors: list[np.ndarray], threshold: float) -> Result:
        """Score one image, or several (video frames, animation pages): the highest wins."""
        best = np.zeros(len(LABELS), dtype=np.float32)
        for tensor in tensors:
            best = np.maximum(best, self.class_scores(tensor))
        explicit = best[_EXPLICIT_IDX]
        labels = tuple(name for name, s in zip(EXPLICIT, explicit, strict=True) if s >= threshold)
        return Result(
            score=float(explicit.max()),
            labels=labels,
            classes={name: float(s) for name, s in zip(LABELS, best, strict=True)},
        )


_lock = threading.Lock()
_detector: Detector | None = None
_failed: str | None = None  # why loading failed; a failed load is not retried per request


def detector() -> Detector | None:
    """The worker's detector, loaded on first use (about 0.1 s) and kept; None
    when the model cannot be loaded (logged once: metadata is then answered
    with ``nsfw_score: null`` rather than failing)."""
    global _detector, _failed
    if _detector is None and _failed is None:
        with _lock:
            if _detector is None and _failed is None:
                try:
                    _detector = Detector()
                except Exception as exc:
                    _failed = f"{type(exc).__name__}: {exc}"
                    log.error("NSFW model unavailable, nsfw_score will be null: %s", _failed)
    return _detector
