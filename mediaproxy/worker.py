"""The gunicorn worker class: gthread that accepts a connection only when it has a thread free for it.

All workers share one listening socket (held by the arbiter, so connections
wait in its backlog while a worker restarts). Stock gthread accepts whatever
arrives and queues it for its thread pool, and the worker that is already
awake wins the accept race against one sleeping in epoll: in 3 of 16 fresh
starts all 16 of wrk's keep-alive connections landed on one worker, which
then served 3.4k req/s while the other idled (14k when they were split).
The busier a worker, the likelier it wins, so the pile-up feeds itself.

Here a worker stops accepting while every thread has work and starts again
when one finishes, so a new connection goes to a worker that can serve it
now, and otherwise waits in the shared backlog for the first that can. Kept-
alive connections it already holds are still served as they become readable.

SO_REUSEPORT (gunicorn's ``reuse_port``) would balance too, by hashing, but
each worker then owns its socket: connections queued on a recycled worker's
socket are reset, and while every worker restarts nothing listens at all.
Measured under worker recycling: 0 errors this way, 129-9,000 with reuse_port
(docs/performance.md).
"""

from __future__ import annotations

import ssl

from gunicorn import util
from gunicorn.http import errors as gerrors
from gunicorn.workers.gthread import ThreadWorker as _GThreadWorker

# gunicorn's parser errors → (status, reason), as gunicorn's own handle_error
# maps them; the first match wins, anything else from the parser is a 400.
_PARSER_ERRORS: tuple[tuple[type[BaseException], int, str], ...] = (
    ((gerrors.InvalidResponseHeader, gerrors.InvalidResponseHeaderName), 500, "Internal Server Error"),
    (gerrors.LimitRequestLine, 414, "URI Too Long"),
    (gerrors.LimitRequestHeaders, 431, "Request Header Fields Too Large"),
    (gerrors.ExpectationFailed, 417, "Expectation Failed"),
    (gerrors.UnsupportedTransferCoding, 501, "Not Implemented"),
    (gerrors.ConfigurationProblem, 500, "Internal Server Error"),
    ((gerrors.ForbiddenProxyRequest, ssl.SSLError), 403, "Forbidden"),
    (gerrors.ParseException, 400, "Bad Request"),
)


def classify_error(exc: BaseException) -> tuple[int, str]:
    for kinds, status, reason in _PARSER_ERRORS:
        if isinstance(exc, kinds):
            return status, reason
    return 500, "Internal Server Error"


def error_page(status: int, reason: str) -> bytes:
    """A response for an error found before the application ran, in the project's error
    format (short plain text, no-store, nosniff, CORS) instead of gunicorn's HTML page."""
    body = reason.lower().encode() + b"\n"
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Access-Control-Allow-Origin: *\r\n"
        "\r\n"
    ).encode("latin-1") + body


class ThreadWorker(_GThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.busy = 0  # connections handed to the thread pool and not finished

    def set_accept_enabled(self, enabled: bool) -> None:
        # Called by the main loop whenever its own test (a connection limit)
        # differs from the current state; add ours: a thread must be free.
        super().set_accept_enabled(enabled and self.busy < self.cfg.threads)

    def enqueue_req(self, conn) -> None:
        self.busy += 1  # main thread only, as is finish_request: no lock needed
        if self.busy >= self.cfg.threads:
            super().set_accept_enabled(False)
        super().enqueue_req(conn)

    def finish_request(self, conn, fs) -> None:
        self.busy -= 1
        super().finish_request(conn, fs)

    def handle_error(self, req, client, addr, exc) -> None:
        """gunicorn's own error answers (414, 431, 400 from its parser…) in our error format."""
        status, reason = classify_error(exc)
        ip = (addr or ("", -1))[0]
        if status == 500:
            what = f"{req.method} {req.uri}" if hasattr(req, "method") and hasattr(req, "uri") else "(no request)"
            self.log.exception("error handling request %s from %s", what, ip)
        else:  # the client's fault: one line, no stack trace
            self.log.warning("invalid request from %s: %d %s: %s", ip, status, reason, str(exc)[:200])
        try:
            util.write_nonblock(client, error_page(status, reason))
        except Exception:
            self.log.debug("failed to send an error answer")
