"""The bulkhead and the circuit breaker on their own (a fake clock; no sleeping)."""

from __future__ import annotations

import threading
import time

import pytest

from mediaproxy.bulkhead import Breaker, Bulkhead
from mediaproxy.errors import NotFound, Overloaded, StorageUnavailable, UpstreamError, UpstreamTimeout
from mediaproxy.storage.guard import GuardedStorage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_recovers_through_one_probe():
    clock = Clock()
    b = Breaker(3, 2.0, clock)
    for _ in range(2):
        assert b.before() is False
        b.failure(False)
    b.success(False)  # a success in between resets the count
    for _ in range(3):
        b.before()
        b.failure(False)
    assert b.state == "open" and b.opened == 1
    with pytest.raises(StorageUnavailable) as exc:
        b.before()
    assert exc.value.status == 503 and exc.value.headers["Retry-After"] == "2"
    clock.now += 2.0
    assert b.before() is True  # the probe
    with pytest.raises(StorageUnavailable):
        b.before()  # only one probe at a time
    b.failure(True)  # the probe failed: open for another cooldown
    assert b.state == "open" and b.opened == 2
    clock.now += 1.0
    with pytest.raises(StorageUnavailable):
        b.before()
    clock.now += 1.0
    assert b.before() is True
    b.success(True)
    assert b.state == "closed" and b.before() is False


def test_breaker_zero_threshold_never_opens():
    b = Breaker(0, 1.0)
    for _ in range(100):
        b.before()
        b.failure(False)
    assert b.state == "closed"


def test_bulkhead_bounds_holders_and_refuses_past_its_wait():
    bh = Bulkhead("things", 2, 0.05)
    release = threading.Event()
    entered = threading.Barrier(3)

    def hold() -> None:
        with bh.slot():
            entered.wait()
            release.wait()

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    entered.wait()
    assert bh.in_use == 2
    with pytest.raises(Overloaded) as exc, bh.slot():
        pass
    assert exc.value.headers == {"Retry-After": "1"} and bh.refused == 1
    release.set()
    for t in threads:
        t.join()
    with bh.slot():
        assert bh.in_use == 1


def test_bulkhead_queues_at_most_max_waiters_and_refuses_the_rest_at_once():
    bh = Bulkhead("misses", 1, 5.0, max_waiters=1)
    release = threading.Event()
    held = threading.Event()
    got: list[str] = []

    def hold() -> None:
        with bh.slot():
            held.set()
            release.wait()

    def queued() -> None:
        with bh.slot():
            got.append("queued")

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    waiter = threading.Thread(target=queued)
    waiter.start()
    deadline = time.monotonic() + 5
    while bh.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bh.waiting == 1
    t0 = time.monotonic()
    with pytest.raises(Overloaded), bh.slot():  # the queue is full: refused at once, not after the wait
        pass
    assert time.monotonic() - t0 < 1.0 and bh.refused == 1
    release.set()
    holder.join()
    waiter.join()
    assert got == ["queued"] and bh.waiting == 0 and bh.in_use == 0


class FlakyStore:
    def __init__(self, faults: list[Exception | None]):
        self.faults = faults
        self.calls = 0

    def head(self, bucket: str, key: str):
        self.calls += 1
        fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            raise fault
        return "info"


def guarded(store, threshold: int = 2) -> GuardedStorage:
    return GuardedStorage(store, Bulkhead("storage reads", 4, 0.0), Breaker(threshold, 60.0))


def test_guard_retries_a_fast_store_fault_once_and_a_timeout_never():
    store = FlakyStore([UpstreamError()])
    assert guarded(store).head("b", "k") == "info" and store.calls == 2
    store = FlakyStore([UpstreamTimeout()])
    with pytest.raises(UpstreamTimeout):
        guarded(store).head("b", "k")
    assert store.calls == 1  # a timeout already spent the time a retry would need
    store = FlakyStore([UpstreamError(), UpstreamError()])
    with pytest.raises(UpstreamError):
        guarded(store).head("b", "k")
    assert store.calls == 2  # at most one retry


def test_guard_counts_only_store_faults_towards_the_breaker():
    store = FlakyStore([NotFound()] * 10)
    g = guarded(store)
    for _ in range(10):
        with pytest.raises(NotFound):
            g.head("b", "k")
    assert g.breaker.state == "closed"  # a 404 is a healthy store answering
    store.faults = [UpstreamTimeout()] * 4
    for _ in range(2):
        with pytest.raises(UpstreamTimeout):
            g.head("b", "k")
    calls = store.calls
    with pytest.raises(StorageUnavailable):
        g.head("b", "k")
    assert store.calls == calls  # refused without asking the store


def test_bulkhead_never_holds_more_than_its_limit_under_contention():
    bh = Bulkhead("transforms", 2, 5.0)
    lock = threading.Lock()
    inside, most = [0], [0]

    def work() -> None:
        for _ in range(300):
            with bh.slot():
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 2 and bh.in_use == 0 and bh.waiting == 0 and bh.refused == 0
    with pytest.raises(ValueError):
        bh.release()  # a place given back that was never taken


def test_a_nested_miss_shares_the_outer_place(tmp_path):
    from mediaproxy.context import Context
    from mediaproxy.settings import Settings

    ctx = Context.build(Settings.from_env({"MEDIAPROXY_SECRET_KEY": "s" * 40, "MEDIAPROXY_CACHE_DIR": "",
                                           "MEDIAPROXY_STORAGE": str(tmp_path),
                                           "MEDIAPROXY_MAX_CONCURRENT_MISSES": "1",
                                           "MEDIAPROXY_MAX_QUEUED_MISSES": "0"}))
    with ctx.miss_slot():
        with ctx.miss_slot():  # the same thread: no second place (there is none)
            assert ctx.misses.in_use == 1
        assert ctx.misses.in_use == 1
        other: list = []
        t = threading.Thread(target=lambda: other.append(_try(ctx.miss_slot)))
        t.start()
        t.join()
        assert isinstance(other[0], Overloaded)  # another thread finds the one place taken
    assert ctx.misses.in_use == 0
    with ctx.transform_slot():
        assert ctx.transforms.in_use == 1
    assert ctx.transforms.in_use == 0


def _try(slot):
    try:
        with slot():
            return None
    except Overloaded as exc:
        return exc
