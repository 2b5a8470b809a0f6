"""The compiled per-chunk computation: a batch of seed indices -> per-seed, per-component results.

One ``jax.jit`` of a ``jax.shard_map`` over a 1-D device mesh (axis ``"seed"``): every device
integrates its own slice of the chunk with its own adaptive steps, without collectives inside the
solve. The chunk size is fixed per sweep point (the last chunk is padded), so a study compiles
once per distinct shape and reuses the executable for every chunk.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from ..contract import residual_norm_sq
from ..dynamics import normalize
from ..init import seed_keys, unit_columns
from ..integrate import EventConfig, SolverConfig, solve, solver_by_name
from ..target import Target
from .study import Study

#: Per-seed-and-component outputs and per-seed outputs of each mode.
COMPONENT_VARS = ("discovered", "discovery_time", "fit_time", "members")
SEED_VARS = {"full": ("status", "num_steps", "loss"), "decoupled": ("status", "num_steps", "coupling_max", "coupling")}


#: Parameters passed to the compiled function as (traced) values, so a sweep over any of them
#: reuses one compilation; everything else (shapes, solver, mode) is static.
TRACED = ("delta0", "delta1", "alpha", "lam", "horizon", "rtol", "atol", "fit_fraction")


def traced_params(study: Study) -> dict:
    """The values of :data:`TRACED` and the weights ``a`` as arrays of the study's dtype."""
    dtype = np.dtype(study.dtype)
    out = {k: np.asarray(getattr(study, k), dtype) for k in TRACED}
    out["a"] = np.asarray(study.a, dtype)
    return out


def static_key(study: Study) -> tuple:
    """What a compiled chunk function depends on besides :func:`traced_params`."""
    return (study.d, study.m, study.order, study.r, study.key, study.solver, study.max_steps, study.dtype,
            study.mode, study.event_points)


def initial_state(study: Study, seed_idx, delta0):
    """Seed ``k``'s ``(rho, ubar)``: ``rho = log(delta0)``, ``ubar = unit_columns(fold_in(PRNGKey(key), k))``."""
    dtype = jnp.dtype(study.dtype)
    keys = seed_keys(jax.random.PRNGKey(study.key), seed_idx)
    ubar = jax.vmap(lambda k: unit_columns(k, study.d, study.m, dtype))(keys)
    rho = jnp.full(ubar.shape[:1] + ubar.shape[2:], 1.0, dtype) * jnp.log(delta0)
    return rho, ubar


def _target(study: Study, a):
    U = np.eye(study.d)[:, : study.r].astype(study.dtype)
    return Target(a, U, study.order, orthogonal=True)


def _configs(study: Study, p):
    """The solver and event settings of a study point (``p``: its traced parameters)."""
    solver = SolverConfig.adaptive(p["rtol"], p["atol"], solver_by_name(study.solver), max_steps=study.max_steps)
    events = EventConfig(delta1=p["delta1"], alpha=p["alpha"], fit_fraction=p["fit_fraction"],
                         points=study.event_points)
    return solver, events


def _members(member, r: int):
    """Columns in each ``S_i`` per seed, (B, r)."""
    return (member[:, :, None] == jnp.arange(r)).sum(axis=1).astype(jnp.int32)


def _full(study: Study, seed_idx, p):
    """Full gradient flow for a local batch of seeds, through the public batched solve."""
    target = _target(study, p["a"])
    y0 = initial_state(study, seed_idx, p["delta0"])
    solver, events = _configs(study, p)
    sol = solve(target, y0, t1=p["horizon"], solver=solver, lam=p["lam"], events=events)
    omega = jnp.exp(2.0 * sol.rho[:, -1])
    u = jax.vmap(normalize)(sol.ubar[:, -1])
    sq = jax.vmap(lambda uu, om: residual_norm_sq(uu, om, target, None)[0])(u, omega)
    tr = sol.tracked
    return dict(
        discovered=jnp.isfinite(tr.discovery_time), discovery_time=tr.discovery_time,
        fit_time=tr.fit_time, members=_members(tr.member, target.r), status=sol.status.astype(jnp.int8),
        num_steps=sol.num_steps.astype(jnp.int32), loss=0.5 * sq + 0.5 * p["lam"] * omega.sum(-1),
    )


#: Save points of the decoupled mode's coupling bound (besides the event grid).
COUPLING_POINTS = 33


def _decoupled(study: Study, seed_idx, p):
    """Phase 1 fast path: the tensor-power dynamics (paper Eq. 1, ``R`` frozen at ``T*``), through
    the core's vmapped solve with ``frozen=True``: the columns decouple, and a vector-field
    evaluation costs ``4 r m d`` flops instead of ``4 m^2 d + 4 r m d`` (no model Gram matrix).

    Also returns a checked bound on how far the full flow's vector field can be from the frozen
    one. With ``S(t) = sum_j |w_j(t)|^2 >= |T(t)|_F``, the two differ by at most ``p S(t)`` in each
    column's ``(rho, u)`` (``|T(u^p)| <= S``, ``|(I - uu^T) T(u^{p-1}, I)| <= S``). ``S`` is saved on a
    grid of spacing ``h``; between grid points ``d rho/dt >= -c`` with ``c = lam`` for even ``p``
    (``T*(u^p) >= 0``) and ``c = lam + 2 sum_i a_i`` for odd ``p``, so ``S(t) <= S(t_(k+1)) e^(2 c h)``
    on ``[t_k, t_(k+1)]``. ``coupling_max`` bounds ``max_t S(t)`` and ``coupling`` bounds
    ``int_0^H p S(t) dt``: both are upper bounds, not estimates.
    """
    dtype = jnp.dtype(study.dtype)
    target = _target(study, p["a"])
    y0 = initial_state(study, seed_idx, p["delta0"])
    ts = jnp.linspace(jnp.zeros((), dtype), p["horizon"], COUPLING_POINTS, dtype=dtype)[1:]
    solver, events = _configs(study, p)
    sol = solve(target, y0, t1=p["horizon"], save_ts=ts, solver=solver, lam=p["lam"], events=events, frozen=True)
    h = p["horizon"] / (COUPLING_POINTS - 1)
    c = p["lam"] + (2.0 * jnp.sum(p["a"]) if study.order % 2 else 0.0)
    S = jnp.exp(2.0 * sol.rho).sum(axis=-1) * jnp.exp(2.0 * c * h)  # (B, K) upper bounds per interval
    S0 = jnp.exp(2.0 * y0[0]).sum(axis=-1)
    disc = sol.tracked.discovery_time
    return dict(
        discovered=jnp.isfinite(disc), discovery_time=disc, fit_time=jnp.full_like(disc, jnp.nan),
        members=_members(sol.tracked.member, target.r), status=sol.status.astype(jnp.int8),
        num_steps=sol.num_steps.astype(jnp.int32),
        coupling_max=jnp.maximum(S.max(axis=-1), S0), coupling=target.order * h * S.sum(axis=-1),
    )


def compile_chunk(study: Study, mesh: Mesh):
    """A jitted ``fn(seed_idx (C,) uint32 sharded over mesh axis "seed", traced_params(study))
    -> dict of (C, ...) arrays``; shared by every study with the same :func:`static_key`."""
    return _build(static_key(study), study, mesh)


@functools.lru_cache(maxsize=16)
def _build(key, study, mesh):
    """The compiled chunk function of one :func:`static_key` (the last 16 are kept)."""
    del key  # the cache key: everything the function depends on besides its traced arguments
    local = _full if study.mode == "full" else _decoupled
    fn = jax.shard_map(
        lambda idx, p: local(study, idx, p), mesh=mesh, in_specs=(P("seed"), P()), out_specs=P("seed"), check_vma=False
    )
    return jax.jit(fn)
