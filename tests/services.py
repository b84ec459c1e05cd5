"""PostgreSQL and Redis started by the tests in temp dirs (Debian's packages; .ci/run installs them).

PostgreSQL refuses to run as root, and CI runs as root: then it runs as the ``postgres`` system
user (``runuser``), in a directory that user owns. It listens on a Unix socket only (and no TCP);
Redis on a loopback port."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .server import free_port


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


class Postgres:
    def __init__(self, shared_buffers: str = "32MB") -> None:
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="mp-pg-"))
        os.chmod(self.dir, 0o755)
        self.data = self.dir / "data"
        self.sock = self.dir
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                   "--no-sync"])
        self.port = free_port()
        self._cmd = [str(bindir / "postgres"), "-D", str(self.data), "-k", str(self.sock), "-c", "listen_addresses=",
                     "-p", str(self.port), "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off", "-c", "max_connections=200",
                     "-c", f"shared_buffers={shared_buffers}"]
        self.log = open(self.dir / "pg.log", "wb")  # noqa: SIM115
        self.start()
        self._n = 0

    def start(self) -> None:
        """Start the server (again, after halt(): same data, same socket)."""
        self.proc = subprocess.Popen(self._wrap(self._cmd), stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while not (self.sock / f".s.PGSQL.{self.port}").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("postgres did not start: " + (self.dir / "pg.log").read_text()[-2000:])
            time.sleep(0.1)
        time.sleep(0.3)

    def halt(self) -> None:
        """Stop the server (fast shutdown: sessions are ended), keeping its data for start()."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(20)

    def _wrap(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if self.as_root else cmd

    def _run(self, cmd: list[str]) -> None:
        subprocess.run(self._wrap(cmd), check=True, capture_output=True, timeout=120)

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        self._n += 1
        name = f"lib{os.getpid()}_{self._n}"
        with psycopg.connect(host=str(self.sock), port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@/{name}?host={self.sock}&port={self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="mp-redis-"))
        self.port = free_port()
        self._cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", str(self.dir)]
        self.start()
        self._n = 0

    def start(self) -> None:
        """Start the server (again, after stop(): same port, empty: it keeps nothing on disk)."""
        self.proc = subprocess.Popen(self._cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        import redis

        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(host="127.0.0.1", port=self.port).ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def new_url(self) -> str:
        self._n += 1
        return f"redis://127.0.0.1:{self.port}/{self._n % 16}"

    def halt(self) -> None:
        """Stop the server (start() brings it back on the same port)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)
