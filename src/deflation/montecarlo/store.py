"""The Zarr store of a study: created once (atomically), filled chunk by chunk, verified before it
is trusted.

Layout (a Zarr v3 group with consolidated metadata, readable with ``xarray.open_zarr``): one array
per recorded quantity (``program.variables``) with dimensions ``(grid..., seed, ...)``, chunked
exactly like the computation (one grid point, ``chunk`` seeds); coordinates for every grid
dimension, ``seed``, ``component`` and, where used, ``time``, ``rank`` and ``epoch``; the weights
``a`` per grid point; and ``chunk_digest`` (``grid..., chunk``), the digest of each computed chunk.

Integrity. A chunk's data is written first and its digest last (a BLAKE2b digest of every
variable's values in that chunk as stored, 8 bytes, never 0: NaNs are written and digested as the
canonical NaN, since Zarr does not write a chunk that equals its fill value and such a chunk reads
back as the fill value's bits). A chunk counts as done only if its digest is
set *and* its data, read back, decodes and has that digest: a missing, truncated or bit-flipped
chunk file is found (:func:`~deflation.montecarlo.store.verify`), and a rerun recomputes exactly those chunks, so the
final dataset is bit-identical to an uninterrupted run. A single process writing a store holds an
exclusive lock on ``<store>/.lock``; a second one gets :class:`~deflation.montecarlo.store.StoreBusy`. Independent
workers (:mod:`deflation.montecarlo.workers`) share that lock and divide the chunks through claim files.

Identity. The store records what decides its numbers (:func:`~deflation.montecarlo.store.provenance`: the versions of
deflation, jax and jaxlib, the floating point type) and, for a ``kind = "file"`` target, the digest
and a copy (``target.npz``) of the file's ``a`` and ``U``: a resume with other versions or another
file content is refused (:class:`~deflation.montecarlo.store.StoreMismatch`), and a finished store stays readable after
the study's ``.npz`` has moved. A store of an older format is refused with the version that wrote it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..models import MODELS
from .experiments import EXPERIMENTS
from .program import series_times, variables
from .study import Study, weights

FORMAT = "deflation.study/3"
DIGEST = "chunk_digest"
#: Older store formats and the last deflation version that wrote them.
OLD_FORMATS = {"deflation.study/2": "0.1.0"}
#: The copy of a ``kind = "file"`` target's arrays inside the store.
TARGET_COPY = "target.npz"
#: A ``.tmp`` folder of an interrupted creation is removed after this many seconds (or at once
#: when the process that made it, on this host, is gone).
STALE_TMP_S = 24 * 3600.0


class StoreMismatch(ValueError):
    """``out`` exists but holds something else (another study, another chunking, not a study)."""


class StoreBusy(ValueError):
    """Another process is writing this store now."""


def provenance(study: Study) -> dict:
    """What decides a study's numbers besides the study itself: the versions of deflation, jax and
    jaxlib, whether JAX runs in 64-bit mode and the study's floating point type. A store keeps it,
    and a resume with a different one is refused (the package version changes whenever results
    can change)."""
    import jax
    import jaxlib

    from .._version import __version__

    return dict(deflation=__version__, jax=jax.__version__, jaxlib=jaxlib.__version__,
                x64=bool(jax.config.jax_enable_x64),  # type: ignore[attr-defined]  # (a flag jax declares at run time)
                dtype=study.param_spec.get("dtype", "float64"))


def target_values(study: Study) -> dict[str, Any] | None:
    """The ``a`` and ``U`` of a ``kind = "file"`` target, read from its file (None for other kinds)."""
    spec = study.target_spec
    if spec.get("kind") != "file":
        return None
    with np.load(spec["file"], allow_pickle=False) as data:
        return dict(a=np.asarray(data["a"], np.float64), U=np.asarray(data["U"], np.float64))


def target_digest(values: dict[str, np.ndarray] | None) -> str | None:
    """A hex BLAKE2b digest of a file target's ``a`` and ``U`` (their float64 values and shapes)."""
    if values is None:
        return None
    h = hashlib.blake2b(digest_size=16)
    for name in ("a", "U"):
        arr = np.ascontiguousarray(values[name], np.float64)
        h.update(name.encode() + str(arr.shape).encode() + arr.tobytes())
    return h.hexdigest()


def _identity(study: Study, digest_of_target: str | None) -> str:
    """A study's identity with a file target named by its contents' digest instead of its path."""
    spec = json.loads(study.identity())
    if digest_of_target is not None:
        spec["target"] = dict(spec["target"], file=f"blake2b:{digest_of_target}")
    return json.dumps(spec)


def stored_study(root, path) -> Study:
    """The study a store holds. A ``kind = "file"`` target is read from the store's own copy of the
    file's values, so a finished store stays readable after the ``.npz`` has moved or changed."""
    spec = json.loads(root.attrs["study"])
    copy = Path(path) / TARGET_COPY
    if spec.get("target", {}).get("kind") == "file" and copy.is_file():
        spec["target"] = dict(spec["target"], file=str(copy.resolve()))
    return Study.from_dict(spec)


def _check_format(fmt, attrs, out) -> None:
    if fmt == FORMAT:
        return
    if fmt in OLD_FORMATS:
        made = attrs.get("deflation_version") or OLD_FORMATS[fmt]
        raise StoreMismatch(f"{str(out)!r} was made by an older deflation (format {fmt}, deflation {made}); open it "
                            f"with deflation {made} (pip install deflation=={made}) "
                            f"or rerun the study into a new store")
    raise StoreMismatch(f"{str(out)!r} is not a deflation study store (format {fmt!r})")


def open_readonly(out):
    """``(root, study, chunk)`` of an existing store, for reading (:class:`StoreMismatch` if it is not a
    study store of this format)."""
    zarr = require_zarr()
    out = Path(out)
    try:
        root = zarr.open_group(str(out), mode="r")
        fmt = root.attrs.get("format")
    except Exception as err:  # noqa: BLE001
        raise StoreMismatch(f"{str(out)!r} is not a deflation study store ({type(err).__name__})") from None
    _check_format(fmt, root.attrs, out)
    try:
        study = stored_study(root, out)
        chunk = int(root.attrs["chunk"])
    except Exception as err:  # noqa: BLE001 - damaged attributes
        raise StoreMismatch(f"{str(out)!r}: its study attributes cannot be read ({type(err).__name__}: "
                            f"{str(err)[:120]})") from None
    return root, study, chunk


def remove_stale_tmp(out) -> list[Path]:
    """Remove the ``.tmp`` folders that an interrupted :func:`create` of ``out`` left next to it: those
    whose creating process (on this host) is gone, or older than :data:`STALE_TMP_S`. Returns them."""
    out = Path(out)
    removed: list[Path] = []
    try:
        candidates = list(out.parent.glob(f".{out.name}.*.tmp"))
    except OSError:
        return removed
    host = socket.gethostname()
    for tmp in candidates:
        try:
            who = (tmp / ".creator").read_text().split()
        except OSError:
            who = []
        try:
            age = time.time() - tmp.stat().st_mtime
        except OSError:
            continue
        gone = len(who) == 2 and who[0] == host and not _alive(int(who[1]))
        if gone or age > STALE_TMP_S:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _consolidate(path) -> None:
    """Consolidate a store's metadata (so ``xarray.open_zarr`` reads it in one go, without warnings).
    zarr warns that consolidation is not yet part of the v3 specification and about our lock file;
    both are expected here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        require_zarr().consolidate_metadata(str(path))


def require_zarr():
    """The ``zarr`` module, or an ImportError that says how to install it (checked before a study
    starts, so that a missing dependency is reported before any work)."""
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
    series = study.series_spec
    if series is not None:
        sizes.update(time=series["points"], rank=series["norms"])
    sizes.update(EXPERIMENTS[study.experiment].dims(study.points()))
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
    zarr = require_zarr()
    out = Path(out)
    remove_stale_tmp(out)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        root = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
        (tmp / ".creator").write_text(f"{socket.gethostname()} {os.getpid()}")
        values = target_values(study)
        meta = dict(attrs)
        meta.update(format=FORMAT, study=study.to_json(), identity=study.identity(), chunk=chunk,
                    experiment=study.experiment, grid=[k for k, _ in study.grid], complete=False,
                    description=study.description, provenance=provenance(study),
                    target_digest=target_digest(values))
        root.attrs.update(meta)
        if values is not None:
            np.savez(tmp / TARGET_COPY, **values)
        _create_variables(root, study, chunk)
        sizes = dims_sizes(study)
        coords: dict[str, Any] = {"seed": np.arange(study.seeds, dtype=np.int64),
                                  "component": np.arange(study.r, dtype=np.int64)}
        coords.update(study.coordinates())
        if study.series is not None:
            coords["time"] = series_times(study)
            coords["rank"] = np.arange(sizes["rank"], dtype=np.int64)
        if "epoch" in sizes:
            coords["epoch"] = np.arange(sizes["epoch"], dtype=np.int64)
        for name, coord in coords.items():
            coord = np.asarray(coord)
            if coord.dtype.kind in "US":  # names (model): zarr's variable-length UTF-8 strings
                root.create_array(name, shape=coord.shape, dtype=str, chunks=coord.shape,
                                  dimension_names=(name,))[...] = coord.astype(object)
            else:
                root.create_array(name, data=coord, chunks=coord.shape, dimension_names=(name,))
        grid = tuple(k for k, _ in study.grid)
        a = np.stack([weights(p) for p in study.points()]).reshape(study.shape + (study.r,))
        arr = root.create_array("a", data=a, chunks=a.shape, dimension_names=grid + ("component",))
        arr.attrs.update(description="ground-truth weight a_i of the component at each grid point")
        _create_digest(root, study, chunk)
        (tmp / ".creator").unlink()
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


def _create_variables(root, study: Study, chunk: int, only=None) -> None:
    """The (empty) data variables' arrays (``only``: just these names; existing chunk files stay)."""
    vars_ = variables(study)
    for name, (dims, shape, chunks) in layout(study, chunk).items():
        if only is not None and name not in only:
            continue
        var = vars_[name]
        arr = root.create_array(name, shape=shape, chunks=chunks, dtype=_dtype(var, study), fill_value=var.fill,
                                dimension_names=dims)
        arr.attrs.update(description=var.doc)


def _create_digest(root, study: Study, chunk: int) -> None:
    grid = tuple(k for k, _ in study.grid)
    root.create_array(DIGEST, shape=study.shape + (n_chunks(study, chunk),), chunks=(1,) * (len(grid) + 1),
                      dtype="uint64", fill_value=0, dimension_names=grid + ("chunk",))


def _repair_metadata(root, out: Path, study: Study, chunk: int) -> list[str]:
    """Recreate the metadata (``zarr.json``) of a data variable or of the digests that was deleted
    or damaged, exactly as :func:`create` wrote it; the chunk files are kept and are verified
    against their digests like any others (so nothing intact is lost and nothing unverified is
    trusted). Returns the names repaired."""
    expected = layout(study, chunk)
    vars_ = variables(study)
    repaired = []
    for name in list(expected) + [DIGEST]:
        try:
            arr = root[name]
            if name == DIGEST:
                ok = arr.shape == study.shape + (n_chunks(study, chunk),) and str(arr.dtype) == "uint64"
            else:
                ok = arr.shape == expected[name][1] and arr.chunks == expected[name][2] and \
                    str(arr.dtype) == _dtype(vars_[name], study)
        except Exception:  # noqa: BLE001 - missing or unreadable zarr.json
            ok = False
        if ok:
            continue
        meta = out / name / "zarr.json"
        if meta.exists():
            meta.unlink()
        if name == DIGEST:
            _create_digest(root, study, chunk)
        else:
            _create_variables(root, study, chunk, only=(name,))
        repaired.append(name)
    if repaired:
        _consolidate(out)
    return repaired


@dataclass
class Handle:
    """An open store: its group, its chunk size and the lock held while writing."""

    root: Any
    path: Path
    chunk: int
    lock: Any = field(default=None, repr=False)
    repaired: list = field(default_factory=list)

    def close(self) -> None:
        if self.lock is not None:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_UN)
            finally:
                self.lock.close()
                self.lock = None


def _lock(path: Path, shared: bool = False):
    """A non-blocking lock on ``path/.lock``: exclusive for a single writer, shared among independent
    workers (:class:`~deflation.montecarlo.store.StoreBusy` if another process holds it in the other
    mode). On a file system without ``flock`` workers go without it (their claims suffice)."""
    fh = open(path / ".lock", "a+")
    try:
        fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as err:
        if shared and err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            return fh
        fh.seek(0)
        who = fh.read().strip()
        fh.close()
        what = "independent workers" if not shared and who.startswith("workers") else "another process"
        raise StoreBusy(f"out = {str(path)!r} is being written by {what}{f' ({who})' if who else ''}; "
                        "wait for it to finish (then rerun to resume) or choose another --out") from None
    if not shared:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
    else:
        fh.seek(0)
        if not fh.read().startswith("workers"):
            fh.seek(0)
            fh.truncate()
            fh.write("workers")
            fh.flush()
    return fh


def open_for_writing(out, study: Study, chunk: int | None, *, shared: bool = False) -> Handle:
    """Open (and lock; ``shared``: as one of several independent workers) a store for resuming ``study``.

    Raises :class:`~deflation.montecarlo.store.StoreMismatch` when ``out`` is not a study store (or one of an older
    format), holds a different study (a file target with other contents included), was started by other
    versions of deflation, jax or jaxlib (:func:`provenance`) or with a different chunk size, and
    :class:`~deflation.montecarlo.store.StoreBusy` when another process writes it. A data variable
    whose metadata was deleted is recreated (its chunks are then verified like any others).
    """
    zarr = require_zarr()
    out = Path(out)
    try:
        root = zarr.open_group(str(out), mode="r+", use_consolidated=False)
        fmt = root.attrs.get("format")
    except Exception as err:  # noqa: BLE001 - whatever zarr raises for something that is not a group
        raise StoreMismatch(f"out = {str(out)!r} exists and is not a deflation study store ({type(err).__name__}); "
                            "choose another --out") from None
    if fmt is None or "study" not in root.attrs:
        raise StoreMismatch(f"out = {str(out)!r} exists and is not a deflation study store (format {fmt!r}); "
                            "choose another --out")
    _check_format(fmt, root.attrs, out)
    try:
        stored = stored_study(root, out)
    except Exception as err:  # noqa: BLE001 - damaged attributes
        raise StoreMismatch(f"out = {str(out)!r}: its study attributes cannot be read ({type(err).__name__}); "
                            "choose another --out") from None
    new_digest = target_digest(target_values(study))
    old_digest = root.attrs.get("target_digest")
    if _identity(stored, old_digest) != _identity(study, new_digest):
        if old_digest != new_digest and stored.target_spec.get("kind") == study.target_spec.get("kind") == "file" \
                and _identity(stored, None) == _identity(study.replace(target=stored.target_spec), None):
            raise StoreMismatch(
                f"out = {str(out)!r} was started with other target values: target.file = "
                f"{study.target_spec['file']!r} has changed since (its a and U differ from the copy in the store); "
                "refusing to mix two targets: restore the file or choose another --out")
        raise StoreMismatch(
            f"out = {str(out)!r} already holds a different study ({'; '.join(differences(stored, study))}); "
            "refusing to mix results: choose another --out or delete it"
        )
    made, now = dict(root.attrs.get("provenance") or {}), provenance(study)
    if made != now:
        diff = ", ".join(f"{k} {made.get(k)!r} (store) vs {now.get(k)!r} (now)" for k in sorted(set(made) | set(now))
                         if made.get(k) != now.get(k))
        raise StoreMismatch(
            f"out = {str(out)!r} was started by other versions ({diff}) and their results may differ: finish it "
            "with the versions that started it, or start a new store (another --out)")
    stored_chunk = int(root.attrs["chunk"])
    if chunk is not None and chunk != stored_chunk:
        raise StoreMismatch(
            f"out = {str(out)!r} was started with chunk = {stored_chunk}, got chunk = {chunk}; resume with "
            f"--chunk {stored_chunk} (or omit it) so that the dataset stays identical to an uninterrupted run"
        )
    lock = _lock(out, shared=shared)
    try:
        repaired = _repair_metadata(root, out, study, stored_chunk)
    except BaseException:
        lock.close()
        raise
    return Handle(root=root, path=out, chunk=stored_chunk, lock=lock, repaired=repaired)


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


def canonical(arr: np.ndarray) -> np.ndarray:
    """``arr`` with every NaN as the canonical quiet NaN (the bits Zarr reads back for a chunk that
    it did not write because it equals the fill value NaN)."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        nan = np.isnan(arr)
        if nan.any():
            arr = np.where(nan, np.array(np.nan, arr.dtype), arr)
    return arr


def digest(values: dict[str, np.ndarray]) -> int:
    """BLAKE2b (8 bytes) of a chunk's values as stored (NaNs canonical), in name order, as a non-zero uint64."""
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(values):
        arr = np.ascontiguousarray(canonical(values[name]))
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
        rows[name] = canonical(np.asarray(values[name])[:n].astype(arr.dtype))
        arr[reg] = rows[name]
    root[DIGEST][tuple(index) + (c,)] = np.uint64(digest(rows))


def read_chunk(root, study: Study, index: tuple[int, ...], c: int, chunk: int) -> dict[str, np.ndarray]:
    """The stored values of one chunk (raises whatever the codec raises for a damaged file)."""
    reg = region(study, index, c, chunk)
    return {name: np.asarray(root[name][reg]) for name in variables(study)}


@dataclass
class Integrity:
    """What :func:`~deflation.montecarlo.store.verify` found: ``done`` (intact chunks), ``missing`` (never computed or
    lost) and ``damaged`` (flagged, but unreadable or with the wrong digest), each a boolean array of shape
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
    flags = read_flags(root)
    names = [k for k, _ in study.grid]
    for pos in np.ndindex(flags.shape):
        if flags[pos] == 0:
            continue
        index, c = pos[:-1], pos[-1]
        where = ", ".join(f"{n} = {study.grid[i][1][j]!r}" for i, (n, j) in enumerate(zip(names, index)))
        label = (f"chunk {c} (seeds {c * chunk}..{min((c + 1) * chunk, study.seeds) - 1})"
                 f"{f' at {where}' if where else ''}")
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


def read_flags(root) -> np.ndarray:
    """The chunk digests (0: not computed). An unreadable digest file reads as 0 (so its chunk is
    recomputed)."""
    arr = root[DIGEST]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(arr[...], np.uint64)
    except Exception:  # noqa: BLE001 - a damaged digest file: read them one by one
        flags = np.zeros(arr.shape, np.uint64)
        for pos in np.ndindex(arr.shape):
            try:
                flags[pos] = arr[pos]
            except Exception:  # noqa: BLE001
                flags[pos] = 0
        return flags


def verify(root, study: Study, chunk: int) -> Integrity:
    """Check every flagged chunk against its digest (reading its data back)."""
    flags = read_flags(root)
    done = np.zeros(flags.shape, bool)
    damaged = np.zeros(flags.shape, bool)
    problems = []
    for pos, _values, problem in _chunks(root, study, chunk):
        if problem is None:
            done[pos] = True
        else:
            damaged[pos] = True
            problems.append(problem)
    return Integrity(done=done, missing=(flags == 0), damaged=damaged, problems=problems)


def chunk_flag(root, index: tuple[int, ...], c: int) -> int:
    """The digest of one chunk as stored now (0: not computed, or its digest file is unreadable)."""
    try:
        return int(root[DIGEST][tuple(index) + (c,)])
    except Exception:  # noqa: BLE001
        return 0


def finish_if_complete(root, path, study: Study, chunk: int) -> bool:
    """If every chunk's digest is set and every chunk verifies, mark the store complete (under a
    lock on ``<store>/.meta.lock``, so that workers finishing together consolidate one at a time).
    Returns whether the store is complete."""
    if not (read_flags(root) != 0).all() or not verify(root, study, chunk).complete:
        return False
    with open(Path(path) / ".meta.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError:
            pass  # no flock on this file system: zarr writes metadata atomically anyway
        mark(root, path, complete=True)
    return True


def mark(root, path, complete: bool) -> None:
    """Set the ``complete`` flag and re-consolidate the metadata."""
    root.attrs["complete"] = bool(complete)
    _consolidate(path)


def definitions(study: Study) -> str:
    """``"normalized at order 4: columns; ..."``: the slots Definition 1 reads for each model and
    order of the study's grid (columns, or at order 2 the eigen- or singular pairs)."""
    spec = study.param_spec
    listed = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
    models, orders = listed(spec.get("model", "normalized")), listed(spec.get("order", 4))
    return "; ".join(f"{name} at order {p}: {MODELS[name].definition(p)}" for name in models for p in orders)


def load(out, *, verify_data: bool = True):
    """The study dataset at ``out`` as an ``xarray.Dataset``.

    With ``verify_data`` every chunk is checked against its digest: the seeds of a missing or
    damaged chunk read as not computed (``status = -1`` and the variables' fill values), and the
    dataset's attributes ``chunks_damaged`` and ``chunks_missing`` say which; ``complete`` is True
    only when every chunk is intact. The attribute ``definition1`` says which slots Definition 1
    read for each model and order of the study (:meth:`deflation.models.AbstractModel.definition`:
    single columns, or the spectrum in the matrix case).
    """
    import xarray as xr

    out = Path(out)
    root, study, chunk = open_readonly(out)
    ds = _open_dataset(xr, out)
    ds = ds.set_coords("a").drop_vars(DIGEST)
    ds.attrs["study"] = study.to_json()  # a file target: the store's own copy
    ds.attrs["definition1"] = definitions(study)
    if not verify_data:
        return ds.load()
    # read chunk by chunk: an intact chunk's values go in; a missing or damaged one stays "not
    # computed" (the variables' fill values), and is never decoded into the dataset
    vars_ = variables(study)
    arrays = {name: np.full(ds[name].shape, var.fill, ds[name].dtype) for name, var in vars_.items()}
    flags = read_flags(root)
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


def _open_dataset(xr, out: Path):
    """``xarray.open_zarr`` of a store, from its consolidated metadata; while a worker is marking the
    store complete that metadata is briefly being rewritten, so it is retried, then read array by array."""
    for attempt in range(5):
        try:
            return xr.open_zarr(str(out), consolidated=True, mask_and_scale=False)
        except (ValueError, KeyError, FileNotFoundError):
            time.sleep(0.2 * (attempt + 1))
    return xr.open_zarr(str(out), consolidated=False, mask_and_scale=False)


def study_of(ds) -> Study:
    return Study.from_json(ds.attrs["study"])
