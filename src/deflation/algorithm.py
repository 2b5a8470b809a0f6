"""Algorithm 2 of the paper (Section 4, "Modified Gradient Flow"): epochs as a ``jax.lax.scan``.

One epoch ``s`` (state ``W^{(s,0)}``, scale ``beta^{(s)}``):

1. Phase 1: gradient flow on ``L(W) = 1/2 |T - T*|_F^2 + lam/2 |W|_F^2`` for
   ``t1 = c1 d / (beta log d)`` (plus Lemma 4's third term ``c3 log(d / alpha) / beta`` if ``c3 > 0``);
2. every column with ``|w| < delta1`` is re-drawn from ``delta0 Unif(S^{d-1})``;
3. Phase 2: gradient flow for ``t2 = c2 (log(1/delta1) + log(1/lam)) / beta``;
4. ``beta <- beta (1 - gamma)``.

It starts from ``W^{(0,0)}`` with i.i.d. columns from ``delta0 Unif(S^{d-1})`` and
``beta^{(0)} = |T^{(0,0)} - T*|_F``, and an epoch runs only while ``|T^{(s,0)} - T*|_F > eps``.

Implementation. The state is kept in log-norm coordinates ``(rho, ubar)`` (``w = exp(rho) ubar``,
see :mod:`deflation.dynamics`), so the Theorem 1 scales (``delta0`` far below 1e-30) integrate
with full relative accuracy; a re-draw sets ``rho = log delta0`` and a fresh unit direction. The
epoch loop is a ``lax.scan`` of ``max_epochs`` steps over the whole batch of seeds; its carry
(:class:`EpochState`) holds each seed's state, ``beta``, the ``S_i`` membership of every column
(Definition 1) and the PRNG key, split explicitly once per epoch (the re-draw key). Each phase is
one :func:`deflation.integrate.solve` call for the batch, each seed with its own phase length and
its own adaptive steps, whose event grid of ``event_points`` times per phase carries Definition 1
(:mod:`deflation.definition1`) and the Proposition 1 monitors (:mod:`deflation.monitors`). A seed
that has converged (or was halted by a solver failure) runs its phases with length 0: no solver
step, nothing changes, and its record says the epoch did not run. Seed ``k`` of a batch uses the
key ``fold_in(key, k)``, so its result does not depend on the batch.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from . import _validate as check, memory
from .contract import log_positive, residual_norm_sq
from .definition1 import discovered
from .dynamics import from_lognorm, normalize
from .init import seed_keys, unit_columns
from .integrate import EventConfig, SolverConfig, failures, seed_chunk, solve
from .monitors import proposition1
from .partition import C_RHO, partition, partition_thresholds
from .status import Status
from .target import Target, as_target
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


def _when_idle(value):
    """Field metadata: the value an epoch that did not run records (None: the computed one,
    which for a phase of length 0 is the state's own)."""
    return dict(idle=value)


_SAME = _when_idle(None)
_ZERO = _when_idle(0)
_INF = _when_idle(math.inf)
_NEG_INF = _when_idle(-math.inf)


class EpochRecord(eqx.Module):
    """Per-epoch record of Algorithm 2. Every array has a leading epoch axis ``E = max_epochs``
    (after the batch axis ``B`` when the run was batched). Times inside an epoch are measured
    from its start; ``t_start`` and ``trace_t`` are absolute.

    An epoch with ``active = False`` did not run (converged or halted before it): its lengths and
    counts are 0, its flags and residuals repeat the state, and its extremes over time are those
    of an empty set (minima ``+inf``, maxima ``-inf``). Each field declares that idle value once,
    in its metadata (:meth:`idle_where`).

    Attributes:
        active: whether the epoch ran.
        beta: ``beta^{(s)}``.
        t1, t2: lengths of Phase 1 and Phase 2 (the paper's ``t1^{(s)}`` and ``t2^{(s)} - t1^{(s)}``).
        t_start: absolute time at the start of the epoch.
        residual_norm_phase1, residual_norm_phase2: ``|T - T*|_F`` at the end of Phase 1 (before
            the re-draw) and of Phase 2.
        num_redrawn: columns re-drawn between the phases.
        discovered_phase1: ``S_i`` non-empty at the end of Phase 1 (Lemma 4.2), (E, r).
        discovered: ``S_i`` non-empty at the end of the epoch (Definition 1), (E, r).
        fitted: ``a_i - ahat_i <= 2 lam`` at the end of the epoch, (E, r).
        ahat: ``ahat_i`` at the end of the epoch, (E, r).
        discovery_time: when an ``S_i`` that was empty became non-empty in this epoch (inf: not), (E, r).
        fit_time: when ``a_i - ahat_i`` fell to ``2 lam`` in this epoch (inf: not), (E, r).
        misalignment_max: Prop. 1 (a) monitor, max over the epoch and ``w in S_i`` of
            ``1 - wbar_i^2`` (claim: ``<= alpha``), (E, r). Computed without cancellation
            (see :mod:`deflation.definition1`), so it resolves Theorem 1's ``alpha^2 ~ 1e-16``.
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
        status: solver status of the epoch (a :class:`deflation.Status` code; 0 success).
        num_steps: solver steps taken in the epoch.
        trace_t: absolute times of both phases' event grids, (E, 2K).
        trace_residual: ``(T* - T)(u_i^p)`` on ``trace_t``, (E, 2K, r).
        trace_residual_norm: ``|T - T*|_F`` on ``trace_t`` (float Gram route), (E, 2K).
    """

    active: Bool[Array, "*B E"] = eqx.field(metadata=_SAME)
    beta: Float[Array, "*B E"] = eqx.field(metadata=_SAME)
    t1: Float[Array, "*B E"] = eqx.field(metadata=_ZERO)
    t2: Float[Array, "*B E"] = eqx.field(metadata=_ZERO)
    t_start: Float[Array, "*B E"] = eqx.field(metadata=_SAME)
    residual_norm_phase1: Float[Array, "*B E"] = eqx.field(metadata=_SAME)
    residual_norm_phase2: Float[Array, "*B E"] = eqx.field(metadata=_SAME)
    num_redrawn: Int[Array, "*B E"] = eqx.field(metadata=_ZERO)
    discovered_phase1: Bool[Array, "*B E r"] = eqx.field(metadata=_SAME)
    discovered: Bool[Array, "*B E r"] = eqx.field(metadata=_SAME)
    fitted: Bool[Array, "*B E r"] = eqx.field(metadata=_SAME)
    ahat: Float[Array, "*B E r"] = eqx.field(metadata=_SAME)
    discovery_time: Float[Array, "*B E r"] = eqx.field(metadata=_INF)
    fit_time: Float[Array, "*B E r"] = eqx.field(metadata=_INF)
    misalignment_max: Float[Array, "*B E r"] = eqx.field(metadata=_NEG_INF)
    misalignment_avg_max: Float[Array, "*B E r"] = eqx.field(metadata=_NEG_INF)
    gap_min: Float[Array, "*B E r"] = eqx.field(metadata=_INF)
    gap_max: Float[Array, "*B E r"] = eqx.field(metadata=_NEG_INF)
    log_norm_outside_max: Float[Array, "*B E"] = eqx.field(metadata=_NEG_INF)
    bad_crossings: Int[Array, "*B E"] = eqx.field(metadata=_ZERO)
    Gamma: Float[Array, "*B E r"] = eqx.field(metadata=_INF)
    num_good: Int[Array, "*B E r"] = eqx.field(metadata=_ZERO)
    num_potential: Int[Array, "*B E r"] = eqx.field(metadata=_ZERO)
    num_bad: Int[Array, "*B E"] = eqx.field(metadata=_ZERO)
    joined_phase1: Int[Array, "*B E r"] = eqx.field(metadata=_ZERO)
    joined_phase1_potential: Int[Array, "*B E r"] = eqx.field(metadata=_ZERO)
    joined_phase1_good: Int[Array, "*B E r"] = eqx.field(metadata=_ZERO)
    joined_phase2: Int[Array, "*B E r"] = eqx.field(metadata=_ZERO)
    status: Int[Array, "*B E"] = eqx.field(metadata=_SAME)
    num_steps: Int[Array, "*B E"] = eqx.field(metadata=_ZERO)
    trace_t: Float[Array, "*B E K2"] = eqx.field(metadata=_SAME)
    trace_residual: Float[Array, "*B E K2 r"] = eqx.field(metadata=_SAME)
    trace_residual_norm: Float[Array, "*B E K2"] = eqx.field(metadata=_SAME)

    def idle_where(self, active: Bool[Array, "*B"]) -> EpochRecord:
        """The record with every field of an epoch that did not run (``active`` False) set to its
        declared idle value."""
        values = {}
        for f in dataclasses.fields(self):
            x = getattr(self, f.name)
            idle = f.metadata["idle"]
            if idle is not None:
                mask = jnp.reshape(active, jnp.shape(active) + (1,) * (x.ndim - jnp.ndim(active)))
                x = jnp.where(mask, x, jnp.asarray(idle, x.dtype))
            values[f.name] = x
        return EpochRecord(**values)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field as a NumPy array, by name (for saving)."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}


class Algorithm2Result(eqx.Module):
    """What :func:`modified_gradient_flow` returns (a leading batch axis ``B`` when ``seeds`` was given).

    Attributes:
        record: the per-epoch :class:`EpochRecord`.
        converged: ``|T - T*|_F <= eps`` at the end, (B,).
        epochs: number of epochs that ran, (B,).
        discovery_epoch: epoch in which ``S_i`` first became non-empty, -1 if never, (B, r).
        fit_epoch: first epoch at whose end ``i`` was fitted, -1 if never, (B, r).
        residual_norm: final ``|T - T*|_F``, (B,).
        log_norm, ubar: final state in log-norm coordinates, ``w_j = exp(log_norm_j) ubar_j``
            (exact where ``W`` underflows), (B, m), (B, d, m).
        W: final columns of ``W``, (B, d, m).
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
    residual_norm: Float[Array, "*B"]
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
        return failures(self.status)

    def _arrays(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("seeds", "config")}

    def run_arrays(self) -> dict[str, np.ndarray]:
        """The per-run results (everything but the record) as NumPy arrays, by name."""
        return {k: np.asarray(v) for k, v in self._arrays().items() if k != "record"}

    def seed(self, index: int) -> Algorithm2Result:
        """Run ``index`` of a batched result, shaped as if it had been run alone."""
        if not self.batched:
            return self
        arrays = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[index], self._arrays())
        return Algorithm2Result(seeds=None, config=self.config, **arrays)

    def take(self, n: int) -> Algorithm2Result:
        """The first ``n`` runs of a batched result."""
        arrays = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[:n], self._arrays())
        return Algorithm2Result(seeds=None if self.seeds is None else self.seeds[:n], config=self.config, **arrays)

    @classmethod
    def concatenate(cls, parts: Sequence[Algorithm2Result], seeds=None) -> Algorithm2Result:
        """Batched results of the same parameters, one after another along the seed axis."""
        arrays = jax.tree_util.tree_map(lambda *xs: jnp.concatenate([jnp.asarray(x) for x in xs]),
                                        *[p._arrays() for p in parts])
        return cls(seeds=seeds, config=parts[0].config, **arrays)

    def epoch_table(self, seed: int = 0) -> str:
        """One run's epochs as a text table: beta, phase lengths, ``|T - T*|_F`` after each phase,
        re-draws, Definition 2's bad columns, and the components newly discovered and fitted
        (0-based indices into ``a``)."""
        rec = self.seed(seed).record if self.batched else jax.tree_util.tree_map(np.asarray, self.record)
        lines = [f"{'epoch':>5} {'beta':>9} {'t1':>9} {'t2':>9} {'|T-T*| P1':>10} {'|T-T*| P2':>10} {'redrawn':>7} "
                 f"{'bad(D2)':>7}  {'discovered (new)':<18} {'fitted (new)':<18}"]
        r = rec.discovered.shape[-1]
        prev_disc = np.zeros(r, bool)
        prev_fit = np.zeros(r, bool)
        for s in range(rec.active.shape[0]):
            if not rec.active[s]:
                break
            new_disc = np.isfinite(rec.discovery_time[s]) | (rec.discovered[s] & ~prev_disc)
            new_fit = rec.fitted[s] & ~prev_fit
            lines.append(
                f"{s:>5} {rec.beta[s]:9.3e} {rec.t1[s]:9.3e} {rec.t2[s]:9.3e} {rec.residual_norm_phase1[s]:10.3e} "
                f"{rec.residual_norm_phase2[s]:10.3e} {rec.num_redrawn[s]:>7d} {rec.num_bad[s]:>7d}  "
                f"{_index_list(new_disc):<18} {_index_list(new_fit):<18}"
            )
            prev_disc, prev_fit = np.asarray(rec.discovered[s]), np.asarray(rec.fitted[s])
        return "\n".join(lines)

    def component_table(self, target: Target, seed: int = 0) -> str:
        """One run's components as a text table: weight, discovery / fit epoch and time within that
        epoch, the phase of the discovery, and the paper's scales ``d / (a_i log d)`` (Phase 1) and
        ``(log 1/delta1 + log 1/lam) / a_i`` (Phase 2)."""
        run = self.seed(seed)
        rec = jax.tree_util.tree_map(np.asarray, run.record)
        de, fe = np.asarray(run.discovery_epoch), np.asarray(run.fit_epoch)
        cfg = self.config
        a = np.asarray(target.a)
        d = target.d
        lines = [f"{'i':>3} {'a_i':>8} {'disc ep':>7} {'t_disc':>9} {'phase':>5} {'fit ep':>6} {'t_fit':>9} "
                 f"{'d/(a log d)':>11} {'L/a_i':>9}"]
        L = math.log(1 / cfg.delta1) + math.log(1 / cfg.lam)
        for i in range(a.shape[0]):
            td = rec.discovery_time[de[i], i] if de[i] >= 0 else math.inf
            ph = "-" if de[i] < 0 else ("1" if td <= rec.t1[de[i]] else "2")
            tf = rec.fit_time[fe[i], i] if fe[i] >= 0 else math.inf
            lines.append(f"{i:>3} {a[i]:8.4f} {de[i]:>7d} {td:9.3g} {ph:>5} {fe[i]:>6d} {tf:9.3g} "
                         f"{d / (a[i] * math.log(d)):11.3g} {L / a[i]:9.3g}")
        return "\n".join(lines)


def _index_list(mask) -> str:
    idx = [str(i) for i in np.flatnonzero(mask)]
    return ",".join(idx) if idx else "-"


# ---------------------------------------------------------------------------- pure pieces


def phase_lengths(beta, d: int, lam, delta1, alpha, c1=1.0, c2=1.0, c3=0.0):
    """``(t1', t1, t2)`` of epoch scale ``beta`` (Algorithm 2; Lemmas 4 and 6):
    ``t1' = c1 d / (beta log d)``, ``t1 = t1' + c3 log(d / alpha) / beta``,
    ``t2 = c2 (log(1/delta1) + log(1/lam)) / beta``."""
    t1_prime = c1 * d / (beta * math.log(d))
    t1 = t1_prime + c3 * (math.log(d) - log_positive(alpha)) / beta  # log d - log alpha: alpha may be tiny
    t2 = c2 * (-log_positive(delta1) - log_positive(lam)) / beta
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
    redrawn = (rho < log_positive(delta1)) & enabled
    fresh = unit_columns(key, d, m, dtype=ubar.dtype)
    rho = jnp.where(redrawn, log_positive(delta0).astype(rho.dtype), rho)
    ubar = jnp.where(redrawn[None, :], fresh, ubar)
    member = jnp.where(redrawn, -1, member)
    return rho, ubar, member, redrawn


def residual_norm(rho: Float[Array, " m"], ubar: Float[Array, "d m"], target: Target, precise: bool | None):
    """``|T - T*|_F`` of a log-norm state (double-double when ``precise``; see :mod:`deflation.contract`)."""
    sq, _ = residual_norm_sq(normalize(ubar), jnp.exp(2.0 * rho), target, precise)
    return jnp.sqrt(jnp.maximum(sq, 0.0))


class EpochState(eqx.Module):
    """The carry of the epoch scan, per seed (leading batch axis ``B``).

    Attributes:
        rho, ubar: the state in log-norm coordinates, (B, m), (B, d, m).
        member: ``S_i`` index of every column, or -1, (B, m).
        beta: the epoch scale ``beta^{(s)}``, (B,).
        key: each seed's PRNG key (split once per epoch for the re-draw), (B,).
        time: absolute time at the start of the epoch, (B,).
        residual_norm: ``|T - T*|_F`` of the state, (B,).
        status: 0, or the first solver failure's code (the seed is then halted), (B,).
    """

    rho: Float[Array, "B m"]
    ubar: Float[Array, "B d m"]
    member: Int[Array, "B m"]
    beta: Float[Array, " B"]
    key: Any
    time: Float[Array, " B"]
    residual_norm: Float[Array, " B"]
    status: Int[Array, " B"]


class Algorithm2Params(eqx.Module):
    """The numbers of Algorithm 2 that may be traced (a study sweeps them without recompiling):
    ``lam``, ``delta0``, ``delta1``, ``alpha``, ``gamma``, ``eps``, ``c1``, ``c2``, ``c3``, ``c_rho``
    (see :func:`modified_gradient_flow` for their meaning and ranges)."""

    lam: Float[Array, ""]
    delta0: Float[Array, ""]
    delta1: Float[Array, ""]
    alpha: Float[Array, ""]
    gamma: Float[Array, ""]
    eps: Float[Array, ""]
    c1: Float[Array, ""]
    c2: Float[Array, ""]
    c3: Float[Array, ""]
    c_rho: Float[Array, ""]


def run_algorithm2(target: Target, keys, p: Algorithm2Params, *, m: int, grid_points: int, max_epochs: int,
                   solver: SolverConfig, precise: bool | None = None, chunk: int | None = None) -> dict:
    """Algorithm 2 for a batch of keys ``(B,)``: the pure, traceable core of
    :func:`modified_gradient_flow` (no input checks; a Monte Carlo study calls it inside its own
    ``jit``). ``target`` is one target for the batch or one per seed (a batched :class:`Target`).

    Seed ``b`` draws its initial directions from ``split(keys[b])[1]`` and re-draws from the
    keys it splits off once per epoch. Returns the fields of :class:`Algorithm2Result` (batch
    axis first; ``record`` an :class:`EpochRecord` of shape ``(B, E, ...)``). ``chunk``: seeds per
    batched solve (default :func:`deflation.integrate.seed_chunk`).
    """
    d, r = target.d, target.r
    K = grid_points
    lam, delta0, delta1, alpha, gamma, eps = p.lam, p.delta0, p.delta1, p.alpha, p.gamma, p.eps
    c1, c2, c3, c_rho = p.c1, p.c2, p.c3, p.c_rho
    events = EventConfig(delta1=delta1, alpha=alpha, fit_fraction=0.1, points=K, norm=True)
    target_axis = 0 if target.batched else None

    def per_seed(fn):
        """``fn(target, *per-seed args)`` mapped over the seeds (and over the targets, one per seed)."""
        return lambda *args: jax.vmap(fn, in_axes=(target_axis,) + (0,) * len(args))(target, *args)

    def draw(key):
        key, k0 = jax.random.split(key)
        ubar = unit_columns(k0, d, m)
        return key, jnp.full((m,), log_positive(delta0), dtype=ubar.dtype), ubar

    keys, rho0, ubar0 = jax.vmap(draw)(keys)
    B = rho0.shape[0]
    res0 = per_seed(lambda tg, rho, ubar: residual_norm(rho, ubar, tg, False))(rho0, ubar0)  # |T| ~ m delta0^2
    state = EpochState(rho=rho0, ubar=ubar0, member=jnp.full((B, m), -1, jnp.int32), beta=res0, key=keys,
                       time=jnp.zeros((B,), rho0.dtype), residual_norm=res0, status=jnp.zeros((B,), jnp.int32))

    def epoch(c: EpochState, _):
        active = (c.residual_norm > eps) & (c.status == Status.SUCCESS)
        t1p, t1, t2 = phase_lengths(c.beta, d, lam, delta1, alpha, c1, c2, c3)
        t1 = jnp.where(active, t1, 0.0)
        split = jax.vmap(jax.random.split)(c.key)
        key, k_redraw = split[:, 0], split[:, 1]
        Gamma, rho_def2 = per_seed(lambda tg, mem, tp: partition_thresholds(tg.a, lam, tp, discovered(mem, r), c_rho))(
            c.member, t1p)
        part = per_seed(lambda tg, u, mem, G, rd: partition(u, mem < 0, tg, G, rd))(c.ubar, c.member, Gamma, rho_def2)

        # both phases in one inner scan, so the solve is compiled once
        def phase(pc, x):
            rho, ubar, member, ok = pc
            second, length = x
            rho, ubar, member, redrawn = jax.vmap(
                lambda k, rh, ub, mem, on: reinitialize(k, rh, ub, mem, delta0, delta1, enabled=second & on)
            )(k_redraw, rho, ubar, member, active & ok)
            length = jnp.where(active & ok, length, 0.0)
            sol = solve(target, (rho, ubar), t1=length, solver=solver, lam=lam, events=events, member=member,
                        from_above=False, chunk=chunk)
            # a failed phase keeps its starting state: the state it reached is not saved (its end
            # is never reached, and the save buffer there holds inf)
            done = sol.status == Status.SUCCESS
            end_rho = jnp.where(done[:, None], sol.rho[:, -1], rho)
            end_ubar = jnp.where(done[:, None, None], jax.vmap(normalize)(sol.ubar[:, -1]), ubar)
            tr = sol.tracked
            out = dict(tracked=tr, obs=sol.observations, ts=sol.event_ts, status=sol.status, steps=sol.num_steps,
                       redrawn=redrawn.sum(axis=1),
                       norm=per_seed(lambda tg, rh, ub: residual_norm(rh, ub, tg, precise))(end_rho, end_ubar),
                       monitors=per_seed(lambda tg, ob, t: proposition1(ob, t, tg.a))(sol.observations, tr))
            return (end_rho, end_ubar, jnp.where(done[:, None], tr.member, member), ok & done), out

        (rho_e, ubar_e, member_e, ok), ph = jax.lax.scan(
            phase, (c.rho, c.ubar, c.member, jnp.ones((B,), bool)), (jnp.array([False, True]), jnp.stack([t1, t2])))
        t2 = jnp.where(active & (ph["status"][0] == Status.SUCCESS), t2, 0.0)
        first_fail = jnp.argmax(ph["status"] != Status.SUCCESS, axis=0)
        failed_status = jnp.take_along_axis(ph["status"], first_fail[None], axis=0)[0]
        status = jnp.where(active & ~ok, failed_status, c.status).astype(jnp.int32)
        p1, p2 = (jax.tree_util.tree_map(lambda x: x[i], ph) for i in (0, 1))
        tr1, tr2, mon1, mon2 = p1["tracked"], p2["tracked"], p1["monitors"], p2["monitors"]
        ahat = tr2.ahat[:, -1]
        a = jnp.broadcast_to(target.a, (B, r))
        joined1 = (tr1.member[:, None, :] == jnp.arange(r)[None, :, None]) & jnp.isfinite(tr1.join_time)[:, None, :]
        later = lambda x1, x2: jnp.where(jnp.isfinite(x1), x1, t1[:, None] + x2)  # noqa: E731
        rec = EpochRecord(
            active=active, beta=c.beta, t1=t1, t2=t2, t_start=c.time,
            residual_norm_phase1=p1["norm"], residual_norm_phase2=p2["norm"],
            num_redrawn=p2["redrawn"].astype(jnp.int32),
            discovered_phase1=jax.vmap(lambda mem: discovered(mem, r))(tr1.member),
            discovered=jax.vmap(lambda mem: discovered(mem, r))(member_e),
            fitted=a - ahat <= 2.0 * lam, ahat=ahat,
            discovery_time=later(tr1.discovery_time, tr2.discovery_time),
            fit_time=later(tr1.fit_time, tr2.fit_time),
            misalignment_max=jnp.maximum(mon1["misalignment_max"], mon2["misalignment_max"]),
            misalignment_avg_max=jnp.maximum(mon1["misalignment_avg_max"], mon2["misalignment_avg_max"]),
            gap_min=jnp.minimum(mon1["gap_min"], mon2["gap_min"]),
            gap_max=jnp.maximum(mon1["gap_max"], mon2["gap_max"]),
            log_norm_outside_max=jnp.maximum(mon1["log_norm_outside_max"], mon2["log_norm_outside_max"]),
            bad_crossings=(tr1.bad_crossings + tr2.bad_crossings).astype(jnp.int32),
            Gamma=part.Gamma,
            num_good=part.good.sum(-1).astype(jnp.int32), num_potential=part.potential.sum(-1).astype(jnp.int32),
            num_bad=part.bad.sum(-1).astype(jnp.int32),
            joined_phase1=tr1.joined.astype(jnp.int32),
            joined_phase1_potential=(joined1 & part.potential).sum(-1).astype(jnp.int32),
            joined_phase1_good=(joined1 & part.good).sum(-1).astype(jnp.int32),
            joined_phase2=tr2.joined.astype(jnp.int32),
            status=status, num_steps=(p1["steps"] + p2["steps"]).astype(jnp.int32),
            trace_t=c.time[:, None] + jnp.concatenate([p1["ts"], t1[:, None] + p2["ts"]], axis=1),
            trace_residual=jnp.concatenate([p1["obs"].residual, p2["obs"].residual], axis=1),
            trace_residual_norm=jnp.concatenate([p1["obs"].residual_norm, p2["obs"].residual_norm], axis=1),
        ).idle_where(active)
        keep = lambda new, old: jnp.where(jnp.reshape(active, (B,) + (1,) * (old.ndim - 1)), new, old)  # noqa: E731
        new = EpochState(
            rho=keep(rho_e, c.rho), ubar=keep(ubar_e, c.ubar), member=keep(member_e, c.member),
            beta=keep(c.beta * (1.0 - gamma), c.beta), key=key, time=c.time + t1 + t2,
            residual_norm=keep(p2["norm"], c.residual_norm), status=status,
        )
        return new, rec

    final, rec = jax.lax.scan(epoch, state, None, length=max_epochs)
    rec = jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, 0, 1), rec)  # (B, E, ...)
    first = lambda flags: jnp.where(flags.any(1), jnp.argmax(flags, axis=1), -1).astype(jnp.int32)  # noqa: E731
    return dict(
        record=rec,
        converged=final.residual_norm <= eps,
        epochs=rec.active.sum(axis=1).astype(jnp.int32),
        discovery_epoch=first(jnp.isfinite(rec.discovery_time)),
        fit_epoch=first(rec.fitted & rec.active[:, :, None]),
        residual_norm=final.residual_norm,
        log_norm=final.rho, ubar=final.ubar, W=jax.vmap(from_lognorm)(final.rho, final.ubar),
        member=final.member, status=final.status,
    )


@eqx.filter_jit
def _run(target, keys, params, m, K, max_epochs, solver, precise, chunk):
    """One compiled call: Algorithm 2 for a batch of keys ``(B,)``, ``chunk`` seeds per solve."""
    return run_algorithm2(target, keys, params, m=m, grid_points=K, max_epochs=max_epochs, solver=solver,
                          precise=precise, chunk=chunk)


# ---------------------------------------------------------------------------- public entry point


def algorithm2_plan(B: int, d: int, m: int, r: int, grid_points: int, max_epochs: int, precise: bool | None,
                    names: dict[str, str] | None = None) -> memory.MemoryEstimate:
    """How :func:`modified_gradient_flow` runs ``B`` seeds: the memory estimate
    (:func:`deflation.memory.algorithm2_memory`) with the most seeds per solve (at most
    :func:`deflation.integrate.seed_chunk`) that fit in the memory available.

    Raises:
        ValueError: it does not fit even one seed per solve; the message gives the estimate, the
            memory available and what to change, with the argument names in ``names`` (keys
            ``seeds``, ``m``, ``event_points``, ``max_epochs``).
    """
    names = names or dict(seeds="seeds", m="m", event_points="event_points", max_epochs="max_epochs",
                          precise="the float loss (precise_loss=False)")
    available = memory.available_memory()
    estimate = memory.fit_chunk(
        lambda c: memory.algorithm2_memory(seeds=B, d=d, m=m, r=r, grid_points=grid_points, max_epochs=max_epochs,
                                           precise=precise, chunk=c), seed_chunk(B), available)
    memory.require_fits(estimate, available, f"Algorithm 2 with {B} seed(s) of m = {m} columns in d = {d} dimensions, "
                        f"{grid_points} event points and {max_epochs} epochs", memory.suggest(estimate, names))
    return estimate



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
    solver: Any = None,
    rtol: float = SolverConfig.DEFAULT_RTOL,
    atol: float = SolverConfig.DEFAULT_ATOL,
    max_steps: int = SolverConfig.DEFAULT_MAX_STEPS,
    event_points: int = 65,
    precise_loss: bool | None = None,
    d: int | None = None,
    grid_points: int | None = None,
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
            seed indices in ``[0, 2^32 - 1]`` for a batch run in one vmapped call (a repeated index
            runs the same seed again: the command line pads its last chunk so).
        solver: a diffrax solver (default ``Tsit5``); rtol, atol: its ``PIDController`` tolerances.
        max_steps: solver step budget per phase (at most 2^31 - 1); a phase that exhausts it halts
            the run (``status``), which keeps its state from the start of that phase.
        event_points: grid points per phase on which Definition 1's events are located and the
            traces are recorded (>= 3); the same name as :func:`deflation.gradient_flow`'s.
        precise_loss: double-double ``|T - T*|_F`` (default: automatic by size, see
            :func:`deflation.contract.precise_by_default`).
        d: the dimension the other parameters were chosen for, if any (``ValueError`` unless it is
            ``target.d``). :meth:`deflation.Theorem1Parameters.as_kwargs` passes it, so Theorem 1
            parameters computed for another dimension are refused rather than run.
        grid_points: deprecated spelling of ``event_points`` (a ``FutureWarning`` says so).

    Returns:
        an :class:`Algorithm2Result` (batch axis first when ``seeds`` is given).

    Raises:
        ValueError / TypeError: on bad input, before anything is traced; ``ValueError`` also when
            the call cannot fit in memory (:func:`algorithm2_plan`).
    """
    target = as_target(target)
    if target.order < 3:
        raise ValueError(f"modified_gradient_flow (the paper's Algorithm 2) needs a target of order >= 3, got order "
                         f"{target.order}")
    key = _check_key(key)
    d_given, (d, r) = d, (target.d, target.r)
    if d < 2:
        raise ValueError(f"target.d must be >= 2 (Phase 1's length has log d in the denominator), got d = {d}")
    if d_given is not None and check.integer("d", d_given, 1) != d:
        raise ValueError(f"d must be the target's dimension target.d = {d} (the parameters were chosen for "
                         f"another dimension: compute them for d = {d}), got d = {d_given!r}")
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
    if grid_points is not None:
        warnings.warn("modified_gradient_flow(grid_points=...) is deprecated; use event_points=...", FutureWarning,
                      stacklevel=2)
        event_points = grid_points
    grid_points = check.integer("event_points", event_points, 3)
    rtol = check.positive("rtol", rtol)
    atol = check.positive("atol", atol)
    max_steps = check.integer("max_steps", max_steps, 1, check.MAX_STEPS_LIMIT)
    if solver is None:
        solver = diffrax.Tsit5()
    elif not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"solver must be a diffrax solver (e.g. diffrax.Dopri5()), got {type(solver).__name__}")
    if check.is_concrete((target.a, target.U)):
        a_np = np.asarray(target.a)
        if a_np.sum() <= 0:
            raise ValueError("target.a must have a positive weight (T* = 0 needs no algorithm)")
    if seeds is None:
        B = 1
    elif isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        B = check.integer("seeds", seeds, 1, check.SEED_LIMIT + 1)
    else:
        try:
            seeds = [check.integer(f"seeds[{i}]", s, 0, check.SEED_LIMIT) for i, s in enumerate(seeds)]  # type: ignore[arg-type]  # (a bool: the TypeError below)
        except TypeError:
            raise TypeError(f"seeds must be an int >= 1 or a sequence of integer seed indices >= 0, "
                            f"got {seeds!r}") from None
        if not seeds:
            raise ValueError("seeds must not be empty")
        B = len(seeds)
    plan = algorithm2_plan(B, d, m, r, grid_points, max_epochs, precise_loss)  # before any array of B seeds exists
    if seeds is None:
        seed_list = None
        keys = key[None] if key.ndim == 0 else key[None, :]
    else:
        seed_list = list(range(B)) if isinstance(seeds, (int, np.integer)) else seeds
        keys = seed_keys(key, seed_list)

    config = Algorithm2Config(m=m, delta0=delta0, delta1=delta1, lam=lam, gamma=gamma, eps=eps, alpha=alpha, c1=c1,
                              c2=c2, c3=c3, c_rho=c_rho, max_epochs=max_epochs, grid_points=grid_points, rtol=rtol,
                              atol=atol, max_steps=max_steps)
    f64 = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
    params = Algorithm2Params(lam=f64(lam), delta0=f64(delta0), delta1=f64(delta1), alpha=f64(alpha),
                              gamma=f64(gamma), eps=f64(eps), c1=f64(c1), c2=f64(c2), c3=f64(c3), c_rho=f64(c_rho))
    config_solver = SolverConfig.adaptive(rtol, atol, solver, max_steps=max_steps)
    out = _run(target, keys, params, m, grid_points, max_epochs, config_solver, precise_loss, plan.chunk)
    if seed_list is None:
        out = jax.tree_util.tree_map(lambda x: x[0], out)
    return Algorithm2Result(seeds=seed_list, config=config, **out)
