"""Both storage backends behind one interface: S3 (moto's server on loopback) and a local directory."""

from __future__ import annotations

import os
import secrets
import socket
import threading

import pytest

from mediaproxy.errors import BadRequest, NotFound, RangeNotSatisfiable, TooLarge, UpstreamError, UpstreamTimeout
from mediaproxy.settings import Settings
from mediaproxy.storage import iter_chunks
from mediaproxy.storage.local import LocalStorage
from mediaproxy.storage.s3 import S3Storage

from .server import AWS_ENV, free_port


def s3_storage(monkeypatch, endpoint: str, **env: str) -> S3Storage:
    for k, v in {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(k, v)
    settings = Settings.from_env({"MEDIAPROXY_SECRET_KEY": "x", "MEDIAPROXY_STORAGE": "s3",
                                  "MEDIAPROXY_S3_ADDRESSING_STYLE": "path", "MEDIAPROXY_S3_READ_TIMEOUT": "5", **env})
    return S3Storage(settings)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path, monkeypatch):
    if request.param == "local":
        return LocalStorage(tmp_path)
    moto = request.getfixturevalue("moto")
    return s3_storage(monkeypatch, moto.endpoint)


def key() -> str:
    return f"test/{secrets.token_hex(8)}"


DATA = bytes(range(256)) * 40  # 10240 bytes


def test_put_head_get(storage):
    k = key()
    storage.put("cdn", k, DATA, "image/png")
    info = storage.head("cdn", k)
    assert info.size == len(DATA) and info.last_modified > 0 and info.etag
    info2, body = storage.get("cdn", k)
    assert body == DATA and info2.size == len(DATA)
    assert int(info2.last_modified) == int(info.last_modified)
    # the tag follows the content
    storage.put("cdn", k, DATA[::-1])
    assert storage.head("cdn", k).etag != info.etag


@pytest.mark.parametrize("start, end, want", [(0, 9, DATA[:10]), (100, None, DATA[100:]), (10230, 99999, DATA[10230:]),
                                              (0, None, DATA), (5, 5, DATA[5:6])])
def test_open_ranges(storage, start, end, want):
    k = key()
    storage.put("cdn", k, DATA)
    info, body = storage.open("cdn", k, start, end)
    assert info.size == len(DATA)  # the whole object's size, not the range's
    assert b"".join(iter_chunks(body, 1000)) == want


def test_open_past_the_end(storage):
    k = key()
    storage.put("cdn", k, DATA)
    try:
        _, body = storage.open("cdn", k, len(DATA) + 10, None)
    except RangeNotSatisfiable:
        return  # S3 says so itself
    assert body.read() == b""


def test_not_found(storage):
    for call in (lambda: storage.head("cdn", key()), lambda: storage.get("cdn", key()),
                 lambda: storage.open("cdn", key(), 0, 10), lambda: storage.head("no-such-bucket", "x")):
        with pytest.raises(NotFound):
            call()


def test_too_large(storage):
    k = key()
    storage.put("cdn", k, DATA)
    with pytest.raises(TooLarge):
        storage.get("cdn", k, max_bytes=len(DATA) - 1)
    assert storage.get("cdn", k, max_bytes=len(DATA))[1] == DATA


def test_empty_object(storage):
    k = key()
    storage.put("cdn", k, b"")
    assert storage.head("cdn", k).size == 0
    assert storage.get("cdn", k)[1] == b""


def test_local_refuses_traversal(tmp_path):
    (tmp_path / "secret").write_bytes(b"s")
    st = LocalStorage(tmp_path / "root")
    for bad in ("../secret", "a/../../secret", "/etc/passwd", "a\0b", ""):
        with pytest.raises((BadRequest, NotFound)):
            st.head("cdn", bad)


def test_local_symlinks_stay_inside_the_bucket(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "b" / "dir").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "secret").write_bytes(b"s")
    (root / "b" / "dir" / "file").write_bytes(b"f")
    (root / "b" / "out").symlink_to(elsewhere / "secret")
    (root / "b" / "outdir").symlink_to(elsewhere)
    (root / "b" / "updir").symlink_to(root / "b" / "dir" / "..")
    (root / "b" / "alias").symlink_to(root / "b" / "dir")
    (root / "b" / "dir" / "deep").symlink_to(elsewhere)
    st = LocalStorage(root)
    for key in ("out", "outdir/secret", "dir/deep/secret", "alias/deep/secret"):
        with pytest.raises(BadRequest):
            st.head("b", key)
    assert st.get("b", "alias/file")[1] == b"f"  # a link that stays inside is followed
    assert st.get("b", "updir/dir/file")[1] == b"f"
    with pytest.raises(NotFound):
        st.head("b", "nothing/here")
    with pytest.raises(NotFound):
        st.head("b", "x" * 300)  # longer than a file name can be: no such object
    # the bucket directory itself may be a link (a bucket on another disk)
    (root / "c").symlink_to(elsewhere)
    assert st.get("c", "secret")[1] == b"s"


def test_local_directory_is_not_an_object(tmp_path):
    st = LocalStorage(tmp_path)
    (tmp_path / "cdn" / "dir").mkdir(parents=True)
    (tmp_path / "cdn" / "file").write_bytes(b"x")
    for k in ("dir", "file/below"):
        with pytest.raises(NotFound):
            st.head("cdn", k)
        with pytest.raises(NotFound):
            st.get("cdn", k)


def test_s3_unreachable_is_502(monkeypatch):
    st = s3_storage(monkeypatch, f"http://127.0.0.1:{free_port()}", MEDIAPROXY_S3_CONNECT_TIMEOUT="1")
    with pytest.raises(UpstreamError):
        st.head("cdn", "x")
    with pytest.raises(UpstreamError):
        st.get("cdn", "x")


class BlackHole:
    """Accepts TCP connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()


def test_s3_timeout_is_504(monkeypatch, black_hole):
    st = s3_storage(monkeypatch, f"http://127.0.0.1:{black_hole.port}", MEDIAPROXY_S3_READ_TIMEOUT="0.2")
    with pytest.raises(UpstreamTimeout):
        st.get("cdn", "x")
    with pytest.raises(UpstreamTimeout):
        st.head("cdn", "x")


def test_local_bucket_path_that_is_a_file(tmp_path):
    # A key below a path that is a file is simply missing; no OSError leaks.
    (tmp_path / "cdn").write_bytes(b"not a dir")
    st = LocalStorage(tmp_path)
    with pytest.raises(NotFound):
        st.get("cdn", "x")
    assert os.path.isfile(tmp_path / "cdn")


def test_put_stream_small_and_multipart(storage, monkeypatch):
    """A streamed put lands whole; bodies larger than one part go up as an S3 multipart upload."""
    import io

    from mediaproxy.storage import put_stream
    from mediaproxy.storage.s3 import S3Writer

    monkeypatch.setattr(S3Writer, "PART", 5 * 1024 * 1024)
    big = os.urandom(11 * 1024 * 1024 + 17)
    for body in (DATA, big, b""):
        k = key()
        n = put_stream(storage, "cdn", k, io.BytesIO(body), max_bytes=len(big), content_type="image/png")
        assert n == len(body)
        assert storage.get("cdn", k)[1] == body


def test_put_stream_over_the_limit_leaves_nothing(storage):
    import io

    from mediaproxy.storage import put_stream

    k = key()
    with pytest.raises(TooLarge):
        put_stream(storage, "cdn", k, io.BytesIO(DATA), max_bytes=len(DATA) - 1)
    with pytest.raises(NotFound):
        storage.head("cdn", k)
    assert list(storage.list("cdn", k)) == []


def test_writer_is_invisible_until_commit(storage):
    k = key()
    w = storage.writer("cdn", k, "image/png")
    w.write(DATA)
    with pytest.raises(NotFound):
        storage.head("cdn", k)
    w.commit()
    assert storage.get("cdn", k)[1] == DATA
    w2 = storage.writer("cdn", k)
    w2.write(b"other")
    w2.abort()
    w2.abort()
    assert storage.get("cdn", k)[1] == DATA  # an aborted write never touches the object


def test_list_and_delete(storage):
    from mediaproxy.storage import delete_prefix

    base = key()
    keys = {f"{base}/a", f"{base}/b/c.webp", f"{base}/b/d"}
    for k in keys:
        storage.put("cdn", k, DATA)
    storage.put("cdn", base + "x/other", DATA)
    assert set(storage.list("cdn", base + "/")) == keys
    assert set(storage.list("cdn", base + "/b/")) == {f"{base}/b/c.webp", f"{base}/b/d"}
    assert set(storage.list("cdn", base)) == keys | {base + "x/other"}
    storage.delete("cdn", f"{base}/a")
    storage.delete("cdn", f"{base}/a")  # a missing object is not an error
    assert delete_prefix(storage, "cdn", base + "/") == 2
    assert list(storage.list("cdn", base + "/")) == []
    assert storage.get("cdn", base + "x/other")[1] == DATA
    assert list(storage.list("no-such-bucket", "x")) == []
