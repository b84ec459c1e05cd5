"""Start-up over real gunicorn processes: every invalid setting stops the master
at once with one line naming the variable; storage is checked and readiness
reported; ``mediaproxy check-config`` tells the same."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .server import ROOT, SECRET, free_port, wait_http

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
CLI = str(Path(sys.executable).with_name("mediaproxy"))


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    storage = tmp_path / "storage"
    (storage / "cdn").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIAPROXY_", "AWS_", "PROMETHEUS_"))}
    env.update(
        MEDIAPROXY_SECRET_KEY=SECRET,
        MEDIAPROXY_STORAGE=str(storage),
        MEDIAPROXY_CACHE_DIR=str(tmp_path / "cache"),
        MEDIAPROXY_WORKERS="1",
        MEDIAPROXY_LOG_LEVEL="info",
        AWS_EC2_METADATA_DISABLED="true",  # boto3's credential chain never leaves loopback
    )
    env.update(extra)
    return env


def run_gunicorn(env: dict[str, str], *, config: bool = True, timeout: float = 30.0) -> tuple[int | None, str, float]:
    """(exit status or None if still running at ``timeout``, output, seconds) of one gunicorn start."""
    if not config:  # gunicorn would read ./gunicorn.conf.py by default: give it a bare one
        bare = Path(env["MEDIAPROXY_CACHE_DIR"]).with_name("bare.conf.py")
        bare.write_text("workers = 1\n")
    conf = str(ROOT / "gunicorn.conf.py") if config else str(bare)
    args = [GUNICORN, "-c", conf,
            "-b", f"127.0.0.1:{free_port()}", "mediaproxy.wsgi:app"]
    t0 = time.monotonic()
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace"), time.monotonic() - t0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        return None, out.decode(errors="replace"), time.monotonic() - t0


BAD = [
    ({"MEDIAPROXY_WORKERS": "abc"}, "MEDIAPROXY_WORKERS='abc': expected an integer"),
    ({"MEDIAPROXY_WORKERS": "0"}, "MEDIAPROXY_WORKERS='0': must be 1..1024"),
    ({"MEDIAPROXY_THREADS": "0"}, "MEDIAPROXY_THREADS='0': must be 1..1024"),
    ({"MEDIAPROXY_LOG_LEVEL": "LOUD"}, "MEDIAPROXY_LOG_LEVEL='LOUD': expected one of debug, info, warning"),
    ({"MEDIAPROXY_MALLOC_TRIM_INTERVAL": "x"}, "MEDIAPROXY_MALLOC_TRIM_INTERVAL='x': expected a number"),
    ({"MEDIAPROXY_TIMEOUT": "-1"}, "MEDIAPROXY_TIMEOUT='-1': must be 1..86400"),
    ({"MEDIAPROXY_BIND": "nowhere"}, "MEDIAPROXY_BIND='nowhere': expected HOST:PORT"),
    ({"MEDIAPROXY_METRICS_BIND": "127.0.0.1:http"}, "MEDIAPROXY_METRICS_BIND='127.0.0.1:http': expected HOST:PORT"),
    ({"MEDIAPROXY_TRUSTED_PROXY_CIDRS": "10.0.0.0/33"}, "MEDIAPROXY_TRUSTED_PROXY_CIDRS: '10.0.0.0/33' is not an IP"),
    ({"MEDIAPROXY_CACHE_SIZE": "-5"}, "MEDIAPROXY_CACHE_SIZE='-5': must be >= 1048576"),
    ({"MEDIAPROXY_SECRET_KEY": ""}, "MEDIAPROXY_SECRET_KEY is not set"),
    ({"MEDIAPROXY_MODE": "everything"}, "MEDIAPROXY_MODE='everything': expected one of media"),
    ({"MEDIAPROXY_STORAGE": "/proc/mediaproxy-cannot-create"}, "MEDIAPROXY_STORAGE='/proc/mediaproxy-cannot-create'"),
    ({"MEDIAPROXY_STORAGE": "s3"}, "MEDIAPROXY_STORAGE='s3': no AWS credentials found"),
]


@pytest.mark.parametrize("bad, message", BAD, ids=[next(iter(b)) + "=" + next(iter(b.values())) for b, _ in BAD])
def test_bad_setting_stops_the_master(tmp_path, bad, message):
    code, out, seconds = run_gunicorn(base_env(tmp_path, **bad))
    assert code is not None and code != 0, out
    assert seconds < 20, seconds  # 5 s on an idle machine; this one is shared and loaded
    lines = out.strip().splitlines()
    assert lines == [f"mediaproxy: configuration error: {lines[0].split(': ', 2)[2]}"], out
    assert message in lines[0], out
    assert "Traceback" not in out and "Booting worker" not in out


def test_worker_side_check_stops_gunicorn_without_respawning(tmp_path):
    """Without gunicorn.conf.py (a hand-written config), wsgi.py's own check exits with
    gunicorn's worker-boot-error code: the master halts instead of respawning."""
    code, out, _ = run_gunicorn(base_env(tmp_path, MEDIAPROXY_CACHE_SIZE="-5"), config=False)
    assert code == 3, out
    assert out.count("mediaproxy: configuration error: MEDIAPROXY_CACHE_SIZE='-5'") == 1, out
    assert out.count("Booting worker") == 1 and "Traceback" not in out


def test_storage_in_any_case_and_created_directory(tmp_path):
    from mediaproxy.settings import Settings

    assert Settings.from_env({"MEDIAPROXY_SECRET_KEY": "x", "MEDIAPROXY_STORAGE": " S3 "}).storage_is_s3
    missing = tmp_path / "new" / "storage"
    env = base_env(tmp_path, MEDIAPROXY_STORAGE=str(missing))
    port = free_port()
    proc = subprocess.Popen([GUNICORN, "-c", str(ROOT / "gunicorn.conf.py"), "-b", f"127.0.0.1:{port}",
                             "mediaproxy.wsgi:app"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/_health", proc=proc)
        import requests

        r = requests.get(f"http://127.0.0.1:{port}/_ready", timeout=30)
        assert r.status_code == 503 and r.text.startswith("not ready: storage: bucket 'cdn' not found")
    finally:
        os.killpg(proc.pid, 15)
        out = proc.communicate(timeout=30)[0].decode()
    assert missing.is_dir()
    assert f"created storage directory {missing}" in out
    assert "STORAGE IS EMPTY" in out  # a fresh directory holds nothing yet: said loudly


def test_check_config(tmp_path):
    env = base_env(tmp_path, MEDIAPROXY_INTERNAL_SECRET="internal-secret-value")
    done = subprocess.run([CLI, "check-config"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout and "internal-secret-value" not in done.stdout
    assert "secret_key = ***" in done.stdout and "server.threads = 18" in done.stdout
    assert "configuration OK" in done.stdout
    env["MEDIAPROXY_THREADS"] = "0"
    done = subprocess.run([CLI, "check-config"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "mediaproxy: configuration error: MEDIAPROXY_THREADS='0': must be 1..1024"


def test_ready_on_both_backends(server):
    assert server.get("/_ready").text == "ready\n"
    r = server.get("/_health")
    assert (r.status_code, r.text) == (200, "OK")


def test_ready_says_why_when_storage_is_gone(make_server, moto):
    srv = make_server("s3", env={"MEDIAPROXY_CDN_BUCKET": "no-such-bucket"})
    r = srv.get("/_ready")
    assert r.status_code == 503 and r.text == "not ready: storage: bucket 'no-such-bucket' does not exist\n"
    assert r.headers["Cache-Control"] == "no-store"
    srv = make_server("s3", env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                                 "MEDIAPROXY_S3_CONNECT_TIMEOUT": "0.5"})
    r = srv.get("/_ready")
    assert r.status_code == 503 and r.text.startswith("not ready: storage: storage unreachable"), r.text
    assert srv.get("/_health").text == "OK"  # liveness: the process is fine


def test_metrics_port_in_use_stops_the_master(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, _ = run_gunicorn(base_env(tmp_path, MEDIAPROXY_METRICS_BIND=f"127.0.0.1:{port}"))
    assert code == 2, out
    assert f"configuration error: MEDIAPROXY_METRICS_BIND='127.0.0.1:{port}'" in out
    assert "Traceback" not in out and "Booting worker" not in out


@pytest.mark.parametrize("mode, present, missing", [
    ("static", ["static"], None),
    ("media", ["static"], "cdn"),
])
def test_ready_asks_the_buckets_of_the_mode(make_server, mode, present, missing):
    """Readiness asks the buckets the running mode serves (a static host has no CDN bucket)."""
    import shutil

    srv = make_server("local", env={"MEDIAPROXY_MODE": mode})
    for bucket in ("cdn", "uploads", "static"):
        if bucket not in present:
            shutil.rmtree(srv.storage_dir / bucket, ignore_errors=True)
    r = srv.get("/_ready")
    if missing is None:
        assert (r.status_code, r.text) == (200, "ready\n")
    else:
        assert r.status_code == 503 and f"'{missing}'" in r.text, r.text


def test_ready_asks_the_library_database(make_server, tmp_path):
    """In a mode with the library, readiness needs the database too: a PostgreSQL that stops
    turns /_ready into a 503 that says so (and /healthz too), while /_health stays 200."""
    from .library import create_key, library_env
    from .services import Postgres, pg_bin

    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed")
    pg = Postgres()
    try:
        env = library_env(tmp_path, {"MEDIAPROXY_DATABASE_URL": pg.new_database()})
        create_key(env, "ready-org")  # migrates, as `mediaproxy db upgrade` would
        srv = make_server("local", env=env)
        r = srv.get("/_ready")
        assert (r.status_code, r.text) == (200, "ready\n")
        pg.stop()
        r = srv.get("/_ready")
        # the kind of failure only: a driver's message names hosts, sockets and users (logged instead)
        assert (r.status_code, r.text) == (503, "not ready: database: OperationalError\n"), r.text
        assert r.headers["Cache-Control"] == "no-store"
        assert srv.get("/healthz").status_code == 503
        assert srv.get("/_health").text == "OK"
    finally:
        pg.stop()
