"""POST /_metadata, /_thumbnail, /_frames over real HTTP: a gunicorn process on
both storage backends (moto's S3 on loopback, and a local directory), with
media generated here by pyvips and PyAV, every field checked against what
the file is known to be."""

from __future__ import annotations

import base64
import hashlib
import http.client
import secrets
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import pyvips

from . import media
from .avclips import MP3, MP4, MPEG4_PART2, OPUS, WEBM, Spec, frame_index, make, rotated_mp4
from .server import SECRET

AUTH = {"X-Internal-Secret": SECRET}
B83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
NULL_VIDEO = {"fps": None, "bitrate": None, "codec": None, "has_audio": False, "audio_codec": None}


# ---- fixtures and helpers -------------------------------------------------


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {
        "jpeg": media.jpeg(640, 480),
        "png": media.png(300, 200, alpha=True),
        "gif": media.animation(120, 90, frames=6, delay=70),
        "webp": media.webp(300, 200),
        "webp-animated": media.animation(64, 48, frames=4, delay=100, fmt="webp"),
        "avif": media.gradient(200, 100).heifsave_buffer(compression="av1", Q=60),
        "mp4": make(MP4),
        "webm": make(WEBM),
        "mp3": make(MP3),
        "opus": make(OPUS),
        "mp4-320": make(Spec("mp4", "libx264", None, width=320, height=180, seconds=2)),
        "mpeg4": make(MPEG4_PART2),
    }


def store(server, data: bytes, bucket: str = "uploads", ext: str = "") -> str:
    key = f"{secrets.token_hex(4)}/{secrets.token_hex(8)}{ext}"
    server.put(bucket, key, data)
    return f"s3://{bucket}/{key}"


def post(server, path: str, body=None, headers=None, **kw):
    return server.post(path, json=body, headers=AUTH if headers is None else headers, **kw)


def jpeg_of(data: bytes) -> pyvips.Image:
    im = pyvips.Image.new_from_buffer(data, "")
    assert im.get("vips-loader") == "jpegload_buffer"
    return im


def index_of(im: pyvips.Image) -> int:
    return frame_index(im.getpoint(im.width // 2, im.height // 2)[0])


def blurhash_dc(h: str) -> tuple[int, int, int]:
    v = 0
    for c in h[2:6]:
        v = v * 83 + B83.index(c)
    return v >> 16, (v >> 8) & 255, v & 255


def linear_mean(im: pyvips.Image) -> list[float]:
    """The image's mean colour averaged in linear light, as sRGB (BlurHash's DC term)."""
    if im.hasalpha():
        im = im.flatten(background=[0] * (im.bands - 1))
    lin = (im / 255.0) ** 2.2
    return [255 * (lin[b].avg() ** (1 / 2.2)) for b in range(3)]


# ---- /_metadata: every field against the truth ----------------------------

IMAGES = {
    "jpeg": dict(format="jpeg", mime_type="image/jpeg", width=640, height=480),
    "png": dict(format="png", mime_type="image/png", width=300, height=200),
    "webp": dict(format="webp", mime_type="image/webp", width=300, height=200),
    "avif": dict(format="avif", mime_type="image/avif", width=200, height=100),
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_metadata_still_images(server, files, name):
    data = files[name]
    r = post(server, "/_metadata", {"url": store(server, data), "type": "image"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    m = r.json()
    expected = {
        "type": "image",
        **IMAGES[name],
        "size": len(data),
        "content_hash": hashlib.sha256(data).hexdigest(),
        "duration": None,
        "animated": False,
        "frame_count": 1,
        **NULL_VIDEO,
        "nsfw_detected": False,
        "nsfw_labels": [],
    }
    assert {k: m[k] for k in expected} == expected
    assert 0.0 <= m["nsfw_score"] < 0.1
    truth = linear_mean(media.decode(data))
    assert all(abs(a - b) <= 10 for a, b in zip(blurhash_dc(m["blurhash"]), truth, strict=True)), (m, truth)


@pytest.mark.parametrize(
    "name, fmt, size, frames, delay_ms",
    [("gif", "gif", (120, 90), 6, 70), ("webp-animated", "webp", (64, 48), 4, 100)],
)
def test_metadata_animated_images(server, files, name, fmt, size, frames, delay_ms):
    data = files[name]
    m = post(server, "/_metadata", {"url": store(server, data, bucket="cdn")}).json()
    duration = frames * delay_ms / 1000
    assert (m["type"], m["format"], m["mime_type"]) == ("image", fmt, f"image/{fmt}")
    assert (m["width"], m["height"], m["animated"], m["frame_count"]) == (*size, True, frames)
    assert m["duration"] == pytest.approx(duration)
    assert m["fps"] == pytest.approx(frames / duration, abs=1e-3)
    assert (m["codec"], m["bitrate"], m["has_audio"], m["audio_codec"]) == (None, None, False, None)
    assert m["size"] == len(data) and m["content_hash"] == hashlib.sha256(data).hexdigest()
    assert m["nsfw_detected"] is False and 0.0 <= m["nsfw_score"] < 0.1
    # Frame 0 is (0, 255, 100): the placeholder is of the first frame.
    assert all(abs(a - b) <= 6 for a, b in zip(blurhash_dc(m["blurhash"]), (0, 255, 100), strict=True))


VIDEOS = {
    "mp4": dict(format="mp4", mime_type="video/mp4", codec="h264", audio_codec="aac"),
    "webm": dict(format="webm", mime_type="video/webm", codec="vp9", audio_codec="opus"),
}


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_metadata_video(server, files, name):
    data = files[name]
    m = post(server, "/_metadata", {"url": store(server, data), "type": "video"}).json()
    expected = {
        "type": "video",
        **VIDEOS[name],
        "size": len(data),
        "content_hash": hashlib.sha256(data).hexdigest(),
        "width": 160,
        "height": 90,
        "animated": None,
        "frame_count": 30,
        "fps": 10.0,
        "has_audio": True,
        "nsfw_detected": False,
        "nsfw_labels": [],
    }
    assert {k: m[k] for k in expected} == expected
    assert m["duration"] == pytest.approx(3.0, abs=0.05)
    assert m["bitrate"] == pytest.approx(len(data) * 8 / m["duration"], rel=0.03)
    assert 0.0 <= m["nsfw_score"] < 0.1
    # The placeholder is of the first frame, colour (0, 255, 128).
    assert all(abs(a - b) <= 8 for a, b in zip(blurhash_dc(m["blurhash"]), (0, 255, 128), strict=True))


AUDIO = {
    "mp3": dict(format="mp3", mime_type="audio/mpeg", codec="mp3", audio_codec="mp3"),
    "opus": dict(format="ogg", mime_type="audio/ogg", codec="opus", audio_codec="opus"),
}


@pytest.mark.parametrize("name", sorted(AUDIO))
def test_metadata_audio(server, files, name):
    data = files[name]
    m = post(server, "/_metadata", {"url": store(server, data), "type": "audio"}).json()
    expected = {
        "type": "audio",
        **AUDIO[name],
        "size": len(data),
        "content_hash": hashlib.sha256(data).hexdigest(),
        "width": None,
        "height": None,
        "animated": None,
        "frame_count": None,
        "fps": None,
        "has_audio": True,
        "blurhash": None,
        "nsfw_score": None,
        "nsfw_detected": None,
        "nsfw_labels": None,
    }
    assert {k: m[k] for k in expected} == expected
    assert m["duration"] == pytest.approx(3.0, abs=0.05)
    assert m["bitrate"] == pytest.approx(len(data) * 8 / m["duration"], rel=0.03)


def test_metadata_type_is_only_a_hint(server, files):
    m = post(server, "/_metadata", {"url": store(server, files["jpeg"]), "type": "video"}).json()
    assert m["type"] == "image" and m["format"] == "jpeg"


def test_metadata_refusals(server, files):
    def status(body):
        r = post(server, "/_metadata", body)
        assert r.headers["Content-Type"].startswith("text/plain")
        assert r.headers["Cache-Control"] == "no-store"
        return r.status_code, r.text.strip()

    assert status({"url": "s3://elsewhere/a/b.png"}) == (400, "url: bucket 'elsewhere' is not a configured bucket")
    assert status({"url": "s3://uploads/no/such/object.png"})[0] == 404
    assert status({"url": "s3://uploads/../etc/passwd"}) == (400, "url: invalid object key")
    assert status({"url": "s3://uploads"})[0] == 400
    assert status({"url": "file:///etc/passwd"})[0] == 400
    assert status({"url": "ftp://example.com/a.png"})[0] == 400
    assert status({"url": store(server, files["jpeg"]), "type": "document"}) == (
        400, "type must be one of image, video, audio")
    assert status({"url": store(server, files["jpeg"][:2000])}) == (400, "undecodable image")
    assert status({"url": store(server, b"just some text, not media" * 20)}) == (400, "undecodable media")
    code, text = status({"url": store(server, files["mpeg4"])})
    assert code == 400 and "unsupported video codec: mpeg4" in text


# ---- /_thumbnail ------------------------------------------------------------


def test_thumbnail_defaults_never_enlarge(server, files):
    r = post(server, "/_thumbnail", {"video_url": store(server, files["mp4"])})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/jpeg"
    assert int(r.headers["Content-Length"]) == len(r.content)
    im = jpeg_of(r.content)
    assert (im.width, im.height) == (160, 90)  # a 160×90 video in the 320×180 default box
    assert index_of(im) == 0 and r.headers["X-Frame-Timestamp"] == "0.000"


@pytest.mark.parametrize(
    "box, size", [(None, (320, 180)), ((100, 100), (100, 56)), ((64, 64), (64, 36)), ((320, 90), (160, 90))]
)
def test_thumbnail_fits_inside_the_box(server, files, box, size):
    body = {"video_url": store(server, files["mp4-320"]), "timestamp": 0.5}
    if box:
        body.update(width=box[0], height=box[1])
    im = jpeg_of(post(server, "/_thumbnail", body).content)
    assert (im.width, im.height) == size
    assert index_of(im) == 5


def test_thumbnail_and_metadata_of_a_rotated_phone_video(server):
    data = rotated_mp4(make(Spec("mp4", "libx264", None, seconds=1)), 90)
    url = store(server, data)
    im = jpeg_of(post(server, "/_thumbnail", {"video_url": url}).content)
    assert (im.width, im.height) == (90, 160)  # upright, inside 320×180, not enlarged
    m = post(server, "/_metadata", {"url": url}).json()
    assert (m["width"], m["height"]) == (90, 160)


@pytest.mark.parametrize("name", ["mp4", "webm"])
@pytest.mark.parametrize("ts, frame", [(0, 0), (1.05, 11), (2.0, 20), (2.95, 29), (3.5, 29), (10_000, 29)])
def test_thumbnail_timestamp(server, files, name, ts, frame):
    r = post(server, "/_thumbnail", {"video_url": store(server, files[name]), "timestamp": ts})
    assert r.status_code == 200, r.text
    assert index_of(jpeg_of(r.content)) == frame
    assert float(r.headers["X-Frame-Timestamp"]) == pytest.approx(frame / 10)


def test_thumbnail_refusals(server, files):
    def status(body):
        r = post(server, "/_thumbnail", body)
        return r.status_code, r.text.strip()

    url = store(server, files["mp4"])
    assert status({"video_url": store(server, files["mp4"], bucket="cdn")}) == (
        400, "video_url must be in the uploads bucket (s3://uploads/...)")
    assert status({"video_url": "s3://elsewhere/v.mp4"})[0] == 400
    assert status({"video_url": "https://example.com/v.mp4"})[0] == 400
    assert status({"video_url": "s3://uploads/no/such.mp4"})[0] == 404
    assert status({"video_url": store(server, files["jpeg"])})[0] == 400
    assert status({"video_url": store(server, files["mp3"])}) == (400, "no video stream")
    assert status({"video_url": store(server, files["mpeg4"])})[0] == 400
    assert status({"video_url": store(server, files["mp4"][: len(files["mp4"]) // 2])})[0] == 400
    assert status({"video_url": store(server, secrets.token_bytes(5000))})[0] == 400
    assert status({"video_url": url, "timestamp": -1}) == (400, "timestamp must be 0..604800")
    assert status({"video_url": url, "timestamp": "1"}) == (400, "timestamp must be a number")
    for bad in (0, 4097, 1.5, "320", True, [320]):
        assert status({"video_url": url, "width": bad})[0] == 400, bad
        assert status({"video_url": url, "height": bad})[0] == 400, bad
    assert status({"video_url": url, "width": 320.0})[0] == 200  # an integral number is an integer


# ---- /_frames ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["mp4", "webm"])
def test_frames_evenly_spaced(server, files, name):
    r = post(server, "/_frames", {"video_url": store(server, files[name]), "count": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    duration = body["duration"]
    assert duration == pytest.approx(3.0, abs=0.02)
    frames = body["frames"]
    assert [f["timestamp"] for f in frames] == [round(i * duration / 4, 3) for i in range(4)]
    for f in frames:
        im = jpeg_of(base64.b64decode(f["data"], validate=True))
        assert (im.width, im.height) == (160, 90)
        # the first frame at or after the timestamp: frames are 0.1 s apart
        expected = -(-round(f["timestamp"] * 1000) // 100)
        assert index_of(im) == expected, f["timestamp"]
        assert f["frame_timestamp"] == pytest.approx(expected / 10)


def test_frames_size_and_count_bounds(server, files):
    url = store(server, files["mp4-320"])
    body = post(server, "/_frames", {"video_url": url, "count": 3, "width": 80, "height": 80}).json()
    assert len(body["frames"]) == 3
    for f in body["frames"]:
        im = jpeg_of(base64.b64decode(f["data"]))
        assert (im.width, im.height) == (80, 45)
    one = post(server, "/_frames", {"video_url": url, "count": 1}).json()["frames"]
    assert len(one) == 1 and one[0]["timestamp"] == 0.0
    for bad in (0, -1, 51, 2.5, "3", None, False):
        r = post(server, "/_frames", {"video_url": url, "count": bad})
        assert r.status_code == 400, bad
    r = post(server, "/_frames", {"video_url": url, "count": 51})
    assert r.text.strip() == "count must be 1..50"
    r = post(server, "/_frames", {"video_url": url})
    assert r.text.strip() == "missing field: count"
    assert post(server, "/_frames", {"video_url": url, "count": 50}).status_code == 200


def test_frames_refusals(server, files):
    assert post(server, "/_frames", {"video_url": store(server, files["mp4"], "cdn"), "count": 2}).status_code == 400
    r = post(server, "/_frames", {"video_url": store(server, files["opus"]), "count": 2})
    assert (r.status_code, r.text.strip()) == (400, "no video stream")
    r = post(server, "/_frames", {"video_url": store(server, files["png"]), "count": 2})
    assert r.status_code == 400


# ---- authentication and request bodies --------------------------------------

ENDPOINTS = ["/_metadata", "/_thumbnail", "/_frames"]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET[:-1], SECRET.upper()])
def test_wrong_or_missing_secret_is_401(server, path, secret):
    headers = {} if secret is None else {"X-Internal-Secret": secret}
    # Even a malformed body: authentication comes first.
    r = server.post(path, data=b"{not json", headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 401
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{not json", "malformed JSON body"),
        (b'{"url": "s3://uploads/a"', "malformed JSON body"),
        (b"", "missing JSON body"),
        (b"[]", "JSON body must be an object"),
        (b'"s3://uploads/a"', "JSON body must be an object"),
        (b"\xff\xfe{}", "malformed JSON body"),
    ],
)
def test_malformed_body_is_400(server, path, raw, reason):
    r = server.post(path, data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert (r.status_code, r.text.strip()) == (400, reason)


@pytest.mark.parametrize(
    "path, body, reason",
    [
        ("/_metadata", {}, "missing field: url"),
        ("/_metadata", {"url": None}, "missing field: url"),
        ("/_metadata", {"url": 5}, "url must be a string"),
        ("/_metadata", {"url": ["s3://uploads/a"]}, "url must be a string"),
        ("/_metadata", {"url": ""}, "url must not be empty"),
        ("/_thumbnail", {"timestamp": 1}, "missing field: video_url"),
        ("/_thumbnail", {"video_url": {"bucket": "uploads"}}, "video_url must be a string"),
        ("/_frames", {"count": 3}, "missing field: video_url"),
    ],
)
def test_missing_or_mistyped_field_is_400(server, path, body, reason):
    r = post(server, path, body)
    assert (r.status_code, r.text.strip()) == (400, reason)


def test_oversized_body_is_413_and_get_is_405(server):
    r = server.post("/_metadata", data=b'{"url": "' + b"a" * 70_000 + b'"}', headers=AUTH)
    assert r.status_code == 413
    assert server.get("/_metadata", headers=AUTH).status_code == 405


class KeepAlive:
    """One raw keep-alive connection: requests written by hand, answers parsed one at a time."""

    def __init__(self, server):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)

    def send(self, method: str, path: str, headers: dict, body: bytes = b"", chunked: bool = False) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers.items()]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
            step = 16 * 1024
            body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + step]), body[i:i + step])
                            for i in range(0, len(body), step)) + b"0\r\n\r\n"
        else:
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def answer(self) -> http.client.HTTPResponse:
        resp = http.client.HTTPResponse(self.sock, method="POST")
        resp.begin()
        resp.body = resp.read()  # type: ignore[attr-defined]
        return resp

    def closed_cleanly(self) -> bool:
        """The server ended the connection with a FIN, not a reset (nothing more to read)."""
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("size", [60_000, 70_000, 900_000])
@pytest.mark.parametrize("auth", [True, False])
def test_refused_body_keeps_the_connection_usable(server, size, chunked, auth):
    """A body over the cap (413), or sent without the secret (401): one the event loop read whole
    (up to MEDIAPROXY_SMALL_BODY_MAX) is dropped from memory and the kept-alive connection carries
    the next request; a larger one is not read by a thread at all, the answer says
    ``Connection: close`` and the connection ends with a FIN, and the next request goes on a new
    one. (Unread, it made gunicorn drop a connection it had just announced as kept alive, and the
    client's next request met a reset.)"""
    conn = KeepAlive(server)
    try:
        body = b'{"url": "s3://uploads/' + b"a" * size + b'"}'
        conn.send("POST", "/_metadata", AUTH if auth else {}, body, chunked=chunked)
        r = conn.answer()
        small = size < 64 * 1024 - 1024
        assert r.status in ((400, 413) if auth else (401,))  # 400: the key in that URL is too long
        assert r.getheader("Connection") == ("keep-alive" if small else "close")
        assert r.getheader("Cache-Control") == "no-store"
        if not small:
            assert conn.closed_cleanly()
            conn.close()
            conn = KeepAlive(server)
        conn.send("GET", "/_health", {})
        r = conn.answer()
        assert (r.status, r.body) == (200, b"OK")
        conn.send("POST", "/_metadata", AUTH, b"{}", chunked=chunked)  # a small refused body: still kept alive
        r = conn.answer()
        assert (r.status, r.body.strip()) == (400, b"missing field: url")
        assert r.getheader("Connection") == "keep-alive"
        conn.send("GET", "/_health", {})
        assert conn.answer().status == 200
    finally:
        conn.close()


@pytest.mark.parametrize("auth", [True, False])
def test_huge_body_is_refused_with_connection_close(server, auth):
    """A declared body too large to be worth reading: the answer comes at once, says so, and the connection
    ends with a FIN (the client is told not to reuse it, and sees no reset)."""
    conn = KeepAlive(server)
    try:
        head = ["POST /_metadata HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 50000000"]
        if auth:
            head.append(f"X-Internal-Secret: {SECRET}")
        conn.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b'{"url": "s3://uploads/' + b"a" * 1000)
        r = conn.answer()
        assert r.status == (413 if auth else 401) and r.getheader("Connection") == "close"
        assert conn.closed_cleanly()
    finally:
        conn.close()
    assert server.get("/_health").status_code == 200


# ---- external http(s) URLs through the guarded fetcher ----------------------


class _Origin(BaseHTTPRequestHandler):
    files: dict[str, tuple[str, bytes]] = {}

    def do_GET(self):
        found = self.files.get(self.path)
        if found is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        ctype, data = found
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origin(files) -> Iterator[str]:
    _Origin.files = {
        "/photo.png": ("image/png", files["png"]),
        "/clip.webm": ("video/webm", files["webm"]),
        "/noise": ("application/octet-stream", files["mp3"]),
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_metadata_of_external_urls(local_server, files, origin):
    m = post(local_server, "/_metadata", {"url": origin + "/photo.png"}).json()
    assert (m["format"], m["width"], m["height"], m["size"]) == ("png", 300, 200, len(files["png"]))
    assert m["content_hash"] == hashlib.sha256(files["png"]).hexdigest()
    assert m["nsfw_detected"] is False and isinstance(m["blurhash"], str)
    m = post(local_server, "/_metadata", {"url": origin + "/clip.webm"}).json()
    assert (m["type"], m["format"], m["codec"], m["frame_count"]) == ("video", "webm", "vp9", 30)
    assert m["content_hash"] == hashlib.sha256(files["webm"]).hexdigest()
    m = post(local_server, "/_metadata", {"url": origin + "/noise"}).json()
    assert (m["type"], m["codec"]) == ("audio", "mp3")
    assert post(local_server, "/_metadata", {"url": origin + "/missing.png"}).status_code == 404


def test_external_urls_follow_the_network_rules(make_server, origin):
    guarded = make_server("local", env={"MEDIAPROXY_FETCH_ALLOW_CIDRS": ""})
    r = post(guarded, "/_metadata", {"url": origin + "/photo.png"})
    assert r.status_code == 403, r.text
    r = post(guarded, "/_metadata", {"url": "http://169.254.169.254/latest/meta-data/"})
    assert r.status_code == 403


def test_video_over_the_pixel_cap_is_413_before_decoding(make_server, files):
    capped = make_server("local", env={"MEDIAPROXY_MAX_PIXELS": str(160 * 90 - 1)})  # the clips are 160x90
    url = store(capped, files["mp4"])
    for path, body in (("/_thumbnail", {"video_url": url}), ("/_frames", {"video_url": url, "count": 3}),
                       ("/_metadata", {"url": url})):
        r = post(capped, path, body)
        assert r.status_code == 413, (path, r.status_code, r.text)
        assert "pixel limit" in r.text and r.headers["Cache-Control"] == "no-store"


def test_frames_and_metadata_of_a_video_with_no_stored_duration(server):
    # A WebM muxed live (as a browser's MediaRecorder writes it) has no Duration element.
    url = store(server, make(Spec("webm", "libvpx-vp9", None), container_options={"live": "1"}), ext=".webm")
    r = post(server, "/_frames", {"video_url": url, "count": 5})
    assert r.status_code == 200, r.text
    frames = r.json()["frames"]
    assert [f["timestamp"] for f in frames] == pytest.approx([0.0, 0.6, 1.2, 1.8, 2.4], abs=0.03)
    assert [index_of(jpeg_of(base64.b64decode(f["data"]))) for f in frames] == [0, 6, 12, 18, 24]
    meta = post(server, "/_metadata", {"url": url}).json()
    assert meta["duration"] == pytest.approx(3.0, abs=0.11)
    assert meta["frame_count"] == 30
