"""What a store's identity includes and how a store survives hostile cases: a failed seed's NaN is
stored and digested canonically (an all-failed grid point completes and verifies, and is reported
as failed); a file target's values are part of the identity (a changed file is refused, a moved one
does not make a finished store unreadable); the versions that decide the numbers are recorded and
checked; an older format names the version that wrote it; deleted variable metadata is repaired
without a traceback; ``.tmp`` folders of an interrupted creation are removed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("xarray")
zarr = pytest.importorskip("zarr")

from deflation import cli  # noqa: E402
from deflation.montecarlo import StoreMismatch, Study, open_study, run_study, store  # noqa: E402
from deflation.montecarlo.program import variables  # noqa: E402

BASIS = Study("flow", 4, {"kind": "basis", "a": [1.0]}, dict(d=2, m=2, horizon=1.0, event_points=8), chunk=2)
NEGATIVE_NAN = np.frombuffer(np.uint64(0xFFF8000000000000).tobytes(), np.float64)[0]


def _failed_values(study, n):
    """A chunk's values as a kernel returns them for seeds that all failed: NaN with the sign bit."""
    out = {}
    for name, var in variables(study).items():
        shape = (n,) + tuple({"component": study.r}[d] for d in var.dims)
        if var.dtype == "float":
            out[name] = np.full(shape, NEGATIVE_NAN)
        elif name == "status":
            out[name] = np.ones(shape, np.int8)  # max_steps reached
        else:
            out[name] = np.full(shape, var.fill, var.dtype)
    return out


def test_an_all_nan_chunk_is_digested_as_stored_and_verifies(tmp_path):
    out = tmp_path / "s.zarr"
    store.create(out, BASIS, 2, {})
    handle = store.open_for_writing(out, BASIS, 2)
    try:
        values = _failed_values(BASIS, 2)
        assert np.signbit(values["loss"]).all() and np.isnan(values["loss"]).all()
        store.write_chunk(handle, BASIS, (), 0, values)
        found = store.verify(handle.root, BASIS, 2)
    finally:
        handle.close()
    assert found.done[0] and not found.damaged.any(), found.problems


@pytest.mark.slow
def test_a_grid_point_whose_seeds_all_fail_completes_and_is_reported(tmp_path, capsys):
    toml = tmp_path / "f.toml"
    toml.write_text("experiment = 'flow'\nseeds = 4\nchunk = 2\n[target]\na = [1.0]\n[params]\n"
                    "d = 2\nm = 2\nhorizon = 1\nevent_points = 8\nmax_steps = 2\n")
    out = tmp_path / "f.zarr"
    assert cli.main(["study", "run", str(toml), "--out", str(out), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "complete, every chunk verified" in captured.out
    assert "failed 4 of 4: max_steps reached" in captured.out  # the table's status column
    assert "failed seeds at the study: seeds 0..3 failed" in captured.err
    import pandas as pd

    table = pd.read_csv(tmp_path / "f.csv")
    assert (table["failed"] == 4).all() and table["status"].str.startswith("failed 4 of 4").all()
    assert cli.main(["study", "verify", str(out)]) == 0
    assert "0 damaged" in capsys.readouterr().out


@pytest.fixture(scope="module")
def file_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("file")
    np.savez(tmp / "t.npz", a=np.array([1.0]), U=np.array([[1.0], [0.0]]))
    toml = tmp / "s.toml"
    toml.write_text("experiment = 'flow'\nseeds = 4\nchunk = 2\n[target]\nkind = 'file'\nfile = 't.npz'\n"
                    "[params]\nd = 2\nm = 2\nhorizon = 1\nevent_points = 8\n")
    out = tmp / "s.zarr"
    ds = run_study(Study.from_toml(toml), out, progress=False, summary=False)
    return tmp, toml, out, ds


@pytest.mark.slow
def test_a_changed_target_file_is_refused_on_resume(file_store, tmp_path, capsys):
    tmp, toml, out, _ = file_store
    work = tmp_path / "w"
    shutil.copytree(tmp, work, ignore=shutil.ignore_patterns("*.csv", "*.png"))
    np.savez(work / "t.npz", a=np.array([1.0]), U=np.array([[0.0], [1.0]]))  # same shapes, other U
    root = zarr.open_group(str(work / "s.zarr"), mode="r+")
    root[store.DIGEST][0] = 0  # an interrupted run: one chunk left to compute
    assert cli.main(["study", "run", str(work / "s.toml"), "--out", str(work / "s.zarr"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "target.file" in err and "has changed" in err


def test_a_moved_target_file_keeps_the_store_readable_and_resumable(file_store, tmp_path, capsys):
    tmp, toml, out, ds = file_store
    work = tmp_path / "w"
    shutil.copytree(tmp, work, ignore=shutil.ignore_patterns("*.csv", "*.png"))
    (work / "t.npz").unlink()
    assert cli.main(["study", "verify", str(work / "s.zarr")]) == 0
    assert cli.main(["study", "summarize", str(work / "s.zarr"), "--csv", str(tmp_path / "x.csv"),
                     "--png", str(tmp_path / "x.png")]) == 0
    assert "complete, every chunk verified" in capsys.readouterr().out
    again = open_study(work / "s.zarr")
    np.testing.assert_array_equal(again["discovery_time"].values, ds["discovery_time"].values)
    # the same contents under another name: the same study, resumed
    np.savez(work / "moved.npz", a=np.array([1.0]), U=np.array([[1.0], [0.0]]))
    study = Study.from_toml(toml).replace(target={"kind": "file", "file": str(work / "moved.npz")})
    handle = store.open_for_writing(work / "s.zarr", study, None)
    handle.close()


def _set_attr(out, **attrs):
    root = zarr.open_group(str(out), mode="r+", use_consolidated=False)
    root.attrs.update(attrs)
    store.mark(root, out, complete=False)


def test_a_store_of_other_versions_is_refused_with_what_to_do(tmp_path):
    out = tmp_path / "s.zarr"
    store.create(out, BASIS, 2, {})
    made = store.provenance(BASIS)
    assert made["deflation"] and made["jax"] and made["jaxlib"] and made["dtype"] == "float64"
    _set_attr(out, provenance=dict(made, deflation="0.0.1"))
    with pytest.raises(StoreMismatch, match=r"deflation '0.0.1' \(store\).*finish it with the versions that "
                                            r"started it, or start a new store"):
        store.open_for_writing(out, BASIS, None)
    _set_attr(out, provenance=dict(made, jaxlib="0.0.0"))
    with pytest.raises(StoreMismatch, match="jaxlib"):
        store.open_for_writing(out, BASIS, None)


def test_an_older_format_names_the_version_that_wrote_it(tmp_path, capsys):
    out = tmp_path / "s.zarr"
    store.create(out, BASIS, 2, {"deflation_version": "0.1.0"})
    _set_attr(out, format="deflation.study/2")
    with pytest.raises(StoreMismatch, match=r"made by an older deflation \(format deflation.study/2, deflation "
                                            r"0.1.0\); open it with deflation 0.1.0.* or rerun"):
        store.open_for_writing(out, BASIS, None)
    assert cli.main(["study", "verify", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "older deflation" in err


def test_deleted_variable_metadata_is_recreated_and_its_chunks_verified(file_store, tmp_path, capsys):
    tmp, toml, out, ds = file_store
    work = tmp_path / "s.zarr"
    shutil.copytree(out, work)
    shutil.rmtree(work / "discovered" / "zarr.json", ignore_errors=True)
    (work / "discovered" / "zarr.json").unlink(missing_ok=True)
    (work / "chunk_digest" / "zarr.json").write_text("{not json")
    toml2 = tmp_path / "s.toml"
    toml2.write_text(toml.read_text().replace("'t.npz'", repr(str(tmp / "t.npz"))))
    code = cli.main(["study", "run", str(toml2), "--out", str(work), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err and "'discovered' was missing or damaged: recreated" in captured.err
    again = open_study(work)
    assert again.attrs["complete"]
    for name in ds.data_vars:
        np.testing.assert_array_equal(again[name].values, ds[name].values, err_msg=name)


def test_tmp_folders_of_an_interrupted_creation_are_removed(tmp_path):
    out = tmp_path / "s.zarr"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    gone = tmp_path / ".s.zarr.0000dead.tmp"
    gone.mkdir()
    (gone / ".creator").write_text(f"{socket.gethostname()} {dead.pid}")
    old = tmp_path / ".s.zarr.000000ld.tmp"
    old.mkdir()
    os.utime(old, (time.time() - 2 * store.STALE_TMP_S,) * 2)
    running = tmp_path / ".s.zarr.0000live.tmp"  # another process creating it right now: kept
    running.mkdir()
    (running / ".creator").write_text(f"{socket.gethostname()} {os.getpid()}")
    store.create(out, BASIS, 2, {})
    assert not gone.exists() and not old.exists() and running.exists()
    assert json.loads(zarr.open_group(str(out), mode="r").attrs["study"])["seeds"] == 4
