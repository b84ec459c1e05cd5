"""Decompression bombs in the library over real HTTP (a real gunicorn and a real worker): the
placeholders (BlurHash, ThumbHash) decode through the origin's pipeline (its limits on the header
first, shrink-on-load, a transform place), so a tiny file claiming 65500x65500 pixels costs
nothing and delays no one. The library answers as the origin does for the same source: the bytes
are stored and served, a transform of them is 413, and they get no placeholders; an upload that
asks for variants of one is 413 and keeps nothing."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from mediaproxy.media import pipeline

from . import media
from .library import Stack, library_env

V2 = "/v2"


def jpeg_bomb(side: int = 65500) -> bytes:
    """A valid 8x8 JPEG whose frame header claims ``side`` x ``side`` pixels (~600 bytes)."""
    data = bytearray(media.jpeg(8, 8))
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    struct.pack_into(">HH", data, sof + 5, side, side)
    return bytes(data)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) the process has used: what work cost it, which the
    load of everything else on the machine moves far less than the wall time it took."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def stack(make_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bombs")
    srv = make_server("local", env=library_env(workdir), workers=1, threads=4)
    s = Stack(srv, workdir)
    yield s
    s.stop()


def test_the_placeholder_decode_checks_the_header_first():
    limits = pipeline.Limits(100_000_000, 100, 1_000_000_000)
    t0 = time.monotonic()
    with pytest.raises(pipeline.TooLarge):
        pipeline.decode_inside(jpeg_bomb(), 100, limits)
    assert time.monotonic() - t0 < 0.1
    im = pipeline.decode_inside(media.jpeg(640, 480), 100, limits)
    assert (im.width, im.height) == (100, 75)  # shrunk on load, never enlarged:
    im = pipeline.decode_inside(media.jpeg(40, 30), 100, limits)
    assert (im.width, im.height) == (40, 30)


def test_a_pixel_bomb_upload_is_stored_fast_without_placeholders(stack):
    bomb = jpeg_bomb()
    assert len(bomb) < 1024
    t0 = time.monotonic()
    for _ in range(3):
        r = stack.upload(bomb, filename="bomb.jpg")  # the /api/v1 API: the placeholders are made in the request
        assert r.status_code == 201, r.text
    took = time.monotonic() - t0
    m = r.json()
    assert took < 2, took  # 1.6-2.5 s of decoding each before
    assert (m["width"], m["height"]) == (65500, 65500)
    assert m["blurHash"] is None and m["thumbHash"] is None
    # as the origin answers for the same source: the bytes are served, a transform is 413
    r = stack.api("GET", f"/library/{m['objectKey']}", key=None)
    assert r.status_code == 200 and r.content == bomb
    assert stack.api("GET", f"/library/{m['objectKey']}?w=100", key=None).status_code == 413
    # asked for variants that cannot be made: a failure, and nothing of it kept (test_library_rollback.py)
    r = stack.upload(bomb, filename="bomb2.jpg", generateVariants=True)
    assert r.status_code == 413, r.text


def test_bombs_delay_no_other_upload(stack):
    """The /v2 image service's placeholders are made by the worker: 8 bombs queued ahead of a normal image
    cost it nothing. Cost as the worker's CPU time, from before the bombs are queued until the normal
    image, queued after them, has its placeholders: decoded, they took 1.6-2.5 s each on the worker's
    two threads (13 s or more for 8); refused from their headers, milliseconds. (The wall time this
    takes is the machine's load as much as the worker's work.)"""
    cpu0 = cpu_seconds(stack.worker.proc.pid)
    ids = []
    for i in range(8):
        r = stack.api("POST", f"{V2}/images", files={"file": (f"b{i}.jpg", jpeg_bomb(), "image/jpeg")})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    r = stack.api("POST", f"{V2}/images", files={"file": ("ok.jpg", media.jpeg(640, 480), "image/jpeg")})
    assert r.status_code == 201, r.text
    normal = r.json()["id"]
    deadline = time.monotonic() + 60  # a worker that never gets there, however loaded the machine
    while True:
        info = stack.api("GET", f"{V2}/images/{normal}", params={"info": "true"}).json()
        if info["blurHash"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    used = cpu_seconds(stack.worker.proc.pid) - cpu0
    assert info["blurHash"] and info["thumbHash"]
    assert used < 3, used  # 8 bombs decoded: 13 s or more
    for i in ids:
        info = stack.api("GET", f"{V2}/images/{i}", params={"info": "true"}).json()
        assert info["blurHash"] is None and info["width"] == 65500
