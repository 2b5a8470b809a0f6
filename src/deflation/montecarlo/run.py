"""``run_study``: chunked, sharded, resumable Monte Carlo over seeds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import _validate as check
from . import store
from .study import Study

#: Default number of seeds per chunk (a Zarr chunk and one compiled call).
DEFAULT_CHUNK = 512


def select_devices(devices: int | None):
    """Devices of the 1-D mesh: all of them, or the first ``devices`` of every process."""
    import jax

    local = jax.local_devices()
    if devices is None:
        return list(jax.devices())
    devices = check.integer("devices", devices, 1)
    if devices > len(local):
        raise ValueError(f"devices must be <= the {len(local)} device(s) JAX sees in this process ({local[0].platform}), got {devices}")
    by_proc: dict[int, list] = {}
    for d in jax.devices():
        by_proc.setdefault(d.process_index, []).append(d)
    return [d for p in sorted(by_proc) for d in by_proc[p][:devices]]


def _check_args(study, out, chunk, devices):
    if not isinstance(study, Study):
        raise TypeError(f"study must be a deflation.montecarlo.Study, got {type(study).__name__}")
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a path (str or os.PathLike), got {type(out).__name__}")
    if chunk is not None:
        chunk = check.integer("chunk", chunk, 1)
    if devices is not None:
        devices = check.integer("devices", devices, 1)
    return Path(out), chunk, devices


def _prepare_store(out: Path, study: Study, chunk: int | None, attrs: dict):
    """Process 0: open (resume) or create the store; returns ``(root, chunk, done)``."""
    if out.exists():
        return store.open_existing(out, study, chunk)
    chunk = DEFAULT_CHUNK if chunk is None else chunk
    store.create(out, study, min(chunk, study.seeds), attrs)
    return store.open_existing(out, study, None)


def run_study(study: Study, out, *, chunk: int | None = None, devices: int | None = None, progress: bool = True,
              summary: bool = True):
    """Run (or resume) a Monte Carlo study and write it to the Zarr store ``out``.

    Seeds are processed in chunks of ``chunk`` (default 512, capped at ``study.seeds``; a resumed
    store keeps the size it was started with); each chunk is one call of a compiled function,
    sharded over the seed axis of all devices (``devices``: use only the first that many devices of
    each process; default all), padded to a multiple of the device count. Chunks already in the
    store are skipped, so rerunning after an interruption continues where it stopped. Under
    ``jax.distributed`` (see :func:`deflation.montecarlo.initialize_distributed`) every process
    calls this with the same arguments; process 0 writes.

    Per seed and component the dataset records ``discovered`` (Definition 1, by the horizon),
    ``discovery_time``, ``fit_time``, ``members`` (columns in ``S_i``); per seed ``status`` (0 ok,
    see ``deflation.flow``), ``num_steps`` and ``loss`` at the horizon (decoupled mode: the
    coupling bound instead of the loss). A failed solve is recorded with its status, never dropped.

    Args:
        study: the :class:`Study`.
        out: path of the Zarr store (created, or resumed when it holds the same study).
        chunk: seeds per chunk (> 0).
        devices: number of devices per process to use (<= what JAX sees).
        progress: tqdm progress bar (seeds/s) on process 0.
        summary: at the end, write the summary table (``<out>.csv``) and plot (``<out>.png``)
            next to the store.

    Returns:
        the dataset (``xarray.Dataset``) on process 0, None on the other processes.

    Raises:
        ValueError/TypeError: bad arguments, ``devices`` larger than available, or ``out``
            holding a different study, chunk size or something else (nothing is computed).
    """
    out, chunk, devices = _check_args(study, out, chunk, devices)
    store._zarr()
    import jax
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from .._version import __version__
    from .kernel import compile_chunk, traced_params

    mesh_devices = select_devices(devices)
    nproc = jax.process_count()
    lead = jax.process_index() == 0
    attrs = dict(deflation_version=__version__, jax_version=jax.__version__, num_processes=nproc,
                 devices=len(mesh_devices), platform=mesh_devices[0].platform)

    error, root, done = None, None, None
    if lead:
        try:
            root, chunk, done = _prepare_store(out, study, chunk, attrs)
        except (ValueError, TypeError, OSError) as err:
            error = err
    if nproc > 1:  # everyone learns whether process 0 could open the store, its chunk and the done flags
        head = multihost_utils.broadcast_one_to_all(np.array([error is None, chunk or 0], np.int64))
        if not head[0]:
            if lead:
                raise error
            raise ValueError(f"process 0 refused the study (see its error); out = {str(out)!r}")
        chunk = int(head[1])
        shape = (len(study.points()), store.n_chunks(study, chunk))
        done = np.asarray(multihost_utils.broadcast_one_to_all(done if lead else np.zeros(shape, bool)))
    elif error is not None:
        raise error

    mesh = Mesh(np.array(mesh_devices), ("seed",))
    sharding = NamedSharding(mesh, P("seed"))
    replicated = NamedSharding(mesh, P())
    ndev = len(mesh_devices)
    padded = -(-chunk // ndev) * ndev
    points = study.points()
    total = len(points) * study.seeds
    finished = sum(min(chunk, study.seeds - c * chunk) for j in range(len(points)) for c in np.flatnonzero(done[j]))
    bar = None
    if lead and progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=finished, unit="seed", desc=f"montecarlo {out.name}", dynamic_ncols=True)
    try:
        for j, point in enumerate(points):
            todo = np.flatnonzero(~done[j])
            if todo.size == 0:
                continue
            fn = compile_chunk(point, mesh)  # compiled once per shape, reused by every chunk and sweep value
            params = {k: jax.make_array_from_callback(v.shape, replicated, lambda s, v=v: v[s])
                      for k, v in traced_params(point).items()}
            if bar is not None and study.sweep:
                bar.set_postfix({study.sweep[0]: study.sweep[1][j]})
            for c in todo:
                lo = int(c) * chunk
                idx = np.arange(lo, lo + padded, dtype=np.uint32)  # seeds past the end are padding
                x = jax.make_array_from_callback((padded,), sharding, lambda s: idx[s])
                res = fn(x, params)
                res = multihost_utils.process_allgather(res, tiled=True) if nproc > 1 else jax.device_get(res)
                if lead:
                    store.write_chunk(root, study, j, int(c), chunk, res)
                    if bar is not None:
                        bar.update(min(chunk, study.seeds - lo))
    finally:
        if bar is not None:
            bar.close()
    if not lead:
        return None
    store.mark_complete(root)
    ds = store.load(out)
    if summary:
        from ..plots import plot_study as plot
        from .summary import default_paths, summarize

        df = summarize(ds)
        csv, png = default_paths(out)
        df.to_csv(csv, index=False)
        plot(df, ds, png)
    return ds
