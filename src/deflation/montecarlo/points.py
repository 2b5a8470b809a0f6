"""The grid points of a study's dataset and the seeds that count at each: what every summary
(:mod:`~deflation.montecarlo.summary`, :mod:`~deflation.montecarlo.order`) iterates over."""

from __future__ import annotations

import numpy as np

from ..status import Status


def _scalar(v):
    """A coordinate value as a Python number or string."""
    return v.item() if isinstance(v, np.generic) else v


def grid_points(ds):
    """``[(coords dict, isel dict), ...]`` over the study's grid (one entry without a grid)."""
    grid = list(ds.attrs.get("grid") or [])
    shape = tuple(ds.sizes[k] for k in grid)
    out = []
    for index in np.ndindex(shape):
        sel = dict(zip(grid, index))
        out.append(({k: _scalar(ds[k].values[i]) for k, i in sel.items()}, sel))
    return out


def seed_counts(sub):
    """``(ok, n, failed, missing)`` of one grid point: the mask of its intact, successful seeds,
    their number, the seeds whose solve failed and the seeds not computed."""
    status = np.asarray(sub["status"].values)
    ok = status == Status.SUCCESS
    return ok, int(ok.sum()), int(((status >= 0) & ~ok).sum()), int((status < 0).sum())
