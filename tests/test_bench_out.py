"""Benchmarks write results only where asked (--out), never over the committed files."""

from __future__ import annotations

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
        if script.stem in ("common", "locustfile"):
            continue
        text = script.read_text()
        assert "add_out_argument(ap)" in text or '"--out"' in text, script.name
        assert f"bench/{script.name}" in run_all or re.search(rf"for b in [^;]*\b{script.stem}\b", run_all), script.name


def test_a_trial_run_writes_nothing_and_out_writes_where_asked(tmp_path):
    before = snapshot()
    done = subprocess.run([sys.executable, "bench/micro.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "not written" in done.stdout
    assert snapshot() == before
    done = subprocess.run([sys.executable, "bench/micro.py", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and (tmp_path / "micro.json").stat().st_size > 0
    assert snapshot() == before
