"""Studies declared as data (deflation.montecarlo.Study, TOML files): every experiment and target kind
against an independent route (the public gradient_flow / modified_gradient_flow for the same seed),
grids, time series, kill-and-resume, device-count invariance, rotation invariance, summaries and
plots, planning, bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("xarray")
pytest.importorskip("zarr")

import deflation as dfl  # noqa: E402
from deflation import cli  # noqa: E402
from deflation.init import orthonormal_columns  # noqa: E402
from deflation.montecarlo import (  # noqa: E402
    Study,
    convergence,
    discovery_cdf,
    open_study,
    plan_study,
    run_study,
    store,
    summarize,
    wilson_interval,
)
from deflation.montecarlo.kernel import TARGET_STREAM  # noqa: E402

from _env import cpu_env  # noqa: E402

FLOW = dict(d=6, m=8, delta0=1e-4, horizon=3.3, event_points=64)  # intermediate discovery probabilities
SMALL = {"kind": "basis", "a": [0.6, 0.4]}


def _same(a, b, exact=True):
    assert set(a.data_vars) == set(b.data_vars)
    for v in a.data_vars:
        x, y = a[v].values, b[v].values
        if exact or x.dtype.kind != "f":
            np.testing.assert_array_equal(x, y, err_msg=v)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-12, err_msg=v)


# ---------------------------------------------------------------------------- the two files


FLOW_FILE = """
experiment = "flow"
seeds = 64
chunk = 32
key = 0
[target]
kind = "random"
ratio = 1.2
r = 3
[params]
d = [6, 10]
m = [8, 24]
delta0 = 1e-12
delta1 = 1e-3
alpha = 0.1
horizon = 60
rtol = 1e-6
atol = 1e-6
"""

ALGORITHM2_FILE = """
experiment = "algorithm2"
seeds = 16
chunk = 8
[target]
kind = "basis"
a = [0.5, 0.3, 0.2]
[params]
d = 6
eps = 2e-2
max_epochs = 8
"""


@pytest.mark.slow
def test_the_flow_study_file_runs_and_summarizes(tmp_path, capsys):
    (tmp_path / "flow.toml").write_text(FLOW_FILE)
    assert cli.main(["study", "run", str(tmp_path / "flow.toml"), "--out", str(tmp_path / "flow.zarr"),
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "256/256 seeds computed (complete" in out
    ds = open_study(tmp_path / "flow.zarr")
    assert ds["discovered"].dims == ("d", "m", "seed", "component")
    np.testing.assert_array_equal(ds["d"].values, [6, 10])
    np.testing.assert_array_equal(ds["m"].values, [8, 24])
    for v in ("discovered", "discovery_time", "fit_time", "status"):
        assert v in ds
    assert (ds["status"].values == 0).all()
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "flow.csv")) == 12  # 2 x 2 grid points x 3 components
    for name in ("flow.png", "flow_cdf.png"):
        assert (tmp_path / name).stat().st_size > 1000


@pytest.mark.slow  # (85 s of CPU without a compilation cache) Algorithm 2 studies stay in the default suite through
# test_kill_and_resume_is_bit_identical[algorithm2], study files through test_bad_study_files_*
def test_the_algorithm2_study_file_runs_and_summarizes(tmp_path, capsys):
    (tmp_path / "a2.toml").write_text(ALGORITHM2_FILE)
    assert cli.main(["study", "run", str(tmp_path / "a2.toml"), "--out", str(tmp_path / "a2.zarr"),
                     "--no-progress"]) == 0
    ds = open_study(tmp_path / "a2.zarr")
    assert ds["converged"].dims == ("seed",) and ds["epochs"].dims == ("seed",)
    assert ds["discovery_epoch"].dims == ("seed", "component")
    assert ds.attrs["complete"] and (ds["status"].values == 0).all()
    # every parameter not given follows Theorem 1: compare seed 3 with the public function
    study = Study.from_toml(tmp_path / "a2.toml")
    p = dfl.theorem1_parameters(6, 2e-2)
    target = dfl.Target.basis([0.5, 0.3, 0.2], 6)
    direct = dfl.modified_gradient_flow(target, jax.random.key(0), seeds=[3], **p.as_kwargs(), max_epochs=8)
    assert bool(direct.converged[0]) == bool(ds["converged"].values[3])
    assert int(direct.epochs[0]) == int(ds["epochs"].values[3])
    np.testing.assert_array_equal(np.asarray(direct.discovery_epoch[0]), ds["discovery_epoch"].values[3])
    np.testing.assert_allclose(float(direct.residual_norm[0]), ds["residual_norm"].values[3], rtol=1e-9)
    assert study.points()[0]["m"] == p.m
    # summaries: P(converged within k epochs) is a non-decreasing curve ending at P(converged)
    conv = convergence(ds)
    assert (np.diff(conv["p"].values) >= 0).all()
    assert conv["p"].values[-1] == pytest.approx(ds["converged"].values.mean())
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "a2.csv")) == 3  # one row per component
    for name in ("a2.png", "a2_convergence.png"):
        assert (tmp_path / name).stat().st_size > 1000


# ---------------------------------------------------------------------------- targets and experiments


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """One small flow study per target kind (seeds 0..5), and the targets they used."""
    tmp = tmp_path_factory.mktemp("kinds")
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    U = Q[:, :2] @ np.array([[1.0, np.cos(np.radians(80))], [0.0, np.sin(np.radians(80))]])  # 80 degrees apart
    np.savez(tmp / "target.npz", a=np.array([0.6, 0.4]), U=U)
    targets = {"basis": SMALL, "random": {"kind": "random", "a": [0.6, 0.4]},
               "angle": {"kind": "angle", "a": [0.6, 0.4], "angle": 75.0},
               "file": {"kind": "file", "file": str(tmp / "target.npz")}}
    out = {}
    for kind, target in targets.items():
        study = Study("flow", 6, target, dict(FLOW, horizon=6.0), key=3)
        out[kind] = (study, run_study(study, tmp / f"{kind}.zarr", progress=False, summary=False))
    return out, U


@pytest.mark.parametrize("kind", ["basis", "random", "angle", "file"])
@pytest.mark.slow
def test_each_target_kind_matches_gradient_flow_seed_by_seed(kinds, kind):
    runs, U_file = kinds
    study, ds = runs[kind]
    a = np.array([0.6, 0.4])
    for k in (0, 4):
        seed_key = jax.random.fold_in(jax.random.PRNGKey(3), k)
        if kind == "basis":
            target = dfl.Target.basis(a, 6)
        elif kind == "random":
            target = dfl.Target(a, np.asarray(orthonormal_columns(jax.random.fold_in(seed_key, TARGET_STREAM), 6, 2)))
        elif kind == "angle":
            target = dfl.Target.angle(a, 6, 75.0)
        else:
            target = dfl.Target(a, U_file)
        W0 = dfl.sample_sphere(seed_key, 6, 8, 1e-4)
        res = dfl.gradient_flow(target, W0, [6.0], event_points=64)
        np.testing.assert_allclose(ds["discovery_time"].values[k], np.asarray(res.discovery_time), rtol=1e-9)
        np.testing.assert_allclose(ds["fit_time"].values[k], np.asarray(res.fit_time), rtol=1e-9)
        np.testing.assert_allclose(ds["loss"].values[k], float(res.loss[-1]), rtol=1e-9)
    assert np.isfinite(ds["discovery_time"].values).any()  # not vacuous


def test_random_targets_differ_per_seed_and_are_orthonormal():
    keys = [jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(3), k), TARGET_STREAM) for k in range(3)]
    Us = [np.asarray(orthonormal_columns(k, 6, 2)) for k in keys]
    for U in Us:
        np.testing.assert_allclose(U.T @ U, np.eye(2), atol=1e-12)
    assert np.abs(Us[0] - Us[1]).max() > 0.1


@pytest.mark.slow
def test_phase1_study_matches_the_frozen_flow(tmp_path):
    study = Study("phase1", 4, SMALL, dict(FLOW), key=1)
    ds = run_study(study, tmp_path / "p1.zarr", progress=False, summary=False)
    for k in (0, 3):
        W0 = dfl.sample_sphere(jax.random.fold_in(jax.random.PRNGKey(1), k), 6, 8, 1e-4)
        res = dfl.gradient_flow(dfl.Target.basis([0.6, 0.4], 6), W0, [3.3], frozen=True, event_points=64)
        np.testing.assert_allclose(ds["discovery_time"].values[k], np.asarray(res.discovery_time), rtol=1e-9)
    assert "fit_time" not in ds and "coupling" in ds


# ---------------------------------------------------------------------------- grids


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    study = Study("flow", 16, {"kind": "basis", "ratio": [1.2, 2.0], "r": 2},
                  dict(FLOW, delta0=[1e-5, 1e-4], horizon=8.0), chunk=8, series={"points": 5, "norms": 2})
    return tmp, study, run_study(study, tmp / "grid.zarr", progress=False)


@pytest.mark.slow
def test_a_two_dimensional_grid_has_named_dimensions_and_its_points_are_single_studies(grid, tmp_path):
    tmp, study, ds = grid
    assert ds["discovery_time"].dims == ("delta0", "ratio", "seed", "component")
    np.testing.assert_array_equal(ds["delta0"].values, [1e-5, 1e-4])
    np.testing.assert_array_equal(ds["ratio"].values, [1.2, 2.0])
    assert ds["a"].dims == ("delta0", "ratio", "component")
    np.testing.assert_allclose(ds["a"].values[0, 1], [2 / 3, 1 / 3])
    # grid point (delta0 = 1e-4, ratio = 2.0) run alone: the same numbers, bit for bit
    alone = run_study(Study("flow", 16, {"kind": "basis", "ratio": 2.0, "r": 2}, dict(FLOW, delta0=1e-4, horizon=8.0),
                            chunk=8, series={"points": 5, "norms": 2}),
                      tmp_path / "alone.zarr", progress=False, summary=False)
    _same(ds.isel(delta0=1, ratio=1).drop_vars(["delta0", "ratio"]), alone)
    # common random numbers: the same seeds' initial directions at every grid point, so the larger
    # delta0 (closer to delta1) discovers every component earlier, seed by seed
    t_small, t_large = ds["discovery_time"].values[0, 0], ds["discovery_time"].values[1, 0]
    both = np.isfinite(t_small) & np.isfinite(t_large)
    assert both.any() and (t_large[both] < t_small[both]).all()


@pytest.mark.slow
def test_time_series_match_gradient_flow(grid):
    tmp, study, ds = grid
    times = ds["time"].values
    assert ds["loss_t"].dims == ("delta0", "ratio", "seed", "time")
    assert ds["norms_t"].dims[-2:] == ("time", "rank") and ds.sizes["rank"] == 2
    target = dfl.Target.geometric(6, 2, 1.2)
    W0 = dfl.sample_sphere(jax.random.fold_in(jax.random.PRNGKey(0), 5), 6, 8, 1e-5)
    res = dfl.gradient_flow(target, W0, times, event_points=64)
    np.testing.assert_allclose(ds["loss_t"].values[0, 0, 5], np.asarray(res.loss), rtol=1e-9)
    np.testing.assert_allclose(ds["residual_t"].values[0, 0, 5], np.asarray(res.residual), rtol=1e-9, atol=1e-14)
    norms = np.sort(np.exp(np.asarray(res.log_norm)), axis=-1)[:, ::-1][:, :2]
    np.testing.assert_allclose(ds["norms_t"].values[0, 0, 5], norms, rtol=1e-9)


def test_summaries_and_their_figures(grid):
    tmp, study, ds = grid
    df = summarize(ds)
    assert list(df.columns[:3]) == ["delta0", "ratio", "component"] and len(df) == 8
    assert ((df["p_lo"] <= df["p"]) & (df["p"] <= df["p_hi"])).all()
    cdf = discovery_cdf(ds, num=21)
    for _, g in cdf.groupby(["delta0", "ratio", "component"]):
        assert (np.diff(g["p"].values) >= 0).all()  # a distribution function
    last = cdf[cdf["t"] == cdf["t"].max()].sort_values(["delta0", "ratio", "component"])
    np.testing.assert_allclose(last["p"].values, df.sort_values(["delta0", "ratio", "component"])["p"].values)
    import pandas as pd

    assert len(pd.read_csv(tmp / "grid.csv")) == 8
    for name in ("grid.png", "grid_cdf.png"):
        assert (tmp / name).stat().st_size > 1000


# ---------------------------------------------------------------------------- resume, devices, rotation

KILL = textwrap.dedent("""
    import os, signal, sys
    from deflation.montecarlo import Study, run_study, store
    write = store.write_chunk
    count = [0]
    def killing_write(handle, study, index, c, values):
        count[0] += 1
        if count[0] == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # die before this chunk's data
        write(handle, study, index, c, values)
    store.write_chunk = killing_write
    run_study(Study.from_json(sys.argv[2]), sys.argv[1], progress=False)
""")


# flow under -m slow: test_montecarlo.py::test_kill_and_resume_matches_uninterrupted kills and resumes a flow study
@pytest.mark.parametrize("experiment", [pytest.param("flow", marks=pytest.mark.slow), "algorithm2"])
def test_kill_and_resume_is_bit_identical(experiment, tmp_path):
    if experiment == "flow":
        study = Study("flow", 12, SMALL, dict(FLOW, m=[6, 8]), chunk=4)
    else:
        study = Study("algorithm2", 6, {"kind": "basis", "a": [0.6, 0.4]},
                      dict(d=4, eps=[3e-2, 5e-2], max_epochs=4, event_points=17), chunk=3)
    ref = run_study(study, tmp_path / "ref.zarr", progress=False, summary=False)
    p = subprocess.run([sys.executable, "-c", KILL, str(tmp_path / "k.zarr"), study.to_json(), "3"], env=cpu_env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == -9, p.stderr
    done = np.asarray(__import__("zarr").open_group(str(tmp_path / "k.zarr"), mode="r")[store.DIGEST][...]) != 0
    assert done.sum() == 2 and not done.all()
    resumed = run_study(study, tmp_path / "k.zarr", progress=False, summary=False)
    assert resumed.attrs["complete"]
    _same(resumed, ref)


@pytest.mark.slow  # the default suite's device-count case: test_montecarlo.py::test_chunk_256_on_four_devices_*
def test_grid_study_does_not_depend_on_the_device_count(tmp_path):
    study = Study("flow", 24, SMALL, dict(FLOW, m=[6, 8]), chunk=12)
    ref = run_study(study, tmp_path / "one.zarr", devices=1, progress=False, summary=False)
    (tmp_path / "s.toml").write_text(textwrap.dedent("""
        experiment = "flow"
        seeds = 24
        chunk = 12
        [target]
        kind = "basis"
        a = [0.6, 0.4]
        [params]
        d = 6
        m = [6, 8]
        delta0 = 1e-4
        horizon = 3.3
        event_points = 64
    """))
    p = subprocess.run([sys.executable, "-m", "deflation.cli", "study", "run", str(tmp_path / "s.toml"), "--out",
                        str(tmp_path / "four.zarr"), "--devices", "4", "--no-progress", "--quiet"], env=cpu_env(4),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    four = open_study(tmp_path / "four.zarr")
    assert four.attrs["devices"] == 4
    # discrete results equal, times to 1e-12 (XLA may order a batch's arithmetic by its size)
    _same(four, ref, exact=False)


@pytest.mark.slow
def test_random_and_basis_targets_give_the_same_discovery_probabilities(tmp_path):
    """Rotation invariance: with a Haar-random orthonormal U per seed the discovery probabilities
    equal those of U = I[:, :r] (the Wilson intervals overlap)."""
    params = dict(FLOW)
    basis = run_study(Study("flow", 256, SMALL, params, chunk=128), tmp_path / "b.zarr", progress=False, summary=False)
    rand = run_study(Study("flow", 256, {"kind": "random", "a": [0.6, 0.4]}, params, chunk=128, key=7),
                     tmp_path / "r.zarr", progress=False, summary=False)
    pb, pr = summarize(basis), summarize(rand)
    assert (0.05 < pb["p"]).all() and (pb["p"] < 0.95).all()  # intermediate: the comparison means something
    overlap = (pb["p_lo"].values <= pr["p_hi"].values) & (pr["p_lo"].values <= pb["p_hi"].values)
    assert overlap.all(), (pb[["p", "p_lo", "p_hi"]], pr[["p", "p_lo", "p_hi"]])


# ---------------------------------------------------------------------------- plan, messages, bad input


@pytest.mark.slow
def test_plan_reports_size_memory_and_time_and_refuses_what_does_not_fit(monkeypatch, capsys, tmp_path):
    from deflation.montecarlo import plan as plan_module

    study = Study("flow", 40, SMALL, dict(FLOW, m=[6, 8]), chunk=20)
    plan = plan_study(study)
    assert plan.runs == 80 and plan.points == 2 and plan.chunks == 4 and len(plan.programs) == 2
    assert plan.chunk_bytes > 0 and plan.seconds > 0
    text = plan.describe()
    assert "80 runs" in text and "per chunk" in text and "estimated time" in text
    monkeypatch.setattr(plan_module, "available_memory", lambda device: 1000)
    with pytest.raises(ValueError, match="too large for memory: a chunk of 20 seeds needs about .* but 1000 B"):
        plan_study(study)
    from deflation.montecarlo import run as run_module

    monkeypatch.setattr(run_module, "available_memory", lambda device: 1000)
    with pytest.raises(ValueError, match="needs about .* of memory but 1000 B is available"):
        run_study(study, tmp_path / "big.zarr", progress=False)


@pytest.mark.slow
def test_resuming_and_rerunning_say_so(tmp_path, capsys):
    study = Study("flow", 8, SMALL, dict(FLOW), chunk=4)
    run_study(study, tmp_path / "s.zarr", progress=True, summary=False)
    capsys.readouterr()
    run_study(study, tmp_path / "s.zarr", progress=True, summary=False)
    assert "already complete (2 of 2 chunks done)" in capsys.readouterr().err
    root = __import__("zarr").open_group(str(tmp_path / "s.zarr"), mode="r+")
    root[store.DIGEST][1] = 0  # as if the run had stopped after the first chunk
    run_study(study, tmp_path / "s.zarr", progress=True, summary=False)
    assert "resuming: 1 of 2 chunks done" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("experiment = 'flow'\nseeds = ", "not a valid TOML file"),
    ("experiment = 'flow'\nseeds = 4\ncolour = 'red'\n[target]\na = [1.0]\n[params]\nd = 2\nm = 2\nhorizon = 1",
     "unknown key 'colour'"),
    ("experiment = 'flow'\nseeds = 4\n[target]\na = [1.0]\nshape = 3\n[params]\nd = 2\nm = 2\nhorizon = 1",
     "target: unknown key 'shape'"),
    ("experiment = 'flow'\nseeds = 4\n[target]\na = [1.0]\n[params]\nd = 2\nm = 2\nhorizon = 1\nepochs = 3",
     "params: unknown key 'epochs'"),
    ("experiment = 'flow'\nseeds = 4\n[target]\na = [1.0]\n[params]\nd = 2\nm = 2\nhorizon = 1\n[series]\nn = 3",
     "series: unknown key 'n'"),
    ("experiment = 'flow'\nseeds = 4\n[target]\na = [1.0]\n[params]\nd = 2\nm = 2\nhorizon = 1\nsolver = ['tsit5']",
     "params.solver cannot be swept"),
    ("experiment = 'flow'\nseeds = 4\n[target]\na = [0.5, 0.5]\n[params]\nd = [1, 2]\nm = 2\nhorizon = 1",
     "r must be <= d"),
    ("experiment = 'flow'\nseeds = 4\n[target]\na = [1.0]\n[params]\nd = 2\nm = 2\nhorizon = 1\ndelta0 = 0.1",
     "params.delta0 = 0.1 must be < params.delta1"),
    ("experiment = 'flow'\nseeds = 4\n[target]\na = [1.0]\n[params]\nd = 2\nm = 2.5\nhorizon = 1",
     "params.m must be an integer >= 1, got 2.5"),
    ("experiment = 'algorithm2'\nseeds = 4\n[target]\na = [1.0]\n[params]\nd = 2\neps = 0.1\nhorizon = 3",
     "params.horizon does not apply to experiment 'algorithm2'"),
    ("experiment = 'flows'\nseeds = 4\n[target]\na = [1.0]\n[params]\nd = 2\nm = 2\nhorizon = 1",
     "experiment must be one of"),
])
@pytest.mark.smoke
def test_bad_study_files_are_refused_with_one_line_naming_the_key(text, message, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises((ValueError, TypeError), match=message):
        Study.from_toml(path)
    assert cli.main(["study", "run", str(path), "--out", str(tmp_path / "x.zarr")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.zarr").exists()  # nothing was started


@pytest.mark.slow
def test_an_out_holding_another_study_is_refused(tmp_path, capsys):
    (tmp_path / "a.toml").write_text("experiment = 'flow'\nseeds = 4\n[target]\na = [0.6, 0.4]\n[params]\n"
                                     "d = 6\nm = 8\nhorizon = 1\ndelta0 = 1e-4\nevent_points = 16")
    (tmp_path / "b.toml").write_text("experiment = 'flow'\nseeds = 4\n[target]\na = [0.6, 0.4]\n[params]\n"
                                     "d = 6\nm = 9\nhorizon = 1\ndelta0 = 1e-4\nevent_points = 16")
    assert cli.main(["study", "run", str(tmp_path / "a.toml"), "--out", str(tmp_path / "s.zarr"), "--quiet",
                     "--no-progress"]) == 0
    assert cli.main(["study", "run", str(tmp_path / "b.toml"), "--out", str(tmp_path / "s.zarr")]) == 2
    assert "already holds a different study (params.m: 8 (stored) vs 9 (requested))" in capsys.readouterr().err


def test_wilson_interval_is_the_score_interval():
    lo, hi = wilson_interval(3, 10)
    z = 1.959963984540054
    p, n = 0.3, 10
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert lo == pytest.approx(centre - half) and hi == pytest.approx(centre + half)
    assert jnp.isnan(wilson_interval(0, 0)[0])
