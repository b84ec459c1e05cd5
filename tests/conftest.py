"""Fixtures: moto's S3 server, gunicorn servers on both backends, test media.

``server`` is parametrized over the two storage backends, so every HTTP test
that uses it runs against S3 (moto, real wire protocol) and the local
directory backend. ``make_server`` starts one with extra settings.
"""

from __future__ import annotations

import itertools

import pytest

from .origin import Origin
from .server import MotoS3, Server

_counter = itertools.count()


@pytest.fixture(scope="module")
def origin():
    """A loopback origin server (tests/origin.py) for the fetcher and external-media tests."""
    o = Origin()
    yield o
    o.stop()


@pytest.fixture(scope="session")
def moto():
    s3 = MotoS3()
    yield s3
    s3.stop()


@pytest.fixture(scope="session")
def make_server(tmp_path_factory, moto):
    """Start a gunicorn server: make_server(backend, env={...}, workers=1)."""
    started: list[Server] = []

    def start(backend: str = "local", env: dict | None = None, **kw) -> Server:
        workdir = tmp_path_factory.mktemp(f"srv-{backend}-{next(_counter)}")
        srv = Server(backend, workdir, moto if backend == "s3" else None, env=env, **kw)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session", params=["local", "s3"])
def server(request, make_server) -> Server:
    """The default server, once per storage backend."""
    return make_server(request.param)


@pytest.fixture(scope="session")
def local_server(make_server) -> Server:
    return make_server("local")


@pytest.fixture(scope="session")
def postgres():
    from .services import Postgres

    pg = Postgres()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def redis_server():
    from .services import Redis

    r = Redis()
    yield r
    r.stop()


# backend, database, queue: every library test runs on each of these combinations.
LIBRARY_STACKS = {
    "local": ("local", "sqlite", "sqlite"),
    "s3": ("s3", "sqlite", "sqlite"),
    "s3-pg-redis": ("s3", "postgres", "redis"),
}


def start_library(request, make_server, tmp_path_factory, name: str, extra: dict | None = None,
                  worker: bool = True):
    from .library import Stack, library_env

    backend, database, queue = LIBRARY_STACKS[name]
    workdir = tmp_path_factory.mktemp(f"lib-{name}")
    env = library_env(workdir, {"MEDIAPROXY_UPLOAD_MAX_BYTES": str(3 * 1024**2), **(extra or {})})
    if database == "postgres":
        env["MEDIAPROXY_DATABASE_URL"] = request.getfixturevalue("postgres").new_database()
    if queue == "redis":
        env["MEDIAPROXY_QUEUE_URL"] = request.getfixturevalue("redis_server").new_url()
    srv = make_server(backend, env=env, workers=2)
    return Stack(srv, workdir, worker=worker)


@pytest.fixture(scope="session", params=list(LIBRARY_STACKS))
def library(request, make_server, tmp_path_factory):
    """The media library over real HTTP (gunicorn in MEDIAPROXY_MODE=all + a real worker) on each
    combination of storage backend, database and queue."""
    stack = start_library(request, make_server, tmp_path_factory, request.param)
    yield stack
    stack.stop()
