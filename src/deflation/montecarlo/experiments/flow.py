"""Experiment ``flow``: the gradient flow of the study's model from ``delta0`` to the horizon, with
Definition 1's discovery and fit events located on the event grid."""

from __future__ import annotations

from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from ... import memory
from ...integrate import solve
from ...models import MODELS
from ..kernel import Static, initial_state, members, per_seed, point_loss, solver_configs, study_target, time_series
from ..records import DISCOVERED, DISCOVERY_TIME, FIT_TIME, MEMBERS, STATUS, STEPS, Var
from .base import Experiment


def run(s: Static, seed_idx, p):
    """Gradient flow of the study's model to the horizon for a local batch of seeds."""
    model = MODELS[s.model]
    target = study_target(s, seed_idx, p)
    y0 = initial_state(s, seed_idx, p["delta0"])
    solver, events = solver_configs(s, p)
    times = jnp.minimum(p["series_ts"], p["horizon"]) if s.series_points else p["horizon"][None]
    sol = solve(target, y0, t1=p["horizon"], save_ts=times, solver=solver, lam=p["lam"], events=events, model=model)
    tr = sol.tracked
    assert tr is not None  # a solve with events tracks Definition 1
    rho, ubar = cast(Any, sol.rho), cast(Any, sol.ubar)  # one array, or one per factor matrix
    last = lambda x: jax.tree_util.tree_map(lambda v: v[:, -1], x)  # noqa: E731
    out = dict(
        discovered=jnp.isfinite(tr.discovery_time), discovery_time=tr.discovery_time, fit_time=tr.fit_time,
        members=members(tr.member, s.r), status=sol.status.astype(jnp.int8), num_steps=sol.num_steps.astype(jnp.int32),
        loss=per_seed(target, lambda tg, rh, ub: point_loss(model, tg, rh, ub, p["lam"]), last(rho), last(ubar)),
    )
    if s.series_points:
        out.update(time_series(s, target, sol.rho, sol.ubar, p["series_ts"], p["horizon"], p["lam"]))
    return out


def chunk_memory(point: dict, r: int, seeds: int, series_points: int, backend: str):
    """:func:`deflation.memory.flow_memory` of a chunk (the horizon and the series' save points)."""
    itemsize = np.dtype(point.get("dtype", "float64")).itemsize
    return memory.flow_memory(seeds=seeds, d=point["d"], m=point["m"], r=r, save_points=series_points + 1,
                              event_points=point["event_points"], itemsize=itemsize, chunk=seeds, backend=backend)


EXPERIMENT = Experiment(
    name="flow",
    doc="gradient flow of the model to the horizon",
    run=run,
    variables={
        "discovered": DISCOVERED,
        "discovery_time": DISCOVERY_TIME,
        "fit_time": FIT_TIME,
        "members": MEMBERS,
        "status": STATUS,
        "num_steps": STEPS,
        "loss": Var((), "float", np.nan, "loss L(W) at the horizon"),
    },
    required=("d", "m", "horizon"),
    memory=chunk_memory,
)
