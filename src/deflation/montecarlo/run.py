"""``run_study``: chunked, sharded, resumable Monte Carlo over seeds and grid points, and
``open_study`` to read the result."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import _validate as check
from ..memory import available_memory, gib
from . import store
from .program import compile_chunk, static_key, traced_params
from .resources import DEFAULT_CHUNK, check_fits, compiled_bytes, select_devices
from .study import Study
from .workers import DEFAULT_CLAIM_TIMEOUT, Claims, check_worker, order as worker_order


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


def _say(text: str, progress: bool) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _open(out: Path, study: Study, chunk: int | None, attrs: dict, progress: bool, shared: bool = False):
    """Process 0 (or a worker): open (resume) or create the store and check what is already done."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out = {str(out)!r} is a file, not a study store; choose another --out")
    requested = chunk if chunk is not None else study.chunk
    if not out.exists():
        size = min(requested or DEFAULT_CHUNK, study.seeds)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)  # as the other commands' --out
            store.create(out, study, size, attrs)
        except OSError as err:
            raise ValueError(f"out = {str(out)!r}: cannot create the store ({err.strerror or err})") from None
        requested = size
    handle = store.open_for_writing(out, study, None if requested is None else min(requested, study.seeds),
                                    shared=shared)
    for name in handle.repaired:
        _say(f"{out}: the metadata of {name!r} was missing or damaged: recreated (its chunks are verified below)",
             progress)
    found = store.verify(handle.root, study, handle.chunk)
    total = found.done.size
    if found.complete:
        _say(f"{out}: already complete ({total} of {total} chunks done)", progress)
    elif found.done.any():
        _say(f"{out}: resuming: {int(found.done.sum())} of {total} chunks done", progress)
    if found.problems:
        _say(f"{out}: recomputing {len(found.problems)} damaged chunk(s):", progress)
        for line in found.problems[:10]:
            _say(f"  {line}", progress)
        if len(found.problems) > 10:
            _say(f"  ... and {len(found.problems) - 10} more", progress)
    return handle, found.done


def run_study(study: Study, out, *, chunk: int | None = None, devices: int | None = None, progress: bool = True,
              summary: bool = True, worker: int | None = None, workers: int | None = None,
              claim_timeout: float = DEFAULT_CLAIM_TIMEOUT):
    """Run (or resume) a study and write it to the Zarr store ``out``.

    Seeds are processed in chunks of ``chunk`` seeds (default ``study.chunk``, else 512, capped at
    ``study.seeds``; a resumed store keeps the size it was started with), grid point by grid point;
    each chunk is one call of a compiled function, sharded over the seed axis of all devices
    (``devices``: the first that many devices of each process; default all), padded to a multiple
    of the device count. Grid points that share their shapes share one compiled program.

    Resuming: chunks already in the store are checked against their digests and skipped; missing
    or damaged ones are computed (and said so), so rerunning after an interruption, or after a
    chunk file was lost, gives the dataset an uninterrupted run gives, bit for bit. Under
    ``jax.distributed`` (see :func:`deflation.montecarlo.initialize_distributed`) every process
    calls this with the same arguments; process 0 writes.

    Independent workers (``worker=K, workers=N``, see :mod:`deflation.montecarlo.workers`): each
    of ``N`` processes started with the same study and ``out`` (at once or not, on any machines
    that share the file system, without a coordinator) computes its share of the chunks, claiming
    each in the store, then takes the chunks nobody holds, and those whose claim went stale
    (``claim_timeout`` seconds without a heartbeat, or at once for a process of this host that is
    gone: a dead worker). The first to come creates the
    store (atomically); the one that finds every chunk intact marks it complete. The finished store
    is bit-identical to a single process's.

    Before a program runs, its memory need (from the compiled program) is compared with the
    memory available; a chunk that cannot fit is refused with both numbers and what to change.

    Args:
        study: the :class:`Study`.
        out: path of the Zarr store (created, or resumed when it holds the same study).
        chunk: seeds per chunk (> 0).
        devices: number of devices per process to use (<= what JAX sees).
        progress: a tqdm progress bar (seeds/s) and status lines on process 0.
        summary: at the end, write the summary table (``<out>.csv``) and the figures
            (``<out>.png``, ``<out>_cdf.png``) next to the store (a worker: only once the store is complete).
        worker, workers: this process is worker ``worker`` (``0 .. workers - 1``) of ``workers``
            independent workers (both or neither).
        claim_timeout: seconds after which a worker's claim that is no longer refreshed is taken over.

    Returns:
        the dataset (``xarray.Dataset``, see :func:`open_study`) on process 0, None on the others;
        for a worker, the dataset as it stands when it ends (``ds.attrs["complete"]`` says whether
        every chunk is in).

    Raises:
        ValueError/TypeError: bad arguments, ``devices`` larger than available, ``out`` holding a
            different study or chunk size, a store another process is writing, or a chunk too
            large for memory (nothing is computed).
    """
    out, chunk, devices = _check_args(study, out, chunk, devices)
    independent = worker is not None or workers is not None
    if independent:
        if worker is None or workers is None:
            raise ValueError("worker and workers go together (--worker K --workers N), got "
                             f"worker = {worker!r}, workers = {workers!r}")
        worker, workers = check_worker(worker, workers)
        claim_timeout = check.positive("claim_timeout", claim_timeout)
    store.require_zarr()
    import jax
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from .._version import __version__

    mesh_devices = select_devices(devices)
    # too large for memory is refused before anything is built (a resumed store keeps its own chunk)
    check_fits(study, mesh_devices, None if out.exists() else min(chunk or study.chunk or DEFAULT_CHUNK, study.seeds))
    nproc = jax.process_count()
    lead = jax.process_index() == 0
    attrs = dict(deflation_version=__version__, jax_version=jax.__version__, num_processes=nproc,
                 devices=len(mesh_devices), platform=mesh_devices[0].platform)
    points = study.points()
    n_chunks_per_point = None

    if independent and nproc > 1:
        raise ValueError("independent workers (--worker/--workers) cannot be combined with a jax.distributed job: "
                         "run each worker as its own single process")
    error: Exception | None = None
    handle: Any = None  # store.Handle, on process 0
    done: Any = None  # (grid point, chunk) flags of the chunks already stored
    looked = time.time()  # a chunk claimed done after this was computed by another worker since
    if lead:
        try:
            handle, done = _open(out, study, chunk, attrs, progress, shared=independent)
            chunk = handle.chunk
        except (ValueError, TypeError, OSError) as err:
            error = err
    if nproc > 1:  # everyone learns whether process 0 could open the store, its chunk and what is done
        head = multihost_utils.broadcast_one_to_all(np.array([error is None, chunk or 0], np.int64))
        if not head[0]:
            if lead and error is not None:
                raise error
            raise ValueError(f"process 0 refused the study (see its error); out = {str(out)!r}")
        chunk = int(head[1])
        shape = study.shape + (store.n_chunks(study, chunk),)
        done = np.asarray(multihost_utils.broadcast_one_to_all(done if lead else np.zeros(shape, bool)))
    elif error is not None:
        raise error
    n_chunks_per_point = store.n_chunks(study, chunk)
    done = done.reshape((len(points), n_chunks_per_point))

    mesh = Mesh(np.array(mesh_devices), ("seed",))
    sharding = NamedSharding(mesh, P("seed"))
    replicated = NamedSharding(mesh, P())
    ndev = len(mesh_devices)
    padded = -(-chunk // ndev) * ndev
    total = len(points) * study.seeds
    finished = sum(min(chunk, study.seeds - c * chunk) for j in range(len(points)) for c in np.flatnonzero(done[j]))
    bar = None
    if lead and progress and finished < total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=finished, unit="seed", desc=f"study {out.name}", dynamic_ncols=True)
    statics = [static_key(study, point) for point in points]
    groups: dict = {}
    for j, key in enumerate(statics):
        groups.setdefault(key, []).append(j)
    todo = [(j, int(c)) for members in groups.values() for j in members for c in np.flatnonzero(~done[j])]
    claims: Claims | None = None
    seen: Any = None  # the chunk flags as this worker read them (independent workers)
    if independent:
        assert worker is not None and workers is not None  # checked together above
        todo = worker_order(todo, n_chunks_per_point, worker, workers)
        claims = Claims(out, worker, workers, claim_timeout, since=looked)
        seen = store.read_flags(handle.root).reshape(len(points), -1)
    programs: dict = {}

    def index_of(j: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(j, study.shape)) if study.shape else ()
    try:
        if claims is not None:
            claims.__enter__()
        for j, c in todo:
            point = points[j]
            if claims is not None:
                if store.chunk_flag(handle.root, index_of(j), c) != seen[j, c] or not claims.claim((j, c)):
                    continue  # written, or being computed, by another worker meanwhile
            params = {k: jax.make_array_from_callback(v.shape, replicated, v.__getitem__)
                      for k, v in traced_params(study, point).items()}
            lo = c * chunk
            idx = np.arange(lo, lo + padded, dtype=np.uint32)  # seeds past the end are padding
            x = jax.make_array_from_callback((padded,), sharding, lambda s: idx[s])
            static = statics[j]
            if static not in programs:
                programs[static] = compile_chunk(static, mesh).lower(x, params).compile()
                _check_memory(programs[static], static, padded, mesh_devices[0])
            if bar is not None and study.grid:
                bar.set_postfix({k: point[k] if k in point else point["target"][k] for k, _ in study.grid})
            res = programs[static](x, params)
            res = multihost_utils.process_allgather(res, tiled=True) if nproc > 1 else jax.device_get(res)
            if lead:
                if claims is None or claims.holds((j, c)):
                    store.write_chunk(handle, study, index_of(j), c, res)
                    if claims is not None:
                        claims.finish((j, c))
                if bar is not None:
                    bar.update(min(chunk, study.seeds - lo))
        if not lead:
            return None
        if claims is None:
            store.mark(handle.root, out, complete=True)
        else:
            complete = store.finish_if_complete(handle.root, out, study, handle.chunk)
    finally:
        if claims is not None:
            claims.__exit__(None, None, None)
        if bar is not None:
            bar.close()
        if handle is not None:
            handle.close()
    ds = store.load(out)
    if summary and (claims is None or complete):
        from .summary import write_summary

        write_summary(ds, out)
    return ds


def init_study(study: Study, out, *, chunk: int | None = None) -> Path:
    """Create the (empty) store of ``study`` at ``out`` before workers start, or check that an
    existing one holds this study (then nothing changes). Returns its path."""
    out, chunk, _ = _check_args(study, out, chunk, None)
    import jax

    from .._version import __version__

    handle, _ = _open(out, study, chunk, dict(deflation_version=__version__, jax_version=jax.__version__), False,
                      shared=True)
    handle.close()
    return out


def _check_memory(compiled, static, padded: int, device) -> None:
    """Refuse a compiled chunk program whose memory need exceeds what the device has free."""
    need = compiled_bytes(compiled)
    have = available_memory(device)
    if need is not None and have is not None and need > have:
        raise ValueError(
            f"a chunk of {padded} seeds at d = {static.d}, m = {static.m} needs about {gib(need)} of memory "
            f"but {gib(have)} is available; use fewer seeds per chunk (--chunk / chunk = ...), a smaller m, "
            "or fewer series points"
        )


def open_study(path) -> object:
    """A study's dataset (``xarray.Dataset``), with every chunk verified against its digest: the
    seeds of a missing or damaged chunk read as not computed (``status = -1``) and the attributes
    ``chunks_damaged`` / ``chunks_missing`` / ``complete`` say so."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"study store {str(path)!r} does not exist")
    return store.load(path)
