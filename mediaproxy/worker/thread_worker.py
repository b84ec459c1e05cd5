"""The gunicorn worker class: gthread that accepts a connection only when it has a thread free
for it, made of the parts of this package (headers, bodies, responses, lingering close, error
pages).

All workers share one listening socket (held by the arbiter, so connections
wait in its backlog while a worker restarts). Stock gthread accepts whatever
arrives and queues it for its thread pool, and the worker that is already
awake wins the accept race against one sleeping in epoll: in 3 of 16 fresh
starts all 16 of wrk's keep-alive connections landed on one worker, which
then served a quarter of what the two served when they were split.
The busier a worker, the likelier it wins, so the pile-up feeds itself.

Here a worker stops accepting while every thread has work and starts again
when one finishes, so a new connection goes to a worker that can serve it
now, and otherwise waits in the shared backlog for the first that can. Kept-
alive connections it already holds are still served as they become readable.

SO_REUSEPORT (gunicorn's ``reuse_port``) would balance too, by hashing, but
each worker then owns its socket: connections queued on a recycled worker's
socket are reset, and while every worker restarts nothing listens at all
(docs/performance.md has the measurement under worker recycling).
"""

from __future__ import annotations

import time

from gunicorn.workers.gthread import ThreadWorker as _GThreadWorker

from .answers import LoopAnswers
from .bodies import RequestBodies
from .errors import ErrorPages
from .followup import NextRequestOnThread
from .handoff import ResponseHandoff
from .headers import HeaderReading
from .linger import Lingering


def freeze_config(cfg) -> None:
    """Copy every gunicorn setting's value onto the worker's ``Config`` object itself.

    gunicorn reads its settings through ``Config.__getattr__`` (a dictionary look-up and a
    method call each time): ~26 reads per request between its parser, its response and the
    worker, ~1 µs each on the 2-core machine (docs/performance.md, "Cache hits as shipped").
    A worker's settings never change after the fork (a reload starts new workers), so the
    values are made plain instance attributes, found before ``__getattr__`` is ever asked.
    Properties (``is_ssl``, ``sendfile``, ``worker_class``…) still compute as before. ``Config``
    refuses assignments to setting names, hence ``object.__setattr__``."""
    cls = type(cfg)
    for name, setting in cfg.settings.items():
        if not hasattr(cls, name):  # a property of the same name (worker_class…) stays in charge
            object.__setattr__(cfg, name, setting.get())


class ThreadWorker(ErrorPages, LoopAnswers, RequestBodies, ResponseHandoff, NextRequestOnThread, HeaderReading,
                   Lingering, _GThreadWorker):
    """gthread, plus: a thread only for a request whose headers (and small body) are all here,
    requests the application answers from memory answered on the event loop (no thread), a
    header deadline, a minimum rate for every body, a send deadline, large bodies written by the
    event loop, lingering closes on the event loop, error answers in the project's format, and a
    kept-alive connection's next request taken by the thread that answered the last one when it
    comes at once.

    The order of the parts matters where two extend the same gunicorn method: the loop-answer part
    takes a complete header block first (``_request_here``) and passes on what it does not answer;
    the request-body part wraps the response part (``load_wsgi``, ``handle_request``) and overrides
    the header part's hooks (``_headers_done``, ``_prepare_parser``); the response part's
    ``finish_request`` comes before the header part's; the next-request part's ``handle`` wraps the
    header part's. The settings (``header_timeout``, ``send_timeout``, ``small_body_max``,
    ``body_*``, ``next_request_wait``) are set by gunicorn.conf.py's post_fork.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.busy = 0  # connections handed to the thread pool and not finished
        self.thread_count = self.cfg.threads

    def init_process(self) -> None:
        freeze_config(self.cfg)  # after the fork: this worker's copy only
        super().init_process()

    # --- accept only with a free thread ----------------------------------------------

    def set_accept_enabled(self, enabled: bool) -> None:
        # Called by the main loop whenever its own test (a connection limit)
        # differs from the current state; add ours: a thread must be free.
        super().set_accept_enabled(enabled and self.busy < self.thread_count)

    def enqueue_req(self, conn) -> None:
        self.busy += 1  # main thread only, as is finish_request: no lock needed
        if self.busy >= self.thread_count:
            super().set_accept_enabled(False)
        super().enqueue_req(conn)

    def finish_request(self, conn, fs) -> None:
        self.busy -= 1
        super().finish_request(conn, fs)

    # --- the periodic sweep: every part's deadlines ------------------------------------

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        self.sweep_bodies(now)
        self.sweep_sends(now)
        self.sweep_lingering(now)
        self.sweep_headers(now)
