"""The ``mediaproxy`` command over real processes: put into both backends and read
back over HTTP, purge cached results, sign what the server accepts, --version,
help, and a closed pipe."""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from mediaproxy.cli import build_parser

from . import media
from .server import SECRET

CLI = str(Path(sys.executable).with_name("mediaproxy"))


def run(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_version_and_help_on_every_option():
    from mediaproxy import __version__

    done = run(dict(os.environ), "--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"mediaproxy {__version__}")
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"check-config", "put", "purge", "sign", "demo", "db", "keys", "worker", "janitor",
                                "admin"}

    def walk(p, words):  # every command and sub-command (db upgrade, keys create)
        yield p, words
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, [*words, name])

    for p, words in walk(parser, []):
        if not words:
            continue
        for action in p._actions:
            assert action.help, (words, action.dest)
        text = run(dict(os.environ), *words, "--help").stdout
        for action in p._actions:
            if action.option_strings:
                assert action.option_strings[-1] in text, (words, action.option_strings)


@pytest.mark.parametrize("url, reason", [
    ("not a url", "invalid URL"),
    ("ftp://example.com/x.png", "only http and https"),
    ("http://10.1.2.3/x.png", "address not allowed"),
    ("http://169.254.169.254/latest/meta-data", "address not allowed"),
    ("https://user:pw@example.com/x.png", "credentials"),
    ("http:///x.png", "no host"),
])
def test_sign_refuses_what_the_server_refuses(url, reason):
    env = {**os.environ, "MEDIAPROXY_SECRET_KEY": SECRET}
    done = run(env, "sign", url)
    assert done.returncode == 2 and done.stdout == ""
    assert reason in done.stderr and "Traceback" not in done.stderr


def test_signed_url_is_served(local_server, origin):
    url = origin.add(f"/cli-{secrets.token_hex(4)}.png", media.png(40, 30))
    env = {**os.environ, **{k: v for k, v in local_server.env.items() if k.startswith("MEDIAPROXY_")}}
    done = run(env, "sign", url, "--base-url", local_server.base)
    assert done.returncode == 0, done.stderr
    r = __import__("requests").get(done.stdout.strip() + "?width=20", timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_put_a_file_and_a_tree_then_serve_them(make_server, tmp_path, backend):
    srv = make_server(backend, env={"MEDIAPROXY_FAST_PATH": "0"})
    env = {k: v for k, v in srv.env.items()}
    user, h = str(secrets.randbelow(10**17) + 10**17), secrets.token_hex(16)
    one = tmp_path / "avatar.bin"
    one.write_bytes(media.jpeg(64, 64))
    done = run(env, "put", str(one), "--key", f"avatars/{user}/{h}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\t")[0] == f"cdn/avatars/{user}/{h}" and "image/jpeg" in done.stdout
    assert srv.get(f"/avatars/{user}/{h}.png?size=32").status_code == 200

    tree = tmp_path / "tree"
    (tree / "111" / "b").mkdir(parents=True)
    (tree / "111" / "photo.jpg").write_bytes(media.jpeg(50, 40))
    (tree / "111" / "b" / "notes.txt").write_text("hello")
    channel = str(secrets.randbelow(10**17) + 10**17)
    done = run(env, "put", str(tree), "--prefix", f"attachments/{channel}")
    assert done.returncode == 0, done.stderr
    lines = sorted(line.split("\t")[0] for line in done.stdout.splitlines())
    assert lines == [f"cdn/attachments/{channel}/111/b/notes.txt", f"cdn/attachments/{channel}/111/photo.jpg"]
    r = srv.get(f"/attachments/{channel}/111/photo.jpg")
    assert r.status_code == 200 and r.content == (tree / "111" / "photo.jpg").read_bytes()
    assert r.headers["Content-Type"] == "image/jpeg"
    done = run(env, "put", str(tmp_path / "missing"))
    assert done.returncode == 1 and "no such file" in done.stderr


def test_purge_one_key_and_a_prefix(make_server, tmp_path):
    srv = make_server("local", env={"MEDIAPROXY_FAST_PATH": "0"})
    env = dict(srv.env)
    user = str(secrets.randbelow(10**17) + 10**17)
    hashes = [secrets.token_hex(16) for _ in range(3)]
    for h in hashes:
        srv.put("cdn", f"avatars/{user}/{h}", media.jpeg(80, 80))
        for size in (32, 64):
            assert srv.get(f"/avatars/{user}/{h}.webp?size={size}").headers["X-Cache"] == "MISS"
            assert srv.get(f"/avatars/{user}/{h}.webp?size={size}").headers["X-Cache"] == "HIT"
    done = run(env, "purge", f"avatars/{user}/{hashes[0]}")
    # two results and the cached original
    assert done.returncode == 0 and done.stdout.strip() == f"purged 3 cached entries of cdn/avatars/{user}/{hashes[0]}"
    assert srv.get(f"/avatars/{user}/{hashes[0]}.webp?size=32").headers["X-Cache"] == "MISS"
    assert srv.get(f"/avatars/{user}/{hashes[1]}.webp?size=32").headers["X-Cache"] == "HIT"
    done = run(env, "purge", "--prefix", f"avatars/{user}/")
    assert done.returncode == 0 and done.stdout.startswith("purged 8 cached entries under prefix"), done.stdout
    assert srv.get(f"/avatars/{user}/{hashes[2]}.webp?size=64").headers["X-Cache"] == "MISS"


def test_demo_into_a_closed_pipe_and_its_internal_examples(make_server, tmp_path):
    srv = make_server("local")
    env = {**srv.env, "MEDIAPROXY_SECRET_KEY": "", "MEDIAPROXY_INTERNAL_SECRET": "", "MEDIAPROXY_DEMO": "1"}
    proc = subprocess.Popen([CLI, "demo", "--base-url", srv.base], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # `mediaproxy demo | head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 0 and first.startswith(b"Demo objects written")
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    done = run(env, "demo", "--base-url", srv.base)
    assert done.returncode == 0
    curls = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("curl ")]
    assert len(curls) == 3 and "mediaproxy-demo-secret" in done.stdout
    demo_srv = make_server("local", env={"MEDIAPROXY_SECRET_KEY": "", "MEDIAPROXY_DEMO": "1",
                                         "MEDIAPROXY_STORAGE": str(srv.storage_dir)})
    import requests

    urls = [line.split()[-1] for line in done.stdout.splitlines()
            if line.split() and line.split()[-1].startswith(srv.base) and "curl " not in line]
    assert len(urls) >= 12
    for url in urls:
        if "/external/" in url:
            continue  # an image on the internet: the suite stays on loopback
        r = requests.get(url.replace(srv.base, demo_srv.base), timeout=120)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
    for line in curls:
        line = line.replace(srv.base, demo_srv.base).replace(" -o thumb.jpg", f" -o {tmp_path}/t.jpg")
        got = subprocess.run(["sh", "-c", line + " -w '%{http_code}' -o /dev/null" if "-o " not in line
                              else line + " -w '%{http_code}'"], capture_output=True, text=True, timeout=120)
        assert got.stdout.endswith("200"), (line, got.stdout[-300:])
