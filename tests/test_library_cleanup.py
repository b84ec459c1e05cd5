"""Deleting what a committed change left behind never changes its answer (over real HTTP).

A crop, an avatar replaced, a delete: each commits its change first, then removes the bytes that
no record points at any more. A store that refuses that delete (made here with an immutable
file on the local backend) must not turn the committed change into a failure answer, which a
client would retry (a crop applied twice). The bytes stay for ``mediaproxy janitor``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import pyvips

from . import media

V2 = "/v2"


def immutable(path: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"this filesystem keeps no immutable flag: {done.stderr.strip()}")


def mutable(path: Path) -> None:
    subprocess.run(["chattr", "-i", str(path)], capture_output=True)


@pytest.fixture
def local(library):
    if library.server.backend != "local":
        pytest.skip("an undeletable object is made on the local backend")
    return library


def test_a_crop_whose_old_original_cannot_be_deleted_answers_success_once(local):
    m = local.upload(media.jpeg(80, 40), "wide.jpg").json()
    old = local.server.storage_dir / "library" / m["objectKey"]
    immutable(old)
    try:
        r = local.api("POST", "/api/v1/media/crop", json={"id": m["id"], "x": 0, "y": 0, "width": 80, "height": 40,
                                                          "rotate": 90})
        assert r.status_code == 200, r.text  # the crop happened: a 5xx here makes the client turn it again
        after = local.api("GET", f"/api/v1/media/{m['id']}").json()
        assert (after["width"], after["height"]) == (40, 80)
        assert after["objectKey"] != m["objectKey"]
        assert old.exists()  # left for the janitor; nothing serves it
        assert local.api("GET", f"/library/{m['objectKey']}", key=None).status_code == 404
    finally:
        mutable(old)


def test_a_replaced_avatar_that_cannot_be_deleted_still_answers_201(local):
    user = "avatar-cleanup-user"

    def put(data: bytes):
        return local.api("POST", f"{V2}/avatars", files={"file": ("a.png", data, "image/png")},
                         data={"externalUserId": user})

    first = put(media.png(16, 16))
    assert first.status_code == 201, first.text
    [old] = [p for p in (local.server.storage_dir / "library").rglob("*") if p.is_file() and first.json()["id"] in
             p.as_posix()]
    immutable(old)
    try:
        second = put(media.png(24, 24))
        assert second.status_code == 201, second.text
        assert second.json()["id"] != first.json()["id"]
        served = local.api("GET", f"{V2}/avatars/{user}")
        assert served.status_code == 200, served.text
        assert pyvips.Image.new_from_buffer(served.content, "").width == 24  # the new one is served
    finally:
        mutable(old)


def test_a_delete_whose_bytes_cannot_be_removed_answers_success(local):
    m = local.upload(media.jpeg(32, 32), "gone.jpg").json()
    path = local.server.storage_dir / "library" / m["objectKey"]
    immutable(path)
    try:
        r = local.api("DELETE", f"/api/v1/media/{m['id']}")
        assert r.status_code == 200 and r.json()["deleted"] is True, r.text
        assert local.api("GET", f"/api/v1/media/{m['id']}").status_code == 404
        assert local.api("GET", f"/library/{m['objectKey']}", key=None).status_code == 404
    finally:
        mutable(path)
