"""The compiled per-chunk program of a study: a batch of seed indices -> per-seed records.

One ``jax.jit`` of a ``jax.shard_map`` over a 1-D device mesh (axis ``"seed"``): every device runs
its own slice of the chunk with the experiment's kernel, each seed with its own adaptive steps,
without collectives. The chunk size is fixed per study, so a study compiles once per
:func:`static_key` (the shapes, the solver, the experiment's own static settings) and reuses the
program for every chunk and every grid point that shares it; the other parameters are passed as
values (:func:`traced_params`).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from ..init import equiangular_columns
from .experiments import EXPERIMENTS
from .kernel import Static
from .records import SERIES, Var
from .study import Study, params_table, weights


def variables(study: Study) -> dict[str, Var]:
    """The variables a study records (its experiment's, and the time series if asked for)."""
    out = dict(EXPERIMENTS[study.experiment].variables)
    if study.series is not None:
        out.update(SERIES)
    return out


def traced(study: Study) -> tuple[str, ...]:
    """The parameters passed to the compiled function as values: every ``[params]`` key that is
    not ``static`` in its declaration (a sweep over any of them reuses one compilation);
    everything in :func:`static_key` changes the program."""
    return tuple(k for k, p in params_table().items() if not p.static and study.experiment in p.experiments)


def series_times(study: Study) -> np.ndarray | None:
    """The ``time`` coordinate of a study's time series: ``linspace(0, largest horizon, points)``."""
    series = study.series_spec
    if series is None:
        return None
    horizon = max(p["horizon"] for p in study.points())
    return np.linspace(0.0, horizon, series["points"])


def traced_params(study: Study, point: dict) -> dict:
    """The values of a grid point the compiled function takes: the :func:`traced` scalars, the
    weights ``a`` and (unless they are drawn per seed) the components ``U``."""
    dtype = np.dtype(point.get("dtype", "float64"))
    out = {k: np.asarray(point[k], dtype) for k in traced(study) if k in point}
    a = weights(point)
    out["a"] = np.asarray(a, dtype)
    t = point["target"]
    if t["kind"] == "basis":
        r = a.shape[0]
        out["U"] = np.zeros((point["d"], r), dtype)  # I[:, :r] without the d x d identity (d may be large)
        out["U"][np.arange(r), np.arange(r)] = 1
    elif t["kind"] == "angle":
        out["U"] = np.asarray(equiangular_columns(point["d"], a.shape[0], np.cos(np.radians(t["angle"]))), dtype)
    elif t["kind"] == "file":
        with np.load(t["file"]) as data:
            out["U"] = np.asarray(data["U"], dtype)
    times = series_times(study)
    if times is not None:
        out["series_ts"] = np.asarray(times, dtype)
    return out


def static_key(study: Study, point: dict) -> Static:
    """The :class:`~deflation.montecarlo.kernel.Static` of a grid point: grid points with the same
    one share a compiled program. The experiment sets its own fields (``static`` of its
    declaration)."""
    series = study.series_spec or {"points": 0, "norms": 0}
    fields = dict(experiment=study.experiment, d=point["d"], m=point["m"], r=study.r, order=point["order"],
                  random_target=point["target"]["kind"] == "random", key=study.key,
                  dtype=point.get("dtype", "float64"), solver=point.get("solver", ""),
                  max_steps=point.get("max_steps", 0), event_points=point.get("event_points", 0),
                  max_epochs=point.get("max_epochs", 0), grid_points=0, series_points=series["points"],
                  series_norms=series["norms"], model=point.get("model", "normalized"))
    fields.update(EXPERIMENTS[study.experiment].static(point))
    return Static(**fields)


def compile_chunk(static: Static, mesh: Mesh):
    """A jitted ``fn(seed_idx (C,) uint32 sharded over mesh axis "seed", traced_params)
    -> dict of (C, ...) arrays``, shared by every grid point with the same
    :class:`~deflation.montecarlo.kernel.Static`."""
    return _build(static, mesh)


@functools.lru_cache(maxsize=4)
def _build(static: Static, mesh: Mesh):
    """The compiled chunk function of one :class:`~deflation.montecarlo.kernel.Static` (a study runs
    its grid points grouped by it, so a few are kept)."""
    local = EXPERIMENTS[static.experiment].run
    fn = jax.shard_map(lambda idx, p: local(static, idx, p), mesh=mesh, in_specs=(P("seed"), P()),
                       out_specs=P("seed"), check_vma=False)
    return jax.jit(fn)
