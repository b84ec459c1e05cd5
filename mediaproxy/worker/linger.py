"""Lingering close on the event loop: a connection closed after a ``Connection: close`` answer is
half-closed and drained of what the peer still sends (for up to 2 s and 1 MiB), so a client still
sending a body the answer refused unread sees that answer and a FIN, not a reset.

gunicorn's ``close_graceful`` does the same, but on the worker's main thread: every client that
did not close promptly stalled the whole event loop (accepts, keep-alives, every finished
request) for up to 2 s. Here the drain is one more socket on the loop's selector.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from collections import OrderedDict
from functools import partial

from gunicorn.workers.gthread import TConn

from .loop import unregister

LINGER = 2.0  # seconds a closed connection is drained for the peer's FIN (gunicorn's close_graceful)
LINGER_MAX = 4096  # connections lingering at once; past it they are closed at once
# Bytes a lingering connection is drained of at most: a client still sending a body the answer
# refused unread (Connection: close) then sees the answer and a FIN, not a reset. The event loop
# reads them, no thread; past this (or LINGER) the connection is closed as it is.
LINGER_DRAIN = 1024 * 1024


class Conn(TConn):
    """gunicorn's connection, closed gracefully by the event loop instead of blocking it, or
    reset when its response was abandoned (``abort``)."""

    worker: Lingering | None = None
    abort = False  # an abandoned response: reset, dropping what the kernel still queues for the client

    def close(self, graceful: bool = False) -> None:
        if self.abort:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            super().close()
        elif graceful and self.worker is not None:
            self.worker.linger(self)
        else:
            super().close()


class Lingering:
    """Worker part: the connections closed by us and waiting for the peer's FIN.

    Needs ``self.poller`` (a selector whose keys' data are callbacks) and ``self.alive``;
    ``sweep_lingering`` is called by the worker's periodic sweep."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lingering: OrderedDict[int, Conn] = OrderedDict()  # oldest deadline first

    def linger(self, conn) -> None:
        """Half-close now; drain what the peer still sends from the event loop; close on its FIN."""
        sock = conn.sock
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        if len(self.lingering) >= LINGER_MAX or not self.alive:
            sock.close()
            return
        sock.setblocking(False)
        conn.linger_until = time.monotonic() + LINGER
        conn.drained = 0
        self.lingering[id(conn)] = conn
        self.poller.register(sock, selectors.EVENT_READ, partial(self._on_linger, conn))

    def _on_linger(self, conn, sock) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained > LINGER_DRAIN:
            self._end_linger(conn)

    def _end_linger(self, conn) -> None:
        self.lingering.pop(id(conn), None)
        unregister(self.poller, conn.sock)
        conn.sock.close()

    def sweep_lingering(self, now: float) -> None:
        """Close the connections whose linger time is up (all of them once the worker stops)."""
        while self.lingering:
            conn = next(iter(self.lingering.values()))
            if conn.linger_until > now and self.alive:
                break
            self._end_linger(conn)
