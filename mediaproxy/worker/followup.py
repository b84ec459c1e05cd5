"""A kept-alive connection's next request, taken by the thread that answered the last one when it
arrives within a moment: no hand-off through the event loop.

On the event loop's path a thread's answer on a kept-alive connection costs, beside the
application: the future's callback and a wake-up byte through gunicorn's pipe, the socket made
non-blocking and registered with the selector, the selector's wake-up when the next request
comes, its header bytes read, the socket unregistered, the thread pool's queue and lock, and the
GIL passed between the event loop and the thread at each step: several times the application's
own Python around a miss's transform (docs/performance.md, "A thread takes its connection's next
request"). A client that sends its next request as soon as it has the answer (an edge cache's
pooled connection, a load tool) finds the thread still there: it waits ``next_request_wait``
seconds (never past gunicorn's keep-alive) for the socket to turn readable, reads what came
without blocking, and if that is a whole plain GET or HEAD (the event loop's quick look: no body,
no continuation) answers it the same way, parser, layers and all.

Anything else goes back to the event loop exactly as before, with the bytes read so far in the
parser's buffer (which the loop reads first: the header deadline, the small-body reading and the
loop's own answers apply as to any request): nothing within the wait, a partial header block, a
request with a body, a pipelined request, an answer whose body the loop writes, a stopping
worker. A thread waits only while the worker has a thread free for other connections' requests,
so the wait does not queue another client's request behind an idle one (for longer than the
wait's slice, when the wait is set longer than its default).
"""

from __future__ import annotations

import select
import time

from .answers import quick_target

_SLICE = 0.05  # seconds: how soon a waiting thread sees the worker stop or its last free thread taken


class NextRequestOnThread:
    """Worker part (``handle``, over the header part's): after a kept-alive answer, the same thread
    takes the connection's next request if it comes within ``next_request_wait`` seconds.

    Needs the header part (its ``handle`` starts the parser from ``conn.prebuf``, its
    ``_after_response`` reads what the parser holds on the event loop), the response part
    (``conn.handoff``: a body the event loop writes) and the worker's ``busy``/``thread_count``."""

    next_request_wait = 0.002  # MEDIAPROXY_NEXT_REQUEST_WAIT, set by gunicorn.conf.py's post_fork

    def handle(self, conn):
        keepalive = super().handle(conn)
        while keepalive is True and self._may_wait(conn):
            head = self._next_head(conn)
            if head is None:
                break  # nothing yet, or not for a thread: the event loop takes it from here
            if not head:
                return False  # the client closed, or its socket failed: gunicorn closes ours
            conn.prebuf = head
            keepalive = super().handle(conn)
        return keepalive

    def _may_wait(self, conn) -> bool:
        return (self.next_request_wait > 0 and self.alive and self._loop_reads_headers()
                and getattr(conn, "handoff", None) is None and conn.parser is not None
                and self.busy < self.thread_count)

    def _next_head(self, conn) -> bytes | None:
        """The next request's header block if it came whole within the wait and is a plain GET or
        HEAD; b"": the connection ended; None: not for this thread (whatever was read is back in
        the parser's buffer, for the event loop)."""
        unreader = conn.parser.unreader
        pending = unreader.take_buffered()
        if pending:  # pipelined, or read ahead while a body was drained: the loop's reading
            unreader.unread(pending)
            return None
        sock = conn.sock
        poll = select.poll()
        poll.register(sock, select.POLLIN)  # a hang-up or an error is reported anyway
        # never longer than the connection may stay idle at all (gunicorn's keep-alive)
        deadline = time.monotonic() + min(self.next_request_wait, self.cfg.keepalive)
        try:
            # in slices, so that a longer wait than the default still ends soon after the worker
            # starts stopping or its last free thread is taken
            while not poll.poll(max(0.0, min(deadline - time.monotonic(), _SLICE)) * 1000.0):
                if time.monotonic() >= deadline or not self.alive or self.busy >= self.thread_count:
                    return None
            # Non-blocking: the socket still has the send deadline as its timeout, and a socket
            # with a timeout waits in recv() for ordinary bytes; whatever woke the poll, this
            # thread must not wait past it (the event loop makes the socket non-blocking anyway,
            # and the thread's handle() blocking again).
            sock.setblocking(False)
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""
        if data and quick_target(data) is None:
            unreader.unread(data)
            return None
        return data
