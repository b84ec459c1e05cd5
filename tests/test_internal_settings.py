"""The internal endpoints' settings, over real HTTP: the NSFW threshold and
switch, the frame-count bound, and a separate internal secret."""

from __future__ import annotations

import secrets

import pytest

from mediaproxy.media import nsfw, probe

from . import media
from .avclips import MP4, make
from .server import SECRET

LIMITS = probe.pipeline.Limits(100_000_000, 1000, 400_000_000)


@pytest.fixture(scope="module")
def image() -> bytes:
    return media.jpeg(640, 480)


@pytest.fixture(scope="module")
def model_score(image) -> float:
    """The score the model gives the image, computed here in-process."""
    meta = probe.image(image, LIMITS)
    return nsfw.detector().score([nsfw.prepare(im) for im in meta.frames], 0.5).score


def _put(server, data: bytes) -> str:
    key = f"t/{secrets.token_hex(8)}"
    server.put("uploads", key, data)
    return f"s3://uploads/{key}"


def test_endpoint_score_is_the_models_and_the_threshold_decides(make_server, image, model_score):
    # A threshold just under this image's own score flags it; the default (0.5) does not.
    assert 0.0 < model_score < 0.5
    low = make_server("local", env={"MEDIAPROXY_NSFW_THRESHOLD": str(model_score * 0.9)})
    high = make_server("local", env={"MEDIAPROXY_NSFW_THRESHOLD": str(min(1.0, model_score * 1.1))})
    for srv, detected in ((low, True), (high, False)):
        r = srv.post("/_metadata", json={"url": _put(srv, image)}, headers={"X-Internal-Secret": SECRET})
        m = r.json()
        assert m["nsfw_score"] == pytest.approx(model_score, abs=1e-5)
        assert m["nsfw_detected"] is detected
        assert (len(m["nsfw_labels"]) > 0) is detected
        assert set(m["nsfw_labels"]) <= set(nsfw.EXPLICIT)


def test_nsfw_can_be_switched_off(make_server, image):
    srv = make_server("local", env={"MEDIAPROXY_NSFW_ENABLED": "0"})
    m = srv.post("/_metadata", json={"url": _put(srv, image)}, headers={"X-Internal-Secret": SECRET}).json()
    assert (m["nsfw_score"], m["nsfw_detected"], m["nsfw_labels"]) == (None, None, None)
    assert m["width"] == 640 and isinstance(m["blurhash"], str)


def test_frame_count_bound_and_internal_secret(make_server):
    srv = make_server(
        "local", env={"MEDIAPROXY_MAX_FRAMES_COUNT": "3", "MEDIAPROXY_INTERNAL_SECRET": "internal-only-secret"}
    )
    url = _put(srv, make(MP4))
    ok = {"X-Internal-Secret": "internal-only-secret"}
    # The secret key no longer authenticates once an internal secret is set.
    wrong = {"X-Internal-Secret": SECRET}
    assert srv.post("/_frames", json={"video_url": url, "count": 3}, headers=wrong).status_code == 401
    r = srv.post("/_frames", json={"video_url": url, "count": 3}, headers=ok)
    assert r.status_code == 200 and len(r.json()["frames"]) == 3
    r = srv.post("/_frames", json={"video_url": url, "count": 4}, headers=ok)
    assert (r.status_code, r.text.strip()) == (400, "count must be 1..3")


def test_an_internal_secret_falling_back_to_the_secret_key_is_logged_loudly(make_server):
    """Without MEDIAPROXY_INTERNAL_SECRET the internal endpoints take MEDIAPROXY_SECRET_KEY: the
    master says so at WARNING in gunicorn's log, once; with a separate secret it says nothing."""
    from pathlib import Path

    warning = "WARNING: MEDIAPROXY_INTERNAL_SECRET is not set"
    srv = make_server("local")
    log = Path(srv.log.name).read_text()
    assert log.count(warning) == 1 and "[WARNING]" in log.split(warning)[0].rsplit("\n", 1)[-1], log
    assert SECRET not in log  # the warning names the setting, never its value
    srv.stop()
    srv = make_server("local", env={"MEDIAPROXY_INTERNAL_SECRET": secrets.token_hex(32)})
    assert warning not in Path(srv.log.name).read_text()
    srv.stop()
