"""Algorithm 2 of the paper (Section 4, "Modified Gradient Flow"): epochs as a ``jax.lax.scan``.

One epoch ``s`` (state ``W^{(s,0)}``, scale ``beta^{(s)}``):

1. Phase 1: gradient flow on ``L(W) = 1/2 |T - T*|_F^2 + lam/2 |W|_F^2`` for
   ``t1 = c1 d / (beta log d)`` (plus ``c3 log(d / alpha) / beta``, Lemma 4's ``t1'''``, if ``c3 > 0``);
2. every column with ``|w| < delta1`` is re-drawn from ``delta0 Unif(S^{d-1})``;
3. Phase 2: gradient flow for ``t2 = c2 (log(1/delta1) + log(1/lam)) / beta``;
4. ``beta <- beta (1 - gamma)``.

It starts from ``W^{(0,0)}`` with i.i.d. columns from ``delta0 Unif(S^{d-1})`` and
``beta^{(0)} = |T^{(0,0)} - T*|_F``, and an epoch runs only while ``|T^{(s,0)} - T*|_F > eps``.

Implementation. The state is kept in log-norm coordinates ``(rho, ubar)`` (``w = exp(rho) ubar``,
see :mod:`deflation.dynamics`), so the Theorem 1 scales (``delta0`` far below 1e-30) integrate
with full relative accuracy; a re-draw sets ``rho = log delta0`` and a fresh unit direction. The
epoch loop is a ``lax.scan`` of ``max_epochs`` steps whose carry holds the state, ``beta``, the
``S_i`` membership of every column (Definition 1) and the PRNG key, split explicitly once per epoch
(the re-draw key). Once converged (or halted by a solver failure) an epoch is a ``lax.cond`` branch
that does no work and changes nothing; under ``vmap`` both branches are traced, so the working
branch then also runs its phases with length 0 (zero solver steps). Each phase is one
:func:`deflation.flow.solve_lognorm` call that saves a uniform grid of ``grid_points`` times on
which :mod:`deflation.monitors` locates Definition 1 crossings and evaluates the Proposition 1
monitors. The whole run is one ``jit``-compiled function, ``vmap``-ped over seeds; seed ``k`` of a
batch uses the key ``fold_in(key, k)``, so its result does not depend on the batch.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from . import _validate as check
from .contract import evaluate, residual_norm_sq
from .dynamics import from_lognorm, normalize
from .flow import NONFINITE, SOLVER_FAILED, STATUS_NAMES, SUCCESS, MAX_STEPS, solve_lognorm
from .init import seed_keys, unit_columns
from .monitors import observer, track_phase
from .partition import C_RHO, partition, partition_thresholds
from .target import Target
from .theorem import theorem1_alpha


class Algorithm2Config(eqx.Module):
    """The (validated) parameters of one :func:`modified_gradient_flow` call, as Python numbers."""

    m: int
    delta0: float
    delta1: float
    lam: float
    gamma: float
    eps: float
    alpha: float
    c1: float
    c2: float
    c3: float
    c_rho: float
    max_epochs: int
    grid_points: int
    rtol: float
    atol: float
    max_steps: int


class EpochRecord(eqx.Module):
    """Per-epoch record of Algorithm 2. Every array has a leading epoch axis ``E = max_epochs``
    (after the batch axis ``B`` when the run was batched). Times inside an epoch are measured
    from its start; ``t_start`` and ``trace_t`` are absolute.

    An epoch with ``active = False`` did not run (converged or halted before it): its lengths and
    counts are 0, its flags and residuals repeat the state, and its extremes over time are those
    of an empty set (minima ``+inf``, maxima ``-inf``).

    Attributes:
        active: whether the epoch ran.
        beta: ``beta^{(s)}``.
        t1, t2: lengths of Phase 1 and Phase 2 (the paper's ``t1^{(s)}`` and ``t2^{(s)} - t1^{(s)}``).
        t_start: absolute time at the start of the epoch.
        residual_phase1, residual_phase2: ``|T - T*|_F`` at the end of Phase 1 (before the
            re-draw) and of Phase 2.
        num_redrawn: columns re-drawn between the phases.
        discovered_phase1: ``S_i`` non-empty at the end of Phase 1 (Lemma 4.2), (E, r).
        discovered: ``S_i`` non-empty at the end of the epoch (Definition 1), (E, r).
        fitted: ``a_i - ahat_i <= 2 lam`` at the end of the epoch, (E, r).
        ahat: ``ahat_i`` at the end of the epoch, (E, r).
        discovery_time: when an ``S_i`` that was empty became non-empty in this epoch (inf: not), (E, r).
        fit_time: when ``a_i - ahat_i`` fell to ``2 lam`` in this epoch (inf: not), (E, r).
        misalignment_max: Prop. 1 (a) monitor, max over the epoch and ``w in S_i`` of
            ``1 - wbar_i^2`` (claim: ``<= alpha``), (E, r). Computed without cancellation
            (see :mod:`deflation.monitors`), so it resolves Theorem 1's ``alpha^2 ~ 1e-16``.
        misalignment_avg_max: Prop. 1 (b) monitor, max over the epoch of ``E_{i,w} (1 - wbar_i^2)``
            (claim: ``<= alpha^2 + 4 s m delta1^2``), (E, r).
        gap_min, gap_max: Prop. 1 (c) monitors, extremes over the epoch of ``a_i - ahat_i``, (E, r).
        log_norm_outside_max: Prop. 1 (d) monitor, max over the epoch of ``log |w|`` for
            columns outside every ``S_i``, (E,).
        bad_crossings: columns that reached norm ``delta1`` without ``1 - wbar_i^2 <= alpha^2``
            for any ``i`` (Lemma 5.3 says none do), (E,).
        Gamma: Definition 2's ``Gamma_i^{(s)}`` at the start of the epoch, (E, r).
        num_good, num_potential: ``|S_{i,good}^{(s)}|``, ``|S_{i,pot}^{(s)}|`` of the columns
            outside every ``S_i`` at the start of the epoch, (E, r).
        num_bad: ``|S_bad^{(s)}|``, (E,).
        joined_phase1: columns that joined ``S_i`` in Phase 1, (E, r).
        joined_phase1_potential, joined_phase1_good: of those, how many were in
            ``S_{i,pot}^{(s)}`` / ``S_{i,good}^{(s)}`` (Lemma 5.1: all are potential), (E, r).
        joined_phase2: columns that joined ``S_i`` in Phase 2, (E, r).
        status: solver status of the epoch (0 success; see :data:`deflation.flow.STATUS_NAMES`).
        num_steps: solver steps taken in the epoch.
        trace_t: absolute save times of both phases, (E, 2K).
        trace_residual: ``(T* - T)(u_i^p)`` on ``trace_t``, (E, 2K, r).
        trace_residual_norm: ``|T - T*|_F`` on ``trace_t``, (E, 2K).
    """

    active: Bool[Array, "*B E"]
    beta: Float[Array, "*B E"]
    t1: Float[Array, "*B E"]
    t2: Float[Array, "*B E"]
    t_start: Float[Array, "*B E"]
    residual_phase1: Float[Array, "*B E"]
    residual_phase2: Float[Array, "*B E"]
    num_redrawn: Int[Array, "*B E"]
    discovered_phase1: Bool[Array, "*B E r"]
    discovered: Bool[Array, "*B E r"]
    fitted: Bool[Array, "*B E r"]
    ahat: Float[Array, "*B E r"]
    discovery_time: Float[Array, "*B E r"]
    fit_time: Float[Array, "*B E r"]
    misalignment_max: Float[Array, "*B E r"]
    misalignment_avg_max: Float[Array, "*B E r"]
    gap_min: Float[Array, "*B E r"]
    gap_max: Float[Array, "*B E r"]
    log_norm_outside_max: Float[Array, "*B E"]
    bad_crossings: Int[Array, "*B E"]
    Gamma: Float[Array, "*B E r"]
    num_good: Int[Array, "*B E r"]
    num_potential: Int[Array, "*B E r"]
    num_bad: Int[Array, "*B E"]
    joined_phase1: Int[Array, "*B E r"]
    joined_phase1_potential: Int[Array, "*B E r"]
    joined_phase1_good: Int[Array, "*B E r"]
    joined_phase2: Int[Array, "*B E r"]
    status: Int[Array, "*B E"]
    num_steps: Int[Array, "*B E"]
    trace_t: Float[Array, "*B E K2"]
    trace_residual: Float[Array, "*B E K2 r"]
    trace_residual_norm: Float[Array, "*B E K2"]


class Algorithm2Result(eqx.Module):
    """What :func:`modified_gradient_flow` returns (a leading batch axis ``B`` when ``seeds`` was given).

    Attributes:
        record: the per-epoch :class:`EpochRecord`.
        converged: ``|T - T*|_F <= eps`` at the end, (B,).
        epochs: number of epochs that ran, (B,).
        discovery_epoch: epoch in which ``S_i`` first became non-empty, -1 if never, (B, r).
        fit_epoch: first epoch at whose end ``i`` was fitted, -1 if never, (B, r).
        residual: final ``|T - T*|_F``, (B,).
        log_norm, ubar: final state in log-norm coordinates, ``w_j = exp(log_norm_j) ubar_j``
            (exact where ``W`` underflows), (B, m), (B, d, m).
        W: final components, (B, d, m).
        member: final ``S_i`` index of every column, -1 outside every ``S_i``, (B, m).
        status: 0 if every solve succeeded, else the first failure's code (the run halts there), (B,).
        seeds: the seed indices of a batch (seed ``k`` used ``fold_in(key, k)``), or None.
        config: the parameters used (:class:`Algorithm2Config`).
    """

    record: EpochRecord
    converged: Bool[Array, "*B"]
    epochs: Int[Array, "*B"]
    discovery_epoch: Int[Array, "*B r"]
    fit_epoch: Int[Array, "*B r"]
    residual: Float[Array, "*B"]
    log_norm: Float[Array, "*B m"]
    ubar: Float[Array, "*B d m"]
    W: Float[Array, "*B d m"]
    member: Int[Array, "*B m"]
    status: Int[Array, "*B"]
    seeds: Any
    config: Algorithm2Config

    @property
    def batched(self) -> bool:
        return self.converged.ndim == 1

    def failed(self) -> list[tuple[int, str]]:
        """``[(batch index, reason), ...]`` for every run halted by a solver failure."""
        status = np.atleast_1d(np.asarray(self.status))
        return [(int(i), STATUS_NAMES[int(s)]) for i, s in enumerate(status) if s != SUCCESS]


# ---------------------------------------------------------------------------- pure pieces


def phase_lengths(beta, d: int, lam, delta1, alpha, c1=1.0, c2=1.0, c3=0.0):
    """``(t1', t1, t2)`` of epoch scale ``beta`` (Algorithm 2; Lemmas 4 and 6):
    ``t1' = c1 d / (beta log d)``, ``t1 = t1' + c3 log(d / alpha) / beta``,
    ``t2 = c2 (log(1/delta1) + log(1/lam)) / beta``."""
    t1_prime = c1 * d / (beta * math.log(d))
    t1 = t1_prime + c3 * jnp.log(d / alpha) / beta
    t2 = c2 * (-jnp.log(delta1) - jnp.log(lam)) / beta
    return t1_prime, t1, t2


def reinitialize(key, rho, ubar, member, delta0, delta1, enabled=True):
    """Algorithm 2's re-initialization in log-norm coordinates: every column with
    ``|w| = exp(rho) < delta1`` gets ``rho = log delta0`` and a fresh direction from
    ``Unif(S^{d-1})``, and leaves its ``S_i`` (Definition 1 counts from the latest re-draw).

    Directions are drawn for all ``m`` columns from ``key`` and used where re-drawn, so column
    ``k``'s draw does not depend on which others are re-drawn.

    Returns:
        ``(rho, ubar, member, redrawn (m,) bool)``.
    """
    d, m = ubar.shape
    redrawn = (rho < jnp.log(delta1)) & enabled
    fresh = unit_columns(key, d, m, dtype=ubar.dtype)
    rho = jnp.where(redrawn, jnp.log(delta0).astype(rho.dtype), rho)
    ubar = jnp.where(redrawn[None, :], fresh, ubar)
    member = jnp.where(redrawn, -1, member)
    return rho, ubar, member, redrawn


def _status(sol, state) -> jax.Array:
    ok = sol.result == diffrax.RESULTS.successful
    maxed = sol.result == diffrax.RESULTS.max_steps_reached
    finite = jnp.isfinite(state[0]).all() & jnp.isfinite(state[1]).all()
    return jnp.where(ok, jnp.where(finite, SUCCESS, NONFINITE), jnp.where(maxed, MAX_STEPS, SOLVER_FAILED))


def _phase(target, state, member, length, lam, delta1, alpha, K, solver, controller, max_steps, precise):
    """One phase of gradient flow for ``length`` (traced; 0 means no steps) with Definition 1
    tracking on a uniform grid of ``K`` points."""
    ts = length * jnp.linspace(0.0, 1.0, K, dtype=state[0].dtype)
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(t1=True),
                                  diffrax.SubSaveAt(ts=ts, fn=observer(target, lam, member))])
    sol = solve_lognorm(target, state, jnp.zeros_like(length), length, lam, solver=solver,
                        stepsize_controller=controller, max_steps=max_steps, saveat=saveat)
    (rho, ubar), obs = sol.ys
    end = (rho[0], normalize(ubar[0]))
    status = _status(sol, end)
    summary = track_phase(ts, obs, member, target.a, lam, delta1, alpha)
    summary["residual_norm"] = _residual_norm(end, target, precise)
    return end, ts, obs, summary, status, sol.stats["num_steps"]


def _residual_norm(state, target, precise):
    """``|T - T*|_F`` of a log-norm state (double-double when ``precise``; see :mod:`deflation.contract`)."""
    sq, _ = residual_norm_sq(normalize(state[1]), jnp.exp(2.0 * state[0]), target, precise)
    return jnp.sqrt(jnp.maximum(sq, 0.0))


def _directions_nonempty(member, r):
    return (member[None, :] == jnp.arange(r)[:, None]).any(axis=1)


def _ahat(rho, member, r):
    return jax.ops.segment_sum(jnp.exp(2.0 * rho), member + 1, num_segments=r + 1)[1:]


def _single_run(target: Target, key, p, *, m, K, max_epochs, solver, controller, max_steps, precise):
    """Algorithm 2 for one key. ``p``: dict of traced scalar parameters."""
    d, r = target.d, target.r
    a = target.a
    lam, delta0, delta1, alpha, gamma, eps = (p[k] for k in ("lam", "delta0", "delta1", "alpha", "gamma", "eps"))
    c1, c2, c3, c_rho = (p[k] for k in ("c1", "c2", "c3", "c_rho"))
    truth = evaluate(target.U, a, target.U, target.order)

    key, k0 = jax.random.split(key)
    ubar0 = unit_columns(k0, d, m)
    rho0 = jnp.full((m,), jnp.log(delta0), dtype=ubar0.dtype)
    omega0 = jnp.exp(2.0 * rho0)
    res0 = _residual_norm((rho0, ubar0), target, False)  # |T| ~ m delta0^2: no cancellation at the start
    carry = dict(
        rho=rho0, ubar=ubar0, member=jnp.full((m,), -1, dtype=jnp.int32), beta=res0, key=key,
        time=jnp.zeros((), ubar0.dtype), residual=res0, resid_dir=truth - evaluate(ubar0, omega0, target.U, target.order),
        halted=jnp.zeros((), bool), status=jnp.zeros((), jnp.int32),
    )
    inf = jnp.full((r,), jnp.inf, ubar0.dtype)
    zr = jnp.zeros((r,), jnp.int32)
    z = jnp.zeros((), jnp.int32)

    def run(c):
        active = (c["residual"] > eps) & ~c["halted"]
        t1p, t1, t2 = phase_lengths(c["beta"], d, lam, delta1, alpha, c1, c2, c3)
        t1 = jnp.where(active, t1, 0.0)
        key, k_redraw = jax.random.split(c["key"])
        discovered0 = _directions_nonempty(c["member"], r)
        part = partition(c["ubar"], c["member"] < 0, target, *partition_thresholds(a, lam, t1p, discovered0, c_rho))

        # both phases in one inner scan, so the solve is compiled once (halves compile time)
        def phase(pc, x):
            rho, ubar, member, ok = pc
            second, length = x
            rho, ubar, member, redrawn = reinitialize(k_redraw, rho, ubar, member, delta0, delta1,
                                                      enabled=second & active & ok)
            length = jnp.where(active & ok, length, 0.0)
            y, ts, obs, summary, st, n = _phase(target, (rho, ubar), member, length, lam, delta1, alpha,
                                                K, solver, controller, max_steps, precise)
            out = dict(start_member=member, ts=ts, obs=obs, summary=summary, status=st, steps=n, redrawn=redrawn.sum())
            return (y[0], y[1], summary["member"], ok & (st == SUCCESS)), out

        (rho_e, ubar_e, member_e, ok), ph = jax.lax.scan(
            phase, (c["rho"], c["ubar"], c["member"], jnp.ones((), bool)),
            (jnp.array([False, True]), jnp.stack([t1, t2])))
        t2 = jnp.where(active & (ph["status"][0] == SUCCESS), t2, 0.0)
        first_fail = jnp.argmax(ph["status"] != SUCCESS)
        status = jnp.where(ok, SUCCESS, ph["status"][first_fail]).astype(jnp.int32)
        p1 = jax.tree_util.tree_map(lambda x: x[0], ph["summary"])
        p2 = jax.tree_util.tree_map(lambda x: x[1], ph["summary"])
        obs1 = jax.tree_util.tree_map(lambda x: x[0], ph["obs"])
        obs2 = jax.tree_util.tree_map(lambda x: x[1], ph["obs"])
        ts1, ts2 = ph["ts"][0], ph["ts"][1]
        redrawn_count = ph["redrawn"][1]
        n1, n2 = ph["steps"][0], ph["steps"][1]
        y2 = (rho_e, ubar_e)

        new_member = p2["member"]
        ahat = p2["ahat"]
        joined1 = (p1["member"][None, :] == jnp.arange(r)[:, None]) & p1["joined_mask"][None, :]
        rec = dict(
            active=active, beta=c["beta"], t1=t1, t2=t2, t_start=c["time"],
            residual_phase1=p1["residual_norm"], residual_phase2=p2["residual_norm"],
            num_redrawn=redrawn_count.astype(jnp.int32),
            discovered_phase1=_directions_nonempty(p1["member"], r),
            discovered=_directions_nonempty(new_member, r),
            fitted=a - ahat <= 2.0 * lam, ahat=ahat,
            discovery_time=jnp.where(jnp.isfinite(p1["discovery_time"]), p1["discovery_time"], t1 + p2["discovery_time"]),
            fit_time=jnp.where(jnp.isfinite(p1["fit_time"]), p1["fit_time"], t1 + p2["fit_time"]),
            misalignment_max=jnp.maximum(p1["misalignment_max"], p2["misalignment_max"]),
            misalignment_avg_max=jnp.maximum(p1["misalignment_avg_max"], p2["misalignment_avg_max"]),
            gap_min=jnp.minimum(p1["gap_min"], p2["gap_min"]),
            gap_max=jnp.maximum(p1["gap_max"], p2["gap_max"]),
            log_norm_outside_max=jnp.maximum(p1["log_norm_outside_max"], p2["log_norm_outside_max"]),
            bad_crossings=(p1["bad_crossings"] + p2["bad_crossings"]).astype(jnp.int32),
            Gamma=part.Gamma,
            num_good=part.good.sum(1).astype(jnp.int32), num_potential=part.potential.sum(1).astype(jnp.int32),
            num_bad=part.bad.sum().astype(jnp.int32),
            joined_phase1=p1["joined"].astype(jnp.int32),
            joined_phase1_potential=(joined1 & part.potential).sum(1).astype(jnp.int32),
            joined_phase1_good=(joined1 & part.good).sum(1).astype(jnp.int32),
            joined_phase2=p2["joined"].astype(jnp.int32),
            status=status, num_steps=(n1 + n2).astype(jnp.int32),
            trace_t=c["time"] + jnp.concatenate([ts1, t1 + ts2]),
            trace_residual=jnp.concatenate([obs1["residual"], obs2["residual"]]),
            trace_residual_norm=jnp.concatenate([obs1["residual_norm"], obs2["residual_norm"]]),
        )
        new = dict(
            rho=y2[0], ubar=y2[1], member=new_member, beta=c["beta"] * (1.0 - gamma), key=key,
            time=c["time"] + t1 + t2, residual=p2["residual_norm"], resid_dir=obs2["residual"][-1],
            halted=status != SUCCESS, status=status,
        )
        return new, rec

    def skip(c):
        ahat = _ahat(c["rho"], c["member"], r)
        nonempty = _directions_nonempty(c["member"], r)
        zero = jnp.zeros((), c["time"].dtype)
        rec = dict(
            active=jnp.zeros((), bool), beta=c["beta"], t1=zero, t2=zero, t_start=c["time"],
            residual_phase1=c["residual"], residual_phase2=c["residual"], num_redrawn=z,
            discovered_phase1=nonempty, discovered=nonempty, fitted=a - ahat <= 2.0 * lam, ahat=ahat,
            discovery_time=inf, fit_time=inf, misalignment_max=-inf, misalignment_avg_max=-inf, gap_min=inf, gap_max=-inf,
            log_norm_outside_max=jnp.asarray(-jnp.inf, c["time"].dtype), bad_crossings=z,
            Gamma=inf, num_good=zr, num_potential=zr, num_bad=z, joined_phase1=zr, joined_phase1_potential=zr,
            joined_phase1_good=zr, joined_phase2=zr, status=c["status"], num_steps=z,
            trace_t=jnp.full((2 * K,), c["time"]), trace_residual=jnp.broadcast_to(c["resid_dir"], (2 * K, r)),
            trace_residual_norm=jnp.full((2 * K,), c["residual"]),
        )
        return c, rec

    def epoch(c, _):
        return jax.lax.cond((c["residual"] > eps) & ~c["halted"], run, skip, c)

    final, rec = jax.lax.scan(epoch, carry, None, length=max_epochs)
    first = lambda flags: jnp.where(flags.any(0), jnp.argmax(flags, axis=0), -1).astype(jnp.int32)  # noqa: E731
    return dict(
        record=rec,
        converged=final["residual"] <= eps,
        epochs=rec["active"].sum().astype(jnp.int32),
        discovery_epoch=first(jnp.isfinite(rec["discovery_time"])),
        fit_epoch=first(rec["fitted"] & rec["active"][:, None]),
        residual=final["residual"],
        log_norm=final["rho"], ubar=final["ubar"], W=from_lognorm(final["rho"], final["ubar"]),
        member=final["member"], status=final["status"],
    )


@eqx.filter_jit
def _run(target, keys, params, m, K, max_epochs, solver, controller, max_steps, precise, batched):
    """One compiled call: Algorithm 2 for one key, or vmapped over a batch of keys. (The
    unbatched run is not a batch of one: there ``lax.cond`` really skips finished epochs.)"""
    def one(k):
        return _single_run(target, k, params, m=m, K=K, max_epochs=max_epochs, solver=solver,
                           controller=controller, max_steps=max_steps, precise=precise)

    return jax.vmap(one)(keys) if batched else one(keys)


# ---------------------------------------------------------------------------- public entry point


def _check_key(key) -> jax.Array:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 0:
        return key
    if isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,):
        return key
    raise TypeError(f"key must be a single JAX PRNG key (jax.random.key(seed)), got {type(key).__name__}"
                    f"{' of shape ' + str(key.shape) if hasattr(key, 'shape') else ''}")


def modified_gradient_flow(
    target: Target,
    key: jax.Array,
    *,
    m: int,
    delta0: float,
    delta1: float,
    lam: float,
    gamma: float,
    eps: float,
    alpha: float | None = None,
    c1: float = 1.0,
    c2: float = 1.0,
    c3: float = 0.0,
    c_rho: float = C_RHO,
    max_epochs: int = 30,
    seeds: int | Sequence[int] | None = None,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    max_steps: int = 100_000,
    grid_points: int = 65,
    precise_loss: bool | None = None,
) -> Algorithm2Result:
    """Run the paper's Algorithm 2 (modified gradient flow) and record its diagnostics.

    Initializes ``W`` with ``m`` i.i.d. columns from ``delta0 Unif(S^{d-1})``, sets
    ``beta = |T - T*|_F`` and, while ``|T - T*|_F > eps`` (checked at the start of each epoch,
    for at most ``max_epochs`` epochs): runs Phase 1 for ``t1 = c1 d / (beta log d)``
    (``+ c3 log(d / alpha) / beta``), re-draws every column of norm ``< delta1`` from
    ``delta0 Unif(S^{d-1})``, runs Phase 2 for ``t2 = c2 (log(1/delta1) + log(1/lam)) / beta``, and
    sets ``beta <- beta (1 - gamma)``. Not converging within ``max_epochs`` is not an error:
    the result says ``converged = False``.

    Args:
        target: the ground truth ``T*`` (the paper's analysis assumes orthonormal ``U``).
        key: a JAX PRNG key; with ``seeds`` it is the base key and seed ``k`` uses ``fold_in(key, k)``.
        m: number of columns of ``W`` (``>= r``).
        delta0: (re-)initialization scale (> 0); may be as small as float64 allows.
        delta1: re-initialization threshold (> delta0).
        lam: regularization coefficient (> 0: Phase 2's length needs ``log(1/lam)``).
        gamma: ``beta`` shrinks by ``(1 - gamma)`` per epoch; in (0, 1).
        eps: target accuracy (> 0).
        alpha: Definition 1's closeness (``S_i`` needs ``wbar_i^2 >= 1 - alpha^2``), in (0, 1);
            only the diagnostics use it. Default: Theorem 1's
            ``min(lam / d^1.5, lam^2, eps^2 / d^4)``.
        c1, c2: constants of the phase lengths (> 0).
        c3: constant of Lemma 4's ``t1''' = c3 log(d / alpha) / beta`` added to Phase 1 (>= 0;
            default 0 is Algorithm 2's ``t1``).
        c_rho: Definition 2's ``c_rho`` in (0, 1).
        max_epochs: length of the epoch scan (>= 1).
        seeds: None for one run with ``key``; an int ``B`` (seeds ``0..B-1``) or a sequence of
            non-negative seed indices for a batch run in one vmapped call.
        solver: a diffrax solver (default ``Tsit5``); rtol, atol: its ``PIDController`` tolerances.
        max_steps: solver step budget per phase; a phase that exhausts it halts the run
            (``status``) and keeps the state it reached.
        grid_points: save points per phase for Definition 1 tracking and the traces (>= 3).
        precise_loss: double-double ``|T - T*|_F`` (default: automatic by size, see
            :func:`deflation.contract.precise_by_default`).

    Returns:
        an :class:`Algorithm2Result` (batch axis first when ``seeds`` is given).

    Raises:
        ValueError / TypeError: on bad input, before anything is traced.
    """
    if not isinstance(target, Target):
        raise TypeError(f"target must be a deflation.Target, got {type(target).__name__}")
    key = _check_key(key)
    d, r = target.d, target.r
    if d < 2:
        raise ValueError(f"target.d must be >= 2 (Phase 1's length has log d in the denominator), got d = {d}")
    m = check.integer("m", m, 1)
    if m < r:
        raise ValueError(f"m must be >= r = {r} (the number of ground-truth components), got m = {m}")
    delta0 = check.positive("delta0", delta0)
    delta1 = check.positive("delta1", delta1)
    if not delta1 > delta0:
        raise ValueError(f"delta1 must be > delta0 = {delta0!r} (re-draws at delta0 must lie below the "
                         f"re-initialization threshold), got delta1 = {delta1!r}")
    lam = check.positive("lam", lam)
    if not lam * delta1 < 1:
        raise ValueError(f"lam * delta1 must be < 1 so that Phase 2's length c2 (log(1/delta1) + log(1/lam)) / beta "
                         f"is positive, got lam = {lam!r}, delta1 = {delta1!r}")
    gamma = check.in_open_interval("gamma", gamma, 0.0, 1.0)
    eps = check.positive("eps", eps)
    if alpha is None:
        alpha = theorem1_alpha(d, eps, lam)
    alpha = check.in_open_interval("alpha", alpha, 0.0, 1.0)
    c1 = check.positive("c1", c1)
    c2 = check.positive("c2", c2)
    c3 = check.nonnegative("c3", c3)
    c_rho = check.in_open_interval("c_rho", c_rho, 0.0, 1.0)
    max_epochs = check.integer("max_epochs", max_epochs, 1)
    grid_points = check.integer("grid_points", grid_points, 3)
    rtol = check.positive("rtol", rtol)
    atol = check.positive("atol", atol)
    max_steps = check.integer("max_steps", max_steps, 1)
    if solver is None:
        solver = diffrax.Tsit5()
    elif not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"solver must be a diffrax solver (e.g. diffrax.Dopri5()), got {type(solver).__name__}")
    if check.is_concrete((target.a, target.U)):
        a_np = np.asarray(target.a)
        if a_np.sum() <= 0:
            raise ValueError("target.a must have a positive weight (T* = 0 needs no algorithm)")
    if seeds is None:
        seed_list = None
        keys = key
    else:
        if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
            seed_list = list(range(check.integer("seeds", seeds, 1)))
        else:
            try:
                seed_list = [check.integer("seeds[i]", s, 0) for s in seeds]
            except TypeError:
                raise TypeError(f"seeds must be an int >= 1 or a sequence of integer seed indices >= 0, got {seeds!r}") from None
            if not seed_list:
                raise ValueError("seeds must not be empty")
        keys = seed_keys(key, seed_list)

    config = Algorithm2Config(m=m, delta0=delta0, delta1=delta1, lam=lam, gamma=gamma, eps=eps, alpha=alpha, c1=c1,
                              c2=c2, c3=c3, c_rho=c_rho, max_epochs=max_epochs, grid_points=grid_points, rtol=rtol,
                              atol=atol, max_steps=max_steps)
    f64 = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
    params = dict(lam=f64(lam), delta0=f64(delta0), delta1=f64(delta1), alpha=f64(alpha), gamma=f64(gamma),
                  eps=f64(eps), c1=f64(c1), c2=f64(c2), c3=f64(c3), c_rho=f64(c_rho))
    controller = diffrax.PIDController(rtol=f64(rtol), atol=f64(atol))
    out = _run(target, keys, params, m, grid_points, max_epochs, solver, controller, max_steps, precise_loss,
               seed_list is not None)
    record = EpochRecord(**out.pop("record"))
    return Algorithm2Result(record=record, seeds=seed_list, config=config, **out)
