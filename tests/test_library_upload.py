"""Large uploads, the throughput work: the S3 writer's part pipeline and the local
writer's helper thread keep the bytes and the SHA-256 exact, tell a failing part on the request,
and a client that goes away mid-upload leaves nothing stored. Over real HTTP (gunicorn, moto)."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import threading
import time

import pytest

from . import media

MIB = 1024 * 1024
LIMIT = 24 * MIB
BOUNDARY = "uploadtestboundary"


@pytest.fixture(scope="module", params=["local", "s3"])
def big(request, make_server, tmp_path_factory):
    from .conftest import start_library

    stack = start_library(request, make_server, tmp_path_factory, request.param,
                          extra={"MEDIAPROXY_UPLOAD_MAX_BYTES": str(LIMIT)}, worker=False)
    yield stack
    stack.stop()


def body_of(size: int) -> bytes:
    """A PNG by its first bytes, random after them: ``size`` bytes."""
    head = media.png(8, 8)
    return head + os.urandom(size - len(head))


def form_head(filename: str = "big.png") -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


FORM_TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


def open_upload(stack, length: int) -> socket.socket:
    """A raw POST /api/v1/media/upload whose headers announce ``length`` body bytes."""
    sock = socket.create_connection(("127.0.0.1", stack.server.port), timeout=60)
    sock.sendall((f"POST /api/v1/media/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {stack.key}\r\n"
                  f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n"
                  "Connection: close\r\n\r\n").encode())
    return sock


def pending_uploads(stack) -> set[str]:
    """The multipart uploads in progress in the library bucket (S3), as upload ids."""
    if stack.server.backend != "s3":
        return set()
    resp = stack.server.moto.client.list_multipart_uploads(Bucket="library")
    return {u["UploadId"] for u in resp.get("Uploads", [])}


def temp_files(stack) -> list[str]:
    root = stack.server.storage_dir / "library"
    return [p.name for p in root.rglob(".*.tmp")] if root.is_dir() else []


def state(stack) -> tuple:
    return (stack.api("GET", "/api/v1/media/list").json()["total"], set(stack.stored_keys("acme/")),
            pending_uploads(stack))


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.parametrize("size", [5 * MIB, 13 * MIB + 17])
def test_a_large_upload_is_stored_exactly(big, size):
    """Several parts (reused buffers, the last one shorter) or exactly one: the same bytes, the same hash."""
    data = body_of(size)
    before = pending_uploads(big)
    r = big.upload(data, "big.png")
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["size"] == size and m["mimeType"] == "image/png"
    assert m["canonicalUri"].endswith("/sha256/" + hashlib.sha256(data).hexdigest())
    if big.server.backend == "s3":
        stored = big.server.moto.client.get_object(Bucket="library", Key=m["objectKey"])["Body"].read()
    else:
        stored = (big.server.storage_dir / "library" / m["objectKey"]).read_bytes()
    assert stored == data
    assert pending_uploads(big) == before
    assert temp_files(big) == []


def test_a_client_gone_mid_upload_leaves_nothing(big):
    before = state(big)
    sock = open_upload(big, len(form_head()) + 12 * MIB + len(FORM_TAIL))
    sock.sendall(form_head())
    data = body_of(7 * MIB)  # past the first 5 MiB part on S3, past the synchronous first MiB locally
    sock.sendall(data)
    if big.server.backend == "s3":  # the first part has gone up: a multipart upload exists
        assert wait_for(lambda: len(pending_uploads(big) - before[2]) == 1)
    time.sleep(0.3)
    sock.close()
    assert wait_for(lambda: state(big) == before and temp_files(big) == []), (state(big), before)


def test_a_truncated_form_is_400_and_stores_nothing(big):
    """All the bytes announced arrive, but the form ends inside the file: not an upload."""
    before = state(big)
    payload = form_head() + body_of(6 * MIB)
    r = big.api("POST", "/api/v1/media/upload", data=payload,
                headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status_code == 400, r.text
    assert "ends inside the file" in r.json()["error"]
    # (S3: the multipart upload is aborted on the part thread, after the request)
    assert wait_for(lambda: state(big) == before and temp_files(big) == []), (state(big), before)


def test_a_body_cut_after_the_file_is_400_and_stores_nothing(big):
    """The file part arrives whole, a field after it only in part, then the client stops sending:
    the field would read as empty, so the upload is refused and nothing is kept."""
    before = state(big)
    field = f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\nhalf a cap".encode()
    head = form_head() + body_of(2 * MIB) + field
    sock = open_upload(big, len(head) + 1000)
    sock.sendall(head)
    sock.shutdown(socket.SHUT_WR)  # the body ends 1,000 bytes short
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"ended after" in answer
    assert wait_for(lambda: state(big) == before and temp_files(big) == []), (state(big), before)


def test_a_failing_part_is_told_on_the_request_and_aborted(big):
    """The multipart upload is aborted behind the server's back while parts go up: the next
    part fails on the helper thread, the request answers 502, and nothing is left."""
    if big.server.backend != "s3":
        pytest.skip("parts are S3's")
    before = state(big)
    # 11 MiB: whichever part fails, its error is told with at most 2 MiB (DRAIN_MAX) still to
    # come, so the server reads the whole body and its answer is not lost to a reset
    sock = open_upload(big, len(form_head()) + 11 * MIB + len(FORM_TAIL))
    try:
        sock.sendall(form_head())
        sock.sendall(body_of(6 * MIB))
        assert wait_for(lambda: len(pending_uploads(big) - before[2]) == 1)
        (upload_id,) = pending_uploads(big) - before[2]
        key = next(u["Key"] for u in big.server.moto.client.list_multipart_uploads(Bucket="library")["Uploads"]
                   if u["UploadId"] == upload_id)
        big.server.moto.client.abort_multipart_upload(Bucket="library", Key=key, UploadId=upload_id)
        sock.sendall(os.urandom(5 * MIB) + FORM_TAIL)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    status = answer.split(b"\r\n", 1)[0]
    assert status == b"HTTP/1.1 502 Bad Gateway", answer[:300]
    assert b"\"error\":\"storage" in answer
    assert wait_for(lambda: state(big) == before)


def test_local_writer_error_on_its_thread_is_raised_and_cleans_up(tmp_path):
    """A write failing on the local writer's helper thread (a full disk) is raised to the caller,
    by a later write or by commit, and the temp file is removed."""
    from mediaproxy.storage.local import LocalStorage

    st = LocalStorage(tmp_path)
    w = st.writer("b", "k")

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            self.f.close()

    chunk = b"x" * (256 * 1024)
    for _ in range(4):  # the first MiB is written at once
        w.write(chunk)
    w._f = Full(w._f)
    with pytest.raises(OSError) as got:
        for _ in range(64):
            w.write(chunk)
        w.commit()
    assert got.value.errno == errno.ENOSPC
    w.abort()
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("size", [2 * 5 * MIB + 3 * MIB + 123, 3 * 5 * MIB])
def test_s3_writer_holds_the_next_part_while_one_is_in_flight(moto, monkeypatch, size):
    """Slow parts: the hold buffer fills up, write waits, the sent buffer takes the held bytes.
    The object is exact, and at most one part buffer and the hold buffer ever exist."""
    from .test_storage import s3_storage

    st = s3_storage(monkeypatch, moto.endpoint)
    sent = []
    real = st.write_client.upload_part

    def slow_part(**kw):
        time.sleep(0.3)
        sent.append(id(kw["Body"]))
        return real(**kw)

    monkeypatch.setattr(st.write_client, "upload_part", slow_part)
    data = os.urandom(size)
    w = st.writer("library", f"held/{size}", "image/png")
    view = memoryview(data)
    held = 0
    for i in range(0, size, 256 * 1024):
        w.write(view[i:i + 256 * 1024])
        held = max(held, w._h)
    assert held == w.HOLD  # the parts were slower than the writes: the hold filled up
    w.commit()
    assert moto.client.get_object(Bucket="library", Key=f"held/{size}")["Body"].read() == data
    assert len(sent) == -(-size // w.PART)
    assert len(set(sent[:-1])) == 1  # every whole part went up from the same (reused) buffer


def test_s3_writer_abort_does_not_wait_for_a_part_in_flight(moto, monkeypatch):
    """A request whose client went away aborts at once, even with a part held up by a slow store:
    the abort is queued behind the part on the helper thread, and nothing is left afterwards."""
    from .test_storage import s3_storage

    st = s3_storage(monkeypatch, moto.endpoint)
    real = st.write_client.upload_part
    release = threading.Event()

    def stalled_part(**kw):
        release.wait(10)
        return real(**kw)

    monkeypatch.setattr(st.write_client, "upload_part", stalled_part)
    w = st.writer("library", "stalled/abort", "image/png")
    w.write(os.urandom(5 * MIB + 1000))  # one whole part goes up, and stalls
    assert w._inflight is not None
    t = time.monotonic()
    w.abort()
    assert time.monotonic() - t < 1.0
    release.set()

    def pending() -> list:
        return [u for u in moto.client.list_multipart_uploads(Bucket="library").get("Uploads", [])
                if u["Key"] == "stalled/abort"]

    assert wait_for(lambda: pending() == []), pending()
    from mediaproxy.storage import s3

    assert wait_for(lambda: s3._DETACHED._value == s3.DETACHED_ABORTS)  # its slot is given back

    # with every slot taken, abort waits for its part, as before (no pile of parts left behind)
    release.clear()
    for _ in range(s3.DETACHED_ABORTS):
        s3._DETACHED.acquire()
    try:
        w = st.writer("library", "stalled/abort2", "image/png")
        w.write(os.urandom(5 * MIB + 1000))
        threading.Timer(0.5, release.set).start()
        w.abort()
        assert release.is_set()  # it returned only once its part could go on
    finally:
        for _ in range(s3.DETACHED_ABORTS):
            s3._DETACHED.release()
    assert [u for u in moto.client.list_multipart_uploads(Bucket="library").get("Uploads", [])
            if u["Key"] == "stalled/abort2"] == []


def test_s3_writes_have_their_own_timeout_and_retries(moto, monkeypatch):
    from .test_storage import s3_storage

    st = s3_storage(monkeypatch, moto.endpoint, MEDIAPROXY_S3_WRITE_TIMEOUT="7")
    write, read = st.write_client.meta.config, st.client.meta.config
    # botocore retries no write: storage/s3.py's _write_call retries fast failures only, never a timeout
    assert write.read_timeout == 7 and write.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert read.read_timeout == 5 and read.retries == {"total_max_attempts": 1, "mode": "standard"}
