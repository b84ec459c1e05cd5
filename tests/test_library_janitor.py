"""Uploads while S3 is frozen (SIGSTOP), and `mediaproxy janitor`, over real HTTP.

Each test runs its own moto (a frozen one must not stall the session's) and its own server, so
the janitor sees no other stack's objects in the bucket."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager

import pytest
import requests

from . import media
from .library import MEDIAPROXY, Stack, Worker, library_env
from .server import ROOT, MotoS3, Server
from .test_library_rollback import counts

MIB = 1024 * 1024
WRITE_TIMEOUT = 3.0
GRACE = 6  # seconds: longer than the janitor command takes to start on a loaded machine
# what an upload or a job's output may be in flight for, made short enough for GRACE (with WRITE_TIMEOUT)
SHORT_FLIGHT = {"MEDIAPROXY_BODY_TIMEOUT": "2", "MEDIAPROXY_JOB_RETRY_BUDGET": "2", "MEDIAPROXY_JOB_LEASE": "1"}


@contextmanager
def own_stack(tmp_path, backend: str, extra: dict | None = None):
    moto = MotoS3() if backend == "s3" else None
    srv = None
    try:
        env = library_env(tmp_path, {"MEDIAPROXY_UPLOAD_MAX_BYTES": str(40 * MIB),
                                     "MEDIAPROXY_S3_WRITE_TIMEOUT": str(WRITE_TIMEOUT), **(extra or {})})
        srv = Server(backend, tmp_path, moto, workers=1, threads=8, env=env)
        yield Stack(srv, tmp_path, worker=False), moto
    finally:
        if moto is not None:
            os.kill(moto.proc.pid, signal.SIGCONT)
        if srv is not None:
            srv.stop()
        if moto is not None:
            moto.stop()


def janitor(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MEDIAPROXY, "janitor", *args], cwd=ROOT, env=stack.env, capture_output=True, text=True,
                          timeout=60)


def incomplete(stack: Stack, moto: MotoS3 | None) -> list[str]:
    if moto is not None:
        return [u["Key"] for u in moto.client.list_multipart_uploads(Bucket="library").get("Uploads", [])]
    root = stack.server.storage_dir / "library"
    return [p.name for p in root.rglob(".*.tmp")]


def form(boundary: str, filename: str) -> tuple[bytes, bytes]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head, f"\r\n--{boundary}--\r\n".encode()


def test_uploads_while_s3_is_frozen_fail_within_the_write_timeout_and_leave_nothing(tmp_path):
    with own_stack(tmp_path, "s3", {"MEDIAPROXY_S3_READ_TIMEOUT": "2"}) as (stack, moto):
        big = media.png(16, 16) + os.urandom(12 * MIB)  # three parts: a multipart upload
        boundary = uuid.uuid4().hex
        head, tail = form(boundary, "big.png")
        first_part_sent = threading.Event()
        frozen_at: list[float] = []
        answers: dict[str, tuple[int, float]] = {}

        def big_body():
            yield head + big[:6 * MIB]  # the first part goes up while the store answers...
            first_part_sent.wait(30)
            yield big[6 * MIB:]  # ...the rest while it is frozen
            yield tail

        def send_big():
            r = requests.post(stack.base + "/api/v1/media/upload", data=big_body(), timeout=120,
                              headers={**stack.auth, "Content-Type": f"multipart/form-data; boundary={boundary}"})
            answers["big"] = (r.status_code, time.monotonic() - frozen_at[0])

        def send_small():
            t = time.monotonic()
            r = stack.upload(media.jpeg(200, 100), "small.jpg", timeout=120)
            answers["small"] = (r.status_code, time.monotonic() - t)

        sender = threading.Thread(target=send_big)
        sender.start()
        deadline = time.monotonic() + 30
        while not any(moto.client.list_parts(Bucket="library", Key=u["Key"], UploadId=u["UploadId"]).get("Parts")
                      for u in moto.client.list_multipart_uploads(Bucket="library").get("Uploads", [])):
            assert time.monotonic() < deadline, "the first part never arrived"
            time.sleep(0.05)
        os.kill(moto.proc.pid, signal.SIGSTOP)
        frozen_at.append(time.monotonic())
        first_part_sent.set()
        small = threading.Thread(target=send_small)
        small.start()
        small.join(60)
        sender.join(60)
        # both fail within about one write timeout (it was three, plus the abort's)
        for name, (status, took) in answers.items():
            assert status in (503, 504), (name, status)
            assert took < 2 * WRITE_TIMEOUT + 1, (name, took)  # the old code: 3 attempts, over 9 s
        assert len(answers) == 2
        time.sleep(max(0.0, frozen_at[0] + 10 - time.monotonic()))  # frozen for 10 s in all
        os.kill(moto.proc.pid, signal.SIGCONT)
        time.sleep(2)  # what the store had received while frozen, it handles now
        assert counts(stack.env)["Media"] == 0 and counts(stack.env)["StoredObject"] == 0  # nothing recorded
        assert stack.api("GET", "/api/v1/media/list").json()["total"] == 0
        # the janitor: every incomplete upload and every object without a record, once past the grace
        time.sleep(1)
        r = janitor(stack, "--grace", "1", "--force")  # shorter than the in-flight bound: nothing is in flight
        assert r.returncode == 0, r.stdout + r.stderr
        assert incomplete(stack, moto) == []
        assert stack.stored_keys("") == []
        # the store is back: an upload succeeds, and the janitor leaves it alone
        r = stack.upload(media.jpeg(200, 100), "after.jpg", generateVariants=True)
        assert r.status_code == 201, r.text
        time.sleep(1.1)
        assert janitor(stack, "--grace", "1", "--force").returncode == 0
        assert requests.get(r.json()["url"], timeout=30).status_code == 200
        assert len(stack.stored_keys("")) == 6


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_janitor_removes_old_leftovers_only(tmp_path, backend):
    with own_stack(tmp_path, backend, SHORT_FLIGHT) as (stack, moto):
        m = stack.upload(media.jpeg(200, 100), "kept.jpg", generateVariants=True).json()
        kept = sorted(stack.stored_keys(""))
        assert len(kept) == 6
        stack.server.put("library", "acme/lost/orphan.jpg", b"left by a failed request")
        if moto is not None:
            moto.client.create_multipart_upload(Bucket="library", Key="acme/lost/never-finished.jpg")
        else:
            folder = stack.server.storage_dir / "library" / "acme" / "lost"
            (folder / ".never-finished.jpg.1234.abcdef12.tmp").write_bytes(b"half an upload")
        time.sleep(GRACE + 0.5)
        r = janitor(stack, "--grace", str(GRACE), "--dry-run")
        assert r.returncode == 0, r.stderr
        assert "orphan library/acme/lost/orphan.jpg" in r.stdout
        assert "would remove 1 incomplete upload(s) and 1 orphan(s)" in r.stdout
        assert len(incomplete(stack, moto)) == 1 and "acme/lost/orphan.jpg" in stack.stored_keys("")  # dry
        # an object whose record is being written: younger than the grace, left alone. When the janitor
        # takes longer than the grace to reach it (a machine loaded far past its cores), the object is
        # old by then and its removal is right: that try says nothing, and another object is made.
        # S3 gives an object's LastModified to the second, down: there it may look a second older.
        resolution = 1 if moto is not None else 0
        for attempt in range(3):
            young = f"acme/lost/young-{attempt}.jpg"
            stack.server.put("library", young, b"bytes whose record is being written")
            put_at = time.monotonic()
            r = janitor(stack, "--grace", str(GRACE))
            slow = time.monotonic() - put_at >= GRACE - resolution
            assert r.returncode == 0, r.stderr
            if attempt == 0 and not slow:
                assert "removed 1 incomplete upload(s) and 1 orphan(s)" in r.stdout
            if not slow or young in stack.stored_keys(""):
                break
        assert incomplete(stack, moto) == []
        assert sorted(stack.stored_keys("")) == sorted([*kept, young])
        assert requests.get(m["url"], timeout=30).status_code == 200
        # the default grace (a day) leaves the young one alone too
        r = janitor(stack)
        assert r.returncode == 0 and "removed 0 incomplete upload(s) and 0 orphan(s)" in r.stdout


def test_janitor_refuses_a_grace_shorter_than_what_is_in_flight(tmp_path):
    """A grace shorter than an upload's body or a job's retries may take would delete bytes whose
    record is still coming: refused (from --grace or MEDIAPROXY_JANITOR_GRACE), unless --force."""
    with own_stack(tmp_path, "local") as (stack, _):
        stack.server.put("library", "acme/lost/orphan.jpg", b"left by a failed request, or still in flight")
        time.sleep(1.5)
        for r in (janitor(stack, "--grace", "1"),
                  subprocess.run([MEDIAPROXY, "janitor"], cwd=ROOT, env={**stack.env, "MEDIAPROXY_JANITOR_GRACE": "1"},
                                 capture_output=True, text=True, timeout=60)):
            assert r.returncode == 2, r.stdout + r.stderr
            # the retry budget (600 s) and the lease (30 s): longer than the body timeout and a write
            assert "shorter than an upload or a job's output can be in flight (630 s:" in r.stderr
            assert "acme/lost/orphan.jpg" in stack.stored_keys("")  # nothing removed
        r = janitor(stack, "--grace", "1", "--force")
        assert r.returncode == 0, r.stderr
        assert "removed 0 incomplete upload(s) and 1 orphan(s)" in r.stdout
        assert "acme/lost/orphan.jpg" not in stack.stored_keys("")


def test_a_write_retries_fast_failures_never_a_timeout():
    """In process: a refused connection or a 503 is sent again (3 attempts in all); a timeout, or a
    body the store stopped reading (ConnectionClosedError over a TimeoutError), is raised at once."""
    from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
    from urllib3.exceptions import ProtocolError

    from mediaproxy.errors import UpstreamTimeout
    from mediaproxy.storage import s3

    def failing(*errors):
        calls = []

        def call(**kw):
            calls.append(kw)
            if len(calls) <= len(errors):
                raise errors[len(calls) - 1]
            return {"ETag": "x"}
        return call, calls

    refused = EndpointConnectionError(endpoint_url="http://s3")
    busy = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
    call, calls = failing(refused, busy)
    assert s3._write_call(call, Key="k") == {"ETag": "x"} and len(calls) == 3
    call, calls = failing(refused, refused, refused)
    with pytest.raises(EndpointConnectionError):
        s3._write_call(call, Key="k")
    assert len(calls) == 3
    denied = ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")
    call, calls = failing(denied)
    with pytest.raises(ClientError):
        s3._write_call(call, Key="k")
    assert len(calls) == 1
    # as botocore raises it (the error it wraps in ``kwargs``)
    stalled_send = ConnectionClosedError(endpoint_url="http://s3",
                                         error=ProtocolError("Connection aborted.", TimeoutError("timed out")))
    for stalled in (ReadTimeoutError(endpoint_url="http://s3"), stalled_send):
        call, calls = failing(stalled)
        with pytest.raises(type(stalled)) as raised:
            s3._write_call(call, Key="k")
        assert len(calls) == 1
        assert isinstance(s3._write_error(raised.value), UpstreamTimeout)


def test_janitor_keeps_a_presigned_upload_waiting_for_its_check_and_removes_a_late_put(tmp_path):
    """On S3 a presigned PUT lands under the incoming key, and the bytes move to the record's key
    when a worker completes the upload, which may be long after (no worker runs here at first):
    the janitor keeps them while their record waits, and removes what a still-valid URL puts
    there after the check."""
    with own_stack(tmp_path, "s3", SHORT_FLIGHT) as (stack, _):
        r = stack.api("POST", "/media", json={"filename": "late.png", "contentType": "image/png"},
                      headers={"X-User-Id": "u1"})
        assert r.status_code == 201, r.text
        body = r.json()
        png = media.png(40, 30)
        put = requests.put(body["uploadUrl"], data=png, headers=body["headers"], timeout=30)
        assert put.status_code == 200, put.text
        [waiting] = stack.stored_keys("incoming/")
        time.sleep(GRACE + 0.5)
        r = janitor(stack, "--grace", str(GRACE))
        assert r.returncode == 0 and "removed 0 incomplete upload(s) and 0 orphan(s)" in r.stdout, r.stdout + r.stderr
        assert stack.stored_keys("incoming/") == [waiting]
        path, user = f"/media/{body['media']['id']}", {"X-User-Id": "u1"}
        assert stack.api("GET", path, headers=user).json()["status"] == "pending_upload"  # a read completes nothing
        worker = Worker(stack.env, tmp_path / "worker.log")  # its sweep finds the bytes and completes the upload
        try:
            seen = stack.uploaded(path, user)
        finally:
            worker.stop()
        assert seen["status"] == "uploaded" and requests.get(seen["publicDownloadUrl"], timeout=30).content == png
        assert stack.stored_keys("incoming/") == []  # moved to the record's key
        late = requests.put(body["uploadUrl"], data=media.png(8, 8), headers=body["headers"], timeout=30)
        assert late.status_code == 200  # S3 takes it: the URL is still valid
        time.sleep(GRACE + 0.5)
        r = janitor(stack, "--grace", str(GRACE))
        assert r.returncode == 0 and "removed 0 incomplete upload(s) and 1 orphan(s)" in r.stdout, r.stdout + r.stderr
        assert stack.stored_keys("incoming/") == []
        assert requests.get(seen["publicDownloadUrl"], timeout=30).content == png
