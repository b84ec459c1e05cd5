"""A synchronous upload's rendering holds no write lock, over real gunicorn on SQLite.

On SQLite the first write of a transaction takes the database's one write lock until the
transaction ends, and the library runs one transaction per request. A synchronous ``/api/v1``
upload with ``generateVariants`` therefore renders its variants and placeholders before it writes
its record: another client's write (a PATCH, a small upload) goes on while the variants render,
instead of waiting for them and for the commit behind them."""

from __future__ import annotations

import threading

import pytest
import pyvips

from . import media
from .conftest import start_library
from .server import eventually

FULL_SIZE = 8  # variants, each the whole image re-encoded: a rendering of several seconds


@pytest.fixture(scope="module")
def slow_variants(request, make_server, tmp_path_factory):
    """The local backend on SQLite, whose variants are all full size (slow to render)."""
    stack = start_library(request, make_server, tmp_path_factory, "local", {
        "MEDIAPROXY_VARIANTS": ",".join(f"full{i}=0" for i in range(FULL_SIZE)),
        "MEDIAPROXY_UPLOAD_MAX_BYTES": str(16 * 1024**2),
    }, worker=False)
    yield stack
    stack.stop()


def noise_jpeg(side: int) -> bytes:
    """Noise compresses badly: each full-size WebP of it is a long encode."""
    band = pyvips.Image.gaussnoise(side, side, mean=128, sigma=60).cast("uchar")
    return band.bandjoin([band.rot180(), band.fliphor()]).copy(interpretation="srgb").jpegsave_buffer(Q=80)


def test_a_write_goes_on_while_a_synchronous_upload_renders(slow_variants):
    lib = slow_variants
    other = lib.upload(media.png(64, 48), "other.png")
    assert other.status_code == 201, other.text
    answered: list[str] = []  # in the order the answers arrived
    slow: dict = {}

    def upload_slowly() -> None:
        slow["answer"] = lib.upload(noise_jpeg(1600), "noise.jpg", generateVariants=True)
        answered.append("slow upload")

    thread = threading.Thread(target=upload_slowly)
    thread.start()
    try:
        # its first variant is stored: the rendering is under way, FULL_SIZE - 1 more to go
        eventually(lambda: any(k.endswith("/full0.webp") for k in lib.stored_keys("acme/")), timeout=120)
        patched = lib.api("PATCH", f"/api/v1/media/{other.json()['id']}", json={"alt": "changed meanwhile"})
        answered.append("patch")
        small = lib.upload(media.png(64, 48), "small.png")
        answered.append("small upload")
    finally:
        thread.join(180)
    assert patched.status_code == 200 and patched.json()["alt"] == "changed meanwhile", patched.text
    assert small.status_code == 201, small.text
    assert slow["answer"].status_code == 201, slow["answer"].text
    assert len(slow["answer"].json()["variants"]) == FULL_SIZE
    # neither write waited for the rendering (and the commit after it)
    assert answered == ["patch", "small upload", "slow upload"]
