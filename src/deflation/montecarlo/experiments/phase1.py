"""Experiment ``phase1``: the decoupled Phase 1 dynamics (paper Eq. 1, ``R`` frozen at ``T*``), with
a checked bound on their distance to the full gradient flow."""

from __future__ import annotations

from typing import Any, cast

import jax.numpy as jnp
import numpy as np

from ... import memory
from ...integrate import solve
from ..kernel import Static, initial_state, members, solver_configs, study_target, time_series
from ..params import Param, positive
from ..records import COMPONENT, DISCOVERY_TIME, MEMBERS, STATUS, STEPS, Var
from .base import Experiment

#: Save points of the phase1 coupling bound (besides the event grid).
COUPLING_POINTS = 33


def run(s: Static, seed_idx, p):
    """Phase 1 fast path: the tensor-power dynamics (paper Eq. 1, ``R`` frozen at ``T*``): the
    columns decouple, and a vector-field evaluation costs ``4 r m d`` flops instead of
    ``4 m^2 d + 4 r m d`` (no model Gram matrix).

    Also returns a checked bound on how far the full flow's vector field can be from the frozen
    one. With ``S(t) = sum_j |w_j(t)|^2 >= |T(t)|_F``, the two differ by at most ``p S(t)`` in each
    column's ``(rho, u)`` (``|T(u^p)| <= S``, ``|(I - uu^T) T(u^{p-1}, I)| <= S``). ``S`` is saved on a
    grid of spacing ``h``; between grid points ``d rho/dt >= -c`` with ``c = lam`` for even ``p``
    (``T*(u^p) >= 0``) and ``c = lam + 2 sum_i a_i`` for odd ``p``, so ``S(t) <= S(t_(k+1)) e^(2 c h)``
    on ``[t_k, t_(k+1)]``. ``coupling_max`` bounds ``max_t S(t)`` and ``coupling`` bounds
    ``int_0^H p S(t) dt``: both are upper bounds, not estimates.
    """
    dtype = jnp.dtype(s.dtype)
    target = study_target(s, seed_idx, p)
    y0 = initial_state(s, seed_idx, p["delta0"])
    solver, events = solver_configs(s, p)
    coupling_ts = jnp.linspace(jnp.zeros((), dtype), p["horizon"], COUPLING_POINTS, dtype=dtype)[1:]
    times = coupling_ts
    if s.series_points:
        times = jnp.concatenate([coupling_ts, jnp.minimum(p["series_ts"], p["horizon"])])
    order = jnp.argsort(times)
    sol = solve(target, y0, t1=p["horizon"], save_ts=times[order], solver=solver, lam=p["lam"], events=events,
                frozen=True)
    inverse = jnp.argsort(order)
    assert sol.tracked is not None  # a solve with events tracks Definition 1
    rho, ubar = cast(Any, sol.rho)[:, inverse], cast(Any, sol.ubar)[:, inverse]  # a symmetric model: one array each
    n = COUPLING_POINTS - 1
    h = p["horizon"] / n
    c = p["lam"] + (2.0 * jnp.sum(p["a"]) if s.order % 2 else 0.0)
    S = jnp.exp(2.0 * rho[:, :n]).sum(axis=-1) * jnp.exp(2.0 * c * h)  # (B, n) upper bounds per interval
    S0 = jnp.exp(2.0 * y0[0]).sum(axis=-1)
    disc = sol.tracked.discovery_time
    out = dict(
        discovered=jnp.isfinite(disc), discovery_time=disc, members=members(sol.tracked.member, s.r),
        status=sol.status.astype(jnp.int8), num_steps=sol.num_steps.astype(jnp.int32),
        coupling_max=jnp.maximum(S.max(axis=-1), S0), coupling=s.order * h * S.sum(axis=-1),
    )
    if s.series_points:
        out.update(time_series(s, target, rho[:, n:], ubar[:, n:], p["series_ts"], p["horizon"], p["lam"]))
    return out


def chunk_memory(point: dict, r: int, seeds: int, series_points: int, backend: str):
    """:func:`deflation.memory.flow_memory` with the coupling bound's save points, and a vector
    field without the ``m x m`` Gram matrix (the columns decouple)."""
    d, m = point["d"], point["m"]
    itemsize = np.dtype(point.get("dtype", "float64")).itemsize
    est = memory.flow_memory(seeds=seeds, d=d, m=m, r=r, save_points=series_points + COUPLING_POINTS - 1,
                             event_points=point["event_points"], itemsize=itemsize, chunk=seeds, backend=backend)
    parts = dict(est.parts)
    parts["vector field"] = itemsize * memory.STEP_COPIES * (d + 1) * m * seeds
    if not series_points:
        parts["loss"] = 0
    return memory.MemoryEstimate(total=int(sum(parts.values())), parts=parts, chunk=est.chunk, block=est.block,
                                 precise=est.precise)


EXPERIMENT = Experiment(
    name="phase1",
    doc="the decoupled Phase 1 dynamics (paper Eq. 1) with a bound on their distance to the flow",
    run=run,
    variables={
        "discovered": Var(COMPONENT, "bool", False, "component discovered by the horizon (Definition 1), under the "
                                                    "decoupled Phase 1 dynamics (paper Eq. 1)"),
        "discovery_time": DISCOVERY_TIME,
        "members": MEMBERS,
        "status": STATUS,
        "num_steps": STEPS,
        "coupling_max": Var((), "float", np.nan, "upper bound on max_t sum_j |w_j|^2 >= |T|_F"),
        "coupling": Var((), "float", np.nan, "upper bound on int_0^H p sum_j |w_j|^2 dt: the integrated drift the "
                                             "full flow adds to each column's (log-norm, direction)"),
    },
    required=("d", "m", "horizon"),
    memory=chunk_memory,
    params={"coupling_tol": Param(positive, ("phase1",), 1e-2,
                                  "phase1 flags a seed whose coupling bound exceeds this")},
    models=("normalized",),
    min_order=3,  # the tensor power dynamics of paper Eq. 1 (at order 2: power iteration, no Phase 1 to time)
)
