"""What the container relies on, without a Docker engine: the Dockerfile is hadolint
clean, workers follow the cgroup CPU quota, the exec-form health check finds the
configured port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mediaproxy.healthcheck import connection
from mediaproxy.settings import ServerSettings, available_cpus

from .server import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_is_hadolint_clean():
    hadolint = Path(sys.executable).with_name("hadolint")
    done = subprocess.run([str(hadolint), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def many_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2: 1.5 CPUs → 2 workers
    ({"cpu.max": "100000 100000\n"}, 1),
    ({"cpu.max": "max 100000\n"}, 64),  # no limit: the affinity mask
    ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),  # cgroup v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 64),
    ({"cpu.max": "garbage\n"}, 64),
    ({}, 64),
])
def test_workers_follow_the_cgroup_quota(tmp_path, many_cpus, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert available_cpus(tmp_path) == expected


def test_quota_below_affinity_and_the_default(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    (tmp_path / "cpu.max").write_text("800000 100000\n")
    assert available_cpus(tmp_path) == 1  # 8 CPUs of quota, 1 allowed by affinity
    assert ServerSettings.from_env({}).workers == available_cpus()
    assert ServerSettings.from_env({"MEDIAPROXY_WORKERS": "3"}).workers == 3


def test_healthcheck_on_the_configured_port(local_server):
    env = {**os.environ, "MEDIAPROXY_BIND": f"0.0.0.0:{local_server.port}"}
    ok = subprocess.run([sys.executable, "-m", "mediaproxy.healthcheck"], env=env, capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    env["MEDIAPROXY_BIND"] = f"127.0.0.1:{free_port()}"
    dead = subprocess.run([sys.executable, "-m", "mediaproxy.healthcheck"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert dead.returncode == 1 and "healthcheck: 127.0.0.1:" in dead.stderr
    assert (connection("[::]:8000").host, connection("[::]:8000").port) == ("::1", 8000)
