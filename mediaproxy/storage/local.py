"""The local-directory backend: ``{root}/{bucket}/{key}``, the embedded default."""

from __future__ import annotations

import errno
import mimetypes
import os
import queue
import stat
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import xxhash

from ..errors import BadRequest, NotFound, UpstreamError
from . import CHUNK, BoundedFile, ObjectInfo, check_size, count_limit

_TAGS_KEPT = 4096


class LocalStorage:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self._tags: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._tags_lock = threading.Lock()
        self._bases: dict[str, str] = {}  # bucket -> real path of its directory, once it exists

    def _content_tag(self, path: Path, st: os.stat_result) -> str:
        """xxh3-128 of the file's bytes (like S3's MD5 ETag), memoised by (path, size, mtime)."""
        memo = (str(path), st.st_size, st.st_mtime_ns)
        with self._tags_lock:
            tag = self._tags.get(memo)
        if tag is None:
            h = xxhash.xxh3_128()
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
            tag = h.hexdigest()
            with self._tags_lock:
                self._tags[memo] = tag
                while len(self._tags) > _TAGS_KEPT:
                    self._tags.popitem(last=False)
        return tag

    def _path(self, bucket: str, key: str) -> Path:
        # Keys are validated by the routes; this is defence in depth.
        if not key or key.startswith("/") or "\0" in key or ".." in key.split("/"):
            raise BadRequest("invalid object key")
        path = self.root / bucket / key
        if not self._confined(bucket, key):
            raise BadRequest("invalid object key: outside the bucket")
        return path

    def _confined(self, bucket: str, key: str) -> bool:
        """Whether the key's real path stays inside the bucket directory (a symbolic link may lead out).

        One ``lstat`` per key segment; only when one of them is a link is the
        whole path resolved (``realpath`` of every component costs ~60 us).
        """
        base = self._bases.get(bucket)
        if base is None:
            base = os.path.realpath(self.root / bucket)
            if os.path.isdir(base):
                self._bases[bucket] = base
        current = base
        for part in key.split("/"):
            current = f"{current}/{part}"
            try:
                mode = os.lstat(current).st_mode
            except OSError:
                return True  # nothing there (or unreadable): nothing to follow; the open fails as usual
            if stat.S_ISLNK(mode):
                return os.path.realpath(f"{base}/{key}").startswith(base + os.sep)
        return True

    def _info(self, path: Path, st: os.stat_result, tag: bool = True) -> ObjectInfo:
        ctype = mimetypes.guess_type(path.name)[0]
        return ObjectInfo(
            size=st.st_size,
            last_modified=st.st_mtime,
            content_type=ctype,
            etag=self._content_tag(path, st) if tag else None,
        )

    def head(self, bucket: str, key: str) -> ObjectInfo:
        path = self._path(bucket, key)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise NotFound("no such object") from None
        except NotADirectoryError:
            raise NotFound("no such object") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:  # no file can have that name
                raise NotFound("no such object") from None
            raise UpstreamError(f"storage error: {exc.strerror}") from None
        if not path.is_file():
            raise NotFound("no such object")
        return self._info(path, st)

    def _open(self, bucket: str, key: str, tag: bool = True) -> tuple[ObjectInfo, BinaryIO]:
        path = self._path(bucket, key)
        try:
            f = open(path, "rb")  # noqa: SIM115 - handed to the caller
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound("no such object") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise NotFound("no such object") from None
            raise UpstreamError(f"storage error: {exc.strerror}") from None
        return self._info(path, os.fstat(f.fileno()), tag), f

    def get(self, bucket: str, key: str, max_bytes: int | None = None) -> tuple[ObjectInfo, bytes]:
        info, f = self._open(bucket, key, tag=False)
        with f:
            check_size(info.size, max_bytes)
            return info, f.read()

    def open(self, bucket: str, key: str, start: int = 0, end: int | None = None) -> tuple[ObjectInfo, BinaryIO]:
        info, f = self._open(bucket, key)
        last = info.size - 1 if end is None else min(end, info.size - 1)
        return info, BoundedFile(f, start, max(0, last - start + 1))  # type: ignore[return-value]

    def ping(self, bucket: str) -> None:
        path = self.root / bucket
        if not path.is_dir():
            raise UpstreamError(f"bucket {bucket!r} not found: no directory {path}")
        if not os.access(path, os.R_OK | os.X_OK):
            raise UpstreamError(f"bucket {bucket!r}: directory {path} is not readable")

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def writer(self, bucket: str, key: str, content_type: str | None = None,
               max_bytes: int | None = None) -> LocalWriter:
        return LocalWriter(self._path(bucket, key), max_bytes)

    def delete(self, bucket: str, key: str) -> None:
        path = self._path(bucket, key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise UpstreamError(f"storage error: {exc.strerror}") from None
        # Empty folders left behind would list as nothing anyway; keep the tree tidy.
        top = self.root / bucket
        parent = path.parent
        while parent != top and top in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def list(self, bucket: str, prefix: str, start_after: str | None = None) -> Iterator[str]:
        if start_after is not None:  # in key order, as S3's StartAfter: the walk's own order is the file system's
            yield from (key for key in sorted(self.list(bucket, prefix)) if key > start_after)
            return
        top = self.root / bucket
        folder = prefix.rpartition("/")[0]
        start = top / folder if folder else top
        if ".." in prefix.split("/") or not start.is_dir():
            return
        for dirpath, _dirs, files in os.walk(start):
            rel = Path(dirpath).relative_to(top).as_posix()
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # an upload in progress
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    yield key

    def list_aged(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, float]]:
        """(key, last modified) of the objects under ``prefix``: what the janitor weighs."""
        top = self.root / bucket
        for key in self.list(bucket, prefix):
            try:
                yield key, (top / key).stat().st_mtime
            except OSError:
                continue  # deleted meanwhile

    def incomplete_uploads(self, bucket: str) -> Iterator[tuple[str, str, float]]:
        """(the temp file, the temp file, when it was last written) of writes in progress or left
        by a process that died mid-upload: ``.{name}.{pid}[.{id}].tmp`` beside the target."""
        top = self.root / bucket
        if not top.is_dir():
            return
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                if not (name.startswith(".") and name.endswith(".tmp")):
                    continue
                path = Path(dirpath) / name
                try:
                    mtime = path.stat().st_mtime
                except OSError:
                    continue
                rel = path.relative_to(top).as_posix()
                yield rel, rel, mtime

    def abort_incomplete(self, bucket: str, key: str, upload_id: str) -> None:
        """Remove a write's temp file (``upload_id`` as ``incomplete_uploads`` named it)."""
        path = self._path(bucket, upload_id)
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            self.delete(bucket, upload_id)

    def presign_get(self, bucket: str, key: str, expires: int, content_type: str | None = None,
                    disposition: str | None = None) -> str | None:
        return None

    def move(self, bucket: str, src: str, dst: str) -> None:
        """Put the object ``src`` under ``dst`` (a rename); NotFound without ``src``."""
        source, target = self._path(bucket, src), self._path(bucket, dst)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no such object") from None
        except OSError as exc:
            raise UpstreamError(f"storage error: {exc.strerror}") from None

    def presign_put(self, bucket: str, key: str, content_type: str | None, expires: int,
                    content_length: int | None = None) -> tuple[str, dict[str, str]] | None:
        return None


class LocalWriter:
    """A temp file beside the target, renamed over it on commit (atomic on one filesystem).

    Past the first ``SYNC_BYTES`` the file is written on a helper thread (``write`` queues at
    most ``DEPTH`` chunks, then waits): the write releases the GIL, so the caller's own work
    (receiving and parsing the next chunk) goes on meanwhile. The limit is counted in
    ``write`` itself; an error of the helper thread is raised by the next ``write`` or by
    ``commit``. A chunk is kept until written: it must be ``bytes`` (immutable), as the
    ``Writer`` protocol says, never a buffer the caller refills."""

    SYNC_BYTES = 1024 * 1024  # a small object is written at once: no thread
    DEPTH = 4

    def __init__(self, path: Path, max_bytes: int | None):
        self.path = path
        self.max_bytes = max_bytes
        self.written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        self._f = open(self.tmp, "wb")  # noqa: SIM115 - closed by commit/abort
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, data: bytes) -> None:
        self.written += len(data)
        count_limit(self.written, self.max_bytes)
        if self._error is not None:
            raise self._error
        if self._queue is not None:
            self._queue.put(data)
        elif self.written <= self.SYNC_BYTES:
            self._f.write(data)
        else:
            self._queue = queue.Queue(self.DEPTH)
            self._thread = threading.Thread(target=self._drain, name="local-write", daemon=True)
            self._thread.start()
            self._queue.put(data)

    def _drain(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._f.write(data)
                except BaseException as exc:  # told to the writer's caller; the rest is dropped
                    self._error = exc

    def _join(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = self._queue = None

    def commit(self) -> None:
        self._join()
        if self._error is not None:
            self.abort()
            raise self._error
        self._f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._join()
        self._f.close()
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass
