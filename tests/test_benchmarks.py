"""Every benchmark script runs end to end at a tiny size, writes its results file where it is told
(never into the committed benchmarks/results/ without --record) and prints its summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _env import cpu_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _run(script: str, *args, timeout=900):
    env = cpu_env()
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


@pytest.mark.slow
def test_gpu_script_at_a_tiny_size_on_the_cpu(tmp_path):
    """``gpu.py --tiny`` runs its four parts on the CPU and names the files after the device it found."""
    p = _run("gpu.py", "--tiny", "--out", str(tmp_path), timeout=3000)  # compiling 7 programs: 24 min on 2 busy cores
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "algorithm2_tiny_cpu.json", "montecarlo_tiny_cpu.json", "throughput_tiny_cpu.json"]  # never *_gpu on a CPU
    thr, mc, a2 = (json.loads((tmp_path / f"{n}_tiny_cpu.json").read_text())
                   for n in ("throughput", "montecarlo", "algorithm2"))
    for r in (thr, mc, a2):
        env = r["device"]
        assert env["platform"] == "cpu" and env["device_name"] and env["jax"] and env["jaxlib"]
        assert env["cpu_model"] and env["cpu_isa"] and r["tiny"] is True
    flow = thr["flow"]
    assert (flow["seeds"], flow["series_seeds"], flow["points"]) == (16, 8, 11)
    assert flow["one_save_num_failed"] == flow["series_num_failed"] == 0
    assert flow["one_save_seeds_per_s"] > 0 and flow["series_seeds_per_s"] > 0
    fit = flow["one_save_fit_time_median"]  # Figure 1's staircase: the components are fitted in order
    assert len(fit) == 5 and all(a < b for a, b in zip(fit, fit[1:])) and 30 < fit[0] < 300
    for tol in ("0.0001", "1e-06"):
        row = thr["float32"][f"tol_{tol}"]
        assert row["speedup"] > 0
        for dtype in ("float64", "float32"):  # against the float64 Dopri8 solve at 1e-12
            assert row[dtype]["num_failed"] == 0 and row[dtype]["fit_time_mismatch_inf"] == 0
            assert row[dtype]["W_error_rel"] < (1e-2 if tol == "0.0001" else 1e-3)
    assert thr["float32"]["tol_1e-06"]["float32"]["fit_time_error_max"] < 1e-2
    study = mc["study"]
    assert study["seeds"] == 48 and study["failed"] == 0 and study["seeds_per_s"] > 0
    p_disc = study["p_discovered"]  # horizon 80: the largest component is discovered in every seed
    assert len(p_disc) == 5 and p_disc[0] == 1.0 and p_disc[-1] < 1.0
    alg = a2["algorithm2"]
    assert (alg["d"], alg["seeds"], alg["m"]) == (4, 2, 32)  # Theorem 1's default m = 2 d^2
    assert 0.0 <= alg["converged_fraction"] <= 1.0 and 1 <= alg["epochs_max"] <= alg["max_epochs"]
    for part in ("flow:", "float32:", "study:", "algorithm2:"):
        assert part in p.stdout


@pytest.mark.slow
def test_gpu_script_refuses_an_unknown_part(tmp_path):
    p = _run("gpu.py", "--tiny", "--only", "flow,nope", "--out", str(tmp_path), timeout=300)
    assert p.returncode == 2 and "--only must be a comma list of flow, float32, study, algorithm2" in p.stderr
    assert "Traceback" not in p.stderr and not list(tmp_path.iterdir())
