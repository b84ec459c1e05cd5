"""Benchmarks write results only where asked (--out), never over the committed files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def snapshot() -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in RESULTS.iterdir()}


def test_every_benchmark_takes_out():
    for script in ("hits", "load", "memory", "miss", "tune"):
        assert "add_out_argument(ap)" in (ROOT / "bench" / f"{script}.py").read_text(), script
    assert '"--out"' in (ROOT / "bench" / "micro.py").read_text()
    # and bench/run_all.sh runs each benchmark with it
    run_all = (ROOT / "bench" / "run_all.sh").read_text()
    for script in sorted((ROOT / "bench").glob("*.py")):
        if script.stem in ("common", "locustfile", "memoised_transform"):  # support modules, not benchmarks
            continue
        text = script.read_text()
        if "\nfrom peers import main\n" in text:  # another name for bench/peers.py with some arguments
            continue
        assert "add_out_argument(ap)" in text or '"--out"' in text, script.name
        runs = (f"bench/{script.name}" in run_all or f"-m bench.{script.stem} " in run_all
                or re.search(rf"for b in [^;]*\b{script.stem}\b", run_all))
        assert runs, script.name


def test_a_trial_run_writes_nothing_and_out_writes_where_asked(tmp_path):
    before = snapshot()
    done = subprocess.run([sys.executable, "bench/micro.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "not written" in done.stdout
    assert snapshot() == before
    done = subprocess.run([sys.executable, "bench/micro.py", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and (tmp_path / "micro.json").stat().st_size > 0
    assert snapshot() == before


def test_the_peers_benchmark_runs_in_smoke_mode(tmp_path):
    """bench/peers.py --smoke: mediaproxy alone (no thumbor or ipx to install), one short round of case a:
    the sources, the hard-linked keys, wrk's per-request keys and the CPU readings all work."""
    before = snapshot()
    done = subprocess.run([sys.executable, "bench/peers.py", "--smoke", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "peers.json").read_text())
    for key in ("a c1", "a c4"):
        row = data["table"][key]["mediaproxy"]
        assert row["rps"] > 0 and row["cpu_ms_per_request"] > 0 and row["errors"] == 0, row
    assert "| a 1024² JPEG → 256² WebP | 1 |" in (tmp_path / "peers.md").read_text()
    assert snapshot() == before
