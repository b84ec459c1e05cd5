"""Real servers for HTTP-level tests: moto's S3 on loopback and gunicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import requests

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-key"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKETS = ("cdn", "uploads", "static", "library")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(check, timeout: float = 15.0, every: float = 0.05):
    """Poll ``check()`` until it returns something truthy, and return that; fail after ``timeout``
    seconds with its last answer (instead of sleeping a fixed time and hoping it was enough)."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {found!r}"
        time.sleep(every)
    return found


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            requests.get(url, timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):
            # not listening yet, or a worker still booting on a loaded machine
            time.sleep(0.05)
    raise RuntimeError(f"no answer from {url} within {timeout}s")


class MotoS3:
    """moto's S3 server in a subprocess on 127.0.0.1 (the real S3 wire protocol)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        moto = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **AWS_ENV},
        )
        try:
            wait_http(self.endpoint + "/moto-api/", proc=self.proc)
            self.client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            )
            for bucket in BUCKETS:
                self.client.create_bucket(Bucket=bucket)
        except BaseException:  # a start that failed leaves no server running behind the test
            self.proc.kill()
            self.proc.wait(10)
            raise

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Server:
    """One gunicorn process running mediaproxy with the given backend and settings."""

    def __init__(self, backend: str, workdir: Path, moto: MotoS3 | None = None, env: dict | None = None,
                 workers: int = 1, threads: int = 4, extra_args: tuple[str, ...] = ()):
        self.backend = backend
        self.moto = moto
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.storage_dir = workdir / "storage"
        self.cache_dir = workdir / "cache"
        for bucket in BUCKETS:  # as MotoS3 creates them
            (self.storage_dir / bucket).mkdir(parents=True, exist_ok=True)
        full_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_")},
            **AWS_ENV,
            "MEDIAPROXY_SECRET_KEY": SECRET,
            "MEDIAPROXY_CACHE_DIR": str(self.cache_dir),
            "MEDIAPROXY_FETCH_ALLOW_CIDRS": "127.0.0.0/8,::1/128",
            "MEDIAPROXY_ACCESS_LOG": "0",
            "MEDIAPROXY_WORKERS": str(workers),
            "MEDIAPROXY_THREADS": str(threads),
            "MEDIAPROXY_LOG_LEVEL": "warning",
            # moto on a loaded 2-core machine can take over the 2 s default to answer; tests of
            # the deadline itself set it back (tests/test_resilience.py)
            "MEDIAPROXY_S3_READ_TIMEOUT": "5",
        }
        if backend == "s3":
            assert moto is not None
            full_env.update(
                MEDIAPROXY_STORAGE="s3",
                AWS_ENDPOINT_URL=moto.endpoint,
                MEDIAPROXY_S3_ADDRESSING_STYLE="path",
            )
        else:
            full_env["MEDIAPROXY_STORAGE"] = str(self.storage_dir)
        full_env.update(env or {})
        self.env = full_env
        self.log = open(workdir / "gunicorn.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "-c", str(ROOT / "gunicorn.conf.py"),
             "-b", f"127.0.0.1:{self.port}", *extra_args, "mediaproxy.wsgi:app"],
            cwd=ROOT,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_http(self.base + "/_health", proc=self.proc)
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise

    def url(self, path: str) -> str:
        return self.base + path

    def worker_pids(self) -> list[int]:
        """The gunicorn workers running now (the master's children)."""
        return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]

    def worker_pid(self) -> int:
        """The pid of the one gunicorn worker (a server started with ``workers=1``)."""
        pids = self.worker_pids()
        assert len(pids) == 1, pids
        return pids[0]

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        return requests.get(self.base + path, **kw)

    def head(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        return requests.head(self.base + path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        return requests.post(self.base + path, **kw)

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store one object in this server's backend."""
        if self.backend == "s3":
            extra = {"ContentType": content_type} if content_type else {}
            self.moto.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        else:
            path = self.storage_dir / bucket / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


class Dribble:
    """Connections to a server that each send ``head`` at once, then one more byte every ``every``
    seconds (``next_byte(i)``: the i-th, None to stop): a slow client's request."""

    def __init__(self, port: int, heads: list[bytes], every: float):
        self.socks: list[socket.socket] = []
        for head in heads:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if head:
                s.sendall(head)
            self.socks.append(s)
        self.every = every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def next_byte(self, i: int) -> bytes | None:
        return b"x"

    def _run(self) -> None:
        i = 0
        while not self.stop.wait(self.every):
            byte = self.next_byte(i)
            if byte is None:
                return
            for s in self.socks:
                try:
                    s.send(byte)
                except OSError:
                    pass
            i += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for s in self.socks:
            s.close()
