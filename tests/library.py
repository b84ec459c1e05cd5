"""The library's test stack: a real gunicorn (MEDIAPROXY_MODE=all), a real ``mediaproxy worker``,
and API keys made by the real ``mediaproxy keys create``."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from .server import ROOT, Server, eventually

MEDIAPROXY = str(Path(sys.executable).with_name("mediaproxy"))


def library_env(workdir: Path, extra: dict | None = None) -> dict:
    return {
        "MEDIAPROXY_MODE": "all",
        "MEDIAPROXY_DATABASE_URL": f"sqlite:///{workdir}/library.db",
        "MEDIAPROXY_QUEUE_URL": f"sqlite:///{workdir}/queue.db",
        "MEDIAPROXY_JOB_RETRY_DELAY": "0.2",
        "MEDIAPROXY_JOB_HEARTBEAT": "0.25",  # retries are handed to the queue by the heartbeat's sweep
        **(extra or {}),
    }


class Worker:
    def __init__(self, env: dict, log: Path):
        self.log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([MEDIAPROXY, "worker"], cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


def create_key(env: dict, org: str) -> str:
    out = subprocess.run([MEDIAPROXY, "keys", "create", "--org", org], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    return out.stdout.strip().splitlines()[-1]


class Stack:
    """A server, a worker and two organizations' keys."""

    def __init__(self, server: Server, workdir: Path, worker: bool = True):
        self.server = server
        self.env = server.env
        self.workdir = workdir
        # `keys create` migrates first (as `mediaproxy db upgrade` would), then the worker starts
        self.key = create_key(self.env, "acme")  # the real command, once per stack
        self.other_key = self._key_in_process("other-org")
        self.worker = Worker(self.env, workdir / "worker.log") if worker else None
        self.auth = {"X-API-Key": self.key}

    def _key_in_process(self, org: str) -> str:
        from mediaproxy.library import auth
        from mediaproxy.library.db import Database

        db = Database(self.env["MEDIAPROXY_DATABASE_URL"])
        try:
            with db.transaction() as s:
                return auth.create_key(s, org)
        finally:
            db.dispose()

    def expire_share_token(self, token: str) -> None:
        """Back-date a share link's or album token's expiry by a minute, as the clock would have."""
        from sqlalchemy import text

        from mediaproxy.library.db import Database

        db = Database(self.env["MEDIAPROXY_DATABASE_URL"])
        try:
            with db.transaction() as s:
                done = s.execute(text("UPDATE share_tokens SET expires_at = :at WHERE digest = :digest"),
                                 {"at": datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1),
                                  "digest": hashlib.sha256(token.encode()).hexdigest()})
                assert done.rowcount == 1, "no such token"
        finally:
            db.dispose()

    @property
    def base(self) -> str:
        return self.server.base

    def api(self, method: str, path: str, key: str | None = "default", **kw) -> requests.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if key == "default":
            headers.update(self.auth)
        elif key is not None:
            headers["X-API-Key"] = key
        kw.setdefault("timeout", 60)
        return requests.request(method, self.base + path, headers=headers, **kw)

    def upload(self, data: bytes, filename: str = "photo.jpg", key: str | None = "default",
               **fields) -> requests.Response:
        form = {k: (None, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in fields.items()}
        form["file"] = (filename, data, "application/octet-stream")
        return self.api("POST", "/api/v1/media/upload", key=key, files=form)

    def wait_job(self, job_id: str, timeout: float = 90.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.api("GET", f"/api/v1/media/job/{job_id}")
            assert r.status_code == 200, r.text
            body = r.json()
            if body["state"] in ("completed", "failed"):
                return body
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {body}")

    def uploaded(self, path: str, headers: dict | None = None, timeout: float = 60.0,
                 key: str | None = "default") -> dict:
        """The record at ``path`` (``/api/v1/media/{id}``, ``/media/{id}``) once its presigned upload
        has completed: at once where the PUT reached the server (the local backend's upload URL);
        where it went straight to S3, which tells the server nothing, once the worker's sweep has
        seen the bytes and its job has checked them (polled, at most ``timeout`` seconds)."""

        def ready() -> dict | None:
            r = self.api("GET", path, key=key, headers=headers)
            assert r.status_code == 200, r.text
            body = r.json()
            return body if body.get("status") in ("ready", "uploaded") else None

        return eventually(ready, timeout if self.server.backend == "s3" else 0.0, every=0.1)

    def refused(self, prefix: str, timeout: float = 60.0) -> None:
        """Wait until a PUT straight to S3 under ``prefix`` (an object key, or a record's folder
        ``{org}/{id}/``) has been checked and refused: its bytes are gone from the incoming key
        and from the record's (the local backend refuses the PUT itself)."""
        eventually(lambda: not self.stored_keys(f"incoming/{prefix}") and not self.stored_keys(prefix),
                   timeout, every=0.1)

    def stored_keys(self, prefix: str) -> list[str]:
        if self.server.backend == "s3":
            resp = self.server.moto.client.list_objects_v2(Bucket="library", Prefix=prefix)
            return [o["Key"] for o in resp.get("Contents", [])]
        root = self.server.storage_dir / "library"
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                      and p.relative_to(root).as_posix().startswith(prefix))

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
