"""Hostile and careless inputs (issue 24, sections 2 and 3): studies too large for the seed index,
the grid, the memory; checks that used to run only after the store existed; unreadable study files
and target files; the summary on a full disk; Phase 1 seeds outside their regime; Figure 1 with
fewer columns than components; and nothing the tool reads may run code.

Most tests need no compilation: the stores they read are written through the store's own API with
made-up values (a valid store, digests included), and the refusals happen before anything runs."""

from __future__ import annotations

import errno
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xarray")
pytest.importorskip("zarr")

import deflation  # noqa: E402,F401  (float64 by default)
from deflation import cli, memory  # noqa: E402
from deflation.montecarlo import (  # noqa: E402
    Study,
    open_study,
    program,
    run_study,
    store,
    summarize,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "deflation"
FLOW = dict(d=6, m=8, delta0=1e-4, horizon=1.0, event_points=16)
SMALL = {"kind": "basis", "a": [0.6, 0.4]}
STUDY_TOML = """
experiment = "flow"
seeds = 8
chunk = 4
[target]
kind = "basis"
a = [0.6, 0.4]
[params]
d = 6
m = 8
delta0 = 1e-4
horizon = 1.0
event_points = 16
"""


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def _fake_store(path: Path, study: Study, chunk: int, **overrides) -> Path:
    """A complete, valid store of ``study`` (digests included) holding made-up values: every seed
    succeeded, half of them discovered each component; ``overrides`` sets a variable everywhere."""
    store.create(path, study, chunk, {})
    handle = store.open_for_writing(path, study, chunk)
    sizes = store.dims_sizes(study)
    try:
        for c in range(store.n_chunks(study, chunk)):
            values = {}
            for name, var in program.variables(study).items():
                shape = (chunk,) + tuple(sizes[d] for d in var.dims)
                if name in overrides:
                    values[name] = np.full(shape, overrides[name])
                elif var.dtype == "bool":
                    values[name] = (np.arange(np.prod(shape)).reshape(shape) % 2) == 0
                elif var.dtype in ("int8", "int32"):
                    values[name] = np.zeros(shape, var.dtype)  # status 0: success
                else:
                    values[name] = np.ones(shape)
            store.write_chunk(handle, study, (), c, values)
        store.mark(handle.root, path, complete=True)
    finally:
        handle.close()
    return path


# ---------------------------------------------------------------------------- sizes refused first


def test_more_seeds_than_32_bit_seed_indices_are_refused(capsys, tmp_path):
    assert Study("flow", 2**32, SMALL, FLOW).seeds == 2**32  # seeds 0 .. 2^32 - 1: every index distinct
    for seeds in (2**32 + 1, 10**12):
        with pytest.raises(ValueError, match=r"seeds must be at most 2\^32 = 4294967296 \(seed indices are 32-bit"):
            Study("flow", seeds, SMALL, FLOW)
    assert cli.main(["montecarlo", "--a", "0.6,0.4", "--d", "6", "--m", "8", "--horizon", "1", "--seeds", "99999999999",
                     "--out", str(tmp_path / "x.zarr")]) == 2
    assert "--seeds must be at most 2^32" in _one_line_error(capsys)
    assert not (tmp_path / "x.zarr").exists()


def test_a_grid_too_large_is_refused_by_its_size_before_a_point_is_built():
    import time

    with pytest.raises(ValueError, match=r"has 1\.6e\+05 points, more than the 100000"):
        Study("flow", 4, SMALL, dict(FLOW, delta0=[1e-6 * (k + 1) for k in range(400)],
                                     horizon=[1.0 + k for k in range(400)]))
    grid = {name: [base * (k + 1) for k in range(100)] for name, base in
            dict(delta0=1e-20, delta1=1e-3, alpha=1e-3, lam=1e-3, horizon=1.0, rtol=1e-9, atol=1e-9,
                 fit_fraction=1e-3).items()}
    grid.update(d=list(range(6, 106)), m=list(range(1, 101)))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"the grid delta0 \(100\) x .* has 1e\+20 points"):
        Study("flow", 4, SMALL, grid)
    assert time.perf_counter() - start < 1.0


def test_a_basis_target_in_a_large_dimension_builds_no_identity():
    import tracemalloc

    study = Study("flow", 4, SMALL, dict(FLOW, d=100_000))
    tracemalloc.start()
    try:
        U = program.traced_params(study, study.points()[0])["U"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20  # U is d x r (1.6 MB), not the 74.5 GiB d x d identity
    assert U.shape == (100_000, 2) and U[0, 0] == U[1, 1] == 1 and U.sum() == 2


@pytest.fixture
def sixteen_gib(monkeypatch):
    """The machine has 16 GiB free (the refusals below do not depend on the machine running them)."""
    monkeypatch.setattr(memory, "available_memory", lambda device=None: 16 * 2**30)
    monkeypatch.setattr(memory, "host_memory", lambda: 16 * 2**30, raising=False)


def test_a_study_too_large_for_memory_is_refused_before_anything_is_built(sixteen_gib, tmp_path, capsys):
    study = Study("flow", 512, SMALL, dict(FLOW, d=100_000))
    with pytest.raises(ValueError, match=r"a chunk of 512 seeds .* at d = 100000, m = 8 needs an estimated .* but "
                                         r"16 GiB is available: use a smaller chunk, at most \d+ seed\(s\)"):
        run_study(study, tmp_path / "big.zarr", progress=False)
    with pytest.raises(ValueError, match=r"the study's dataset \(4294967296 seeds\) takes .* GiB in memory"):
        run_study(Study("flow", 2**32, SMALL, FLOW), tmp_path / "many.zarr", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no temporary folder
    (tmp_path / "big.toml").write_text(STUDY_TOML.replace("d = 6", "d = 100000").replace("chunk = 4", "chunk = 512")
                                       .replace("seeds = 8", "seeds = 512"))
    assert cli.main(["study", "plan", str(tmp_path / "big.toml")]) == 2
    assert "needs an estimated" in _one_line_error(capsys)
    (tmp_path / "ok.toml").write_text(STUDY_TOML)
    assert cli.main(["study", "plan", str(tmp_path / "ok.toml")]) == 0
    text = capsys.readouterr().out
    assert re.search(r"memory: the dataset takes .* a chunk an estimated .* per device before compiling", text)


@pytest.mark.parametrize("change, message", [
    (("event_points = 16", "event_points = 16\nmax_steps = 2147483648"),
     "params.max_steps must be an integer >= 1 and <= 2147483647"),
    (("event_points = 16", "event_points = 10000000"), "params.event_points"),
    (("event_points = 16", "event_points = 16\n[series]\npoints = 20000000"), "series.points"),
    (("event_points = 16", "event_points = 16\norder = 1000000000000000000"), "params.order must be an integer"),
])
def test_every_check_runs_before_the_store_is_created(change, message, sixteen_gib, tmp_path, capsys):
    (tmp_path / "s.toml").write_text(STUDY_TOML.replace(*change))
    assert cli.main(["study", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "s.zarr")]) == 2
    assert message in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]  # no store, no .tmp folder


# ---------------------------------------------------------------------------- study files and target files


@pytest.mark.parametrize("data, problem", [
    (b"\xef\xbb\xbfexperiment = 'flow'\n", "starts with a UTF-8 byte-order mark (BOM)"),
    (b"\xff\xfee\x00x\x00", "starts with a UTF-16 byte-order mark (BOM)"),
    (b"PK\x03\x04\x00\x00\x08\x00", "is a binary file"),
    ("description = 'd\xe9couverte'\nexperiment = 'flow'\n".encode("latin-1"),
     "is not UTF-8 text (byte 0xe9 on line 1"),
])
def test_an_unreadable_study_file_is_named_with_its_problem(data, problem, tmp_path, capsys):
    path = tmp_path / "study.toml"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {problem}")):
        Study.from_toml(path)
    assert cli.main(["study", "run", str(path), "--out", str(tmp_path / "x.zarr")]) == 2
    assert f"{path}: {problem}" in _one_line_error(capsys)


def test_a_target_file_is_refused_for_complex_components_and_all_zero_weights(tmp_path):
    U = np.eye(6)[:, :2]
    np.savez(tmp_path / "complex.npz", a=np.array([0.6, 0.4]), U=U.astype(complex))
    with pytest.raises(TypeError, match=r"complex.npz'?: U must be a real array, got dtype complex128"):
        Study("flow", 4, {"kind": "file", "file": str(tmp_path / "complex.npz")}, FLOW)
    np.savez(tmp_path / "zero.npz", a=np.zeros(2), U=U)
    rule = r"a must be >= 0 with at least one weight > 0, got \[0\.0, 0\.0\]"
    with pytest.raises(ValueError, match=r"zero.npz'?: " + rule):
        Study("flow", 4, {"kind": "file", "file": str(tmp_path / "zero.npz")}, FLOW)
    with pytest.raises(ValueError, match=r"target\.a must be >= 0 with at least one weight > 0, got \[0\.0, 0\.0\]"):
        Study("flow", 4, {"kind": "basis", "a": [0.0, 0.0]}, FLOW)


def test_an_empty_out_is_refused_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(STUDY_TOML)
    assert cli.main(["study", "run", "s.toml", "--out", ""]) == 2
    assert "--out must name a path, got ''" in _one_line_error(capsys)
    assert cli.main(["montecarlo", "--a", "0.6,0.4", "--d", "6", "--m", "8", "--horizon", "1", "--seeds", "4",
                     "--out", " "]) == 2
    assert "--out must name a path, got ' '" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


def test_the_chunk_hint_is_right_when_the_study_file_sets_the_chunk(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(STUDY_TOML)  # chunk = 4
    study = Study.from_toml(tmp_path / "s.toml")
    store.create(tmp_path / "s.zarr", study, 2, {})  # as if started with --chunk 2
    assert cli.main(["study", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "s.zarr")]) == 2
    err = _one_line_error(capsys)
    assert "resume with --chunk 2 (it overrides the study file's chunk = 4)" in err and "omit" not in err
    # where omitting --chunk does give the store's chunk, the hint says so
    assert cli.main(["study", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "s.zarr"), "--chunk", "3"]) == 2
    assert "resume with --chunk 2" in _one_line_error(capsys)


def test_no_progress_hides_the_bar_but_not_the_resume_line(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(STUDY_TOML)
    _fake_store(tmp_path / "s.zarr", Study.from_toml(tmp_path / "s.toml"), 4)
    assert cli.main(["study", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "s.zarr"), "--no-progress",
                     "--quiet"]) == 0
    assert "already complete (2 of 2 chunks done)" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the summary


def test_summarize_prints_the_table_first_and_a_full_disk_leaves_no_file(tmp_path, capsys, monkeypatch):
    import pandas as pd

    study = Study("flow", 8, SMALL, FLOW)
    out = _fake_store(tmp_path / "s.zarr", study, 4)
    real = pd.DataFrame.to_csv

    def full_disk(self, path, *args, **kwargs):
        Path(path).write_text("component,a,n\n0,")  # part of the file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    assert cli.main(["study", "summarize", str(out)]) == 2
    captured = capsys.readouterr()
    assert "p_lo" in captured.out and "8/8 seeds computed" in captured.out  # the table came first
    err = captured.err
    assert len(err.strip().splitlines()) == 1
    assert f"cannot write {tmp_path / 's.csv'} (No space left on device)" in err
    assert f"the stored chunks in {out} are safe" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # no 0-byte or partial CSV, no temporary file
    monkeypatch.setattr(pd.DataFrame, "to_csv", real)
    elsewhere = tmp_path / "figures"
    elsewhere.mkdir()
    assert cli.main(["study", "summarize", str(out), "--csv", str(elsewhere / "t.csv"),
                     "--png", str(elsewhere / "f.png")]) == 0
    assert sorted(p.name for p in elsewhere.iterdir()) == ["f.png", "f_cdf.png", "t.csv", "t_order.csv",
                                                           "t_plateaus.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "s.zarr"]  # nothing beside the store


def test_summarize_of_a_store_in_a_read_only_folder_prints_the_table_and_names_the_path(tmp_path, capsys,
                                                                                        monkeypatch):
    import tempfile

    out = _fake_store(tmp_path / "s.zarr", Study("flow", 8, SMALL, FLOW), 4)

    def read_only(*args, **kwargs):  # what creating a file in a read-only folder raises (as root it would not)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert cli.main(["study", "summarize", str(out)]) == 2
    captured = capsys.readouterr()
    assert "p_lo" in captured.out and "8/8 seeds computed" in captured.out
    assert f"cannot write {tmp_path / 's.csv'} (Permission denied); the stored chunks in {out} are safe" in captured.err
    assert "--csv/--png" in captured.err and len(captured.err.strip().splitlines()) == 1


def test_phase1_seeds_beyond_their_coupling_bound_are_flagged(tmp_path, capsys):
    study = Study("phase1", 8, SMALL, dict(FLOW, horizon=40.0))
    out = _fake_store(tmp_path / "p.zarr", study, 4, coupling_max=1e51, coupling=1e51)
    table = summarize(open_study(out))
    assert (table["failed"] == 0).all() and (table["flagged"] == 8).all() and (table["coupling_flagged"] == 1).all()
    assert cli.main(["study", "summarize", str(out)]) == 1
    text = capsys.readouterr().out
    assert "WARNING: 8 of 8 seeds exceeded their coupling bound (coupling_tol)" in text
    import pandas as pd

    assert (pd.read_csv(tmp_path / "p.csv")["flagged"] == 8).all()
    ok = _fake_store(tmp_path / "q.zarr", study, 4, coupling_max=1e-9, coupling=1e-9)
    assert cli.main(["study", "summarize", str(ok), "--csv", str(tmp_path / "q.csv")]) == 0
    assert "WARNING" not in capsys.readouterr().out


# ---------------------------------------------------------------------------- Figure 1 with m < r


def test_a_flat_loss_rounded_to_its_last_bit_is_not_a_rise():
    import jax.numpy as jnp

    from deflation.flow import loss_increased

    # five consecutive save points of seed 2 of `deflation figure1 --m 3` (r = 5, rtol = atol = 1e-10):
    # the loss on its plateau, one ulp (6.9e-18) up and down, above an accuracy floor of 5.9e-18
    loss = jnp.array([0.04568274273603016, 0.04568274273603016, 0.04568274273603016, 0.045682742736030166,
                      0.04568274273603016])
    floor = jnp.array([5.9364607739611726e-18, 5.9364607768999884e-18, 5.9364607790002936e-18,
                       5.936460779640624e-18, 5.936460778103077e-18])
    assert float(loss[3] - loss[2]) > float(floor[2])  # the rise that was flagged
    assert not bool(loss_increased(loss, floor))
    assert bool(loss_increased(loss.at[3].add(1e-14), floor))  # a thousand ulps is a rise
    assert bool(loss_increased(jnp.array([0.2521, 0.1287, 0.2521]), jnp.full(3, 1e-12)))  # a loose solve


def test_final_losses_below_their_floor_are_printed_with_it():
    from deflation.commands.figure1 import final_losses

    assert final_losses([4.79e-2, 1.2e-25], [1e-20, 3.4e-20]) == "4.79e-02, 1.20e-25 (below its accuracy floor 3.4e-20)"


@pytest.mark.slow
def test_figure1_with_fewer_columns_than_components_warns_and_completes(tmp_path, capsys):
    assert cli.main(["figure1", "--m", "3", "--seeds", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "WARNING: --m 3 < --r 5: with fewer columns than components at most 3 of the 5 components" in out
    assert "did not complete" not in out
    data = np.load(tmp_path / "figure1.npz")
    assert (data["status"] == 0).all()
    assert (data["loss"][:, -1] > 1e-2).all()  # the plateau: two components cannot be fitted


# ---------------------------------------------------------------------------- nothing read runs code


class _Marker:
    """Unpickling this creates a file (as a hostile .npz could)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_pickled_object_in_a_target_file_is_refused_and_never_run(tmp_path, capsys):
    marker = tmp_path / "ran"
    hostile = np.empty(1, dtype=object)
    hostile[0] = _Marker(str(marker))
    np.savez(tmp_path / "hostile.npz", a=np.array([0.6, 0.4]), U=hostile)
    (tmp_path / "s.toml").write_text(textwrap.dedent("""
        experiment = "flow"
        seeds = 4
        [target]
        kind = "file"
        file = "hostile.npz"
        [params]
        d = 6
        m = 8
        horizon = 1.0
    """))
    with pytest.raises(ValueError, match="Object arrays cannot be loaded when allow_pickle=False"):
        Study.from_toml(tmp_path / "s.toml")
    assert cli.main(["study", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "s.zarr")]) == 2
    _one_line_error(capsys)
    assert not marker.exists() and not (tmp_path / "s.zarr").exists()
    np.load(tmp_path / "hostile.npz", allow_pickle=True)["U"]  # the file does run code when unpickled
    assert marker.exists()


@pytest.mark.parametrize("hostile", [
    "__import__('pathlib').Path('{marker}').touch()",
    '{{"experiment": "flow", "seeds": 4, "target": {{"kind": "file", "file": "{npz}"}}, "params": {{"d": 6, "m": 8, '
    '"horizon": 1.0}}}}',
    None,  # no study attribute at all
])
def test_a_stores_attributes_are_parsed_as_data_never_run(hostile, tmp_path, capsys):
    import zarr

    marker = tmp_path / "ran"
    bad = np.empty(1, dtype=object)
    bad[0] = _Marker(str(marker))
    np.savez(tmp_path / "hostile.npz", a=np.array([0.6, 0.4]), U=bad)
    out = _fake_store(tmp_path / "s.zarr", Study("flow", 8, SMALL, FLOW), 4)
    root = zarr.open_group(str(out), mode="r+")
    if hostile is None:
        del root.attrs["study"]
    else:
        root.attrs["study"] = hostile.format(marker=marker, npz=tmp_path / "hostile.npz")
    store.mark(root, out, complete=True)  # consolidated again: readers see the hostile attribute
    for command in (["study", "summarize", str(out)], ["study", "verify", str(out)]):
        assert cli.main(command) == 2
        line = _one_line_error(capsys)
        assert f"{str(out)!r}" in line and ("is not a" in line or "cannot be read" in line), line
    assert not marker.exists()


def test_the_package_has_no_code_that_evaluates_or_unpickles_what_it_reads():
    pattern = re.compile(r"\beval\(|\bexec\(|\bpickle\b|allow_pickle\s*=\s*True|__import__\(|yaml\.load\(")
    found = [f"{path.relative_to(SRC)}:{n}" for path in sorted(SRC.rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found


def test_paths_in_a_study_file_are_relative_to_it_not_to_the_working_directory(tmp_path, monkeypatch):
    here, elsewhere = tmp_path / "study", tmp_path / "cwd"
    here.mkdir()
    elsewhere.mkdir()
    np.savez(here / "t.npz", a=np.array([0.6, 0.4]), U=np.eye(6)[:, :2])
    np.savez(elsewhere / "t.npz", a=np.array([1.0]), U=np.eye(4)[:, :1])  # a different target under the same name
    (here / "s.toml").write_text("experiment = 'flow'\nseeds = 4\n[target]\nkind = 'file'\nfile = 't.npz'\n"
                                 "[params]\nd = 6\nm = 8\nhorizon = 1.0\n")
    monkeypatch.chdir(elsewhere)
    study = Study.from_toml(Path("..") / "study" / "s.toml")
    assert study.target_spec["file"] == str((here / "t.npz").resolve())
    assert study.r == 2
