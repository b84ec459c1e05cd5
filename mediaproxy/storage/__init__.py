"""Storage: one small interface, two backends (S3 via boto3, a local directory).

Storage knows bytes and nothing else: no HTTP, no images. Errors are mapped to
the project's hierarchy here: a missing object is ``NotFound`` (404), an
unreachable store ``UpstreamError`` (502), a timeout ``UpstreamTimeout`` (504).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from ..errors import TooLarge

CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    last_modified: float  # seconds since the epoch
    content_type: str | None = None
    etag: str | None = None  # the store's own tag, without quotes
    content_disposition: str | None = None  # S3's metadata, as the object's PUT set it


class BoundedFile:
    """A file positioned at ``start`` that reads at most ``length`` bytes.

    It keeps ``fileno()`` so gunicorn's ``wsgi.file_wrapper`` can ``sendfile``
    (gunicorn sends from the current offset and stops at Content-Length).
    """

    __slots__ = ("_f", "_left")

    def __init__(self, f: BinaryIO, start: int, length: int):
        f.seek(start)
        self._f = f
        self._left = length

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        if n is None or n < 0 or n > self._left:
            n = self._left
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def fileno(self) -> int:
        return self._f.fileno()

    def close(self) -> None:
        self._f.close()


class Body(Protocol):
    """A readable stream of one object (or one range of it)."""

    def read(self, n: int = -1) -> bytes: ...
    def close(self) -> None: ...


class Storage(Protocol):
    def head(self, bucket: str, key: str) -> ObjectInfo: ...

    def get(self, bucket: str, key: str, max_bytes: int | None = None) -> tuple[ObjectInfo, bytes]:
        """The whole object; ``TooLarge`` when it is bigger than ``max_bytes``."""
        ...

    def open(self, bucket: str, key: str, start: int = 0, end: int | None = None) -> tuple[ObjectInfo, BinaryIO]:
        """A stream of bytes ``start..end`` (inclusive) of the object, never read whole."""
        ...

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None: ...

    def ping(self, bucket: str) -> None:
        """Return if the bucket answers; else raise ``UpstreamError``/``UpstreamTimeout`` with the reason."""
        ...

    def writer(self, bucket: str, key: str, content_type: str | None = None,
               max_bytes: int | None = None) -> Writer:
        """A streaming upload: nothing is visible under ``key`` until ``commit()``."""
        ...

    def delete(self, bucket: str, key: str) -> None:
        """Remove one object; a missing one is not an error."""
        ...

    def list(self, bucket: str, prefix: str, start_after: str | None = None) -> Iterator[str]:
        """The keys under ``prefix`` (a plain string prefix, as S3's), in no promised order; with
        ``start_after`` (None: not given), in key order and only those after it (S3's ``StartAfter``)."""
        ...

    def presign_get(self, bucket: str, key: str, expires: int, content_type: str | None = None,
                    disposition: str | None = None) -> str | None:
        """A URL the store itself answers for ``expires`` seconds (with that Content-Type and
        Content-Disposition, whatever the object's metadata says), or None (the local backend)."""
        ...

    def move(self, bucket: str, src: str, dst: str) -> None:
        """Put the object ``src`` under ``dst`` and remove ``src``; ``NotFound`` without ``src``."""
        ...

    def presign_put(self, bucket: str, key: str, content_type: str | None, expires: int,
                    content_length: int | None = None) -> tuple[str, dict[str, str]] | None:
        """(URL, headers to send) for a client's PUT straight into the store, or None."""
        ...


class Writer(Protocol):
    """A streamed put: ``write`` raises ``TooLarge`` past the limit; ``commit`` makes the object
    appear whole under its key at once; ``abort`` (safe to call twice) leaves nothing behind."""

    written: int

    def write(self, data: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


def count_limit(written: int, max_bytes: int | None) -> None:
    if max_bytes is not None and written > max_bytes:
        raise TooLarge(f"upload is over the {max_bytes} byte limit")


def put_stream(storage: Storage, bucket: str, key: str, f: BinaryIO, max_bytes: int | None = None,
               content_type: str | None = None, chunk: int = CHUNK) -> int:
    """Copy a readable file to ``key`` without holding it whole; returns the byte count.

    Past ``max_bytes`` it raises ``TooLarge`` and nothing is stored."""
    w = storage.writer(bucket, key, content_type, max_bytes)
    try:
        while data := f.read(chunk):
            w.write(data)
        w.commit()
    except BaseException:
        w.abort()
        raise
    return w.written


def delete_prefix(storage: Storage, bucket: str, prefix: str) -> int:
    """Remove every object under ``prefix``; returns how many."""
    n = 0
    for key in list(storage.list(bucket, prefix)):
        storage.delete(bucket, key)
        n += 1
    return n


def check_size(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise TooLarge(f"source is {size} bytes, over the {max_bytes} byte cap")


def iter_chunks(body: Body, chunk: int = CHUNK) -> Iterator[bytes]:
    try:
        while True:
            data = body.read(chunk)
            if not data:
                break
            yield data
    finally:
        body.close()


def make_storage(settings) -> Storage:
    """The configured backend, each call timed and counted (``metrics.InstrumentedStorage``)."""
    from ..metrics import InstrumentedStorage

    if settings.storage_is_s3:
        from .s3 import S3Storage

        return InstrumentedStorage(S3Storage(settings), "s3")  # type: ignore[return-value]
    from .local import LocalStorage

    return InstrumentedStorage(LocalStorage(settings.storage_dir), "local")  # type: ignore[return-value]


def served_buckets(settings) -> tuple[str, ...]:
    """The buckets the running mode reads: readiness asks each of them."""
    return {
        "media": (settings.cdn_bucket,),
        "static": (settings.static_bucket,),
        "library": (settings.library.bucket,),
        "all": (settings.cdn_bucket, settings.library.bucket),
    }[settings.mode]


def check_ready(storage: Storage, settings) -> None:
    """Raise ``UpstreamError`` with the reason unless storage answers for every bucket the mode serves."""
    ping = getattr(storage, "ping", None)
    if ping is not None:
        for bucket in served_buckets(settings):
            ping(bucket)


def prepare(settings, create: bool = True) -> list[tuple[str, str]]:
    """Start-up checks of the configured storage, in the master before any fork.

    A missing local directory is created (and said so); one that cannot be is a
    ``ConfigError``, as is ``s3`` with no credentials anywhere boto3 looks. Returns
    (level, message) pairs for the log."""
    from ..errors import ConfigError

    notes: list[tuple[str, str]] = []
    if settings.storage_is_s3:
        import boto3

        if boto3.session.Session().get_credentials() is None:
            raise ConfigError(
                "MEDIAPROXY_STORAGE='s3': no AWS credentials found (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, ~/.aws/credentials, a container or instance role)"
            )
        return notes
    root = settings.storage_dir
    if not root.is_dir() and not create:
        parent = next((p for p in root.resolve().parents if p.exists()), None)
        if parent is None or not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"MEDIAPROXY_STORAGE={settings.storage!r}: does not exist and cannot be created")
        return [("info", f"storage directory {root.resolve()} will be created at start")]
    if not root.is_dir():
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"MEDIAPROXY_STORAGE={settings.storage!r}: cannot create the directory ({exc.strerror}); "
                "expected s3 or a writable directory"
            ) from None
        notes.append(("info", f"created storage directory {root.resolve()}"))
    if not os.access(root, os.R_OK | os.X_OK):
        raise ConfigError(f"MEDIAPROXY_STORAGE={settings.storage!r}: directory is not readable")
    if not any(root.iterdir()):
        where = "the embedded default " if settings.storage_is_default else ""
        notes.append((
            "warning",
            f"STORAGE IS EMPTY: {where}directory {root.resolve()} holds no buckets, so every media route "
            "answers 404. Set MEDIAPROXY_STORAGE=s3 (or a directory with {bucket}/{key} objects), "
            "or seed it with `mediaproxy put` / `mediaproxy demo`.",
        ))
    return notes
