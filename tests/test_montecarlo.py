"""Monte Carlo studies through ``deflation montecarlo`` and the flow experiment: invariance of the
dataset to chunking, devices and processes; resume after SIGKILL; agreement with a direct loop over
``gradient_flow``; bad input."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

pytest.importorskip("xarray")
pytest.importorskip("zarr")

import deflation as dfl  # noqa: E402
from deflation import cli  # noqa: E402
from deflation.montecarlo import (  # noqa: E402
    StoreMismatch,
    Study,
    open_study,
    run_study,
    store,  # noqa: E402
    summarize,
    wilson_interval,
)

from _env import cpu_env  # noqa: E402

# small study with intermediate discovery probabilities (component 0 ~0.8, component 1 ~0.2)
PARAMS = dict(a=[0.6, 0.4], d=6, m=8, delta0=1e-4, horizon=3.3, seeds=256, event_points=64)


def make_study(experiment="flow", **changes):
    """The study of PARAMS (with changes) as a Study."""
    p = {**PARAMS, **changes}
    target = {"kind": "basis", "a": p.pop("a")}
    seeds = p.pop("seeds")
    return Study(experiment, seeds, target, p)
CLI_ARGS = ["--a", "0.6,0.4", "--d", "6", "--m", "8", "--delta0", "1e-4", "--horizon", "3.3", "--seeds", "256",
            "--event-points", "64", "--no-progress", "--quiet"]
DISCRETE = ("discovered", "members", "status")
TIMES = ("discovery_time", "fit_time", "loss")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same(ds, ref):
    for v in DISCRETE:
        np.testing.assert_array_equal(ds[v].values, ref[v].values, err_msg=v)
    for v in TIMES:
        np.testing.assert_allclose(ds[v].values, ref[v].values, rtol=1e-9, atol=0, err_msg=v)
    assert (ds["status"].values == 0).all()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The study on one device in chunks of 64 (compiled once for the module)."""
    out = tmp_path_factory.mktemp("mc") / "ref.zarr"
    ds = run_study(make_study(), out, chunk=64, devices=1, progress=False)
    return out, ds


@pytest.mark.smoke  # a tiny study (one compiled program) and its store
def test_reference_dataset(reference):
    out, ds = reference
    assert ds["discovered"].dims == ("seed", "component")
    assert ds.attrs["complete"] and ds.attrs["jax_version"] == jax.__version__
    assert ds.attrs["deflation_version"] == dfl.__version__
    assert Study.from_json(ds.attrs["study"]) == make_study()
    assert store.study_of(ds).points()[0]["m"] == 8 and store.study_of(ds).points()[0]["delta0"] == 1e-4
    p = ds["discovered"].values.mean(axis=0)
    assert 0.05 < p[1] < p[0] < 0.99  # the comparisons below are not vacuous
    # discovered <=> finite discovery time <= horizon; a discovered component has a member column
    t = ds["discovery_time"].values
    np.testing.assert_array_equal(ds["discovered"].values, np.isfinite(t))
    assert (t[np.isfinite(t)] <= 3.3).all()
    assert (ds["members"].values[ds["discovered"].values] >= 1).all()
    assert (out.parent / "ref.png").stat().st_size > 0 and (out.parent / "ref.csv").exists()


def _cli_subprocess(args, devices=None):
    return subprocess.Popen([sys.executable, "-m", "deflation.cli", "montecarlo", *CLI_ARGS, *args],
                            env=cpu_env(devices), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(procs):
    for p in procs:
        text, _ = p.communicate(timeout=600)
        assert p.returncode == 0, text


@pytest.mark.slow
def test_chunk_256_on_four_devices_gives_the_same_dataset(reference, tmp_path):
    """chunk 256 sharded over four forced host devices vs chunk 64 on one device."""
    _, ref = reference
    _wait([_cli_subprocess(["--chunk", "256", "--devices", "4", "--out", str(tmp_path / "dev4.zarr")], devices=4)])
    dev4 = open_study(tmp_path / "dev4.zarr")
    assert dev4.attrs["devices"] == 4 and dev4.attrs["chunk"] == 256
    assert_same(dev4, ref)


@pytest.mark.slow
def test_two_process_job_gives_the_same_dataset(reference, tmp_path):
    """Two local processes (one device each) form a jax.distributed job over gloo; process 0 writes."""
    _, ref = reference
    port = _free_port()
    _wait([_cli_subprocess(["--chunk", "64", "--out", str(tmp_path / "proc2.zarr"), "--coordinator",
                            f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(pid),
                            "--init-timeout", "120"]) for pid in (0, 1)])
    proc2 = open_study(tmp_path / "proc2.zarr")
    assert proc2.attrs["num_processes"] == 2 and proc2.attrs["devices"] == 2
    assert_same(proc2, ref)


KILL_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from deflation.montecarlo import Study, run_study, store
    write = store.write_chunk
    count = [0]
    def killing_write(handle, study, index, c, values):
        if count[0] == 3:  # chunk 4: write its data, then die before its digest
            for name in store.layout(study, handle.chunk):
                handle.root[name][store.region(study, index, c, handle.chunk)] = values[name][:handle.chunk]
            os.kill(os.getpid(), signal.SIGKILL)
        write(handle, study, index, c, values)
        count[0] += 1
    store.write_chunk = killing_write
    run_study(Study.from_json(sys.argv[2]), sys.argv[1], chunk=64, progress=False)
""")


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(reference, tmp_path):
    _, ref = reference
    out = tmp_path / "killed.zarr"
    p = subprocess.run([sys.executable, "-c", KILL_DRIVER, str(out), make_study().to_json()],
                       env=cpu_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == -9, p.stderr
    done = np.asarray(__import__("zarr").open_group(str(out), mode="r")[store.DIGEST][...]) != 0
    assert done.sum() == 3 and not done.all()
    ds = run_study(make_study(), out, progress=False)  # resumes with the stored chunk size
    assert ds.attrs["complete"]
    for v in DISCRETE + TIMES + ("num_steps",):
        np.testing.assert_array_equal(ds[v].values, ref[v].values, err_msg=v)  # bit-identical


@pytest.mark.slow
def test_agrees_with_direct_gradient_flow_loop(reference):
    """Per-component probabilities from a loop of single gradient_flow calls lie in the Wilson
    interval of the study, and vice versa."""
    _, ds = reference
    n = 96
    target = dfl.Target.basis(PARAMS["a"], PARAMS["d"])
    key = jax.random.PRNGKey(0)
    found = np.zeros((n, 2), bool)
    for k in range(n):
        W0 = dfl.sample_sphere(jax.random.fold_in(key, k), PARAMS["d"], PARAMS["m"], PARAMS["delta0"])
        res = dfl.gradient_flow(target, W0, [PARAMS["horizon"]], event_points=PARAMS["event_points"])
        found[k] = np.isfinite(np.asarray(res.discovery_time))
    mine = ds["discovered"].values[:n]
    assert (found != mine).sum() <= 2  # same seeds: (almost) identical outcomes
    lo, hi = wilson_interval(mine.sum(0), n)
    p_loop = found.mean(0)
    assert ((lo <= p_loop) & (p_loop <= hi)).all(), (p_loop, lo, hi)


def test_sweep_dimension_matches_single_study(reference, tmp_path):
    """A sweep over delta1 has a delta1 dimension; its point equal to the reference is the reference."""
    _, ref = reference
    ds = run_study(make_study(delta1=[1e-3, 1e-2], seeds=64), tmp_path / "sweep.zarr", chunk=64, progress=False)
    assert ds["discovered"].dims == ("delta1", "seed", "component")
    np.testing.assert_array_equal(ds["delta1"].values, [1e-3, 1e-2])
    for v in DISCRETE:
        np.testing.assert_array_equal(ds[v].sel(delta1=1e-3).values, ref[v].values[:64])
    # reaching the larger norm delta1 takes longer
    t1, t2 = ds["discovery_time"].values
    both = np.isfinite(t1) & np.isfinite(t2)
    assert (t2[both] > t1[both]).all()
    df = summarize(ds)
    assert list(df.columns[:2]) == ["delta1", "component"] and len(df) == 4
    assert (tmp_path / "sweep.png").exists()


@pytest.mark.slow
def test_decoupled_mode_close_to_full_flow(reference, tmp_path):
    _, ref = reference
    ds = run_study(make_study("phase1"), tmp_path / "dec.zarr", chunk=256, progress=False)
    assert "coupling" in ds and (ds["status"].values == 0).all()
    assert (ds["coupling"].values < 0.05).all()  # Phase 1: the columns stay small up to the horizon
    # coupling_max bounds max_t sum_j |w_j(t)|^2 from above, within the factor e^(2 c h) it allows
    # for between its save points (c = lam = 0 here, p = 4 even): check it against a fine time series
    target = dfl.Target.basis(PARAMS["a"], PARAMS["d"])
    seeds = [0, 1, 2]
    W0 = dfl.sample_sphere_batch(jax.random.PRNGKey(0), seeds, PARAMS["d"], PARAMS["m"], PARAMS["delta0"])
    fine = dfl.gradient_flow(target, W0, np.linspace(0.0, PARAMS["horizon"], 2001), frozen=True,
                             event_points=PARAMS["event_points"])
    S_max = np.exp(2 * np.asarray(fine.log_norm)).sum(axis=-1).max(axis=-1)
    bound = ds["coupling_max"].values[seeds]
    assert (S_max <= bound * (1 + 1e-6)).all() and (bound <= S_max * (1 + 1e-6)).all(), (S_max, bound)
    p_dec, p_full = ds["discovered"].values.mean(0), ref["discovered"].values.mean(0)
    lo, hi = wilson_interval(ref["discovered"].values.sum(0), PARAMS["seeds"])
    assert ((lo <= p_dec) & (p_dec <= hi)).all(), (p_dec, p_full)
    both = ds["discovered"].values & ref["discovered"].values
    np.testing.assert_allclose(ds["discovery_time"].values[both], ref["discovery_time"].values[both], rtol=1e-2)


def test_wilson_interval_closed_forms():
    z2 = 1.959963984540054**2
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and np.isclose(hi, z2 / (10 + z2))
    lo, hi = wilson_interval(10, 10)
    assert np.isclose(hi, 1) and np.isclose(lo, 10 / (10 + z2))
    lo, hi = wilson_interval(50, 100)  # symmetric about 1/2, and narrower than +-1.96 sqrt(pq/n) + 1/n
    assert np.isclose(lo + hi, 1.0) and 0.40 < lo < 0.41
    assert np.isnan(wilson_interval(0, 0)[0])


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(a=[0.5, -0.1]), "target.a must be >= 0"),
        (dict(a=[]), "at least one weight"),
        (dict(a=[0.3, float("nan")]), "target.a must be finite"),
        (dict(d=1), "r must be <= d"),
        (dict(m=0), "params.m must be an integer >= 1"),
        (dict(m=8.5), "params.m must be an integer >= 1, got 8.5"),
        (dict(delta0=1e-2), "params.delta0 = 0.01 must be < params.delta1"),
        (dict(alpha=1.5), "params.alpha must lie in the open interval"),
        (dict(horizon=-1.0), "params.horizon must be a finite number > 0"),
        (dict(lam=-0.1), "params.lam must be a finite number >= 0"),
        (dict(seeds=0), "seeds must be an integer >= 1"),
        (dict(solver="rk4"), "params.solver must be one of"),
        (dict(solver=["tsit5", "dopri5"]), "params.solver cannot be swept"),
        (dict(m=[4, 4]), "sweep values must be distinct"),
        (dict(m=[4, 8], d=[1, 6]), r"r must be <= d \(at the grid point d = 1, m = 4\)"),
        (dict(dtype="float32"), "params.rtol and params.atol must be >= 1e-6"),
        (dict(typo=3), "params: unknown key 'typo'"),
    ],
)
def test_study_rejects_bad_parameters(change, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_study(**change)


def _cli(capsys, *args):
    rc = cli.main(["montecarlo", *args])
    return rc, capsys.readouterr().err


def test_cli_bad_input(capsys, tmp_path):
    base = CLI_ARGS + ["--out", str(tmp_path / "x.zarr")]
    rc, err = _cli(capsys, *[("0.3,,x" if a == "0.6,0.4" else a) for a in base])
    assert rc == 2 and "--a must be a comma-separated list of numbers, got '0.3,,x'" in err
    rc, err = _cli(capsys, *base, "--chunk", "0")
    assert rc == 2 and "--chunk must be a positive integer" in err
    rc, err = _cli(capsys, *base, "--devices", str(len(jax.local_devices()) + 1))
    assert rc == 2 and "devices must be <=" in err
    rc, err = _cli(capsys, *[a for a in base if a != "--seeds" and a != "256"])
    assert rc == 2 and "--seeds is required" in err
    assert not (tmp_path / "x.zarr").exists()  # nothing was started


def test_existing_store_of_another_study_is_refused(tmp_path, capsys):
    out = tmp_path / "s.zarr"
    store.create(out, make_study(), 64, {})
    with pytest.raises(StoreMismatch, match=r"different study \(params.m: 8 \(stored\) vs 9 \(requested\)\)"):
        run_study(make_study(m=9), out, progress=False)
    with pytest.raises(StoreMismatch, match="started with chunk = 64, got chunk = 128"):
        run_study(make_study(), out, chunk=128, progress=False)
    (tmp_path / "junk").mkdir()
    with pytest.raises(StoreMismatch, match="not a deflation study store"):
        run_study(make_study(), tmp_path / "junk", progress=False)


def test_unreachable_coordinator_times_out_clearly(capsys, tmp_path):
    port = _free_port()  # nobody listens there
    rc, err = _cli(capsys, *CLI_ARGS, "--out", str(tmp_path / "x.zarr"), "--coordinator", f"127.0.0.1:{port}",
                   "--num-processes", "2", "--process-id", "1", "--init-timeout", "1")
    assert rc == 2 and f"coordinator 127.0.0.1:{port} not reachable within 1 s" in err
    with pytest.raises(ValueError, match="HOST:PORT"):
        dfl.montecarlo.initialize_distributed("localhost", 2, 1)
    with pytest.raises(ValueError, match=r"process_id must be in \[0, num_processes\)"):
        dfl.montecarlo.initialize_distributed("127.0.0.1:1234", 2, 2)
