"""S3 through boto3. Credentials, region and endpoint come from boto3's own
sources (``AWS_*`` variables, config files, instance roles); path-style
addressing is a setting so any S3-compatible store works."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import ProtocolError
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

from ..errors import MediaError, NotFound, RangeNotSatisfiable, UpstreamError, UpstreamTimeout
from ..hotpath import decimal
from . import ObjectInfo, check_size, count_limit

_MISSING = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}


def _map_error(exc: Exception) -> MediaError:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _MISSING or status == 404:
            return NotFound("no such object")
        if code == "InvalidRange" or status == 416:
            return RangeNotSatisfiable()
        if status in (503, 500) or code in ("SlowDown", "InternalError", "ServiceUnavailable"):
            return UpstreamError("storage unavailable")
        if code in ("RequestTimeout",):
            return UpstreamTimeout("storage timeout")
        return UpstreamError(f"storage error: {code or status}")
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError, Urllib3ReadTimeout, TimeoutError)):
        return UpstreamTimeout("storage timeout")
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ProtocolError, ConnectionError)):
        return UpstreamError("storage unreachable")
    return UpstreamError("storage error")


_ERRORS = (ClientError, BotoCoreError, ProtocolError, Urllib3ReadTimeout, OSError)


def _timed_out(exc: BaseException) -> bool:
    """A failure that is a timeout underneath: botocore reports a body the store stopped reading
    (the socket's send timed out) as ConnectionClosedError from ProtocolError from TimeoutError."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, (TimeoutError, ReadTimeoutError, Urllib3ReadTimeout, ConnectTimeoutError)):
            return True
        if isinstance(exc, ProtocolError) and any(isinstance(a, TimeoutError) for a in exc.args):
            return True
        wrapped = getattr(exc, "kwargs", {}).get("error") if isinstance(exc, BotoCoreError) else None
        exc, seen = wrapped or exc.__cause__ or exc.__context__, seen + 1
    return False


def _write_error(exc: Exception) -> MediaError:
    """A write's failure: never "no such object" (the upload being written is gone, e.g.
    NoSuchUpload after an abort), always the store's fault; a stalled send is a timeout."""
    if _timed_out(exc):
        return UpstreamTimeout("storage timeout")
    err = _map_error(exc)
    if isinstance(err, NotFound):
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
        return UpstreamError(f"storage error: {code or 'not found'}")
    return err


class _S3Body:
    """botocore's StreamingBody with errors mapped while the bytes flow."""

    __slots__ = ("_body",)

    def __init__(self, body):
        self._body = body

    def read(self, n: int = -1) -> bytes:
        try:
            return self._body.read(None if n is None or n < 0 else n)
        except _ERRORS as exc:
            raise _map_error(exc) from None

    def close(self) -> None:
        self._body.close()


class S3Storage:
    def __init__(self, settings):
        common = dict(
            connect_timeout=settings.s3_connect_timeout,
            max_pool_connections=settings.s3_max_pool,
            s3={"addressing_style": settings.s3_addressing_style},
            tcp_keepalive=True,
            # SigV4 for presigned URLs too: botocore otherwise presigns with SigV2 query auth,
            # which signs Content-Type but not Content-Length (a presigned PUT's size would not be
            # enforced) and which regions opened since 2014 refuse
            signature_version="s3v4",
        )
        self._config = Config(
            read_timeout=settings.s3_read_timeout,
            # botocore retries nothing: storage/guard.py retries a fast failure once, at
            # once, and no timeout (botocore's standard mode made 3 attempts with backoff:
            # 30 s to a 504).
            retries={"total_max_attempts": 1, "mode": "standard"},
            **common,
        )
        # The library's writes (S3Writer) are not on the origin's miss path: the store may take
        # longer to answer a 5 MiB part than a read's first byte. botocore retries nothing here
        # either: its standard mode retried a timeout too, so a frozen store held an upload for
        # three write timeouts (and stored it once the store woke, its client long gone);
        # _write_call retries only the failures that come fast.
        self._write_config = Config(
            read_timeout=settings.s3_write_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            **common,
        )
        self._lock = threading.Lock()
        self._client = None
        self._write_client = None

    def _lazy_client(self, attr: str, config: Config):
        # boto3 clients are thread-safe; create one per process, lazily (after fork).
        if getattr(self, attr) is None:
            with self._lock:
                if getattr(self, attr) is None:
                    setattr(self, attr, boto3.session.Session().client("s3", config=config))
        return getattr(self, attr)

    @property
    def client(self):
        return self._lazy_client("_client", self._config)

    @property
    def write_client(self):
        return self._lazy_client("_write_client", self._write_config)

    @staticmethod
    def _info(resp: dict) -> ObjectInfo:
        size = resp.get("ContentLength", 0)
        crange = resp.get("ContentRange")
        if crange and "/" in crange:
            total = crange.rsplit("/", 1)[1]
            if decimal(total):
                size = int(total)
        lm = resp.get("LastModified")
        return ObjectInfo(
            size=size,
            last_modified=lm.timestamp() if lm is not None else 0.0,
            content_type=resp.get("ContentType"),
            etag=(resp.get("ETag") or "").strip('"') or None,
            content_disposition=resp.get("ContentDisposition"),
        )

    def head(self, bucket: str, key: str) -> ObjectInfo:
        try:
            return self._info(self.client.head_object(Bucket=bucket, Key=key))
        except _ERRORS as exc:
            raise _map_error(exc) from None

    def get(self, bucket: str, key: str, max_bytes: int | None = None) -> tuple[ObjectInfo, bytes]:
        try:
            resp = self.client.get_object(Bucket=bucket, Key=key)
        except _ERRORS as exc:
            raise _map_error(exc) from None
        info = self._info(resp)
        body = _S3Body(resp["Body"])
        try:
            check_size(info.size, max_bytes)
            return info, body.read()
        finally:
            body.close()

    def open(self, bucket: str, key: str, start: int = 0, end: int | None = None) -> tuple[ObjectInfo, BinaryIO]:
        kwargs = {"Bucket": bucket, "Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            resp = self.client.get_object(**kwargs)
        except _ERRORS as exc:
            raise _map_error(exc) from None
        return self._info(resp), _S3Body(resp["Body"])  # type: ignore[return-value]

    def ping(self, bucket: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                raise UpstreamError(f"bucket {bucket!r} does not exist") from None
            if status == 403:
                raise UpstreamError(f"bucket {bucket!r}: access denied") from None
            raise _map_error(exc) from None
        except _ERRORS as exc:
            err = _map_error(exc)
            err.reason = f"{err.reason} ({type(exc).__name__})"
            raise err from None

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        except _ERRORS as exc:
            raise _map_error(exc) from None

    def writer(self, bucket: str, key: str, content_type: str | None = None,
               max_bytes: int | None = None) -> S3Writer:
        return S3Writer(self, bucket, key, content_type, max_bytes)

    def delete(self, bucket: str, key: str) -> None:
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except _ERRORS as exc:
            err = _map_error(exc)
            if not isinstance(err, NotFound):
                raise err from None

    def list(self, bucket: str, prefix: str, start_after: str | None = None) -> Iterator[str]:
        extra = {"StartAfter": start_after} if start_after else {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **extra):
                for item in page.get("Contents", ()):
                    yield item["Key"]
        except _ERRORS as exc:
            err = _map_error(exc)
            if not isinstance(err, NotFound):
                raise err from None

    def list_aged(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, float]]:
        """(key, last modified) of the objects under ``prefix``: what the janitor weighs."""
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    yield item["Key"], item["LastModified"].timestamp()
        except _ERRORS as exc:
            raise _map_error(exc) from None

    def incomplete_uploads(self, bucket: str) -> Iterator[tuple[str, str, float]]:
        """(key, upload id, when it was initiated) of the bucket's multipart uploads not completed
        nor aborted."""
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
                for item in page.get("Uploads", ()):
                    yield item["Key"], item["UploadId"], item["Initiated"].timestamp()
        except _ERRORS as exc:
            raise _map_error(exc) from None

    def abort_incomplete(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            _write_call(self.write_client.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id)
        except _ERRORS as exc:
            err = _map_error(exc)
            if not isinstance(err, NotFound):  # NoSuchUpload: aborted or completed meanwhile
                raise err from None

    def presign_get(self, bucket: str, key: str, expires: int, content_type: str | None = None,
                    disposition: str | None = None) -> str | None:
        # the answer's Content-Type (and Content-Disposition) are the ones given here, whatever
        # metadata the object's uploader sent with its PUT
        params: dict[str, object] = {"Bucket": bucket, "Key": key}
        if content_type:
            params["ResponseContentType"] = content_type
        if disposition:
            params["ResponseContentDisposition"] = disposition
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)

    def move(self, bucket: str, src: str, dst: str) -> None:
        """Put the object ``src`` under ``dst`` (a copy inside the store; the bytes never come here,
        one request up to S3's 5 GiB CopyObject limit), then delete ``src``. NotFound without ``src``."""
        try:
            _write_call(self.write_client.copy_object, Bucket=bucket, Key=dst,
                        CopySource={"Bucket": bucket, "Key": src})
        except _ERRORS as exc:
            raise _map_error(exc) from None
        self.delete(bucket, src)

    def presign_put(self, bucket: str, key: str, content_type: str | None, expires: int,
                    content_length: int | None = None) -> tuple[str, dict[str, str]] | None:
        # Content-Type (when known) and the length (when the client gave it) are signed: S3
        # refuses a PUT whose headers differ from what was signed.
        params: dict[str, object] = {"Bucket": bucket, "Key": key}
        headers: dict[str, str] = {}
        if content_type:
            params["ContentType"] = headers["Content-Type"] = content_type
        if content_length is not None:
            params["ContentLength"] = content_length
            headers["Content-Length"] = str(content_length)
        url = self.client.generate_presigned_url("put_object", Params=params, ExpiresIn=expires)
        return url, headers


DETACHED_ABORTS = 2  # S3Writer.abort: aborts left to finish behind their part, per process
_DETACHED = threading.BoundedSemaphore(DETACHED_ABORTS)
WRITE_ATTEMPTS = 3  # a write that fails fast (refused, reset, 5xx) is sent this many times in all
log = logging.getLogger("mediaproxy.storage")


def _retryable(exc: Exception) -> bool:
    """A failure that came fast and may pass when sent again: the store's 5xx, a refused or reset
    connection. Not a timeout (it has already taken the write timeout), not the store's 4xx."""
    if isinstance(exc, ClientError):
        return (exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) >= 500
    return type(_write_error(exc)) is UpstreamError


def _write_call(fn: Callable[..., dict], **kw) -> dict:
    """One write to the store (a part is a buffer held until the call returns: it can be sent
    again). At most WRITE_ATTEMPTS fast failures; a timeout is raised at once, so a stalled store
    fails the upload within one MEDIAPROXY_S3_WRITE_TIMEOUT."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            return fn(**kw)
        except _ERRORS as exc:
            if attempt == WRITE_ATTEMPTS or not _retryable(exc):
                raise
            time.sleep(0.05 * 2 ** attempt)
    raise AssertionError("unreachable")


class S3Writer:
    """A streamed put: one PutObject for small bodies, else a multipart upload in parts of
    ``PART`` bytes (S3's minimum).

    A full part goes up on a helper thread while the next one is received: at most ``HOLD``
    bytes of it are kept aside meanwhile (then ``write`` waits for the part in flight), and
    once the part is sent its buffer (a bytearray, handed to botocore as it is, never copied)
    takes them and is filled again. So one part buffer and the hold buffer are all the memory
    (8 MiB): a second whole part buffer would let receiving run a part ahead for 2 MiB more.
    An error of the helper thread is raised by the next ``write`` or by ``commit``; ``abort``
    returns at once, the upload being aborted on the helper thread once the part in flight ends
    (while fewer than ``DETACHED_ABORTS`` such aborts are pending in the process; else it waits).
    Each call to the store goes through ``_write_call``: a timeout fails the upload at once, and
    after one ``abort`` does not wait for the store again (the janitor aborts what it leaves)."""

    PART = 5 * 1024 * 1024
    SMALL = 1024 * 1024  # a buffer grows with the object up to this, then is a whole part at once
    HOLD = 3 * 1024 * 1024
    # as boto3's transfer manager does (s3transfer's default): each part carries its CRC32, and
    # the object gets a composite checksum; without one a store such as moto builds a CRC64 of
    # the whole object at completion
    CHECKSUM = "CRC32"

    def __init__(self, storage: S3Storage, bucket: str, key: str, content_type: str | None,
                 max_bytes: int | None):
        self.s, self.bucket, self.key = storage, bucket, key
        self.extra = {"ContentType": content_type} if content_type else {}
        self.max_bytes = max_bytes
        self.written = 0
        self._buf = bytearray()  # the part being filled (none while it is in flight)
        self._n = 0  # bytes of _buf filled
        self._hold: bytearray | None = None  # the next part's first bytes, while one is in flight
        self._h = 0
        self._upload_id: str | None = None
        self._parts: list[dict] = []
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: Future | None = None
        self._stalled = False  # a write timed out: the store is not answering

    def write(self, data: bytes) -> None:
        self.written += len(data)
        count_limit(self.written, self.max_bytes)
        view = memoryview(data)
        while view:
            if self._inflight is not None:
                if self._inflight.done() or self._h == self.HOLD:
                    self._land()  # (a failed part is told here, at once)
                    continue
                if self._hold is None:
                    self._hold = bytearray(self.HOLD)
                k = min(len(view), self.HOLD - self._h)
                self._hold[self._h:self._h + k] = view[:k]
                self._h += k
                view = view[k:]
                continue
            k = min(len(view), self.PART - self._n)
            end = self._n + k
            if end <= len(self._buf):  # a buffer of a whole part (new or sent): filled in place
                self._buf[self._n:end] = view[:k]
            elif end <= self.SMALL:  # a small object so far: the buffer grows with it
                self._buf += view[:k]
            else:  # past that, one buffer of PART bytes, allocated once (growing would leave holes in the heap)
                full = bytearray(self.PART)
                full[:self._n] = self._buf
                full[self._n:end] = view[:k]
                self._buf = full
            self._n = end
            view = view[k:]
            if self._n == self.PART:
                self._send_part()

    def _send_part(self) -> None:
        """Hand the full buffer to the helper thread."""
        c = self.s.write_client
        if self._upload_id is None:
            try:
                resp = _write_call(c.create_multipart_upload, Bucket=self.bucket, Key=self.key,
                                   ChecksumAlgorithm=self.CHECKSUM, **self.extra)
            except _ERRORS as exc:
                raise self._failed(exc) from None
            self._upload_id = resp["UploadId"]
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="s3-part")
        n = len(self._parts) + 1
        self._parts.append({"PartNumber": n})
        self._inflight = self._pool.submit(self._upload_part, c, n, self._buf, self._upload_id)
        self._buf, self._n = None, 0

    def _upload_part(self, c, n: int, body: bytearray, upload_id: str) -> bytearray:
        resp = _write_call(c.upload_part, Bucket=self.bucket, Key=self.key, UploadId=upload_id, PartNumber=n,
                           Body=body, ChecksumAlgorithm=self.CHECKSUM)
        part = self._parts[n - 1]
        part["ETag"] = resp["ETag"]
        if resp.get("ChecksumCRC32"):  # the store checks each part's CRC32 again at completion
            part["ChecksumCRC32"] = resp["ChecksumCRC32"]
        return body

    def _land(self) -> None:
        """Wait for the part in flight (raise its error); its buffer takes the held bytes."""
        future, self._inflight = self._inflight, None
        try:
            self._buf = future.result()
        except _ERRORS as exc:
            raise self._failed(exc) from None
        self._buf[:self._h] = memoryview(self._hold)[:self._h] if self._h else b""
        self._n, self._h = self._h, 0

    def _last_body(self) -> bytearray:
        body = self._buf
        del body[self._n:]  # a sent buffer holds PART bytes; shrunk in place, not copied
        self._buf, self._n = bytearray(), 0
        return body

    def commit(self) -> None:
        c = self.s.write_client
        try:
            if self._upload_id is None:
                _write_call(c.put_object, Bucket=self.bucket, Key=self.key, Body=self._last_body(), **self.extra)
                return
            if self._inflight is not None:
                self._land()
            self._hold = None
            if self._n:
                n = len(self._parts) + 1
                self._parts.append({"PartNumber": n})
                self._upload_part(c, n, self._last_body(), self._upload_id)
            _write_call(c.complete_multipart_upload, Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                        MultipartUpload={"Parts": self._parts})
            self._upload_id = None
        except _ERRORS as exc:
            raise self._failed(exc) from None
        finally:
            self._close_pool()

    def _failed(self, exc: Exception) -> MediaError:
        err = _write_error(exc)
        if isinstance(err, UpstreamTimeout):
            self._stalled = True
        return err

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def abort(self) -> None:
        """Drop the buffers and abort the multipart upload. With a part in flight (which cannot be
        called back) the abort is queued behind it on the helper thread, so the caller — a request
        whose client went away, say — does not wait for a slow store (up to the write timeout per
        attempt): the abort then also covers that part. Each such abort keeps its part's buffer
        and thread until the part ends, so at most ``DETACHED_ABORTS`` per process are left
        behind at once; past that, ``abort`` waits for its part as it always did (a client that
        sends 5 MiB and goes away, again and again, is slowed down instead of piling them up)."""
        self._buf, self._hold, self._n, self._h = bytearray(), None, 0, 0
        inflight, self._inflight = self._inflight, None
        upload_id, self._upload_id = self._upload_id, None
        pool, self._pool = self._pool, None
        if inflight is not None and not inflight.done() and _DETACHED.acquire(blocking=False):
            pool.submit(self._abort_upload, upload_id, _DETACHED.release)
            pool.shutdown(wait=False)
            return
        if self._stalled and upload_id is not None:
            # the store stopped answering: the failure is answered now, not one more write timeout
            # later; the abort is tried behind it, else the janitor aborts the upload later
            # (`mediaproxy janitor`, or the bucket's AbortIncompleteMultipartUpload rule)
            if pool is not None:
                pool.shutdown(wait=False)
            if _DETACHED.acquire(blocking=False):
                threading.Thread(target=self._abort_upload, args=(upload_id, _DETACHED.release),
                                 name="s3-abort", daemon=True).start()
            else:
                log.warning("multipart upload %s of %s/%s left for the janitor: the store is not answering",
                            upload_id, self.bucket, self.key)
            return
        if inflight is not None:
            wait([inflight])
        if pool is not None:
            pool.shutdown(wait=False)
        if upload_id is not None:
            self._abort_upload(upload_id)

    def _abort_upload(self, upload_id: str, then: Callable[[], object] | None = None) -> None:
        try:
            _write_call(self.s.write_client.abort_multipart_upload, Bucket=self.bucket, Key=self.key,
                        UploadId=upload_id)
        except _ERRORS as exc:
            # `mediaproxy janitor` (or the bucket's lifecycle rule for incomplete uploads) aborts it later
            log.warning("could not abort multipart upload %s of %s/%s (%s): left for the janitor",
                        upload_id, self.bucket, self.key, type(exc).__name__)
        finally:
            if then is not None:
                then()
