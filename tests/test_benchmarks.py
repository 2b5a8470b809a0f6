"""Every benchmark script runs end to end at a tiny size, writes its results file where it is told
(never into the committed benchmarks/results/ without --record) and prints its summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _run(script: str, *args, timeout=900):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_throughput_at_a_tiny_size(tmp_path):
    out = tmp_path / "t.json"
    p = _run("throughput.py", "--quick", "--only", "dense,flow", "--seeds", "4", "--scipy-seeds", "1", "--repeats",
             "1", "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["flow"]["one_save_seeds_per_s"] > 0 and r["flow"]["scipy_series_seeds_per_s"] > 0
    assert r["flow"]["series_loss_rel_error_above_floor"] < 0.1
    assert "target 3" in p.stdout and "one save" in p.stdout


@pytest.mark.slow
def test_solvers_at_a_tiny_size(tmp_path):
    out = tmp_path / "s.json"
    p = _run("solvers.py", "--quick", "--only", "figure1", "--solvers", "Tsit5", "--no-progress", "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert {row["solver"] for row in r["figure1"]["runs"]} == {"Tsit5"}
    assert out.with_suffix(".png").stat().st_size > 1000


@pytest.mark.slow
def test_montecarlo_at_a_tiny_size(tmp_path):
    out = tmp_path / "m.json"
    p = _run("montecarlo.py", "--seeds", "8", "--chunk", "8", "--scale-seeds", "16", "--devices", "1", "--horizon",
             "5", "--phase1-horizon", "5", "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["scale"]["seeds_per_s"] > 0 and r["phase1"]["speedup"] > 0


def test_results_go_to_the_ignored_folder_unless_recorded():
    sys.path.insert(0, str(BENCH))
    try:
        import _common
    finally:
        sys.path.remove(str(BENCH))
    assert _common.output_path("x.json", record=False).parent == BENCH / "out"
    assert _common.output_path("x.json", record=True).parent == BENCH / "results"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(BENCH / "out" / "x.json")], cwd=ROOT)
    assert ignored.returncode == 0
