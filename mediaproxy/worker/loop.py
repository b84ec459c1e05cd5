"""Small helpers the parts of the worker share."""

from __future__ import annotations

from concurrent.futures import Future


def recv_nowait(sock) -> bytes | None:
    """What the socket has (b"": the peer closed or failed), None: nothing yet."""
    try:
        return sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def unregister(poller, sock) -> None:
    """Take a socket off the worker's selector, if it is there."""
    try:
        poller.unregister(sock)
    except (KeyError, ValueError, OSError):
        pass


def kept_alive(fs: Future) -> bool:
    """A finished request's answer to "keep the connection?" (a failed or cancelled one: no)."""
    try:
        return not fs.cancelled() and fs.result() is True
    except Exception:
        return False
