"""/attachments/{channel_id}/{attachment_id}/{filename} over real HTTP, on both backends."""

from __future__ import annotations

import io
import os
import secrets
import threading
import time
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import requests

from . import avmedia, media


def _ids() -> tuple[str, str]:
    return str(secrets.randbelow(10**17) + 10**17), str(secrets.randbelow(10**18) + 10**18)


def put(server, filename: str, data: bytes, content_type: str | None = None) -> str:
    channel, attachment = _ids()
    server.put("cdn", f"attachments/{channel}/{attachment}/{filename}", data, content_type)
    return f"/attachments/{channel}/{attachment}/{quote(filename)}"


def disposition(header: str) -> tuple[str, str, str]:
    """(kind, filename fallback, filename* decoded) from a Content-Disposition header."""
    kind, _, rest = header.partition(";")
    fallback = exact = ""
    rest = rest.strip()
    while rest:
        name, _, rest = rest.partition("=")
        name = name.strip()
        if rest.startswith('"'):
            i, value = 1, ""
            while rest[i] != '"':
                if rest[i] == "\\":
                    i += 1
                value += rest[i]
                i += 1
            rest = rest[i + 1 :].lstrip("; ")
        else:
            value, _, rest = rest.partition(";")
            rest = rest.strip()
        if name == "filename":
            fallback = value
        elif name == "filename*":
            charset, _, encoded = value.partition("''")
            assert charset == "UTF-8"
            exact = unquote(encoded, encoding="utf-8", errors="strict")
    return kind.strip(), fallback, exact


def assert_error(r, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Cache-Control"] == "no-store"


def test_passthrough_is_byte_exact_with_ranges(server):
    data = os.urandom(300_000)
    path = put(server, "blob.bin", data, "application/octet-stream")
    r = server.get(path)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Last-Modified" in r.headers and r.headers["ETag"].startswith('"')
    part = server.get(path, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    tail = server.get(path, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    assert_error(server.get(path, headers={"Range": f"bytes={len(data)}-"}), 416)
    assert server.get(path, headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    head = server.head(path)
    assert head.status_code == 200 and head.content == b"" and head.headers["Content-Length"] == str(len(data))


def test_video_and_audio_seek(server):
    mp4 = avmedia.video(160, 120, frames=5)
    path = put(server, "clip.mp4", mp4, "video/mp4")
    r = server.get(path)
    assert r.status_code == 200 and r.content == mp4 and r.headers["Content-Type"] == "video/mp4"
    kind, fallback, exact = disposition(r.headers["Content-Disposition"])
    assert (kind, fallback, exact) == ("inline", "clip.mp4", "clip.mp4")
    part = server.get(path, headers={"Range": "bytes=32-95"})
    assert part.status_code == 206 and part.content == mp4[32:96]
    assert server.get(path + "?width=100").content == mp4  # video ignores image sizing without format
    m4a = avmedia.audio(0.5)
    apath = put(server, "song.m4a", m4a, "audio/mp4")
    r = server.get(apath, headers={"Range": "bytes=0-11"})
    assert r.status_code == 206 and r.content == m4a[:12] and r.headers["Content-Type"] == "audio/mp4"


def test_video_poster(server):
    mp4 = avmedia.video(320, 240, frames=10)
    path = put(server, "movie.mp4", mp4, "video/mp4")
    r = server.get(path + "?format=png&width=160")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/png"
    im = media.decode(r.content)
    assert (im.width, im.height) == (160, 120)
    red, green, _ = im.getpoint(10, 10)[:3]
    assert red > 200 and green < 60  # the first frame is red
    assert disposition(r.headers["Content-Disposition"])[2] == "movie.png"
    again = server.get(path + "?format=png&width=160")
    assert again.headers["X-Cache"] == "HIT" and again.content == r.content
    webm = avmedia.video(96, 64, frames=3, container="webm", codec="libvpx-vp9")
    r = server.get(put(server, "clip.webm", webm) + "?format=jpeg&width=48&height=48&fit=cover")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    im = media.decode(r.content)
    assert (im.width, im.height) == (48, 48)
    assert_error(server.get(put(server, "tone.m4a", avmedia.audio(0.3), "audio/mp4") + "?format=png"), 400)


def test_image_transforms_are_cached(server):
    path = put(server, "photo.jpg", media.jpeg(800, 600), "image/jpeg")
    r = server.get(path + "?width=200")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/jpeg"
    im = media.decode(r.content)
    assert (im.width, im.height) == (200, 150)
    assert r.headers["X-Cache"] == "MISS"
    again = server.get(path + "?width=200")
    assert again.headers["X-Cache"] == "HIT" and again.content == r.content
    webp = server.get(path + "?format=webp&size=64&download=true")
    assert webp.headers["Content-Type"] == "image/webp"
    assert disposition(webp.headers["Content-Disposition"]) == ("attachment", "photo.webp", "photo.webp")
    im = media.decode(webp.content)
    assert max(im.width, im.height) == 64
    original = server.get(path)  # nothing asked: the stored bytes
    assert original.content == media.jpeg(800, 600)


def test_animated_gif_stays_a_still_unless_asked(server):
    gif = media.animation(frames=4)
    path = put(server, "anim.gif", gif, "image/gif")
    assert server.get(path).content == gif
    still = server.get(path + "?width=60")
    assert still.status_code == 200 and media.pages(still.content) == 1
    moving = server.get(path + "?width=60&animated=true")
    assert media.pages(moving.content) == 4
    assert server.get(path + "?width=60&animated=false").content == still.content


@pytest.mark.parametrize("query", ["animated=false", "animated=0", "animated=false&quality=lossless"])
def test_animated_false_alone_is_not_a_transform(server, query):
    """`animated=false` is the default: alone it asks for nothing and the stored bytes are streamed."""
    jpeg = media.jpeg(800, 600, q=75)
    for name, data, ctype in (("photo.jpg", jpeg, "image/jpeg"), ("anim.gif", media.animation(frames=4), "image/gif")):
        path = put(server, name, data, ctype)
        r = server.get(f"{path}?{query}")
        assert r.status_code == 200 and r.content == data, name
        assert "X-Cache" not in r.headers  # streamed from storage, not a transform
        r = server.get(f"{path}?{query}", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == data[10:20]


@pytest.mark.parametrize(
    "name",
    ['quote "marks" and \\ backslash.txt', "résumé – final.pdf", "日本語のファイル.png", "emoji 😀.txt",
     "semi;colon,comma=eq%25.txt", "plus+and'apostrophe.txt"],
)
def test_download_filenames_survive(server, name):
    path = put(server, name, b"hello", "text/plain")
    r = server.get(path + "?download=true")
    assert r.status_code == 200, r.text
    kind, fallback, exact = disposition(r.headers["Content-Disposition"])
    assert kind == "attachment" and exact == name
    assert fallback.isascii() and len(fallback) == len(name)
    r.headers["Content-Disposition"].encode("ascii")  # the header itself is pure ASCII
    inline = server.get(path)
    assert disposition(inline.headers["Content-Disposition"])[:1] == ("inline",)
    assert server.get(path + "?download=false").headers["Content-Disposition"].startswith("inline")
    assert_error(server.get(path + "?download=yes-please"), 400)


@pytest.mark.parametrize(
    "filename",
    ["..", ".", "%2E%2E", "..%2Fetc%2Fpasswd", "a%2Fb.txt", "nul%00.txt", "ctl%01.txt", "tab%09.txt",
     "del%7F.txt", "c1%C2%85.txt", "bad%FF.txt", "x" * 256, "%C3%A9" * 128],
)
def test_bad_filenames_are_400(server, filename):
    assert_error(server.get(f"/attachments/1234/5678/{filename}"), 400)


def test_bad_paths_are_400(server):
    for path in ("/attachments/12a/5678/x.png", "/attachments/1234/56789012345678901234567/x.png",
                 "/attachments/1234/5678/a/b.png", "/attachments/1234/5678/", "/attachments/1234/x.png"):
        assert_error(server.get(path), 400)
    assert_error(server.get("/attachments/1234/5678/x.png?width=5000"), 400)


def test_dots_inside_a_filename_are_a_name_not_a_path(server):
    server.put("cdn", "attachments/1234/5679/Screenshot...final..png", b"dots")
    r = server.get("/attachments/1234/5679/Screenshot...final..png")
    assert r.status_code == 200 and r.content == b"dots"


def test_longest_filename_is_accepted(server):
    assert_error(server.get("/attachments/1234/5678/" + "x" * 255), 404)
    assert_error(server.get("/attachments/1234/5678/" + "%C3%A9" * 127), 404)  # 254 bytes


@pytest.mark.parametrize(
    ("filename", "stored_type", "body"),
    [
        ("page.html", "text/html", b"<html><script>alert(document.cookie)</script></html>"),
        ("image.svg", "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("feed.xml", "application/xml", b"<?xml version='1.0'?><x/>"),
        ("app.js", "text/javascript", b"alert(1)"),
        ("page.xhtml", "application/xhtml+xml", b"<html xmlns='http://www.w3.org/1999/xhtml'/>"),
        ("untyped", None, b"<!DOCTYPE html><html><script>alert(1)</script>"),
    ],
)
def test_active_types_are_sandboxed_downloads(server, filename, stored_type, body):
    path = put(server, filename, body, stored_type)
    r = server.get(path)
    assert r.status_code == 200 and r.content == body
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert r.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_html_named_like_an_image_is_never_html(server):
    path = put(server, "cat.png", b"<html><script>alert(1)</script></html>", "image/png")
    r = server.get(path)
    assert r.status_code == 200
    assert "html" not in r.headers["Content-Type"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_content_type_from_bytes_when_the_store_says_nothing_useful(server):
    png = media.png(20, 20)
    r = server.get(put(server, "picture.html", png))  # a PNG named .html: the bytes decide
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["Content-Disposition"].startswith("inline;")
    assert "Content-Security-Policy" not in r.headers
    mp4 = avmedia.video(64, 48, frames=2)
    r = server.get(put(server, "noext", mp4, "binary/octet-stream"))
    assert r.headers["Content-Type"] == "video/mp4" and r.content == mp4
    r = server.get(put(server, "notes.txt", b"just text", "text/plain; charset=utf-8"))
    assert r.headers["Content-Type"].startswith("text/plain") and r.headers["Content-Disposition"].startswith("inline")


def test_missing_attachment_is_404(server):
    assert_error(server.get("/attachments/1/2/missing.png"), 404)
    assert_error(server.get("/attachments/1/2/missing.png?width=10"), 404)


# -- the memory proof: a 200 MiB attachment through one worker ----------------------------------

SIZE = 200 * 1024 * 1024
MARKS = {0: b"START", SIZE // 2: b"MIDDLE", SIZE - 3: b"END"}


class ZeroFile(io.RawIOBase):
    """200 MiB of zeros with markers, generated as read (an upload that never exists whole)."""

    def __init__(self) -> None:
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), SIZE - self.pos)
        chunk = bytearray(n)
        for off, mark in MARKS.items():
            lo, hi = max(off, self.pos), min(off + len(mark), self.pos + n)
            if lo < hi:
                chunk[lo - self.pos : hi - self.pos] = mark[lo - off : hi - off]
        b[:n] = chunk
        self.pos += n
        return n


def _store_big(server, key: str) -> None:
    if server.backend == "s3":
        from boto3.s3.transfer import TransferConfig

        cfg = TransferConfig(multipart_chunksize=16 * 1024 * 1024, max_concurrency=2)
        server.moto.client.upload_fileobj(io.BufferedReader(ZeroFile(), 1 << 20), "cdn", key,
                                          ExtraArgs={"ContentType": "video/mp4"}, Config=cfg)
    else:
        path = Path(server.storage_dir) / "cdn" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # sparse: only the markers take disk space
            f.truncate(SIZE)
            for off, mark in MARKS.items():
                f.seek(off)
                f.write(mark)



def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_200_mib_attachment_streams_in_bounded_memory(make_server, backend):
    server = make_server(backend, workers=1, threads=4)
    channel, attachment = _ids()
    key = f"attachments/{channel}/{attachment}/big.mp4"
    _store_big(server, key)
    path = f"/attachments/{channel}/{attachment}/big.mp4"
    server.get("/_health")
    assert server.get(path, headers={"Range": "bytes=0-4"}).content == b"START"  # warm the code path
    pid = server.worker_pid()
    baseline = _status_kib(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    peak = [0]
    stop = threading.Event()

    def sample() -> None:  # VmHWM already holds the peak; sampling VmRSS too reports it if clear_refs is denied
        while not stop.is_set():
            peak[0] = max(peak[0], _status_kib(pid, "VmRSS"))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    received = 0
    marks = {}
    try:
        with requests.get(server.url(path), stream=True, timeout=120) as r:
            assert r.status_code == 200
            assert int(r.headers["Content-Length"]) == SIZE
            for chunk in r.iter_content(1 << 20):
                for off, mark in MARKS.items():
                    if received <= off < received + len(chunk):
                        marks[off] = chunk[off - received : off - received + len(mark)]
                received += len(chunk)
        # two ranged reads of the middle, concurrently with nothing else: S3 ranged GET / seek
        mid = server.get(path, headers={"Range": f"bytes={SIZE // 2}-{SIZE // 2 + 5}"})
        assert mid.status_code == 206 and mid.content == b"MIDDLE"
    finally:
        stop.set()
        sampler.join()
    peak_kib = max(peak[0], _status_kib(pid, "VmHWM"))
    growth_mib = (peak_kib - baseline) / 1024
    print(f"\n[{backend}] 200 MiB attachment: worker RSS {baseline / 1024:.1f} MiB before, "
          f"peak {peak_kib / 1024:.1f} MiB, growth {growth_mib:.1f} MiB")
    assert received == SIZE
    assert marks == {off: mark for off, mark in MARKS.items() if off + len(mark) <= SIZE}
    assert growth_mib < 50
