"""The image routes' fast path (mediaproxy/fastpath.py) answers exactly what Falcon answers.

Two gunicorn servers share one storage directory and one result cache: one
with the fast path off (every request through Falcon), one with it on. The
same request to both must give the same status line, the same headers in the
same order (Date aside) and the same body. The access log shows which path
answered. A second pair has the result cache off, so that every answer of
both is a miss: the fast path's misses and their failures are compared too.
"""

from __future__ import annotations

import http.client
import secrets
import time
from pathlib import Path

import orjson
import pytest
import pyvips

from . import media


def _ids() -> tuple[str, str]:
    return str(secrets.randbelow(10**17) + 10**17), secrets.token_hex(16)


def raw(srv, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, list, bytes]:
    """Status, reason, ordered header list (without Date and the per-request X-Request-Id,
    which every response must carry once) and body, as sent on the wire."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        ids = [v for k, v in resp.getheaders() if k.lower() == "x-request-id"]
        assert len(ids) == 1 and len(ids[0]) == 16, resp.getheaders()
        hdrs = [(k.lower(), v) for k, v in resp.getheaders() if k.lower() not in ("date", "x-request-id")]
        return resp.status, resp.reason, hdrs, body
    finally:
        conn.close()


@pytest.fixture(scope="module")
def pair(make_server):
    """(falcon-only server, fast-path server) over the same storage and cache, access log on."""
    env = {"MEDIAPROXY_ACCESS_LOG": "1", "MEDIAPROXY_LOG_LEVEL": "info"}
    slow = make_server("local", env={**env, "MEDIAPROXY_FAST_PATH": "0"})
    fast = make_server(
        "local",
        env={**env, "MEDIAPROXY_STORAGE": str(slow.storage_dir), "MEDIAPROXY_CACHE_DIR": str(slow.cache_dir)},
    )
    return slow, fast


def access_lines(srv) -> list[dict]:
    srv.log.flush()
    lines = []
    for line in Path(srv.log.name).read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return lines


def wait_for_line(srv, pred, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for line in access_lines(srv):
            if pred(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError("no such access log line")
        time.sleep(0.05)


def noise_png(size: int) -> bytes:
    """Incompressible pixels: a PNG whose cached result is file-backed (over 64 KiB)."""
    return pyvips.Image.gaussnoise(size, size).cast("uchar").bandjoin([128, 200]).copy(
        interpretation="srgb").pngsave_buffer()


@pytest.fixture(scope="module")
def objects(pair):
    slow, _ = pair
    user, h = _ids()
    guild, emoji = _ids()[0], _ids()[0]
    gh = secrets.token_hex(8)
    slow.put("cdn", f"avatars/{user}/{h}", media.jpeg(1024, 1024))
    slow.put("cdn", f"avatars/{user}/{gh}", media.animation())
    slow.put("cdn", f"banners/{guild}/{h}", noise_png(600))
    slow.put("cdn", f"emojis/{emoji}", media.png(96, 96, alpha=True))
    slow.put("cdn", f"guilds/{guild}/users/{user}/avatars/{h}", media.webp(300, 300))
    slow.put("cdn", f"stickers/{emoji}", b'{"v":"5.7.4","layers":[]}')
    return {
        "avatar": f"/avatars/{user}/{h}.webp?size=256",
        "avatar_q": f"/avatars/{user}/{h}.jpg?size=128&quality=low&position=top",
        "avatar_alias": f"/avatars/{user}/{h}.jpeg?quality=20&position=top&size=128&unknown=1",
        "animated": f"/avatars/{user}/a_{gh}.gif?size=64",
        "animated_still": f"/avatars/{user}/a_{gh}.webp?size=64",
        "animated_webp": f"/avatars/{user}/a_{gh}.webp?size=64&animated=true",
        "banner_file": f"/banners/{guild}/{h}.png?width=600",
        "emoji": f"/emojis/{emoji}.webp?size=48",
        "member": f"/guilds/{guild}/users/{user}/avatars/{h}.png?size=64",
        "sticker": f"/stickers/{emoji}.json",
        "bad_size": f"/avatars/{user}/{h}.webp?size=7",
        "bad_ext": f"/avatars/{user}/{h}.bmp",
        "bad_id": f"/avatars/x{user}/{h}.webp",
        "missing": f"/avatars/{user}/{secrets.token_hex(16)}.webp",
        "health": "/_health",
    }


def test_miss_then_hit_is_identical(server):
    """On both storage backends: the first answer (a miss) and the second (a hit) match."""
    user, h = _ids()
    server.put("cdn", f"avatars/{user}/{h}", media.jpeg(1024, 1024))
    path = f"/avatars/{user}/{h}.webp?size=256"
    s1, _, h1, b1 = raw(server, "GET", path)
    s2, _, h2, b2 = raw(server, "GET", path)
    assert (s1, s2) == (200, 200)
    assert ("x-cache", "MISS") in h1 and ("x-cache", "HIT") in h2
    assert [x for x in h1 if x[0] != "x-cache"] == [x for x in h2 if x[0] != "x-cache"]
    assert b1 == b2 and media.loader(b2) == "webp"


CONDITIONAL = [
    {},
    {"Range": "bytes=0-9"},
    {"Range": "bytes=-5"},
    {"Range": "bytes=100-"},
    {"Range": "bytes=99999999-"},  # 416
    {"Range": "bytes=5-2"},  # invalid: whole body
    {"Range": "bytes=0-1,4-5"},  # several ranges: whole body
    {"If-None-Match": "*"},
    {"If-None-Match": '"nope"'},
    {"If-Modified-Since": "Tue, 01 Jan 2999 00:00:00 GMT"},
    {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
    {"If-Modified-Since": "garbage"},
    {"Range": "bytes=0-3", "If-Range": '"stale"'},
]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    "name",
    ["avatar", "avatar_q", "avatar_alias", "animated", "animated_still", "animated_webp", "banner_file", "emoji",
     "member", "sticker", "bad_size", "bad_ext", "bad_id", "missing", "health"],
)
def test_fast_path_matches_falcon(pair, objects, name, method):
    slow, fast = pair
    path = objects[name]
    raw(slow, "GET", path)  # fill the shared cache (a miss, on the server without the fast path)
    first = raw(slow, method, path)
    etag = dict(first[2]).get("etag")
    extra = [{"If-None-Match": etag}, {"If-None-Match": f'W/{etag}, "x"'}, {"Range": "bytes=0-3", "If-Range": etag}]
    for headers in CONDITIONAL + (extra if etag else []):
        expected = raw(slow, method, path, headers)
        got = raw(fast, method, path, headers)
        assert got == expected, (name, method, headers)


def test_fast_path_answers_hits_and_logs_them(pair, objects):
    slow, fast = pair
    path = objects["avatar"]
    raw(slow, "GET", path)
    path += f"&probe={secrets.token_hex(4)}"  # an unknown parameter: the same result, a line of its own
    status, _, headers, body = raw(fast, "GET", path, {"Range": "bytes=0-9"})
    assert status == 206 and len(body) == 10 and ("x-cache", "HIT") in headers
    bare, query = path.split("?")
    line = wait_for_line(fast, lambda d: d.get("fast") and d["path"] == bare and d["query"] == query)
    assert line == {**line, "method": "GET", "route": "/avatars/{user_id}/{filename}", "bytes": 10, "cache": "hit",
                    "query": path.split("?")[1], "client": "127.0.0.1"}
    assert isinstance(line["ms"], float) and line["ts"].endswith("Z") and len(line["request_id"]) == 16
    # The Falcon-only server never takes the fast path.
    assert not any(d.get("fast") for d in access_lines(slow))


def test_file_backed_hit_uses_the_cached_file(pair, objects):
    slow, fast = pair
    path = objects["banner_file"]
    raw(slow, "GET", path)
    status, _, headers, body = raw(fast, "GET", path)
    assert status == 200 and dict(headers)["x-cache"] == "HIT"
    assert len(body) > 64 * 1024 and int(dict(headers)["content-length"]) == len(body)
    status, _, headers, part = raw(fast, "GET", path, {"Range": "bytes=70000-70099"})
    assert status == 206 and part == body[70000:70100]


def test_bad_parameters_go_through_falcon(pair, objects):
    _, fast = pair
    status, _, headers, body = raw(fast, "GET", objects["bad_size"])
    assert status == 400 and dict(headers)["cache-control"] == "no-store" and body.startswith(b"size must be")
    line = wait_for_line(fast, lambda d: d["path"] == objects["bad_size"].split("?")[0] and d["status"] == 400)
    assert line["fast"] is False and line["cache"] == "-" and line["bytes"] == len(body)


def test_cache_off_has_no_fast_path(make_server):
    srv = make_server("local", env={"MEDIAPROXY_CACHE_DIR": ""})
    user, h = _ids()
    srv.put("cdn", f"avatars/{user}/{h}", media.jpeg(256, 256))
    for _ in range(2):
        status, _, headers, _ = raw(srv, "GET", f"/avatars/{user}/{h}.webp?size=64")
        assert status == 200 and dict(headers)["x-cache"] == "MISS"


def test_animated_hash_shares_the_entry_on_the_fast_path(pair, objects):
    """`a_x.webp` is `x.webp` (the prefix only marks the hash): a hit of one answers the other."""
    slow, fast = pair
    path = objects["animated_still"]
    raw(slow, "GET", path.replace("/a_", "/"))  # fill the cache through the unprefixed URL
    status, _, headers, body = raw(fast, "GET", path)
    assert status == 200 and ("x-cache", "HIT") in headers and media.pages(body) == 1
    line = wait_for_line(fast, lambda d: d["path"] == path.split("?")[0] and d["status"] == 200)
    assert line.get("fast") is True


def test_an_answer_promised_to_the_event_loop_survives_the_memory_tier_emptied_meanwhile(monkeypatch):
    """In process: once ``answers_from_memory`` has said yes, the answer that follows on the same
    thread (the worker's event loop) is that entry, even if another thread emptied the full memory
    tier in between and the disk cache lost it too: no disk read and no transform on the loop."""
    from types import SimpleNamespace

    from mediaproxy.cache import Entry
    from mediaproxy.fastpath import FastPath

    stored: dict = {}
    cache = SimpleNamespace(enabled=True, get=stored.get)
    passed_on = []

    def app(environ, start_response):
        passed_on.append(environ["PATH_INFO"])
        start_response("502 Bad Gateway", [])
        return [b""]

    fp = FastPath(app, SimpleNamespace(cache=cache, settings=SimpleNamespace(cdn_bucket="cdn")))
    user, h = _ids()
    path, qs = f"/avatars/{user}/{h}.webp", "size=64"
    rkey = fp._resolve(path, qs)[0]
    stored[rkey] = Entry("image/webp", '"e"', 1_700_000_000.0, 4, body=b"RIFF")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": qs}
    answered = []

    def start_response(status, headers):
        answered.append(status)

    assert not fp.answers_from_memory("GET", path, qs)  # not in memory yet
    assert b"".join(fp(environ, start_response)) == b"RIFF"  # a disk hit puts it there
    assert fp.answers_from_memory("GET", path, qs)
    fp._l1.clear()  # another thread's insert found the tier full
    stored.clear()  # and the disk cache evicted the entry
    assert b"".join(fp(dict(environ), start_response)) == b"RIFF"
    assert answered == ["200 OK", "200 OK"] and passed_on == []
    # the promise is for one answer: the next request looks again (a miss now: computed here)
    import mediaproxy.fastpath as fastpath

    computed = []

    def compute(ctx, bucket, key, spec, rkey):
        computed.append(rkey)
        return Entry("image/webp", '"f"', 1_700_000_000.0, 4, body=b"RIFF"), False

    monkeypatch.setattr(fastpath, "computed", compute)
    assert b"".join(fp(dict(environ), start_response)) == b"RIFF"
    assert computed == [rkey] and passed_on == [] and answered[-1] == "200 OK"


@pytest.fixture(scope="module")
def uncached_pair(make_server):
    """(falcon-only server, fast-path server) over the same storage, result cache off: every answer is a miss."""
    env = {"MEDIAPROXY_ACCESS_LOG": "1", "MEDIAPROXY_LOG_LEVEL": "info", "MEDIAPROXY_CACHE_DIR": "",
           "MEDIAPROXY_MAX_PIXELS": "2000000"}
    slow = make_server("local", env={**env, "MEDIAPROXY_FAST_PATH": "0"})
    fast = make_server("local", env={**env, "MEDIAPROXY_STORAGE": str(slow.storage_dir)})
    return slow, fast


@pytest.fixture(scope="module")
def miss_objects(uncached_pair):
    slow, _ = uncached_pair
    user, h = _ids()
    emoji = _ids()[0]
    gh, bad, text, huge = (secrets.token_hex(8) for _ in range(4))
    slow.put("cdn", f"avatars/{user}/{h}", media.jpeg(512, 512))
    slow.put("cdn", f"avatars/{user}/{gh}", media.animation())
    slow.put("cdn", f"avatars/{user}/{bad}", media.jpeg(64, 64)[:40] + b"\x00" * 64)
    slow.put("cdn", f"avatars/{user}/{text}", b"this is not an image at all\n" * 4)
    slow.put("cdn", f"avatars/{user}/{huge}", media.jpeg(1600, 1600))
    slow.put("cdn", f"emojis/{emoji}", media.png(96, 96, alpha=True))
    return {
        "avatar": f"/avatars/{user}/{h}.webp?size=128",
        "avatar_jpeg": f"/avatars/{user}/{h}.jpg?size=64&quality=low",
        "animated": f"/avatars/{user}/a_{gh}.gif?size=64",
        "emoji": f"/emojis/{emoji}.webp?size=48",
        "truncated": f"/avatars/{user}/{bad}.webp?size=64",
        "not_an_image": f"/avatars/{user}/{text}.png?size=64",
        "too_large": f"/avatars/{user}/{huge}.webp?size=64",
        "missing": f"/avatars/{user}/{secrets.token_hex(16)}.webp",
        "bad_size": f"/avatars/{user}/{h}.webp?size=7",
    }


MISS_HEADERS = [{}, {"Range": "bytes=0-9"}, {"Range": "bytes=99999999-"}, {"If-None-Match": "*"},
                {"If-Modified-Since": "Tue, 01 Jan 2999 00:00:00 GMT"}]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    "name", ["avatar", "avatar_jpeg", "animated", "emoji", "truncated", "not_an_image", "too_large", "missing",
             "bad_size"],
)
def test_a_miss_on_the_fast_path_matches_falcon(uncached_pair, miss_objects, name, method):
    """Misses, and misses that fail (no source, a truncated or foreign one, one over the pixel limit):
    the same answer, byte for byte, with and without the fast path."""
    slow, fast = uncached_pair
    path = miss_objects[name]
    first = raw(slow, "GET", path)
    etag = dict(first[2]).get("etag")
    extra = [{"If-None-Match": etag}, {"Range": "bytes=0-3", "If-Range": etag}] if etag else []
    for headers in MISS_HEADERS + extra:
        expected = raw(slow, method, path, headers)
        got = raw(fast, method, path, headers)
        assert got == expected, (name, method, headers)
        assert got[0] >= 400 or dict(got[2]).get("x-cache") == "MISS"
    # and the fast path answered them (a bad parameter is Falcon's to answer)
    bare, _, query = path.partition("?")
    deadline = time.monotonic() + 5
    while True:
        lines = [d for d in access_lines(fast) if d.get("path") == bare and d.get("query") == query
                 and d.get("method") == method]
        if len(lines) >= len(MISS_HEADERS + extra) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) >= len(MISS_HEADERS + extra) and all(d["fast"] is (name != "bad_size") for d in lines), lines


def test_the_fast_path_logs_its_misses_and_their_faults_as_falcon_does(uncached_pair, miss_objects):
    slow, fast = uncached_pair
    huge = miss_objects["too_large"].split("?")[0]

    def faults(srv) -> list[str]:
        srv.log.flush()
        text = Path(srv.log.name).read_text(errors="replace")
        assert f"GET {miss_objects['missing'].split('?')[0]}: 404" not in text  # a missing source is no fault
        return [x for x in text.splitlines() if f"GET {huge}: 413" in x]

    before = [len(faults(srv)) for srv in (slow, fast)]
    for name in ("avatar", "too_large", "missing"):
        raw(fast, "GET", miss_objects[name])
        raw(slow, "GET", miss_objects[name])
    bare = miss_objects["avatar"].split("?")[0]
    line = wait_for_line(fast, lambda d: d.get("path") == bare and d.get("status") == 200)
    assert line["fast"] is True and line["cache"] == "miss" and line["route"] == "/avatars/{user_id}/{filename}"
    assert line["bytes"] > 0
    line = wait_for_line(fast, lambda d: d.get("path") == huge and d.get("status") == 413)
    assert line["fast"] is True and line["cache"] == "-"
    # the media's fault is one WARNING line on both servers
    for srv, n in zip((slow, fast), before, strict=True):
        lines = faults(srv)
        assert len(lines) == n + 1 and '"level":"warning"' in lines[-1] and "pixel limit" in lines[-1], lines
    assert not any(d.get("fast") for d in access_lines(slow))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("failure", ["overloaded", "bug", "stalled", "late"])
def test_a_failed_miss_is_answered_as_falcon_answers_it(tmp_path, monkeypatch, caplog, failure, method):
    """In process, the failures a server cannot be made to show at will: a full worker (503 with
    Retry-After), a bug (500, its stack trace logged once), a TimeoutError (app.py's 408), and a bug
    after the result is computed (while the answer is made)."""
    import io

    from mediaproxy import fastpath, http
    from mediaproxy.app import create_falcon_app
    from mediaproxy.context import Context
    from mediaproxy.errors import Overloaded
    from mediaproxy.routes import common
    from mediaproxy.settings import Settings

    raised = {"overloaded": Overloaded("too many misses in progress", headers={"Retry-After": "1"}),
              "bug": RuntimeError("boom"), "stalled": TimeoutError(), "late": RuntimeError("late")}[failure]

    def fail(*args):
        raise raised

    if failure == "late":
        (tmp_path / "cdn").mkdir()
        monkeypatch.setattr(http, "not_modified", fail)
        monkeypatch.setattr(fastpath, "not_modified", fail)
    else:
        monkeypatch.setattr(common, "render", fail)
    settings = Settings.from_env({"MEDIAPROXY_SECRET_KEY": "s" * 40, "MEDIAPROXY_CACHE_DIR": "",
                                  "MEDIAPROXY_STORAGE": str(tmp_path)})
    ctx = Context.build(settings, None)
    user, h = _ids()
    if failure == "late":
        ctx.storage.put("cdn", f"avatars/{user}/{h}", media.png(32, 32))
    falcon_app = create_falcon_app(settings, ctx)
    answers = []
    for app in (falcon_app, fastpath.FastPath(falcon_app, ctx)):
        environ = {"REQUEST_METHOD": method, "PATH_INFO": f"/avatars/{user}/{h}.webp", "QUERY_STRING": "size=16",
                   "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": None}
        got: list = []
        caplog.clear()
        body = b"".join(app(environ, lambda status, headers, exc=None, got=got: got.extend((status, headers))))
        status, headers = got
        logged = [r for r in caplog.records if r.name == "mediaproxy"]
        answers.append((status, [(k.lower(), v) for k, v in headers], body, environ.get("mediaproxy.close_connection"),
                        [(r.levelname, r.getMessage(), r.exc_info is not None) for r in logged]))
        assert environ.get("mediaproxy.fast", False) is (app is not falcon_app)
    if failure == "late":
        # Falcon's 500 keeps the headers the answer had set before it failed (the ETag, Last-Modified…);
        # the fast path's carries the error's own, as every other failure
        assert [x for x in answers[1][1] if x[0] in ("etag", "last-modified", "x-cache")] == []
        answers[1] = (answers[1][0], answers[0][1], *answers[1][2:])
    assert answers[1] == answers[0]
    status, headers, body, close, logged = answers[0]
    assert status[:3] == {"overloaded": "503", "bug": "500", "stalled": "408", "late": "500"}[failure]
    assert len(logged) == 1 and logged[0][2] == (failure in ("bug", "late"))
    assert (failure == "stalled") == bool(close)
    assert (body == b"") is (method == "HEAD")
    if failure == "overloaded":
        assert ("retry-after", "1") in headers and body in (b"too many misses in progress\n", b"")


def test_the_memory_tier_counts_its_bytes_when_threads_fill_it_at_once():
    """In process: disk hits of many threads fill the memory tier at once (some of the same keys);
    its byte count stays the sum of what it holds, which is what keeps it under its cap."""
    import sys
    import threading
    from types import SimpleNamespace

    from mediaproxy.cache import Entry
    from mediaproxy.fastpath import FastPath

    def get(rkey):
        return Entry("image/webp", '"e"', 1_700_000_000.0, 100 + len(rkey) % 7, body=b"x" * (100 + len(rkey) % 7))

    fp = FastPath(lambda e, s: [], SimpleNamespace(cache=SimpleNamespace(enabled=True, get=get),
                                                    settings=SimpleNamespace(cdn_bucket="cdn")))
    keys = [f"k{i}" for i in range(3000)]
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=lambda n=n: [fp._lookup(k) for k in keys[n * 300:] + keys[:n * 300]])
                   for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(before)
    assert len(fp._l1) == len(keys)
    assert fp._l1_bytes == sum(entry.length for _, entry in fp._l1.values())
