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


@pytest.fixture(scope="session", params=["local", "s3"])
def library(request, make_server, tmp_path_factory):
    """The media library over real HTTP (gunicorn in MEDIAPROXY_MODE=all + a real worker), per backend."""
    from .library import Stack, library_env

    workdir = tmp_path_factory.mktemp(f"lib-{request.param}")
    srv = make_server(request.param, env=library_env(workdir, {"MEDIAPROXY_UPLOAD_MAX_BYTES": str(3 * 1024**2)}),
                      workers=2)
    stack = Stack(srv, workdir)
    yield stack
    stack.stop()
