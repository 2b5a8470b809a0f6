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

from ..dynamics import lognorm_vector_field, normalize
from ..events import discovery_times
from ..flow import MAX_STEPS, NONFINITE, SOLVER_FAILED, SUCCESS, _solve_batch
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


def _decoupled(study: Study, seed_idx, p):
    """Phase 1 fast path: the tensor-power dynamics (paper Eq. 1, ``R`` frozen at ``T*``), every
    column its own (d+1)-dimensional ODE, vectorized over seeds x columns.

    Also returns the coupling bound: with ``S(t) = sum_j |w_j(t)|^2 >= |T(t)|_F``, the full
    flow's vector field differs from the frozen one by at most ``p S(t)`` in each column's
    ``(rho, u)`` (``|T(u^p)| <= S``, ``|(I - uu^T) T(u^{p-1}, I)| <= S``). ``coupling_max`` is
    ``max_t S(t)`` and ``coupling`` the integrated perturbation ``int_0^H p S(t) dt`` (trapezoid
    on the event grid, an over-estimate since ``S`` is convex in ``t`` there).
    """
    dtype = jnp.dtype(study.dtype)
    target = _target(study, p["a"])
    rho0, ubar0 = initial_state(study, seed_idx, p["delta0"])  # (B, m), (B, d, m)
    B, m = rho0.shape
    event_ts = jnp.linspace(jnp.zeros((), dtype), p["horizon"], study.event_points, dtype=dtype)
    lam = p["lam"]
    term = diffrax.ODETerm(lambda t, y, args: lognorm_vector_field(y, target, lam, frozen=True))

    def summary(t, y, args):
        f = lognorm_vector_field(y, target, lam, frozen=True)
        corr2 = (target.U.T @ normalize(y[1]))[:, 0] ** 2
        return dict(log_norm=y[0][0], dlog_norm=f[0][0], corr2=corr2.max(), idx=corr2.argmax().astype(dtype))

    def column(rho, u):
        sol = diffrax.diffeqsolve(
            term, _SOLVER_CLASSES[study.solver](), jnp.zeros((), dtype), p["horizon"], None,
            (rho[None], u[:, None]), saveat=diffrax.SaveAt(ts=event_ts, fn=summary),
            stepsize_controller=_controller(p), max_steps=study.max_steps, throw=False,
        )
        ok = sol.result == diffrax.RESULTS.successful
        maxed = sol.result == diffrax.RESULTS.max_steps_reached
        finite = jnp.isfinite(sol.ys["log_norm"]).all() & jnp.isfinite(sol.ys["dlog_norm"]).all()
        status = jnp.where(ok, jnp.where(finite, SUCCESS, NONFINITE), jnp.where(maxed, MAX_STEPS, SOLVER_FAILED))
        return sol.ys, status, sol.stats["num_steps"]

    flat = jax.vmap(column)(rho0.reshape(-1), jnp.moveaxis(ubar0, 1, 2).reshape(B * m, study.d))
    ev, status, steps = jax.tree_util.tree_map(lambda x: x.reshape((B, m) + x.shape[1:]), flat)

    def per_seed(ev):
        T = lambda x: x.T  # noqa: E731  (m, K) -> (K, m)
        idx = jnp.where(jnp.isfinite(ev["idx"]), ev["idx"], -1).astype(jnp.int32)
        disc, _, member = discovery_times(
            event_ts, T(ev["log_norm"]), T(ev["dlog_norm"]), T(ev["corr2"]), T(idx),
            r=target.r, delta1=p["delta1"], alpha=p["alpha"],
        )
        S = jnp.exp(2.0 * ev["log_norm"]).sum(axis=0)  # (K,)
        coupling = target.order * jnp.trapezoid(S, event_ts)
        return disc, member, S.max(), coupling

    disc, member, cmax, coupling = jax.vmap(per_seed)(ev)
    members = (member[:, :, None] == jnp.arange(target.r)).sum(axis=1).astype(jnp.int32)
    nonok = jnp.where(status != SUCCESS, status, 0).max(axis=1)
    return dict(
        discovered=jnp.isfinite(disc), discovery_time=disc, fit_time=jnp.full_like(disc, jnp.nan),
        members=members, status=nonok.astype(jnp.int8), num_steps=steps.max(axis=1).astype(jnp.int32),
        coupling_max=cmax, coupling=coupling,
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
