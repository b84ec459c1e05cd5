"""The internal endpoints: POST /_metadata, /_thumbnail, /_frames.

Callers are the platform's own services. Every request carries
``X-Internal-Secret`` (compared in constant time; missing or wrong is 401)
and a JSON object body; malformed JSON, a missing required field or a field
of the wrong type is a 400 with a plain-text reason. See docs/internal.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import math
import threading

import falcon
import orjson
import pyvips

from ..context import Context
from ..errors import BadRequest, TooLarge, Unauthorized
from ..http import body_in_memory, close_connection
from ..media import probe, video
from ..storage import iter_chunks
from ..storage.reader import ObjectReader

MAX_BODY = 64 * 1024
# A refused body (over MAX_BODY, or sent without the secret) up to this size is
# read and discarded, so that the connection stays usable; beyond it the answer
# says "Connection: close" and the connection ends.
DRAIN_BODY = 1024 * 1024
MAX_DIMENSION = 4096
MAX_TIMESTAMP = 7 * 24 * 3600.0
MAX_KEY_BYTES = 1024
JPEG_QUALITY = 80
SMALL_OBJECT = 1024 * 1024


# ---- request parsing ------------------------------------------------------


def check_secret(req: falcon.Request, secret: str) -> None:
    given = req.get_header("X-Internal-Secret")
    if not given or not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        raise Unauthorized("missing or wrong X-Internal-Secret")


def body_stream(req: falcon.Request):
    """The request body: bounded by Content-Length, or the server's de-chunked stream
    (Falcon's ``bounded_stream`` reads nothing of a chunked body)."""
    return req.bounded_stream if req.content_length is not None else req.stream


def discard_body(req: falcon.Request, already: int = 0) -> None:
    """Before refusing a request: read and drop the rest of its body, so the
    kept-alive connection carries the client's next request cleanly; a body
    larger than ``DRAIN_BODY`` is not read and the connection is closed
    after the answer (``Connection: close``) instead."""
    length = req.content_length
    if length == 0 or (length is None and req.get_header("Transfer-Encoding") is None):
        return
    if body_in_memory(req) is False:  # still on the network: a thread would wait for it
        close_connection(req)
        return
    if length is not None and length > DRAIN_BODY:
        close_connection(req)
        return
    left = DRAIN_BODY - already
    while left > 0:
        chunk = body_stream(req).read(min(left, 64 * 1024))
        if not chunk:
            return  # all of it read
        left -= len(chunk)
    close_connection(req)


def read_body(req: falcon.Request) -> dict:
    """The JSON object body, at most ``MAX_BODY`` bytes; a larger one is 413 (see ``discard_body``)."""
    length = req.content_length
    if length is not None and length > MAX_BODY:
        discard_body(req)
        raise TooLarge(f"request body is over {MAX_BODY} bytes")
    raw = body_stream(req).read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        discard_body(req, len(raw))
        raise TooLarge(f"request body is over {MAX_BODY} bytes")
    if not raw.strip():
        raise BadRequest("missing JSON body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("malformed JSON body") from None
    if not isinstance(body, dict):
        raise BadRequest("JSON body must be an object")
    return body


def field_str(body: dict, name: str) -> str:
    if name not in body or body[name] is None:
        raise BadRequest(f"missing field: {name}")
    value = body[name]
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    if not value:
        raise BadRequest(f"{name} must not be empty")
    return value


def _number(body: dict, name: str) -> float | int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{name} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"{name} must be a finite number")
    return value


def field_int(body: dict, name: str, default: int | None, lo: int, hi: int) -> int:
    value = _number(body, name)
    if value is None:
        if default is None:
            raise BadRequest(f"missing field: {name}")
        return default
    if isinstance(value, float):
        if not value.is_integer():
            raise BadRequest(f"{name} must be an integer")
        value = int(value)
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be {lo}..{hi}")
    return value


def field_float(body: dict, name: str, default: float, lo: float, hi: float) -> float:
    value = _number(body, name)
    if value is None:
        return default
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be {lo:g}..{hi:g}")
    return float(value)


def parse_s3(url: str, field: str = "url") -> tuple[str, str]:
    """``s3://{bucket}/{key}`` → (bucket, key); the key is one safe relative path."""
    if not url.startswith("s3://"):
        raise BadRequest(f"{field} must be s3://{{bucket}}/{{key}}")
    bucket, _, key = url[5:].partition("/")
    if not bucket or not key:
        raise BadRequest(f"{field} must be s3://{{bucket}}/{{key}}")
    if (
        len(key.encode()) > MAX_KEY_BYTES
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key)
        or key.startswith("/")
        or any(part in ("", ".", "..") for part in key.split("/"))
    ):
        raise BadRequest(f"{field}: invalid object key")
    return bucket, key


# ---- helpers --------------------------------------------------------------


def to_jpeg(im: pyvips.Image, width: int, height: int) -> bytes:
    """Fit inside width×height, aspect ratio kept, never enlarged; JPEG."""
    if im.width > width or im.height > height:
        im = im.thumbnail_image(width, height=height, size="down")
    return im.jpegsave_buffer(Q=JPEG_QUALITY, keep="none", optimize_coding=True)


def json_response(resp: falcon.Response, payload: dict) -> None:
    resp.content_type = "application/json"
    resp.data = orjson.dumps(payload)
    resp.set_header("Cache-Control", "no-store")


class Internal:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        with self.ctx.miss_slot():  # storage and decoding: never every thread of the worker
            self.post(req, resp)

    def post(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise NotImplementedError

    def begin(self, req: falcon.Request) -> dict:
        try:
            check_secret(req, self.ctx.settings.internal_secret)
        except Unauthorized:
            discard_body(req)
            raise
        return read_body(req)

    def uploads_video(self, body: dict, name: str = "video_url") -> tuple[str, str]:
        url = field_str(body, name)
        bucket, key = parse_s3(url, name)
        uploads = self.ctx.settings.uploads_bucket
        if bucket != uploads:
            raise BadRequest(f"{name} must be in the uploads bucket (s3://{uploads}/...)")
        return bucket, key


# ---- POST /_metadata ------------------------------------------------------


class MetadataResource(Internal):
    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self._fetcher = None
        self._lock = threading.Lock()

    def fetcher(self):
        if self._fetcher is None:
            with self._lock:
                if self._fetcher is None:
                    from ..netguard import Fetcher

                    self._fetcher = Fetcher.from_settings(self.ctx.settings)
        return self._fetcher

    def post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = self.begin(req)
        url = field_str(body, "url")
        hint = body.get("type")
        if hint is not None and hint not in probe.KINDS:
            raise BadRequest("type must be one of image, video, audio")
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme == "s3":
            meta = self.from_storage(*parse_s3(url))
        elif scheme in ("http", "https"):
            meta = self.from_url(url)
        else:
            raise BadRequest("url must be s3://{bucket}/{key} or an http(s) URL")
        with self.ctx.transform_slot():
            probe.analyse(meta, self.ctx.settings.nsfw_threshold, self.ctx.settings.nsfw_enabled)
        json_response(resp, meta.as_dict())

    def from_storage(self, bucket: str, key: str) -> probe.Metadata:
        settings = self.ctx.settings
        if bucket not in (settings.cdn_bucket, settings.uploads_bucket):
            raise BadRequest(f"url: bucket {bucket!r} is not a configured bucket")
        reader = ObjectReader(self.ctx.storage, bucket, key)
        head = reader.read(1024)
        reader.seek(0)
        if probe.sniff(head) == "image":
            if reader.size > settings.max_source_bytes:
                raise TooLarge(f"source is {reader.size} bytes, over the {settings.max_source_bytes} byte cap")
            data = reader.read()
            with self.ctx.transform_slot():
                meta = probe.image(data, self.ctx.limits)
            meta.content_hash = hashlib.sha256(data).hexdigest()
            return meta
        with self.ctx.transform_slot():
            meta = probe.audio_video(reader, reader.size, self.ctx.limits.max_pixels)
        meta.content_hash = self.hash_object(reader, bucket, key)
        return meta

    def hash_object(self, reader: ObjectReader, bucket: str, key: str) -> str:
        """SHA-256 of a stored object, streamed (never held whole)."""
        h = hashlib.sha256()
        if reader.size <= SMALL_OBJECT:
            reader.seek(0)
            h.update(reader.read())  # one ranged read at most (often already buffered)
        else:
            _, stream = self.ctx.storage.open(bucket, key)
            for chunk in iter_chunks(stream):
                h.update(chunk)
        return h.hexdigest()

    def from_url(self, url: str) -> probe.Metadata:
        fetched = self.fetcher().fetch(url)
        data = fetched.body
        with self.ctx.transform_slot():
            if probe.sniff(data[:1024]) == "image":
                if len(data) > self.ctx.settings.max_source_bytes:
                    raise TooLarge(f"source is over the {self.ctx.settings.max_source_bytes} byte cap")
                meta = probe.image(data, self.ctx.limits)
            else:
                meta = probe.audio_video(io.BytesIO(data), len(data), self.ctx.limits.max_pixels)
        meta.content_hash = hashlib.sha256(data).hexdigest()
        return meta


# ---- POST /_thumbnail -----------------------------------------------------


class ThumbnailResource(Internal):
    def post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = self.begin(req)
        bucket, key = self.uploads_video(body)
        timestamp = field_float(body, "timestamp", 0.0, 0.0, MAX_TIMESTAMP)
        width = field_int(body, "width", 320, 1, MAX_DIMENSION)
        height = field_int(body, "height", 180, 1, MAX_DIMENSION)
        reader = ObjectReader(self.ctx.storage, bucket, key)
        with self.ctx.transform_slot():
            container = video.open_container(reader)
            try:
                stream = video.playable_video(container)
                t, im = video.frames_at(container, stream, [timestamp], self.ctx.limits.max_pixels)[0]
                data = to_jpeg(im, width, height)
            finally:
                container.close()
        resp.content_type = "image/jpeg"
        resp.data = data
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Frame-Timestamp", f"{t:.3f}")


# ---- POST /_frames --------------------------------------------------------


class FramesResource(Internal):
    def post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = self.begin(req)
        bucket, key = self.uploads_video(body)
        count = field_int(body, "count", None, 1, self.ctx.settings.max_frames_count)
        width = field_int(body, "width", 160, 1, MAX_DIMENSION)
        height = field_int(body, "height", 90, 1, MAX_DIMENSION)
        reader = ObjectReader(self.ctx.storage, bucket, key)
        frames = []
        with self.ctx.transform_slot():
            container = video.open_container(reader)
            try:
                stream = video.playable_video(container)
                duration = video.duration_of(container, stream)
                stamps = [i * duration / count for i in range(count)]
                decoded = video.iter_frames_at(container, stream, stamps, self.ctx.limits.max_pixels)
                for ts, (t, im) in zip(stamps, decoded, strict=True):
                    frames.append(
                        {
                            "timestamp": round(ts, 3),
                            "frame_timestamp": round(t, 3),
                            "data": base64.b64encode(to_jpeg(im, width, height)).decode("ascii"),
                        }
                    )
            finally:
                container.close()
        json_response(resp, {"frames": frames, "duration": round(duration, 3)})


def add_routes(app: falcon.App, ctx: Context) -> None:
    app.add_route("/_metadata", MetadataResource(ctx))
    app.add_route("/_thumbnail", ThumbnailResource(ctx))
    app.add_route("/_frames", FramesResource(ctx))
