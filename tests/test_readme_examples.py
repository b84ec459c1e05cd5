"""The example commands of README.md and docs/routes.md, run as printed against what ``scripts/serve``
starts: a media host in ``MEDIAPROXY_MODE=all`` and a static-assets host over the demo objects
(``mediaproxy demo``), in demo mode, on loopback ports of their own instead of 8000 and 8001."""

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

EXAMPLES = [ROOT / "README.md", ROOT / "docs" / "routes.md"]
MEDIA_HOST, STATIC_HOST = "http://127.0.0.1:8000", "http://127.0.0.1:8001"
# a curl command, or a plain assignment (NAME=value, NAME=$(command)) the next commands use
_RUNNABLE = re.compile(r"curl\s|[A-Z_]+=(\$\(.*\)|\S*)\s*(#.*)?$")


def example_commands(doc: Path) -> list[str]:
    """The runnable lines of a page's ``sh`` blocks, in order, continuation lines joined. Commands that
    reach the internet (an ``https://`` target, the external-media example) are left out."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", doc.read_text(), re.M | re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if _RUNNABLE.match(command) and "https://" not in command:
                commands.append(command)
    return commands


def test_the_readme_has_examples_of_each_host_and_an_upload():
    commands = example_commands(ROOT / "README.md")
    assert any(MEDIA_HOST + "/avatars/" in c for c in commands)
    assert any(STATIC_HOST in c for c in commands)
    assert any("-F file=@" in c for c in commands)
    for doc in EXAMPLES:
        for c in example_commands(doc):
            if c.startswith("curl"):
                assert MEDIA_HOST in c or STATIC_HOST in c, f"{doc.name}: not an example against scripts/serve: {c}"


def test_examples_run_as_printed(tmp_path):
    work = tmp_path / "servers"
    work.mkdir()
    demo = {"MEDIAPROXY_SECRET_KEY": "", "MEDIAPROXY_DEMO": "1"}  # as scripts/serve: the public demo key
    media = Server("local", work / "media", env={**library_env(work / "media"), **demo})
    static = None
    try:
        static = Server("local", work / "static",
                        env={"MEDIAPROXY_MODE": "static", "MEDIAPROXY_STORAGE": str(media.storage_dir), **demo})
        # the demo objects, as scripts/serve writes them
        subprocess.run([MEDIAPROXY, "demo", "--base-url", media.base, "--static-base-url", static.base],
                       cwd=ROOT, env=media.env, check=True, capture_output=True, timeout=300)
        # the reader's shell: no MEDIAPROXY_* variable, in a checkout whose .venv and var/ (the default
        # library database and queue, relative to the current directory) are the servers'
        reader_env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_")}
        runs = {}
        for doc in EXAMPLES:
            shell = tmp_path / f"checkout-{doc.stem}"
            shell.mkdir()
            (shell / ".venv").symlink_to(Path(sys.executable).parent.parent)
            (shell / "var").symlink_to(work / "media")
            commands = [c.replace(MEDIA_HOST, media.base).replace(STATIC_HOST, static.base)
                        for c in example_commands(doc)]
            script = "\n".join([
                "set -euo pipefail",
                # an HTTP error fails the script, naming the command (curl alone would exit 0)
                'curl() { command curl --fail-with-body --silent --show-error --max-time 120 "$@"; }',
                *(f"echo {shlex.quote('>>> ' + c)} >&2; {c}; echo" for c in commands),
            ])
            run = subprocess.run(["bash", "-c", script], cwd=shell, env=reader_env, capture_output=True,
                                 text=True, timeout=600)
            assert run.returncode == 0, f"{doc.name}:\n{run.stderr}\n{run.stdout[-2000:]}"
            for c in commands:  # every file a command writes is there and not empty
                for name in re.findall(r"-o\s+(\S+)", c):
                    assert (shell / name).stat().st_size > 0, f"{doc.name}: {name}"
            runs[doc.name] = run
    finally:
        if static is not None:
            static.stop()
        media.stop()
    # the README's upload (its last command) answers the new record, with its variants
    record = json.loads(runs["README.md"].stdout.strip().splitlines()[-1])
    assert record["filename"] == "photo.jpg" and record["variants"], record
