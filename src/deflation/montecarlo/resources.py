"""What a study runs on: the devices of its mesh, the default chunk size, and the memory a compiled
chunk needs (the memory the device has free is :func:`deflation.memory.available_memory`); and
:func:`check_fits`, which refuses a study too large for the machine before anything is built."""

from __future__ import annotations

import re

import numpy as np

from .. import _validate as check

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
        raise ValueError(f"devices must be <= the {len(local)} device(s) JAX sees in this process "
                         f"({local[0].platform}), got {devices}")
    by_proc: dict[int, list] = {}
    for d in jax.devices():
        by_proc.setdefault(d.process_index, []).append(d)
    return [d for p in sorted(by_proc) for d in by_proc[p][:devices]]


def compiled_bytes(compiled) -> int | None:
    """Peak memory of a compiled program (arguments + outputs + temporaries, XLA's analysis)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None
    if stats is None:
        return None
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
               + getattr(stats, "generated_code_size_in_bytes", 0))


# ---------------------------------------------------------------------------- before anything is built

#: Bytes of each kind of recorded value (``"float"`` is the study's dtype).
_ITEMSIZE = {"bool": 1, "int8": 1, "int32": 4}


def dataset_bytes(study) -> int:
    """Bytes of a study's dataset in memory: every recorded variable, coordinate, weight and chunk
    digest, as :func:`deflation.montecarlo.open_study` reads it (and a store holds it,
    uncompressed)."""
    from .program import variables
    from .store import dims_sizes

    sizes = dims_sizes(study)
    grid = int(np.prod(study.shape, dtype=object)) if study.shape else 1
    floats = np.dtype(study.param_spec.get("dtype", "float64")).itemsize
    total = 0
    for var in variables(study).values():
        count = grid * study.seeds
        for dim in var.dims:
            count *= sizes[dim]
        total += count * _ITEMSIZE.get(var.dtype, floats)
    total += 8 * sum(sizes[k] for k in sizes if k not in dict(study.grid))  # seed, component, time, ... coordinates
    total += 8 * grid * (study.r + -(-study.seeds // DEFAULT_CHUNK))  # the weights a, and at least the digests
    return int(total)


def chunk_memory(study, point: dict, seeds: int, backend: str):
    """Estimated peak memory (:class:`deflation.memory.MemoryEstimate`) of one compiled chunk of a
    study at a grid point, with ``seeds`` seeds on one device, from the sizes alone (before
    anything is traced): the experiment's own estimate (``memory`` of its declaration, e.g.
    :func:`deflation.memory.flow_memory` for ``flow``, :func:`deflation.memory.algorithm2_memory`
    for ``algorithm2``)."""
    from .experiments import EXPERIMENTS

    series = study.series_spec or {"points": 0}
    return EXPERIMENTS[study.experiment].memory(point, study.r, seeds, series["points"], backend)


#: What to change when a study's chunk does not fit, in the words of a study file.
_NAMES = dict(seeds="seeds", fewer_seeds="a smaller chunk (chunk = ... in the study file, or --chunk)", m="params.m",
              d="params.d", save_points="series.points", event_points="params.event_points",
              max_epochs="params.max_epochs")


def check_fits(study, devices, chunk: int | None) -> None:
    """Refuse a study too large for this machine before anything is built (no store, no
    compilation): ``ValueError`` when its dataset (:func:`dataset_bytes`) exceeds the memory the
    host has free, or, with ``chunk`` (seeds per chunk; None: not checked here), when the estimate
    of a chunk (:func:`chunk_memory`, ``chunk`` seeds shared by ``devices``) exceeds what the device
    has free. The compiled program's own memory need is checked again once it is compiled."""
    from ..memory import available_memory, fit_chunk, gib, host_memory, suggest
    from .experiments import EXPERIMENTS
    from .program import static_key

    need = dataset_bytes(study)
    host = host_memory()
    if host is not None and need > host:
        grid = " x ".join(f"{len(v)}" for _, v in study.grid)
        raise ValueError(f"the study's dataset ({study.seeds} seeds{f' x {grid} grid points' if grid else ''}) takes "
                         f"{gib(need)} in memory when it is read, more than the {gib(host)} available: use fewer "
                         "seeds, a smaller grid or fewer series.points")
    if chunk is None:
        return
    per_device = -(-chunk // len(devices))
    have = available_memory(devices[0])
    if have is None:
        return
    seen = set()
    for point in study.points():
        static = static_key(study, point)
        if static in seen:
            continue
        seen.add(static)
        est = chunk_memory(study, point, per_device, devices[0].platform)
        if est.total <= have:
            continue
        at = f"d = {point['d']}, m = {point['m']}"
        one = chunk_memory(study, point, 1, devices[0].platform)
        if one.total > have:
            names = dict(_NAMES, event_points="params.event_points",
                         fewer_seeds="fewer " + EXPERIMENTS[study.experiment].shrinks)
            names.pop("save_points")  # one seed: a smaller chunk does not help
            raise ValueError(f"even one seed of the study at {at} needs an estimated {one.describe()} of memory, but "
                             f"{gib(have)} is available: {suggest(one, names)}")
        fits = fit_chunk(lambda c: chunk_memory(study, point, c, devices[0].platform), per_device, have)
        other = suggest(est, dict(_NAMES, fewer_seeds="a smaller chunk"))[len("use "):]
        other = re.sub(r"^a smaller chunk( or |;? ?(or )?)?", "", other)  # said already
        other = f"; or {other}" if other else ""
        raise ValueError(f"a chunk of {chunk} seeds ({per_device} per device) at {at} needs an estimated "
                         f"{est.describe()} of memory, but {gib(have)} is available: use a smaller chunk, at most "
                         f"{fits.chunk * len(devices)} seed(s) (chunk = ... in the study file, or --chunk){other}")
