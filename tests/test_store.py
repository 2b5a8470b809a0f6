"""The study store under damage and contention: a deleted, truncated, emptied or bit-flipped chunk
file is found (digest per chunk), reported by ``verify`` and ``summarize``, and recomputed by a
rerun, whose dataset then equals an uninterrupted run's bit for bit; two writers never mix; the
metadata is consolidated (xarray opens the store without warnings); a bad ``--out`` is one line."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xarray")
zarr = pytest.importorskip("zarr")

from deflation import cli  # noqa: E402
from deflation.montecarlo import StoreBusy, Study, open_study, run_study, summarize  # noqa: E402

STUDY = Study("flow", 16, {"kind": "basis", "a": [0.6, 0.4]},
              dict(d=6, m=[6, 8], delta0=1e-4, horizon=3.3, event_points=32), chunk=4)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    return out, run_study(STUDY, out, progress=False, summary=False)


def _copy(reference, tmp_path) -> Path:
    out = tmp_path / "s.zarr"
    shutil.copytree(reference[0], out)
    return out


def _chunk_file(out: Path, var: str, point: int, chunk: int) -> Path:
    """The file of one Zarr chunk of ``var`` (grid point index, seed chunk, then 0 for trailing dims)."""
    extra = len(zarr.open_group(str(out), mode="r")[var].shape) - 2
    return out.joinpath(var, "c", str(point), str(chunk), *(["0"] * extra))


def _same(ds, ref):
    for v in ref.data_vars:
        np.testing.assert_array_equal(ds[v].values, ref[v].values, err_msg=v)


@pytest.mark.parametrize("damage", ["delete", "truncate", "empty", "bitflip", "delete_variable"])
@pytest.mark.slow
def test_damaged_chunks_are_found_reported_and_recomputed(damage, reference, tmp_path, capsys):
    out = _copy(reference, tmp_path)
    target = _chunk_file(out, "discovery_time", 1, 2)
    if damage == "delete":
        target.unlink()
    elif damage == "truncate":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "bitflip":
        # flip one bit of the stored value (no compression: the chunk still decodes, to a wrong number)
        root = zarr.open_group(str(out), mode="r+")
        values = np.asarray(root["discovery_time"][1, 8:12])
        flipped = values.view(np.uint64).copy()
        flipped[0, 0] ^= np.uint64(1) << np.uint64(3)
        root["discovery_time"][1, 8:12] = flipped.view(np.float64)
    else:  # every chunk of one variable
        shutil.rmtree(out / "discovery_time" / "c")
    # verify names what is wrong (exit status 1)
    assert cli.main(["study", "verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert "damaged" in text and "chunk 2 (seeds 8..11) at m = 8" in text
    assert ("0 of 8 chunks intact" in text) == (damage == "delete_variable")
    # summarize counts only intact seeds and says the store is incomplete
    ds = open_study(out)
    assert not ds.attrs["complete"] and ds.attrs["chunks_damaged"]
    bad = ds["status"].values < 0
    df = summarize(ds)
    if damage == "delete_variable":  # every chunk lost one of its variables: nothing counts
        assert bad.all() and (df["n"] == 0).all() and df["p"].isna().all()
    else:  # one chunk of the m = 8 point: its 4 seeds are out, the rest count
        assert bad.sum() == 4 and bad[1, 8:12].all()
        assert (df[df["m"] == 8]["n"] == 12).all() and (df[df["m"] == 6]["n"] == 16).all()
    assert cli.main(["study", "summarize", str(out)]) == 0
    assert "INCOMPLETE" in capsys.readouterr().out
    # a rerun recomputes exactly what is damaged, says so, and the dataset equals the reference
    ds = run_study(STUDY, out, progress=True, summary=False)
    assert "recomputing" in capsys.readouterr().err
    assert ds.attrs["complete"]
    _same(ds, reference[1])
    assert cli.main(["study", "verify", str(out)]) == 0


@pytest.mark.slow
def test_the_store_opens_in_xarray_without_warnings(reference):
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(str(reference[0]))
        assert ds["discovered"].dims == ("m", "seed", "component")


@pytest.mark.slow
def test_a_second_writer_is_refused_while_the_first_holds_the_store(reference, tmp_path, capsys):
    out = _copy(reference, tmp_path)
    with open(out / ".lock", "a+") as fh:  # as a running process holds it
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StoreBusy, match="being written by another process"):
            run_study(STUDY, out, progress=False)
    run_study(STUDY, out, progress=False, summary=False)  # released: fine


@pytest.mark.slow  # two processes compiling (the default suite's case of a busy store: test_workers' claims)
def test_concurrent_processes_on_one_out_never_mix(tmp_path):
    """Two processes started at once on the same --out: one computes, the other is refused with
    one line (exit 2) or finds the finished store; the store ends intact and complete."""
    toml = tmp_path / "s.toml"
    toml.write_text("experiment = 'flow'\nseeds = 16\nchunk = 4\n[target]\na = [0.6, 0.4]\n[params]\n"
                    "d = 6\nm = 8\ndelta0 = 1e-4\nhorizon = 3.3\nevent_points = 32\n")
    cmd = [sys.executable, "-m", "deflation.cli", "study", "run", str(toml), "--out", str(tmp_path / "c.zarr"),
           "--no-progress", "--quiet"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes in ([0, 0], [0, 2]), results
    for _out, err, code in results:
        assert "Traceback" not in err
        if code == 2:
            assert len(err.strip().splitlines()) == 1 and "another process" in err
    assert cli.main(["study", "verify", str(tmp_path / "c.zarr")]) == 0


@pytest.mark.slow
def test_a_missing_out_folder_is_created(tmp_path):
    """The README's ``--out out/discovery.zarr`` from a fresh clone: the folder ``out`` is made."""
    toml = tmp_path / "s.toml"
    toml.write_text("experiment = 'flow'\nseeds = 4\n[target]\na = [1.0]\n[params]\nd = 2\nm = 2\nhorizon = 1\n")
    out = tmp_path / "missing" / "deeper" / "x.zarr"
    assert cli.main(["study", "run", str(toml), "--out", str(out), "--no-progress", "--quiet"]) == 0
    assert cli.main(["study", "verify", str(out)]) == 0


@pytest.mark.parametrize("where, message", [
    ("file", "is a file, not a study store"),
    ("read-only", "cannot create the store"),
])
def test_a_bad_out_is_one_line_and_exit_2(where, message, tmp_path, capsys):
    toml = tmp_path / "s.toml"
    toml.write_text("experiment = 'flow'\nseeds = 4\n[target]\na = [1.0]\n[params]\nd = 2\nm = 2\nhorizon = 1\n")
    if where == "file":
        out = tmp_path / "x.zarr"
        out.write_text("not a store")
    else:  # a folder nobody can create anything in, root included
        if not Path("/proc/self").exists():
            pytest.skip("needs Linux's /proc")
        out = Path("/proc/deflation-test.zarr")
    assert cli.main(["study", "run", str(toml), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
