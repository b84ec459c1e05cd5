"""The README's example commands, run as printed against what ``scripts/serve`` starts: a media host
in ``MEDIAPROXY_MODE=all`` and a static-assets host over the demo objects (``mediaproxy demo``), on
loopback ports of their own instead of 8000 and 8001."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from .library import MEDIAPROXY, library_env
from .server import ROOT, Server

README = ROOT / "README.md"
MEDIA_HOST, STATIC_HOST = "http://127.0.0.1:8000", "http://127.0.0.1:8001"


def readme_commands() -> list[str]:
    """Every ``curl`` command and ``NAME=$(...)`` assignment in the README's ``sh`` blocks, in order
    (continuation lines joined): the examples a reader runs against ``scripts/serve``."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.M | re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if re.match(r"(curl\s|[A-Z_]+=\$\()", command):
                commands.append(command)
    return commands


def test_the_readme_has_examples_of_each_host_and_an_upload():
    commands = readme_commands()
    assert any(MEDIA_HOST + "/avatars/" in c for c in commands)
    assert any(STATIC_HOST in c for c in commands)
    assert any("-F file=@" in c for c in commands)
    for c in commands:
        if c.startswith("curl"):
            assert MEDIA_HOST in c or STATIC_HOST in c, f"an example that does not run against scripts/serve: {c}"


def test_readme_examples_run_as_printed(tmp_path):
    work = tmp_path / "servers"
    work.mkdir()
    media = Server("local", work / "media", env=library_env(work / "media"))
    static = None
    try:
        static = Server("local", work / "static",
                        env={"MEDIAPROXY_MODE": "static", "MEDIAPROXY_STORAGE": str(media.storage_dir)})
        # the demo objects, as scripts/serve writes them
        subprocess.run([MEDIAPROXY, "demo", "--base-url", media.base, "--static-base-url", static.base],
                       cwd=ROOT, env=media.env, check=True, capture_output=True, timeout=300)
        # the reader's shell: no MEDIAPROXY_* variable, in a checkout whose .venv and var/ (the default
        # library database and queue, relative to the current directory) are the servers'
        shell = tmp_path / "checkout"
        shell.mkdir()
        (shell / ".venv").symlink_to(Path(sys.executable).parent.parent)
        (shell / "var").symlink_to(work / "media")
        reader_env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_")}
        commands = [c.replace(MEDIA_HOST, media.base).replace(STATIC_HOST, static.base) for c in readme_commands()]
        script = "\n".join([
            "set -euo pipefail",
            # an HTTP error fails the script, naming the command (curl alone would exit 0)
            'curl() { command curl --fail-with-body --silent --show-error --max-time 120 "$@"; }',
            *(f"echo {shlex.quote('>>> ' + c)} >&2; {c}; echo" for c in commands),
        ])
        run = subprocess.run(["bash", "-c", script], cwd=shell, env=reader_env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, f"{run.stderr}\n{run.stdout}"
    finally:
        if static is not None:
            static.stop()
        media.stop()
    for c in commands:  # every file a command writes is there and not empty
        for name in re.findall(r"-o\s+(\S+)", c):
            assert (shell / name).stat().st_size > 0, name
    # the upload's answer (the last command's output) is the new record, with its variants
    record = json.loads(run.stdout.strip().splitlines()[-1])
    assert record["filename"] == "photo.jpg" and record["variants"], record
