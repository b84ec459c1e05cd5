"""Storage: one small interface, two backends (S3 via boto3, a local directory).

Storage knows bytes and nothing else: no HTTP, no images. Errors are mapped to
the project's hierarchy here: a missing object is ``NotFound`` (404), an
unreachable store ``UpstreamError`` (502), a timeout ``UpstreamTimeout`` (504).
"""

from __future__ import annotations

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
    if settings.storage_is_s3:
        from .s3 import S3Storage

        return S3Storage(settings)
    from .local import LocalStorage

    return LocalStorage(settings.storage_dir)
