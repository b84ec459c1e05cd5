"""The JSON log stream in-process: batched writes keep the order of lines, a warning is written at
once, and an access line takes the logging module's path whenever logging is set up otherwise."""

from __future__ import annotations

import calendar
import io
import logging
import threading
import time

import orjson
import pytest

from mediaproxy import logs


@pytest.fixture
def stream(monkeypatch):
    """logs.configure() on a StringIO, batched, with the flusher thread's interval out of reach."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logs._handler)
    out = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", out)
    logs.configure("info", batch_interval=3600)
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logs._handler = saved[2]


def as_in_a_worker() -> None:
    """The JSON handler alone on the root logger (pytest adds its capturing handlers to each test phase)."""
    logging.getLogger().handlers[:] = [logs._handler]


def lines(out: io.StringIO) -> list[dict]:
    return [orjson.loads(x) for x in out.getvalue().splitlines()]


def test_lines_wait_for_the_batch_and_a_warning_takes_them_in_order(stream):
    as_in_a_worker()
    logs.access_line({"ts": logs.utc_timestamp(time.time()), "request_id": "a", "status": 200})
    logging.getLogger("mediaproxy.x").info("second")
    assert stream.getvalue() == ""  # batched: nothing written yet
    logging.getLogger("mediaproxy.x").warning("third")
    got = lines(stream)
    assert [d.get("request_id") or d["message"] for d in got] == ["a", "second", "third"]
    assert got[0] == {"ts": got[0]["ts"], "request_id": "a", "status": 200}
    assert got[2]["level"] == "warning"


def test_a_full_batch_and_flush_write(stream):
    as_in_a_worker()
    size = len(orjson.dumps({"ts": "t", "request_id": "0", "pad": "x" * 80})) + 1
    logs._handler.batch_bytes = size * 5 // 2
    for i in range(2):
        logs.access_line({"ts": "t", "request_id": str(i), "pad": "x" * 80})
        assert lines(stream) == []
    flushes = []
    original = logs._handler.flush
    logs._handler.flush = lambda: (flushes.append(threading.current_thread()), original())[1]
    logs.access_line({"ts": "t", "request_id": "2", "pad": "x" * 80})  # the third line fills the batch
    for _ in range(500):  # written by the flusher thread, not the caller (the worker's event loop may be it)
        if len(lines(stream)) == 3:
            break
        time.sleep(0.01)
    assert len(lines(stream)) == 3 and threading.current_thread() not in flushes
    del logs._handler.flush
    logs.access_line({"ts": "t", "request_id": "3"})
    logs._handler.flush()  # what logging.shutdown() does at exit
    assert [d["request_id"] for d in lines(stream)] == ["0", "1", "2", "3"]


def test_access_lines_go_through_logging_when_another_handler_listens(stream, caplog):
    as_in_a_worker()
    logs.access_line({"ts": "t", "request_id": "r0"})
    logging.getLogger().addHandler(caplog.handler)
    logs.access_line({"ts": "t", "request_id": "r1", "status": 404})
    records = [r for r in caplog.records if r.name == "mediaproxy.access"]
    assert len(records) == 1 and records[0].access == {"request_id": "r1", "status": 404}
    logs._handler.flush()
    assert [d["request_id"] for d in lines(stream)] == ["r0", "r1"]  # the JSON handler writes the record the same way


@pytest.mark.parametrize("ts", [0.0, 1.999, 1_700_000_000.5, 1_700_000_001.0004, 1_800_000_059.9999])
def test_utc_timestamp(ts):
    text = logs.utc_timestamp(ts)
    assert text == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
    assert calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) == int(ts)
