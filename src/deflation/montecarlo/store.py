"""The Zarr store of a study: created once (atomically), filled chunk by chunk, verified before it
is trusted.

Layout (a Zarr v3 group with consolidated metadata, readable with ``xarray.open_zarr``): one array
per recorded quantity (``kernel.variables``) with dimensions ``(grid..., seed, ...)``, chunked
exactly like the computation (one grid point, ``chunk`` seeds); coordinates for every grid
dimension, ``seed``, ``component`` and, where used, ``time``, ``rank`` and ``epoch``; the weights
``a`` per grid point; and ``chunk_digest`` (``grid..., chunk``), the digest of each computed chunk.

Integrity. A chunk's data is written first and its digest last (a BLAKE2b digest of every
variable's values in that chunk, 8 bytes, never 0). A chunk counts as done only if its digest is
set *and* its data, read back, decodes and has that digest: a missing, truncated or bit-flipped
chunk file is found (:func:`~deflation.montecarlo.store.verify`), and a rerun recomputes exactly those chunks, so the final
dataset is bit-identical to an uninterrupted run. One process writes a store at a time: it holds
an exclusive lock on ``<store>/.lock`` while it writes; a second one gets :class:`~deflation.montecarlo.store.StoreBusy`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .kernel import series_times, variables
from .study import Study, weights

FORMAT = "deflation.study/2"
DIGEST = "chunk_digest"


class StoreMismatch(ValueError):
    """``out`` exists but holds something else (another study, another chunking, not a study)."""


class StoreBusy(ValueError):
    """Another process is writing this store now."""


def _consolidate(path) -> None:
    """Consolidate a store's metadata (so ``xarray.open_zarr`` reads it in one go, without warnings).
    zarr warns that consolidation is not yet part of the v3 specification and about our lock file;
    both are expected here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _zarr().consolidate_metadata(str(path))


def _zarr():
    try:
        import zarr
    except ImportError as err:  # pragma: no cover - zarr is a dependency of the package
        raise ImportError("Monte Carlo studies need zarr and xarray (dependencies of deflation; reinstall it with "
                          "pip install -e . from the checkout)") from err
    return zarr


def dims_sizes(study: Study) -> dict[str, int]:
    """The size of every dimension of the study's dataset."""
    sizes = {k: len(v) for k, v in study.grid}
    sizes.update(seed=study.seeds, component=study.r)
    if study.series is not None:
        sizes.update(time=study.series_spec["points"], rank=study.series_spec["norms"])
    if study.experiment == "algorithm2":
        sizes["epoch"] = max(p["max_epochs"] for p in study.points())
    return sizes


def layout(study: Study, chunk: int) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]]:
    """``{name: (dims, shape, chunks)}`` of every data variable."""
    sizes = dims_sizes(study)
    grid = tuple(k for k, _ in study.grid)
    out = {}
    for name, var in variables(study).items():
        dims = grid + ("seed",) + var.dims
        shape = tuple(sizes[d] for d in dims)
        chunks = tuple(1 for _ in grid) + (min(chunk, study.seeds),) + tuple(sizes[d] for d in var.dims)
        out[name] = (dims, shape, chunks)
    return out


def n_chunks(study: Study, chunk: int) -> int:
    return -(-study.seeds // chunk)


def _dtype(var, study: Study) -> str:
    if var.dtype != "float":
        return var.dtype
    return study.param_spec.get("dtype", "float64")


def create(out: str | os.PathLike, study: Study, chunk: int, attrs: dict) -> None:
    """Create an empty store for ``study`` at ``out`` (built in a temporary folder next to it, then
    renamed: a store either exists completely or not at all). If another process created ``out``
    in the meantime, this one's is discarded and ``out`` is left to be opened."""
    zarr = _zarr()
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        root = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
        meta = dict(attrs)
        meta.update(format=FORMAT, study=study.to_json(), identity=study.identity(), chunk=chunk,
                    experiment=study.experiment, grid=[k for k, _ in study.grid], complete=False,
                    description=study.description)
        root.attrs.update(meta)
        vars_ = variables(study)
        for name, (dims, shape, chunks) in layout(study, chunk).items():
            var = vars_[name]
            arr = root.create_array(name, shape=shape, chunks=chunks, dtype=_dtype(var, study), fill_value=var.fill,
                                    dimension_names=dims)
            arr.attrs.update(description=var.doc)
        sizes = dims_sizes(study)
        coords = {"seed": np.arange(study.seeds, dtype=np.int64), "component": np.arange(study.r, dtype=np.int64)}
        coords.update(study.coordinates())
        if study.series is not None:
            coords["time"] = series_times(study)
            coords["rank"] = np.arange(sizes["rank"], dtype=np.int64)
        if "epoch" in sizes:
            coords["epoch"] = np.arange(sizes["epoch"], dtype=np.int64)
        for name, values in coords.items():
            root.create_array(name, data=np.asarray(values), chunks=np.shape(values), dimension_names=(name,))
        grid = tuple(k for k, _ in study.grid)
        a = np.stack([weights(p) for p in study.points()]).reshape(study.shape + (study.r,))
        arr = root.create_array("a", data=a, chunks=a.shape, dimension_names=grid + ("component",))
        arr.attrs.update(description="ground-truth weight a_i of the component at each grid point")
        root.create_array(DIGEST, shape=study.shape + (n_chunks(study, chunk),), chunks=(1,) * (len(grid) + 1),
                          dtype="uint64", fill_value=0, dimension_names=grid + ("chunk",))
        _consolidate(tmp)
        try:
            os.rename(tmp, out)
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY) or out.exists():
                shutil.rmtree(tmp, ignore_errors=True)  # another process created it first
                return
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Handle:
    """An open store: its group, its chunk size and the lock held while writing."""

    root: object
    path: Path
    chunk: int
    lock: object = field(default=None, repr=False)

    def close(self) -> None:
        if self.lock is not None:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_UN)
            finally:
                self.lock.close()
                self.lock = None


def _lock(path: Path):
    """An exclusive, non-blocking lock on ``path/.lock`` (:class:`~deflation.montecarlo.store.StoreBusy` if another process has it)."""
    fh = open(path / ".lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        who = fh.read().strip()
        fh.close()
        raise StoreBusy(f"out = {str(path)!r} is being written by another process{f' ({who})' if who else ''}; "
                        "wait for it to finish (then rerun to resume) or choose another --out") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    return fh


def open_for_writing(out, study: Study, chunk: int | None) -> Handle:
    """Open (and lock) a store for resuming ``study``.

    Raises :class:`~deflation.montecarlo.store.StoreMismatch` when ``out`` is not a study store, holds a different study or was
    written with a different chunk size, and :class:`~deflation.montecarlo.store.StoreBusy` when another process writes it.
    """
    zarr = _zarr()
    out = Path(out)
    try:
        root = zarr.open_group(str(out), mode="r+", use_consolidated=False)
        fmt = root.attrs.get("format")
    except Exception as err:  # noqa: BLE001 - whatever zarr raises for something that is not a group
        raise StoreMismatch(f"out = {str(out)!r} exists and is not a deflation study store ({type(err).__name__}); "
                            "choose another --out") from None
    if fmt != FORMAT or DIGEST not in root:
        raise StoreMismatch(f"out = {str(out)!r} exists and is not a deflation study store (format {fmt!r}); "
                            "choose another --out")
    stored = Study.from_json(root.attrs["study"])
    if stored.identity() != study.identity():
        raise StoreMismatch(
            f"out = {str(out)!r} already holds a different study ({'; '.join(differences(stored, study))}); "
            "refusing to mix results: choose another --out or delete it"
        )
    stored_chunk = int(root.attrs["chunk"])
    if chunk is not None and chunk != stored_chunk:
        raise StoreMismatch(
            f"out = {str(out)!r} was started with chunk = {stored_chunk}, got chunk = {chunk}; resume with "
            f"--chunk {stored_chunk} (or omit it) so that the dataset stays identical to an uninterrupted run"
        )
    return Handle(root=root, path=out, chunk=stored_chunk, lock=_lock(out))


def differences(old: Study, new: Study) -> list[str]:
    """Human-readable list of what two studies differ in."""
    a, b = old.to_dict(), new.to_dict()
    out = []
    for k in sorted(set(a) | set(b)):
        if k in ("chunk", "description"):
            continue
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            for kk in sorted(set(a[k]) | set(b[k])):
                if a[k].get(kk) != b[k].get(kk):
                    out.append(f"{k}.{kk}: {a[k].get(kk)!r} (stored) vs {b[k].get(kk)!r} (requested)")
        elif a.get(k) != b.get(k):
            out.append(f"{k}: {a.get(k)!r} (stored) vs {b.get(k)!r} (requested)")
    return out or ["the stored study cannot be compared"]


def region(study: Study, index: tuple[int, ...], c: int, chunk: int) -> tuple:
    """The index of chunk ``c`` of grid point ``index`` in a variable (grid dims, then seeds)."""
    lo = c * chunk
    return tuple(index) + (slice(lo, min(lo + chunk, study.seeds)),)


def digest(values: dict[str, np.ndarray]) -> int:
    """BLAKE2b (8 bytes) of a chunk's values, in name order, as a non-zero uint64."""
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(values):
        arr = np.ascontiguousarray(values[name])
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return int.from_bytes(h.digest(), "little") or 1


def write_chunk(handle: Handle, study: Study, index: tuple[int, ...], c: int, values: dict) -> None:
    """Write the results of chunk ``c`` of grid point ``index`` (``values``: each variable's
    ``(chunk, ...)`` rows, padding included), then its digest."""
    root, chunk = handle.root, handle.chunk
    reg = region(study, index, c, chunk)
    n = reg[-1].stop - reg[-1].start
    vars_ = variables(study)
    rows = {}
    for name in vars_:
        arr = root[name]
        rows[name] = np.asarray(values[name])[:n].astype(arr.dtype)
        arr[reg] = rows[name]
    root[DIGEST][tuple(index) + (c,)] = np.uint64(digest(rows))


def read_chunk(root, study: Study, index: tuple[int, ...], c: int, chunk: int) -> dict[str, np.ndarray]:
    """The stored values of one chunk (raises whatever the codec raises for a damaged file)."""
    reg = region(study, index, c, chunk)
    return {name: np.asarray(root[name][reg]) for name in variables(study)}


@dataclass
class Integrity:
    """What :func:`~deflation.montecarlo.store.verify` found: ``done`` (intact chunks), ``missing`` (never computed or lost) and
    ``damaged`` (flagged, but unreadable or with the wrong digest), each a boolean array of shape
    ``(grid..., chunks)``, and a description of each damaged chunk."""

    done: np.ndarray
    missing: np.ndarray
    damaged: np.ndarray
    problems: list[str]

    @property
    def complete(self) -> bool:
        return bool(self.done.all())


def _chunks(root, study: Study, chunk: int):
    """Every flagged chunk, read back and checked: yields ``(position, values or None, problem or
    None)`` with ``position = (grid index..., chunk)``."""
    flags = np.asarray(root[DIGEST][...], np.uint64)
    names = [k for k, _ in study.grid]
    for pos in np.ndindex(flags.shape):
        if flags[pos] == 0:
            continue
        index, c = pos[:-1], pos[-1]
        where = ", ".join(f"{n} = {study.grid[i][1][j]!r}" for i, (n, j) in enumerate(zip(names, index)))
        label = f"chunk {c} (seeds {c * chunk}..{min((c + 1) * chunk, study.seeds) - 1}){f' at {where}' if where else ''}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = read_chunk(root, study, index, c, chunk)
        except Exception as err:  # noqa: BLE001 - a damaged file can fail in many ways inside the codecs
            yield pos, None, f"{label}: unreadable ({type(err).__name__}: {str(err)[:80]})"
            continue
        if digest(values) != int(flags[pos]):
            yield pos, None, f"{label}: data does not match its digest (a missing, truncated or altered file)"
        else:
            yield pos, values, None


def verify(root, study: Study, chunk: int) -> Integrity:
    """Check every flagged chunk against its digest (reading its data back)."""
    flags = np.asarray(root[DIGEST][...], np.uint64)
    done = np.zeros(flags.shape, bool)
    damaged = np.zeros(flags.shape, bool)
    problems = []
    for pos, values, problem in _chunks(root, study, chunk):
        if problem is None:
            done[pos] = True
        else:
            damaged[pos] = True
            problems.append(problem)
    return Integrity(done=done, missing=(flags == 0), damaged=damaged, problems=problems)


def mark(root, path, complete: bool) -> None:
    """Set the ``complete`` flag and re-consolidate the metadata."""
    root.attrs["complete"] = bool(complete)
    _consolidate(path)


def load(out, *, verify_data: bool = True):
    """The study dataset at ``out`` as an ``xarray.Dataset``.

    With ``verify_data`` every chunk is checked against its digest: the seeds of a missing or
    damaged chunk read as not computed (``status = -1`` and the variables' fill values), and the
    dataset's attributes ``chunks_damaged`` and ``chunks_missing`` say which; ``complete`` is True
    only when every chunk is intact.
    """
    zarr = _zarr()
    import xarray as xr

    out = Path(out)
    try:
        root = zarr.open_group(str(out), mode="r")
        fmt = root.attrs.get("format")
    except Exception as err:  # noqa: BLE001
        raise StoreMismatch(f"{str(out)!r} is not a deflation study store ({type(err).__name__})") from None
    if fmt != FORMAT:
        raise StoreMismatch(f"{str(out)!r} is not a deflation study store (format {fmt!r})")
    study = Study.from_json(root.attrs["study"])
    chunk = int(root.attrs["chunk"])
    ds = xr.open_zarr(str(out), consolidated=True, mask_and_scale=False)
    ds = ds.set_coords("a").drop_vars(DIGEST)
    if not verify_data:
        return ds.load()
    # read chunk by chunk: an intact chunk's values go in; a missing or damaged one stays "not
    # computed" (the variables' fill values), and is never decoded into the dataset
    vars_ = variables(study)
    arrays = {name: np.full(ds[name].shape, var.fill, ds[name].dtype) for name, var in vars_.items()}
    flags = np.asarray(root[DIGEST][...], np.uint64)
    done = np.zeros(flags.shape, bool)
    problems = []
    for pos, values, problem in _chunks(root, study, chunk):
        if problem is not None:
            problems.append(problem)
            continue
        done[pos] = True
        reg = region(study, pos[:-1], pos[-1], chunk)
        for name in vars_:
            arrays[name][reg] = values[name]
    ds = ds.assign({name: (ds[name].dims, arrays[name], ds[name].attrs) for name in vars_}).load()
    ds.attrs.update(complete=bool(done.all()), chunks_damaged=problems, chunks_missing=int((flags == 0).sum()),
                    chunks_total=int(flags.size))
    return ds


def study_of(ds) -> Study:
    return Study.from_json(ds.attrs["study"])
