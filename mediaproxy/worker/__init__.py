"""mediaproxy's gunicorn worker class (``mediaproxy.worker.ThreadWorker``), by concern:

- ``headers``: request headers read by the event loop, 408 past ``MEDIAPROXY_HEADER_TIMEOUT``;
- ``answers``: requests the application answers from memory (cache hits in the fast path's
  memory tier) answered on the event loop, without a thread;
- ``bodies``: small request bodies read by the event loop, a minimum rate and a deadline for
  every body, what the application is told about its body;
- ``handoff``: a send deadline on every response, large response bodies written by the event loop;
- ``followup``: a kept-alive connection's next request, taken by the thread that answered the last
  one when it comes within ``MEDIAPROXY_NEXT_REQUEST_WAIT`` (no hand-off through the event loop);
- ``linger``: closing a connection gracefully without blocking the event loop;
- ``errors``: gunicorn's own error answers in the project's error format;
- ``thread_worker``: the class made of them, which accepts only with a free thread.

They exist for what docs/resilience.md promises of a server with no proxy in front; the same
section says which of them a deployment behind nginx or a CDN does not need.
"""

from .bodies import (
    BODY_IN_MEMORY,
    SMALL_BODY_MAX,
    BodyInput,
    BodyPace,
    BodyTooSlow,
    PacedUnreader,
    body_framing,
    chunked_end,
)
from .errors import classify_error, error_page
from .handoff import Handoff
from .headers import header_end
from .linger import Conn
from .thread_worker import ThreadWorker

__all__ = [
    "BODY_IN_MEMORY",
    "SMALL_BODY_MAX",
    "BodyInput",
    "BodyPace",
    "BodyTooSlow",
    "Conn",
    "Handoff",
    "PacedUnreader",
    "ThreadWorker",
    "body_framing",
    "chunked_end",
    "classify_error",
    "error_page",
    "header_end",
]
