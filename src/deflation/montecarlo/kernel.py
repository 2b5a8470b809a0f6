"""The pieces every experiment's kernel is made of: what a compiled chunk depends on
(:class:`Static`), the initial state and the target of a batch of seeds, the solver settings, the
loss and the optional time series.

An experiment's kernel (``run`` of its :class:`~deflation.montecarlo.experiments.base.Experiment`)
maps a local batch of seed indices and the grid point's traced values to per-seed records;
:mod:`deflation.montecarlo.program` compiles it for a chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..contract import log_positive, residual_norm_sq, residual_on
from ..dynamics import normalize
from ..init import orthonormal_columns, seed_keys, unit_columns
from ..integrate import EventConfig, SolverConfig, solver_by_name
from ..models import MODELS, SymmetricModel
from ..target import Target


@dataclass(frozen=True)
class Static:
    """What a compiled chunk function depends on besides its traced values."""

    experiment: str
    d: int
    m: int
    r: int
    order: int
    random_target: bool
    key: int
    dtype: str
    solver: str
    max_steps: int
    event_points: int
    max_epochs: int
    grid_points: int
    series_points: int
    series_norms: int
    model: str = "normalized"
    gd_stride: int = 0  # gd: iterations between event grid points
    momentum: float = 0.0  # gd: heavy-ball momentum (0: plain steps)


# ---------------------------------------------------------------------------- pieces


def initial_state(s: Static, seed_idx, delta0):
    """Seed ``k``'s log-norm state: ``rho = log(delta0)``, ``ubar = unit_columns(fold_in(PRNGKey(key), k), d, m)``
    (the same draw as :func:`deflation.sample_sphere_batch` with that key and scale 1). A model of
    ``p`` factor matrices (the asymmetric one) draws factor ``j`` from ``fold_in(seed k's key, j)``,
    as its :meth:`~deflation.models.AbstractModel.init` does: ``((rho_1, ...), (ubar_1, ...))``."""
    dtype = jnp.dtype(s.dtype)
    keys = seed_keys(jax.random.PRNGKey(s.key), seed_idx)
    factors = MODELS[s.model].factor_count(s.order)
    draw = lambda tag: jax.vmap(lambda k: unit_columns(tag(k), s.d, s.m, dtype))(keys)  # noqa: E731
    sized = lambda ub: jnp.full(ub.shape[:1] + ub.shape[2:], 1.0, dtype) * log_positive(delta0)  # noqa: E731
    if factors == 1:
        ubar = draw(lambda k: k)
        return sized(ubar), ubar
    ubars = tuple(draw(lambda k, j=j: jax.random.fold_in(k, j)) for j in range(factors))
    return tuple(sized(ub) for ub in ubars), ubars


#: ``fold_in`` tag of the per-seed target draw (the initialization uses the seed's key itself).
TARGET_STREAM = 1


def study_target(s: Static, seed_idx, p) -> Target:
    """The target of a chunk: one for all seeds, or (``random``) a Haar-random orthonormal ``U`` per
    seed drawn from ``fold_in(seed k's key, TARGET_STREAM)``."""
    if not s.random_target:
        return Target(p["a"], p["U"], s.order)
    keys = seed_keys(jax.random.PRNGKey(s.key), seed_idx)
    U = jax.vmap(lambda k: orthonormal_columns(jax.random.fold_in(k, TARGET_STREAM), s.d, s.r, p["a"].dtype))(keys)
    return Target(jnp.broadcast_to(p["a"], (U.shape[0], s.r)), U, s.order)


def solver_configs(s: Static, p):
    """The solver and event settings of a solved experiment's chunk."""
    solver = SolverConfig.adaptive(p["rtol"], p["atol"], solver_by_name(s.solver), max_steps=s.max_steps)
    events = EventConfig(delta1=p["delta1"], alpha=p["alpha"], fit_fraction=p["fit_fraction"], points=s.event_points)
    return solver, events


def members(member, r: int):
    """Columns in each ``S_i`` per seed, (B, r)."""
    return (member[:, :, None] == jnp.arange(r)).sum(axis=1).astype(jnp.int32)


def per_seed(target: Target, fn, *args):
    """``fn(target of the seed, *args of the seed)`` over the seeds."""
    axis = 0 if target.batched else None
    return jax.vmap(fn, in_axes=(axis,) + (0,) * len(args))(target, *args)


def point_loss(model, tg, rho, ubar, lam):
    """The loss of the log-norm state ``(rho, ubar)`` under ``model``: for a symmetric model
    (``T = sum_j omega_j ubar_j^p``) by the Gram formula on the unit directions, for another by the
    model's own (:meth:`~deflation.models.AbstractModel.series`)."""
    if not isinstance(model, SymmetricModel):
        return model.series((rho, ubar), tg, lam, False, 0.0)[1]["loss"]
    omega = model.weights(rho, tg.order)
    sq, _ = residual_norm_sq(normalize(ubar), omega, tg, None)
    norms_sq = omega if model.norm_power(tg.order) == 2 else jnp.exp(2.0 * rho)  # |w_j|^2
    return 0.5 * sq + 0.5 * lam * norms_sq.sum(-1)


def point_residual(model, tg, rho, ubar):
    """``<T* - T, u_i^(x)p>`` on each component at the log-norm state (precise for a symmetric model)."""
    if not isinstance(model, SymmetricModel):
        return model.series((rho, ubar), tg, 0.0, False, 0.0)[1]["residual"]
    return residual_on(normalize(ubar), model.weights(rho, tg.order), tg, precise=True)


def time_series(s: Static, target: Target, rho, ubar, times, horizon, lam):
    """The time series at the save points ``times`` (``rho`` (B, K, m)), one time point at a time
    (bounded memory), NaN past the horizon."""

    model = MODELS[s.model]

    def at(k):
        r_k, u_k = jax.tree_util.tree_map(lambda x: x[:, k], (rho, ubar))
        loss = per_seed(target, lambda tg, rh, ub: point_loss(model, tg, rh, ub, lam), r_k, u_k)
        res = per_seed(target, lambda tg, rh, ub: point_residual(model, tg, rh, ub), r_k, u_k)
        sizes = model.column_log_sizes((r_k, u_k), s.order)  # log |w_j| (a term's geometric mean of factor norms)
        norms = -jnp.sort(-sizes, axis=-1)[:, : s.series_norms]
        return loss, res, jnp.exp(norms)

    loss, res, norms = jax.lax.map(at, jnp.arange(jax.tree_util.tree_leaves(rho)[0].shape[1]))
    past = (times > horizon)[None, :]
    nan = lambda x: jnp.where(past.reshape(past.shape + (1,) * (x.ndim - 2)), jnp.nan, x)  # noqa: E731
    return dict(loss_t=nan(jnp.moveaxis(loss, 0, 1)), residual_t=nan(jnp.moveaxis(res, 0, 1)),
                norms_t=nan(jnp.moveaxis(norms, 0, 1)))
