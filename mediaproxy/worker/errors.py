"""Error pages: what gunicorn's parser refuses (414, 431, 400…), and the worker's own 408s, are
answered in the project's error format (short plain text, no-store, nosniff, CORS) instead of
gunicorn's HTML page, with one WARNING line instead of a stack trace (docs/resilience.md "Every
answer says nosniff")."""

from __future__ import annotations

import ssl

from gunicorn import util
from gunicorn.http import errors as gerrors

# gunicorn's parser errors → (status, reason), as gunicorn's own handle_error
# maps them; the first match wins, anything else from the parser is a 400.
_PARSER_ERRORS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str], ...] = (
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
    """The status and reason of the answer to an error raised before the application ran."""
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


class ErrorPages:
    """Worker part: gunicorn's ``handle_error`` writing ``error_page`` answers."""

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
