"""Independent workers on one store: the claim logic (exclusive, stale claims taken over, a live
one respected, a racing crowd of processes claims each chunk once), the shares, ``study status``,
``study init``, a jax.distributed process 0 whose peer never comes (one line, exit 2, within
about the timeout), and (slow) three workers through submitit's local executor with one killed
mid-chunk, whose finished store equals a single process's bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xarray")
zarr = pytest.importorskip("zarr")

from deflation import cli  # noqa: E402
from deflation.montecarlo import Study, run_study, store, workers  # noqa: E402

STUDY = Study("flow", 8, {"kind": "basis", "a": [0.6, 0.4]},
              dict(d=3, m=3, delta0=[1e-4, 2e-4], horizon=2.0, event_points=8), chunk=2)
TOML = ("experiment = 'flow'\nseeds = 8\nchunk = 2\n[target]\na = [0.6, 0.4]\n[params]\nd = 3\nm = 3\n"
        "delta0 = [1e-4, 2e-4]\nhorizon = 2.0\nevent_points = 8\n")


def test_shares_partition_the_chunks_and_a_worker_visits_every_chunk():
    todo = [(j, c) for j in range(3) for c in range(5)]
    shares = [workers.share(todo, 5, k, 4) for k in range(4)]
    assert sorted(p for s in shares for p in s) == todo  # each chunk in exactly one share
    assert all(abs(len(s) - len(todo) / 4) < 1 for s in shares)
    seen = workers.order(todo, 5, 2, 4)
    assert seen[: len(shares[2])] == shares[2] and sorted(seen) == todo
    with pytest.raises(ValueError, match=r"worker must be in \[0, workers\) = \[0, 3\), got worker = 3"):
        workers.check_worker(3, 3)


def test_a_claim_is_exclusive_and_finishing_records_it(tmp_path):
    a = workers.Claims(tmp_path, 0, 2, timeout=60)
    b = workers.Claims(tmp_path, 1, 2, timeout=60)
    assert a.claim((0, 1)) and not b.claim((0, 1))
    assert a.holds((0, 1)) and not b.holds((0, 1))
    a.finish((0, 1))
    claim = workers.read_claims(tmp_path)[(0, 1)]
    assert claim.worker == 0 and claim.state == "done" and claim.seconds >= 0


@pytest.mark.slow
def test_a_stale_claim_is_taken_over_and_a_live_one_is_respected(tmp_path):
    dead = workers.Claims(tmp_path, 0, 2, timeout=0.5)
    assert dead.claim((0, 0))  # and then the worker dies: no heartbeat
    live = workers.Claims(tmp_path, 1, 2, timeout=0.5)
    with live:  # its heartbeat refreshes what it holds
        assert live.claim((0, 1))
        time.sleep(1.2)
        other = workers.Claims(tmp_path, 2, 3, timeout=0.5)
        assert not other.claim((0, 1))  # refreshed: still live
        assert other.claim((0, 0))  # stale: taken over
        assert other.holds((0, 0)) and not dead.holds((0, 0))
    assert (0, 1) not in workers.read_claims(tmp_path)  # released when the worker stopped without finishing


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    code = ("import os, sys\nfrom deflation.montecarlo import workers\n"
            "assert workers.Claims(sys.argv[1], 0, 2, timeout=600).claim((0, 0))\nos._exit(0)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (claim,) = workers.read_claims(tmp_path).values()
    assert claim.state == "running" and claim.stale(600, now=claim.refreshed)  # fresh, but its process is gone
    other = workers.Claims(tmp_path, 1, 2, timeout=600)
    assert other.claim((0, 0)) and other.holds((0, 0))
    mine = workers.Claims(tmp_path, 0, 2, timeout=600)
    assert mine.claim((0, 1))  # a live process's claim (this one) waits for the timeout
    assert not workers.Claims(tmp_path, 1, 2, timeout=600).claim((0, 1))


def test_a_done_claim_is_respected_only_if_done_after_the_worker_looked(tmp_path):
    a = workers.Claims(tmp_path, 0, 2)
    assert a.claim((0, 0)) and a.claim((0, 1))
    a.finish((0, 0))
    os.utime(tmp_path / workers.CLAIMS / "0.0", (time.time() - 100,) * 2)  # done before b looked
    a.finish((0, 1))  # done after b looked: b must not compute it again
    b = workers.Claims(tmp_path, 1, 2, since=time.time() - 50)
    assert b.claim((0, 0))  # lost or damaged since it was done: recomputed
    assert not b.claim((0, 1))


RACE = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("claims_only", {path!r})  # the module alone: no JAX to start
mod = sys.modules["claims_only"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
claims = mod.Claims({folder!r}, int(sys.argv[1]), 8, timeout=3600)
while time.time() < {start}:
    pass
won = []
for pos in [(j, c) for j in range(4) for c in range(10)]:
    if claims.claim(pos):
        won.append(f"{{pos[0]}}.{{pos[1]}}")
        time.sleep(0.005)  # as computing would: the others get their turn
print(" ".join(won))
"""


@pytest.mark.slow
def test_racing_processes_claim_each_chunk_once(tmp_path):
    script = RACE.format(path=workers.__file__, folder=str(tmp_path), start=time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(k)], stdout=subprocess.PIPE, text=True)
             for k in range(8)]
    won = [p.communicate(timeout=60)[0].split() for p in procs]
    flat = [tuple(map(int, name.split("."))) for w in won for name in w]
    assert sorted(flat) == [(j, c) for j in range(4) for c in range(10)]  # every chunk, once


def test_status_counts_done_claimed_missing_damaged(tmp_path, capsys):
    out = tmp_path / "s.zarr"
    store.create(out, STUDY, 2, {})
    root = zarr.open_group(str(out), mode="r+", use_consolidated=False)
    root[store.DIGEST][0, 0] = 12345  # flagged, but its data does not match: damaged
    claims = workers.Claims(out, 1, 3, timeout=600)
    assert claims.claim((1, 2))
    stale = workers.Claims(out, 2, 3, timeout=600)
    assert stale.claim((1, 3))
    os.utime(out / workers.CLAIMS / "1.3", (time.time() - 3600,) * 2)
    found = workers.status(out)
    assert (found.total, found.done, found.damaged, found.claimed, found.stale) == (8, 0, 1, 1, 1)
    assert found.missing == 6 and found.per_worker[1]["claimed"] == 1
    assert cli.main(["study", "status", str(out)]) == 1
    text = capsys.readouterr().out
    assert "0 of 8 chunks done, 1 claimed" in text and "worker 1: 0 done, 1 computing" in text
    assert "time left: unknown" in text


def test_init_creates_the_store_once_and_checks_it_again(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(TOML)
    out = tmp_path / "s.zarr"
    assert cli.main(["study", "init", str(tmp_path / "s.toml"), "--out", str(out)]) == 0
    assert zarr.open_group(str(out), mode="r").attrs["chunk"] == 2
    assert cli.main(["study", "init", str(tmp_path / "s.toml"), "--out", str(out)]) == 0
    (tmp_path / "t.toml").write_text(TOML.replace("seeds = 8", "seeds = 6"))
    assert cli.main(["study", "init", str(tmp_path / "t.toml"), "--out", str(out)]) == 2
    assert "already holds a different study" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--worker", "3", "--workers", "3"], "--worker must be in 0 .. --workers - 1"),
    (["--worker", "0"], "--worker K and --workers N go together"),
    (["--worker", "0", "--workers", "2", "--claim-timeout", "0"], "--claim-timeout must be > 0"),
])
def test_bad_worker_options_are_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "s.toml").write_text(TOML)
    assert cli.main(["study", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "x.zarr"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers must be a positive integer"),
    (["--workers", "2", "--cluster", "local", "--partition", "gpu"], "--partition/--account/--qos need Slurm"),
    (["--workers", "2", "--cluster", "pbs"], "cluster must be 'slurm', 'local' or 'debug'"),
])
def test_bad_submit_options_are_one_line(argv, message, tmp_path, capsys):
    _submitit()
    (tmp_path / "s.toml").write_text(TOML)
    assert cli.main(["study", "submit", str(tmp_path / "s.toml"), "--out", str(tmp_path / "x.zarr"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.zarr").exists()


def _submitit():
    """submitit through the package's guarded import (a plain import closes the stream absl's
    handler holds: pytest's own capture of stderr, once optax has been imported), or skip."""
    from deflation.montecarlo import cluster

    try:
        return cluster.import_submitit()
    except ValueError:
        pytest.skip("submitit is not installed")


@pytest.mark.slow
def test_importing_submitit_leaves_other_handlers_streams_open():
    """optax imports absl, whose logging handler keeps the stderr of its import time; a plain
    ``import submitit`` (its dictConfig) closes that stream. Through the package's import it stays
    open, and submitit's logger still writes warnings to stderr."""
    pytest.importorskip("submitit")  # only to know it is installed: the check runs in a new process
    code = (
        "import io, sys\n"
        "held = io.StringIO(); real = sys.stderr; sys.stderr = held\n"
        "import optax, absl.logging\n"
        "sys.stderr = real\n"
        "from deflation.montecarlo import cluster\n"
        "cluster.import_submitit()\n"
        "import logging\n"
        "logging.getLogger('submitit').warning('hello')\n"
        "print('closed' if held.closed else 'open')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "open"
    assert "submitit WARNING" in proc.stderr and "hello" in proc.stderr


@pytest.mark.slow
def test_process_0_whose_peer_never_comes_exits_2_with_one_line_within_the_timeout(tmp_path):
    (tmp_path / "s.toml").write_text(TOML)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "deflation.cli", "study", "run", str(tmp_path / "s.toml"), "--out",
           str(tmp_path / "x.zarr"), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id",
           "0", "--init-timeout", "3"]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
                          timeout=120)
    took = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "did not form within 3 s" in err and "Check failure" not in err
    assert took < 50  # JAX's runtime aborts after about 70 s; this is the start-up plus the 3 s


def test_cluster_processes_are_found_in_the_environment(monkeypatch):
    from deflation.commands._study_run import cluster_processes

    for name in ("OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert cluster_processes() == 1
    monkeypatch.setenv("SLURM_NTASKS", "4")  # a batch script of 4 tasks, not inside srun: one process
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # one task of a job array: independent, not distributed
    assert cluster_processes() == 1
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")  # srun -n 4
    assert cluster_processes() == 4
    monkeypatch.delenv("SLURM_STEP_NUM_TASKS")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")  # mpirun -n 2
    assert cluster_processes() == 2


def _same_store(a: Path, b: Path) -> None:
    """Every array of two stores equal bit for bit (the data and the digests)."""
    ra, rb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    names = sorted(k for k, _ in ra.arrays())
    assert names == sorted(k for k, _ in rb.arrays())
    for name in names:
        x, y = np.asarray(ra[name][...]), np.asarray(rb[name][...])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name


@pytest.mark.slow
def test_three_local_workers_one_killed_mid_chunk_then_a_rerun_equal_a_single_process(tmp_path, capsys):
    submitit = _submitit()
    from deflation.montecarlo import cluster

    (tmp_path / "s.toml").write_text(TOML)
    single = tmp_path / "single.zarr"
    run_study(STUDY, single, progress=False, summary=False)
    out = tmp_path / "w.zarr"
    executor = submitit.LocalExecutor(folder=str(tmp_path / "logs"))
    executor.update_parameters(timeout_min=20)
    jobs = cluster.submit(tmp_path / "s.toml", out, 3, executor, claim_timeout=2.0)
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline:  # worker 1 holds a chunk it has not written yet
        for _pos, claim in workers.read_claims(out).items():
            if claim.worker == 1 and claim.state == "running":
                victim = claim.pid
        time.sleep(0.05)
    assert victim is not None, [j.stderr() for j in jobs]
    os.kill(victim, signal.SIGKILL)
    seen = workers.status(out, timeout=2.0, verify=False)
    assert seen.total == 8
    for k in (0, 2):
        assert jobs[k].result()["worker"] == k
    with pytest.raises(Exception):  # noqa: B017  (whatever error submitit reports for the killed worker)
        jobs[1].result()
    # the survivors took over what worker 1 left (its stale claim included), or a rerun does; a
    # damaged chunk is recomputed by a worker too
    assert cli.main(["study", "status", str(out), "--claim-timeout", "2"]) in (0, 1)
    damaged = out / "discovery_time" / "c" / "1" / "2" / "0"
    if damaged.exists():
        data = bytearray(damaged.read_bytes())
        data[len(data) // 2] ^= 0xFF
        damaged.write_bytes(bytes(data))
    else:
        root = zarr.open_group(str(out), mode="r+", use_consolidated=False)
        root[store.DIGEST][1, 2] = 12345
    run_study(STUDY, out, progress=False, summary=False, worker=0, workers=1)
    assert cli.main(["study", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "8 of 8 chunks done" in text and "worker 0:" in text and "worker 2:" in text
    _same_store(out, single)
