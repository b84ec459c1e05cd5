"""A seekable, read-only file over one stored object, read by ranged GETs.

PyAV (FFmpeg) needs ``read``/``seek``/``tell`` to demux a video; this gives it
that over S3 or the local backend without downloading the whole object: only
the byte ranges the demuxer asks for are fetched, in blocks of ``block``.
"""

from __future__ import annotations

import io

from . import ObjectInfo, Storage


class ObjectReader(io.RawIOBase):
    def __init__(self, storage: Storage, bucket: str, key: str, info: ObjectInfo | None = None,
                 block: int = 1024 * 1024):
        super().__init__()
        self._storage, self._bucket, self._key = storage, bucket, key
        self.info = info or storage.head(bucket, key)
        self.size = self.info.size
        self._pos = 0
        self._block = block
        self._buf = b""
        self._buf_start = 0
        self.fetched = 0  # bytes read from storage, for tests and logs

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def _fill(self, start: int, want: int) -> None:
        end = min(self.size, start + max(want, self._block)) - 1
        _, body = self._storage.open(self._bucket, self._key, start, end)
        try:
            chunks = []
            while True:
                data = body.read(end - start + 1 - sum(map(len, chunks)))
                if not data:
                    break
                chunks.append(data)
                if sum(map(len, chunks)) >= end - start + 1:
                    break
        finally:
            body.close()
        self._buf = b"".join(chunks)
        self._buf_start = start
        self.fetched += len(self._buf)

    def read(self, n: int = -1) -> bytes:
        if self._pos >= self.size:
            return b""
        if n is None or n < 0:
            n = self.size - self._pos
        n = min(n, self.size - self._pos)
        off = self._pos - self._buf_start
        if not (off >= 0 and off + n <= len(self._buf)):
            self._fill(self._pos, n)
            off = 0
        data = self._buf[off : off + n]
        self._pos += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)
