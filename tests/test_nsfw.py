"""The NSFW detector: the real 320n.onnx from the nudenet wheel on onnxruntime.

What can be known without shipping explicit images: images with no person in
them (flat colours, gradients, stripes, noise) must score low, the model's
raw output must be what a YOLOv8 detector of nudenet's 18 classes gives, the
input tensor must be built the way nudenet builds it, and the score must come
from the pixels (different images, different scores; a frame list scores as
its highest frame).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import pyvips

from mediaproxy.media import nsfw

from . import media


@pytest.fixture(scope="module")
def detector() -> nsfw.Detector:
    return nsfw.detector()


def solid(w: int, h: int, rgb: tuple[int, int, int]) -> pyvips.Image:
    return pyvips.Image.black(w, h).new_from_image(list(rgb)).cast("uchar").copy(interpretation="srgb")


def noise(w: int, h: int, seed: int = 1) -> pyvips.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return pyvips.Image.new_from_memory(arr.tobytes(), w, h, 3, "uchar").copy(interpretation="srgb")


PLAIN = {
    "white": lambda: solid(320, 240, (255, 255, 255)),
    "black": lambda: solid(320, 240, (0, 0, 0)),
    "skin-tone flat": lambda: solid(400, 300, (224, 172, 140)),
    "gradient": lambda: media.gradient(640, 480),
    "stripes": lambda: media.bands(300, 300, [(255, 0, 0), (0, 255, 0), (0, 0, 255)]),
    "noise": lambda: noise(256, 256),
}


def test_model_is_the_nudenet_file():
    path = nsfw.model_path()
    assert path.endswith(os.path.join("nudenet", "320n.onnx"))
    assert os.path.getsize(path) > 1_000_000  # the real weights, not a stub


def test_raw_output_is_a_yolov8_detector_of_the_18_classes(detector):
    x = nsfw.prepare(media.gradient(320, 320))
    out = detector.session.run(None, {detector.input_name: x})[0]
    # 4 box coordinates + 18 classes, for 40² + 20² + 10² anchors at 320×320.
    assert out.shape == (1, 4 + len(nsfw.LABELS), 2100)
    probs = out[0, 4:, :]
    assert probs.min() >= 0.0 and probs.max() <= 1.0
    assert len(set(nsfw.EXPLICIT)) == 5 and set(nsfw.EXPLICIT) <= set(nsfw.LABELS)


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_images_score_low(detector, name):
    result = detector.score([nsfw.prepare(PLAIN[name]())], threshold=0.5)
    assert 0.0 <= result.score < 0.1, (name, result)
    assert result.labels == ()


def test_score_comes_from_the_pixels(detector):
    scores = {name: detector.score([nsfw.prepare(make())], 0.5).score for name, make in PLAIN.items()}
    assert len({round(s, 6) for s in scores.values()}) == len(scores), scores
    again = detector.score([nsfw.prepare(PLAIN["gradient"]())], 0.5).score
    assert again == scores["gradient"]  # deterministic


def test_several_frames_score_as_the_highest(detector):
    frames = [nsfw.prepare(make()) for make in (PLAIN["black"], PLAIN["gradient"], PLAIN["noise"])]
    each = [detector.score([f], 0.5) for f in frames]
    together = detector.score(frames, 0.5)
    assert together.score == max(r.score for r in each)
    for name in nsfw.LABELS:
        assert together.classes[name] == max(r.classes[name] for r in each)


def test_labels_are_the_explicit_classes_over_the_threshold(detector):
    result = detector.score([nsfw.prepare(PLAIN["gradient"]())], 0.5)
    top = max(nsfw.EXPLICIT, key=lambda c: result.classes[c])
    assert result.score == result.classes[top]
    low = detector.score([nsfw.prepare(PLAIN["gradient"]())], threshold=result.score)
    assert top in low.labels
    assert all(low.classes[c] >= result.score for c in low.labels)


def test_prepare_pads_bottom_right_like_nudenet():
    # 200×100 white: resized to 320×160 at the top left, black below.
    x = nsfw.prepare(solid(200, 100, (255, 255, 255)))
    assert x.shape == (1, 3, 320, 320) and x.dtype == np.float32
    assert np.allclose(x[0, :, :158, :], 1.0)
    assert np.allclose(x[0, :, 162:, :], 0.0)
    # 100×200 red: 160×320 on the left, channels in RGB order.
    x = nsfw.prepare(solid(100, 200, (255, 0, 0)))
    assert np.allclose(x[0, 0, :, :158], 1.0) and np.allclose(x[0, 1:, :, :158], 0.0)
    assert np.allclose(x[0, :, :, 162:], 0.0)


def test_prepare_handles_alpha_grey_and_small_images():
    grey = pyvips.Image.black(50, 40).new_from_image([128]).cast("uchar").copy(interpretation="b-w")
    x = nsfw.prepare(grey)
    assert x.shape == (1, 3, 320, 320)
    assert np.allclose(x[0, :, :250, :], 128 / 255)  # enlarged to 320 wide, like nudenet
    rgba = solid(64, 64, (255, 255, 255)).bandjoin(0).copy(interpretation="srgb")
    x = nsfw.prepare(rgba)
    assert np.allclose(x, 0.0)  # fully transparent → flattened onto black
    x = nsfw.prepare_buffer(media.png(300, 200, alpha=True))
    assert x.shape == (1, 3, 320, 320)


def test_detector_is_loaded_once():
    assert nsfw.detector() is nsfw.detector()


def test_a_model_that_cannot_load_gives_null_scores_and_is_not_retried(monkeypatch):
    from mediaproxy.media import pipeline, probe

    calls = []

    def missing_model() -> str:
        calls.append(1)
        return "/nonexistent/320n.onnx"

    monkeypatch.setattr(nsfw, "_detector", None)
    monkeypatch.setattr(nsfw, "_failed", None)
    monkeypatch.setattr(nsfw, "model_path", missing_model)
    limits = pipeline.Limits(10**8, 100, 10**9)
    for _ in range(2):
        meta = probe.analyse(probe.image(media.png(64, 48), limits), 0.5)
        assert meta.nsfw_score is None and meta.nsfw_detected is None
        assert meta.blurhash  # the rest of the metadata is still answered
    assert calls == [1]
