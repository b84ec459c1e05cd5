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

from gunicorn.workers.gthread import ThreadWorker as _GThreadWorker


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
