"""Benchmarks write results only where asked (--out), never over the committed files."""

from __future__ import annotations

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


def test_a_trial_run_writes_nothing_and_out_writes_where_asked(tmp_path):
    before = snapshot()
    done = subprocess.run([sys.executable, "bench/micro.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "not written" in done.stdout
    assert snapshot() == before
    done = subprocess.run([sys.executable, "bench/micro.py", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and (tmp_path / "micro.json").stat().st_size > 0
    assert snapshot() == before
