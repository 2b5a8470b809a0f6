"""The Zarr store of a study: created once (atomically), then filled chunk by chunk.

Layout (readable with ``xarray.open_zarr``; dims ``[sweep,] seed, component``): one array per
recorded quantity, Zarr-chunked exactly like the computation (``chunk`` seeds), plus a ``done``
flag per (sweep point, chunk) in its own Zarr chunk. A chunk's data is written first and its flag
last, so a process killed at any moment leaves only complete chunks flagged; a rerun recomputes
the unflagged ones (bit-identical, same chunking) and never duplicates or loses a seed.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from .kernel import COMPONENT_VARS, SEED_VARS
from .study import Study, differences

FORMAT = "deflation.montecarlo/1"
_FILL = {"discovered": False, "discovery_time": np.nan, "fit_time": np.nan, "members": -1, "status": -1,
         "num_steps": -1, "loss": np.nan, "coupling_max": np.nan, "coupling": np.nan}
_DTYPE = {"discovered": "bool", "members": "int32", "status": "int8", "num_steps": "int32"}
_DOC = {
    "discovered": "component discovered by the horizon (Definition 1)",
    "discovery_time": "first time a column of S_i reaches norm delta1 (inf: not discovered)",
    "fit_time": "first time component i is fitted (inf: not within the horizon; NaN: not computed, decoupled mode)",
    "members": "number of columns that joined S_i by the horizon",
    "status": "solver status: 0 success, 1 max_steps reached, 2 non-finite state, 3 solver failed (-1: not computed)",
    "num_steps": "solver steps (decoupled mode: the most of any column)",
    "loss": "loss L(W) at the horizon",
    "coupling_max": "decoupled mode: max_t sum_j |w_j|^2, a bound on |T|_F",
    "coupling": "decoupled mode: int_0^H p sum_j |w_j|^2 dt, bound on the integrated drift the full flow adds",
}


class StoreMismatch(ValueError):
    """``out`` exists but holds something else (another study, another chunking, not a study)."""


def _zarr():
    try:
        import zarr
    except ImportError as err:  # pragma: no cover
        raise ImportError("Monte Carlo studies need zarr and xarray: pip install 'deflation[montecarlo]'") from err
    return zarr


def layout(study: Study, chunk: int):
    """``(dims, shapes, chunks)`` of every data variable."""
    sw = study.sweep
    lead = (sw[0],) if sw else ()
    nlead = (len(sw[1]),) if sw else ()
    clead = (1,) if sw else ()
    out = {}
    for v in COMPONENT_VARS:
        out[v] = (lead + ("seed", "component"), nlead + (study.seeds, study.r), clead + (chunk, study.r))
    for v in SEED_VARS[study.mode]:
        out[v] = (lead + ("seed",), nlead + (study.seeds,), clead + (chunk,))
    return out


def n_chunks(study: Study, chunk: int) -> int:
    return -(-study.seeds // chunk)


def create(out: str | os.PathLike, study: Study, chunk: int, attrs: dict) -> None:
    """Create an empty store for ``study`` at ``out`` (built in a temporary folder, then renamed)."""
    zarr = _zarr()
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    root = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
    sw = study.sweep
    meta = dict(attrs)
    meta.update(format=FORMAT, study=study.to_json(), chunk=chunk, sweep=sw[0] if sw else "", complete=False)
    for k, v in study.params().items():
        meta[k] = v
    root.attrs.update(meta)
    for name, (dims, shape, chunks) in layout(study, chunk).items():
        arr = root.create_array(name, shape=shape, chunks=chunks, dtype=_DTYPE.get(name, study.dtype),
                                fill_value=_FILL[name], dimension_names=dims)
        arr.attrs.update(description=_DOC[name])
    coords = {"seed": np.arange(study.seeds, dtype=np.int64), "component": np.arange(study.r, dtype=np.int64)}
    if sw:
        coords[sw[0]] = np.asarray(sw[1])
    for name, values in coords.items():
        root.create_array(name, data=values, chunks=values.shape, dimension_names=(name,))
    a = root.create_array("a", data=np.asarray(study.a), chunks=(study.r,), dimension_names=("component",))
    a.attrs.update(description="ground-truth weight a_i of the component")
    nlead = (len(sw[1]),) if sw else (1,)
    root.create_array("done", shape=nlead + (n_chunks(study, chunk),), chunks=(1, 1), dtype="bool",
                      fill_value=False, dimension_names=("sweep_point", "chunk"))
    try:
        os.rename(tmp, out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def open_existing(out, study: Study, chunk: int | None):
    """Open a store for resuming ``study``; returns ``(group, chunk, done (points, chunks) bool)``.

    Raises :class:`StoreMismatch` when ``out`` is not a study store, holds a different study or
    was written with a different chunk size.
    """
    zarr = _zarr()
    try:
        root = zarr.open_group(str(out), mode="r+")
        fmt = root.attrs.get("format")
    except Exception as err:  # noqa: BLE001
        raise StoreMismatch(f"out = {str(out)!r} exists and is not a deflation Monte Carlo store ({err}); choose another --out") from None
    if fmt != FORMAT or "done" not in root:
        raise StoreMismatch(f"out = {str(out)!r} exists and is not a deflation Monte Carlo store; choose another --out")
    stored = Study.from_json(root.attrs["study"])
    diff = differences(stored, study)
    if diff:
        raise StoreMismatch(
            f"out = {str(out)!r} already holds a different study ({'; '.join(diff)}); "
            "refusing to mix results: choose another --out or delete it"
        )
    stored_chunk = int(root.attrs["chunk"])
    if chunk is not None and chunk != stored_chunk:
        raise StoreMismatch(
            f"out = {str(out)!r} was started with chunk = {stored_chunk}, got chunk = {chunk}; "
            f"resume with --chunk {stored_chunk} (or omit it) so the dataset stays identical to an uninterrupted run"
        )
    return root, stored_chunk, np.asarray(root["done"][...])


def write_chunk(root, study: Study, point: int, c: int, chunk: int, values: dict) -> None:
    """Write the results of chunk ``c`` of sweep point ``point``, then set its done flag."""
    lo = c * chunk
    hi = min(lo + chunk, study.seeds)
    sweep = study.sweep is not None
    for name in layout(study, chunk):
        region = ((point,) if sweep else ()) + (slice(lo, hi),)
        root[name][region] = np.asarray(values[name])[: hi - lo]
    root["done"][point, c] = True


def mark_complete(root) -> None:
    root.attrs["complete"] = True


def load(out):
    """The study dataset at ``out`` as an ``xarray.Dataset`` (``a`` as a coordinate of ``component``)."""
    _zarr()
    import xarray as xr

    ds = xr.open_zarr(str(out), consolidated=False)
    return ds.set_coords("a").drop_vars("done")


def study_of(ds) -> Study:
    return Study.from_json(ds.attrs["study"])

