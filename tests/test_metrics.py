"""Prometheus metrics over real HTTP: a real gunicorn (2 workers, multiprocess mode),
real traffic, the text format parsed by prometheus_client's own parser."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from mediaproxy.signing import sign_path

from . import media
from .server import SECRET, eventually, free_port


def scrape(url: str, **kw) -> dict[str, object]:
    r = requests.get(url, timeout=30, **kw)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(families: dict, family: str, sample: str | None = None, **labels: str) -> float:
    """The sum of the samples of ``family`` named ``sample`` whose labels include ``labels``."""
    fam = families[family]
    name = sample or fam.name
    return sum(s.value for s in fam.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def metered(make_server):
    port = free_port()
    srv = make_server(
        "local", workers=2, env={"MEDIAPROXY_METRICS_BIND": f"127.0.0.1:{port}", "MEDIAPROXY_WORKERS": "2"}
    )
    srv.metrics = f"http://127.0.0.1:{port}/metrics"
    return srv


def test_metrics_after_real_traffic(metered, origin):
    srv = metered
    user, h = str(secrets.randbelow(10**17) + 10**17), secrets.token_hex(16)
    srv.put("cdn", f"avatars/{user}/{h}", media.jpeg(512, 512))
    before = scrape(srv.metrics)
    for _ in range(3):  # a miss, then hits (fast path)
        assert srv.get(f"/avatars/{user}/{h}.webp?size=64").status_code == 200
    assert srv.get(f"/avatars/{user}/{h}.webp?size=7").status_code == 400
    assert srv.get(f"/avatars/{user}/{'0' * 32}.png").status_code == 404
    assert srv.get("/external/" + sign_path("http://10.1.2.3/x.png", SECRET)).status_code == 403
    assert srv.get("/external/" + sign_path("ftp://example.com/x.png", SECRET)).status_code == 403
    req, lat = "mediaproxy_http_requests", "mediaproxy_http_request_duration_seconds"

    def flushed() -> dict | None:  # request counts reach the shared files within a second (metrics.FLUSH_INTERVAL)
        now = scrape(srv.metrics)
        counted = now.get(lat) and value(now, lat, lat + "_count", route="avatars") - (
            value(before, lat, lat + "_count", route="avatars") if lat in before else 0)
        refused = req in now and value(now, req, req + "_total", route="external", status="403") - (
            value(before, req, req + "_total", route="external", status="403") if req in before else 0)
        return now if counted == 5 and refused == 2 else None

    after = eventually(flushed)

    def delta(family, sample=None, **labels):
        return value(after, family, sample, **labels) - (value(before, family, sample, **labels)
                                                          if family in before else 0)

    assert delta(req, "mediaproxy_http_requests_total", route="avatars", method="GET", status="200") == 3
    assert delta(req, "mediaproxy_http_requests_total", route="avatars", status="400") == 1
    assert delta(req, "mediaproxy_http_requests_total", route="avatars", status="404") == 1
    assert delta(req, "mediaproxy_http_requests_total", route="external", status="403") == 2
    assert delta(lat, lat + "_count", route="avatars") == 5
    assert delta(lat, lat + "_bucket", route="avatars", le="+Inf") == 5
    cache = "mediaproxy_result_cache_requests"
    assert delta(cache, cache + "_total", outcome="miss") == 1
    assert delta(cache, cache + "_total", outcome="hit") == 2
    tr = "mediaproxy_transform_duration_seconds"
    assert delta(tr, tr + "_count", format="webp") == 1 and delta(tr, tr + "_sum", format="webp") > 0
    st = "mediaproxy_storage_request_duration_seconds"
    assert delta(st, st + "_count", backend="local", operation="get") == 2  # the original, then the 404
    se = "mediaproxy_storage_errors"
    assert delta(se, se + "_total", backend="local", operation="get", kind="not_found") == 1
    ref = "mediaproxy_fetch_refusals"
    assert delta(ref, ref + "_total", reason="address") == 1 and delta(ref, ref + "_total", reason="scheme") == 1
    assert value(after, "mediaproxy_transforms_in_flight") == 0
    assert delta("mediaproxy_result_cache_stored_bytes", "mediaproxy_result_cache_stored_bytes_total") > 0
    rss = [s for s in after["mediaproxy_worker_resident_memory_bytes"].samples]
    assert len(rss) == 2 and all(s.value > 20 * 2**20 for s in rss), rss
    assert value(after, "mediaproxy_result_cache_size_bytes") > 0


def test_metrics_on_the_public_port_need_the_internal_secret(metered):
    srv = metered
    r = srv.get("/metrics")
    assert r.status_code == 401 and "X-Internal-Secret" in r.text
    assert srv.get("/metrics", headers={"X-Internal-Secret": "wrong"}).status_code == 401
    families = scrape(srv.url("/metrics"), headers={"X-Internal-Secret": SECRET})
    assert "mediaproxy_http_requests" in families and "mediaproxy_worker_resident_memory_bytes" in families
    assert len(families["mediaproxy_worker_resident_memory_bytes"].samples) == 2


def test_master_answers_while_every_worker_thread_is_busy(make_server, origin):
    """The listener lives in the master: a scrape is answered while both threads wait on a slow origin."""
    port = free_port()
    srv = make_server("local", threads=2, env={"MEDIAPROXY_METRICS_BIND": f"127.0.0.1:{port}"})
    slow = origin.add(f"/slow-{secrets.token_hex(4)}.png", media.png(8, 8), delay=6)
    busy = [threading.Thread(target=srv.get, args=("/external/" + sign_path(slow, SECRET) + f"?n={i}",))
            for i in range(2)]
    for t in busy:
        t.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    families = scrape(f"http://127.0.0.1:{port}/metrics")
    assert time.monotonic() - t0 < 4  # the origin answers after 6 s
    assert "mediaproxy_http_requests" in families
    for t in busy:
        t.join(30)


def test_worker_exit_is_marked_dead(metered):
    """After a worker is replaced its live gauges stop counting and the RSS list follows the new pids."""
    import os
    import signal

    srv = metered
    pids = sorted(int(s.labels["pid"]) for s in scrape(srv.metrics)["mediaproxy_worker_resident_memory_bytes"].samples)
    os.kill(pids[0], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = sorted(int(s.labels["pid"])
                     for s in scrape(srv.metrics)["mediaproxy_worker_resident_memory_bytes"].samples)
        if len(now) == 2 and pids[0] not in now:
            break
        time.sleep(0.2)
    assert pids[0] not in now and len(now) == 2
    assert value(scrape(srv.metrics), "mediaproxy_transforms_in_flight") == 0
