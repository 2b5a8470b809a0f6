"""The compiled per-chunk computation: a batch of seed indices -> per-seed, per-component results.

One ``jax.jit`` of a ``jax.shard_map`` over a 1-D device mesh (axis ``"seed"``): every device
integrates its own slice of the chunk with its own adaptive steps, without collectives inside the
solve. The chunk size is fixed per sweep point (the last chunk is padded), so a study compiles
once per distinct shape and reuses the executable for every chunk.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from ..flow import _solve_batch
from ..init import seed_keys, unit_columns
from ..target import Target
from .study import Study

_SOLVER_CLASSES = {
    "tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8, "bosh3": diffrax.Bosh3,
    "heun": diffrax.Heun, "midpoint": diffrax.Midpoint, "ralston": diffrax.Ralston,
}

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


def _controller(p):
    return diffrax.PIDController(rtol=p["rtol"], atol=p["atol"])


def _full(study: Study, seed_idx, p):
    """Full gradient flow for a local batch of seeds, through the core's vmapped solve."""
    dtype = jnp.dtype(study.dtype)
    target = _target(study, p["a"])
    y0 = initial_state(study, seed_idx, p["delta0"])
    event_ts = jnp.linspace(jnp.zeros((), dtype), p["horizon"], study.event_points, dtype=dtype)
    out = _solve_batch(
        target, y0, p["horizon"][None], event_ts, jnp.zeros((), dtype), p["lam"], p["delta1"], p["alpha"],
        p["fit_fraction"], jnp.maximum(p["rtol"], p["atol"]), _SOLVER_CLASSES[study.solver](), _controller(p), None,
        study.max_steps, False, None, diffrax.NoProgressMeter(),
    )
    members = (out["member"][:, :, None] == jnp.arange(target.r)).sum(axis=1).astype(jnp.int32)
    return dict(
        discovered=jnp.isfinite(out["discovery_time"]), discovery_time=out["discovery_time"],
        fit_time=out["fit_time"], members=members, status=out["status"].astype(jnp.int8),
        num_steps=out["num_steps"].astype(jnp.int32), loss=out["loss"][:, 0],
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
    event_ts = jnp.linspace(jnp.zeros((), dtype), p["horizon"], study.event_points, dtype=dtype)
    ts = jnp.linspace(jnp.zeros((), dtype), p["horizon"], COUPLING_POINTS, dtype=dtype)[1:]
    out = _solve_batch(
        target, y0, ts, event_ts, jnp.zeros((), dtype), p["lam"], p["delta1"], p["alpha"],
        p["fit_fraction"], jnp.maximum(p["rtol"], p["atol"]), _SOLVER_CLASSES[study.solver](), _controller(p), None,
        study.max_steps, True, False, diffrax.NoProgressMeter(),
    )
    h = p["horizon"] / (COUPLING_POINTS - 1)
    c = p["lam"] + (2.0 * jnp.sum(p["a"]) if study.order % 2 else 0.0)
    S = jnp.exp(2.0 * out["log_norm"]).sum(axis=-1) * jnp.exp(2.0 * c * h)  # (B, K) upper bounds per interval
    S0 = jnp.exp(2.0 * y0[0]).sum(axis=-1)
    members = (out["member"][:, :, None] == jnp.arange(target.r)).sum(axis=1).astype(jnp.int32)
    disc = out["discovery_time"]
    return dict(
        discovered=jnp.isfinite(disc), discovery_time=disc, fit_time=jnp.full_like(disc, jnp.nan),
        members=members, status=out["status"].astype(jnp.int8), num_steps=out["num_steps"].astype(jnp.int32),
        coupling_max=jnp.maximum(S.max(axis=-1), S0), coupling=target.order * h * S.sum(axis=-1),
    )


def compile_chunk(study: Study, mesh: Mesh):
    """A jitted ``fn(seed_idx (C,) uint32 sharded over mesh axis "seed", traced_params(study))
    -> dict of (C, ...) arrays``; shared by every study with the same :func:`static_key`."""
    key = (static_key(study), mesh)
    if key not in _COMPILED:
        _COMPILED[key] = _build(study, mesh)
    return _COMPILED[key]


_COMPILED: dict = {}


def _build(study, mesh):
    local = _full if study.mode == "full" else _decoupled
    fn = jax.shard_map(
        lambda idx, p: local(study, idx, p), mesh=mesh, in_specs=(P("seed"), P()), out_specs=P("seed"), check_vma=False
    )
    return jax.jit(fn)
