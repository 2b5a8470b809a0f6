"""Definition 1 (discovered, ``S_i``, ``ahat_i``) and the fit criterion, located between grid points.

Definition 1 (paper Section 5.1): column ``k`` is in ``S_i`` once, at some time no earlier than its
latest (re-)initialization, ``|w_k| = delta1`` while ``wbar_{k,i}^2 >= 1 - alpha^2``;
``ahat_i = sum_{k in S_i} |w_k|^2``; ground truth ``i`` is *discovered* when ``S_i`` is non-empty
and *fitted* when ``a_i - ahat_i <= 2 lam``. With ``lam = 0`` that test can never hold (``ahat_i``
approaches ``a_i`` only in the limit), so for ``lam = 0`` a component counts as fitted once its
residual ``(T* - T)(u_i^p)`` has dropped to ``fit_fraction * a_i``.

This module is the one place these are computed, for :func:`deflation.gradient_flow`, for every
phase of :func:`deflation.modified_gradient_flow` and for the Monte Carlo studies:

1. :func:`observe` evaluates, at a state ``y`` with time derivative ``dy/dt``, every quantity whose
   crossing defines an event, with its exact time derivative (a Jacobian-vector product along the
   vector field): per column the log-norm ``rho`` and the *misalignment* ``1 - wbar_ref^2`` with a
   *reference* direction (the column's ``S_i`` direction if it already is a member, else its
   best-correlated ``u_i``), and per ground truth the residual ``(T* - T)(u_i^p)``. The
   misalignment is computed as ``|u - <u_i, u> u_i|^2``, without the cancellation of
   ``1 - <u_i, u>^2``: Theorem 1's ``alpha`` is ~1e-8, so the test ``1 - wbar_i^2 <= alpha^2``
   compares with ~1e-16, which ``wbar_i^2`` itself cannot resolve in float64.
2. The solver evaluates :func:`observe` at the end of every step and :func:`fill` carries the
   values onto a uniform *event grid* inside the step (cubic Hermite from the values and
   derivatives at both ends: fourth order in the step).
3. :func:`track` finds, on the grid, every interval on which ``rho - log delta1`` changes sign
   (upward or downward: Definition 1 asks for ``|w| = delta1`` at any time) and locates the
   crossing as the root of the cubic Hermite interpolant; the misalignment there is its Hermite
   interpolant (linear if the reference direction changes across the interval). A column joins
   ``S_i`` at its first crossing that qualifies. Membership on the grid gives ``ahat_i(t)``, the
   discovery times (first join into an ``S_i`` that was empty at the start) and the fit times.

Slots. What the steps above call a column is a *slot* of the model
(:meth:`deflation.models.AbstractModel.event_terms`): at order ``p >= 3`` a column of ``W`` (for
the asymmetric model a rank-one term ``w^(1) (x) ... (x) w^(p)``, see its class); at order 2, where
``W`` and ``W Q`` are the same model, an eigenpair of ``W W^T`` (a singular pair of ``W_1 W_2^T``),
largest first. A model's :meth:`~deflation.models.AbstractModel.definition` says which
(``"columns"`` or ``"spectral"``). With ``"spectral"`` a slot joins ``S_i`` at the first time at
which both conditions hold, its size at least ``delta1`` and its misalignment at most
``alpha^2`` (an eigenvector has no identity across time, and the top one may turn towards
``u_i`` only after it has grown past ``delta1``): the first qualifying crossing of ``delta1``, or
the first time the misalignment drops to ``alpha^2`` while the size is at least ``delta1``, or
the start if both hold there. ``ahat_i`` sums the model's weights of the slots in ``S_i``
(:meth:`~deflation.models.AbstractModel.weights`: ``lam_k`` for an eigenpair).

``member`` carries membership in: :func:`deflation.gradient_flow` starts every column outside every
``S_i`` (``-1``); Algorithm 2 passes the membership at the start of each phase, so ``S_i`` persists
across phases and epochs until a column is re-drawn.

Initializations at or above ``delta1``. Definition 1 assumes every column starts at
``delta0 < delta1`` (the paper's setting), so that its norm must pass ``delta1`` on its way up. A
column *initialized* at or above ``delta1`` (``gradient_flow`` from a large ``W0``) has no such
passage; for it the norm condition counts as met from the start, and it joins ``S_i`` at the first
time it is aligned (``1 - wbar_i^2 <= alpha^2``) while its norm is still ``>= delta1`` (or at the
start if it is aligned there), or at a later crossing of ``delta1`` that qualifies, whichever comes
first. A flow started large thus still reports when it discovers each component. Algorithm 2 never
needs this: its draws and re-draws are all at ``delta0 < delta1``.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .contract import log_positive
from .dynamics import DEFAULT_MODEL
from .models import as_model
from .target import Target

#: Bisection steps locating a root of the cubic Hermite interpolant on a grid interval (2^-60 of it).
ROOT_ITERATIONS = 60


class Observation(eqx.Module):
    """What :func:`observe` returns for one state (leading axes ``...`` for a grid or a batch).

    Attributes:
        rho, drho: log-norm ``log |w_j|`` and its time derivative, (..., m).
        mis, dmis: misalignment ``1 - wbar_ref^2`` with the reference direction and its time
            derivative, (..., m).
        ref: the reference direction of each column (its ``S_i`` if a member, else argmax
            ``<u_i, wbar>^2``), (..., m); -1 where the grid point was never reached.
        residual, dresidual: ``(T* - T)(u_i^p)`` and its time derivative, (..., r).
        residual_norm, dresidual_norm: ``|T - T*|_F`` (float Gram route, resolved to about
            ``1e-8 |T*|_F``) and its derivative when asked for (``norm=True``), else zeros, (...).
    """

    rho: Float[Array, "*n m"]
    drho: Float[Array, "*n m"]
    mis: Float[Array, "*n m"]
    dmis: Float[Array, "*n m"]
    ref: Int[Array, "*n m"]
    residual: Float[Array, "*n r"]
    dresidual: Float[Array, "*n r"]
    residual_norm: Float[Array, "*n"]
    dresidual_norm: Float[Array, "*n"]


def observe(target: Target, y, dydt, member: Int[Array, " m"], *, norm: bool = False, model=None) -> Observation:
    """The event quantities of Definition 1 and the fit criterion at a log-norm state ``y = (rho,
    ubar)`` with time derivative ``dydt`` (the vector field at ``y``, or a dense output's
    derivative), each with its exact time derivative.

    Args:
        target: the ground truth.
        y, dydt: state and its time derivative.
        member: each column's ``S_i`` index, or -1 (decides the reference direction).
        norm: also return ``|T - T*|_F`` and its derivative (one more Gram product, ``2 m^2 d``).
        model: the model whose slots and ``T`` these are (``None``: normalized); ``rho`` is
            then each slot's log-size (the columns' log-norms for the symmetric models at order
            ``p >= 3``), and the state ``y`` is in the model's log-norm coordinates.
    """
    model = as_model(DEFAULT_MODEL if model is None else model)

    def quantities(state):
        size, mis_all, res, rn = model.event_terms(state, target, norm)
        nearest = _argmin_rows([jax.lax.stop_gradient(x) for x in mis_all])
        ref = jnp.where(member >= 0, member, nearest).astype(jnp.int32)
        return (size, _select_rows(ref, mis_all), res, rn), ref

    (rho, mis, res, rn), (drho, dmis, dres, drn), ref = jax.jvp(quantities, (y,), (dydt,), has_aux=True)
    return Observation(rho=rho, drho=drho, mis=mis, dmis=dmis, ref=ref, residual=res, dresidual=dres,
                       residual_norm=rn, dresidual_norm=drn)


def _argmin_rows(rows: list) -> Int[Array, " m"]:
    """``jnp.argmin(jnp.stack(rows), axis=0)`` (the first index on ties and NaNs) for a few rows, as
    a chain of comparisons that XLA fuses (its arg-reduction over a leading axis is slow on CPU
    under ``vmap``)."""
    best, idx = rows[0], jnp.zeros(rows[0].shape, jnp.int32)
    for i, x in enumerate(rows[1:], start=1):
        closer = (x < best) | (jnp.isnan(x) & ~jnp.isnan(best))
        best, idx = jnp.where(closer, x, best), jnp.where(closer, i, idx)
    return idx


def _select_rows(ref: Int[Array, " m"], rows: list) -> Float[Array, " m"]:
    """``jnp.stack(rows)[ref[j], j]`` for every column ``j``, as a chain of selections (exact; a
    gather under ``vmap`` is slow on CPU)."""
    out = rows[0]
    for i, x in enumerate(rows[1:], start=1):
        out = jnp.where(ref == i, x, out)
    return out


# ---------------------------------------------------------------------------- interpolation


def hermite(x, g0, g1, m0, m1):
    """Cubic Hermite on ``[0, 1]`` with values ``g0, g1`` and slopes ``m0, m1`` (per unit of ``x``)."""
    x2, x3 = x * x, x * x * x
    return (2 * x3 - 3 * x2 + 1) * g0 + (x3 - 2 * x2 + x) * m0 + (-2 * x3 + 3 * x2) * g1 + (x3 - x2) * m1


def hermite_value_and_slope(x, h, g0, g1, d0, d1):
    """Cubic Hermite on a step of length ``h`` at ``x`` in ``[0, 1]`` from values ``g0, g1`` and
    time derivatives ``d0, d1`` at its ends: ``(value, time derivative)``."""
    slope = ((6 * x * x - 6 * x) * (g0 - g1)) / h + (3 * x * x - 4 * x + 1) * d0 + (3 * x * x - 2 * x) * d1
    return hermite(x, g0, g1, d0 * h, d1 * h), slope


def fill(x, h, s0: Observation, s1: Observation) -> Observation:
    """Observation at ``x`` in ``[0, 1]`` of a step of length ``h`` from the observations at its
    ends: cubic Hermite for the log-norms, residuals and norm, and for the misalignment when the
    reference direction is the same at both ends (linear otherwise); the reference of the
    nearer end."""
    rho, drho = hermite_value_and_slope(x, h, s0.rho, s1.rho, s0.drho, s1.drho)
    res, dres = hermite_value_and_slope(x, h, s0.residual, s1.residual, s0.dresidual, s1.dresidual)
    rn, drn = hermite_value_and_slope(x, h, s0.residual_norm, s1.residual_norm, s0.dresidual_norm, s1.dresidual_norm)
    mh, dmh = hermite_value_and_slope(x, h, s0.mis, s1.mis, s0.dmis, s1.dmis)
    same = s0.ref == s1.ref
    mis = jnp.where(same, mh, (1 - x) * s0.mis + x * s1.mis)
    dmis = jnp.where(same, dmh, (s1.mis - s0.mis) / h)
    return Observation(rho=rho, drho=drho, mis=mis, dmis=dmis, ref=jnp.where(x < 0.5, s0.ref, s1.ref),
                       residual=res, dresidual=dres, residual_norm=rn, dresidual_norm=drn)


# ---------------------------------------------------------------------------- crossings


def _bisect(g0, g1, m0, m1, iterations: int):
    """Root in ``[0, 1]`` of the cubic Hermite with values ``g0, g1`` and slopes ``m0, m1`` (per
    unit of ``x``), by bisection on the sign of ``g0``."""
    neg0 = g0 < 0

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        same = (hermite(mid, g0, g1, m0, m1) < 0) == neg0
        return jnp.where(same, mid, lo), jnp.where(same, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, body, (jnp.zeros_like(g0), jnp.ones_like(g0)))
    return 0.5 * (lo + hi)


def sign_changes(g: Float[Array, "K ..."]) -> Bool[Array, "K-1 ..."]:
    """Grid intervals on which ``g`` changes sign (``< 0`` on one side, ``>= 0`` on the other)."""
    return (g[:-1] < 0) != (g[1:] < 0)


def root_in(t: Float[Array, " K"], g: Float[Array, "K ..."], dg: Float[Array, "K ..."], k,
            iterations: int = ROOT_ITERATIONS):
    """Root of the cubic Hermite interpolant of ``g`` on grid interval ``k`` (one interval per
    trailing index of ``g``; ``k`` is clipped into range): ``(x, h)``, the root at ``t[k] + x h``.

    Only the intervals asked for are bisected: a grid of ``K`` points costs ``O(K)`` comparisons to
    find them and ``O(iterations)`` per root, not ``O(K iterations)``."""
    k = jnp.clip(k, 0, t.shape[0] - 2)
    take = lambda a: jnp.take_along_axis(a, k[None], axis=0)[0]  # noqa: E731
    h = (t[1:] - t[:-1])[k]
    g0, g1 = take(g[:-1]), take(g[1:])
    return _bisect(g0, g1, take(dg[:-1]) * h, take(dg[1:]) * h, iterations), h


def first_root(t, g, dg, candidate, qualifies, iterations: int = ROOT_ITERATIONS):
    """The first grid interval, per trailing index, that is a ``candidate`` (K-1, ...) and whose root
    of the cubic Hermite interpolant of ``g`` satisfies ``qualifies(k, x, h)``.

    Candidates are taken in time order and only their roots are computed (a loop that ends when
    every index has found its interval or run out of candidates: almost always after one or two
    rounds). Returns ``(found, k, x, h)``; ``k = K - 1`` where none qualifies."""
    K1 = candidate.shape[0]
    idx = jnp.arange(K1).reshape((K1,) + (1,) * (candidate.ndim - 1))

    def next_candidate(start):
        c = candidate & (idx >= start[None])
        return jnp.where(c.any(axis=0), jnp.argmax(c, axis=0), K1)

    def body(state):
        k, found, x, h = state
        xk, hk = root_in(t, g, dg, k, iterations)
        searching = (k < K1) & ~found
        ok = searching & qualifies(jnp.minimum(k, K1 - 1), xk, hk)
        x, h = jnp.where(searching, xk, x), jnp.where(searching, hk, h)
        k = jnp.where(searching & ~ok, next_candidate(k + 1), k)
        return k, found | ok, x, h

    zeros = jnp.zeros(candidate.shape[1:], g.dtype)
    init = (next_candidate(jnp.zeros(candidate.shape[1:], jnp.int32)), jnp.zeros(candidate.shape[1:], bool), zeros,
            zeros)
    k, found, x, h = jax.lax.while_loop(lambda s: ((s[0] < K1) & ~s[1]).any(), body, init)
    return found, k, x, h


def first_crossing(t, g, dg, *, downward: bool = False):
    """First time ``g`` goes from ``< 0`` to ``>= 0`` (``downward``: from ``> 0`` to ``<= 0``), for
    every trailing index of ``g`` (K, ...), located on the cubic Hermite interpolant; ``inf``
    where there is none on the grid."""
    if downward:
        g, dg = -g, -dg
    cross = sign_changes(g) & (g[:-1] < 0)
    found = cross.any(axis=0)
    k = jnp.argmax(cross, axis=0)
    x, h = root_in(t, g, dg, k)
    return jnp.where(found, t[k] + x * h, jnp.inf)


# ---------------------------------------------------------------------------- tracking


class Tracked(eqx.Module):
    """What :func:`track` returns for one trajectory over one grid.

    Attributes:
        member: each column's ``S_i`` index at the end of the grid, or -1, (m,).
        join_time: when the column joined ``S_i`` on this grid (inf: it did not), (m,).
        member_t: membership at every grid time, (K, m).
        joined: columns that joined each ``S_i`` on this grid, (r,).
        bad_crossings: columns outside every ``S_i`` whose norm reached ``delta1`` from below
            while ``1 - wbar_i^2 > alpha^2`` for every ``i`` (before joining, if they did), ().
        discovery_time: first join into an ``S_i`` that was empty at the start (inf: none), (r,).
        fit_time: first time ``i`` is fitted (see the module docstring; inf: not on the grid), (r,).
        ahat: ``ahat_i`` at every grid time, (K, r).
    """

    member: Int[Array, " m"]
    join_time: Float[Array, " m"]
    member_t: Int[Array, "K m"]
    joined: Int[Array, " r"]
    bad_crossings: Int[Array, ""]
    discovery_time: Float[Array, " r"]
    fit_time: Float[Array, " r"]
    ahat: Float[Array, "K r"]


def by_group(op, values: Float[Array, "K m"], ids: Int[Array, "K m"], r: int) -> Float[Array, "K r"]:
    """``op`` (``jax.ops.segment_sum``/``min``/``max``) of ``values`` grouped by ``ids`` in ``[-1, r)``
    along the column axis, at every grid time; group -1 (outside every ``S_i``) is dropped (an empty
    group gives 0, ``inf`` or ``-inf``).

    Computed as a masked reduction over the columns for each group rather than with
    ``jax.ops.segment_*``: on CPU a scatter per grid point and column cost more than the whole
    solve on a fine event grid."""
    reduce, empty = _GROUP_REDUCTIONS[op]
    in_group = ids[..., None, :] == jnp.arange(r)[:, None]  # (K, r, m), fused into the reduction
    return reduce(jnp.where(in_group, values[..., None, :], jnp.asarray(empty, values.dtype)), axis=-1)


_GROUP_REDUCTIONS: dict[Any, tuple[Any, float]] = {
    jax.ops.segment_sum: (jnp.sum, 0), jax.ops.segment_max: (jnp.max, -jnp.inf),
    jax.ops.segment_min: (jnp.min, jnp.inf)}


def track(t: Float[Array, " K"], obs: Observation, member: Int[Array, " m"], a: Float[Array, " r"], lam,
          delta1, alpha, fit_fraction, from_above: Bool[Array, " m"] | None = None, *, model=None,
          order: int = 4) -> Tracked:
    """Definition 1 membership, discovery and fit times over one grid.

    Args:
        t: the grid (K,), non-decreasing (a grid of one repeated time is a phase of length 0).
        obs: :func:`observe`'s quantities on the grid, (K, ...).
        member: (m,) each column's ``S_i`` index at the start of the grid, or -1.
        a: ground-truth weights (r,); lam, delta1, alpha, fit_fraction: scalars.
        from_above: (m,) columns initialized at or above ``delta1`` at the start of the grid (see
            the module docstring); None: none (every column's norm must cross ``delta1``).
        model, order: the model (``None``: normalized) and the tensor order: ``ahat_i`` sums the
            model's weights of the slots (``|w_k|^q``: ``q = 2`` for the normalized model, ``p``
            for the plain one; an eigenvalue at order 2), and the fit test ``a_i - ahat_i <= 2 lam``
            is used only for a model whose ``fit_by_weight`` is set (the normalized one: paper
            Lemma 7); the others use the residual test at every ``lam``. A model whose
            ``definition(order)`` is ``"spectral"`` joins slots by state (the module docstring;
            ``from_above`` is not used).
    """
    model = as_model(DEFAULT_MODEL if model is None else model)
    r = a.shape[0]
    rho, drho, mis, dmis, ref = obs.rho, obs.drho, obs.mis, obs.dmis, obs.ref
    m = rho.shape[1]
    cols = jnp.arange(m)
    free = member < 0
    log_delta1 = log_positive(delta1)
    tk = t[:-1, None]

    # crossings of |w| = delta1 (only the roots that decide something are located)
    g = rho - log_delta1
    cross = sign_changes(g)
    alpha_sq = alpha**2

    def misalignment_at(k, x, h):
        """The misalignment at ``x`` of interval ``k``: cubic Hermite when the reference direction
        is the same at both ends, else linear."""
        m0, m1 = mis[k, cols], mis[k + 1, cols]
        herm = hermite(x, m0, m1, dmis[k, cols] * h, dmis[k + 1, cols] * h)
        return jnp.where(ref[k, cols] == ref[k + 1, cols], herm, (1 - x) * m0 + x * m1)

    # a free column joins at its first crossing at which it is aligned
    n_found, n_k, n_x, n_h = first_root(t, g, drho, cross & free[None, :],
                                        lambda k, x, h: misalignment_at(k, x, h) <= alpha_sq)
    n_time = jnp.where(n_found, t[n_k] + n_x * n_h, jnp.inf)
    join_time, join_k, join_x = n_time, n_k, n_x
    start = jnp.zeros(m, bool)
    if model.definition(order) == "spectral":
        # a slot joins at the first time it is both aligned and at least delta1 (the module
        # docstring): at a crossing of delta1 while aligned (above), or where its misalignment
        # drops to alpha^2 while it is at least delta1, or at the start if both hold there
        aligning, above = free, free & (rho[0] >= log_delta1)
    elif from_above is not None:
        # the norm condition holds from the start: join where the misalignment first drops to
        # alpha^2 while the norm is still >= delta1, or at the start if already aligned there
        aligning = above = from_above & free
    else:
        aligning = None
    if aligning is not None:
        a_g = alpha_sq - mis
        a_candidate = sign_changes(a_g) & (mis[:-1] > alpha_sq) & aligning[None, :]

        def norm_still_above(k, x, h):
            return hermite(x, rho[k, cols], rho[k + 1, cols], drho[k, cols] * h, drho[k + 1, cols] * h) >= log_delta1

        a_found, a_k, a_x, a_h = first_root(t, a_g, -dmis, a_candidate, norm_still_above)
        a_time = jnp.where(a_found, t[a_k] + a_x * a_h, jnp.inf)
        by_alignment = a_time < n_time
        join_time = jnp.minimum(n_time, a_time)
        join_k, join_x = jnp.where(by_alignment, a_k, n_k), jnp.where(by_alignment, a_x, n_x)
        start = above & (mis[0] <= alpha_sq)

    joins = jnp.isfinite(join_time) | start
    join_time = jnp.where(start, t[0], join_time)
    k_safe = jnp.minimum(join_k, t.shape[0] - 2)
    join_dir = jnp.where(start, ref[0], jnp.where(join_x < 0.5, ref[k_safe, cols], ref[k_safe + 1, cols]))
    new_member = jnp.where(free & joins, join_dir, member)
    # a bad crossing: upward through delta1, misaligned, before the column joined. Every crossing
    # before the first aligned one is misaligned, so only the interval holding the join time needs
    # its root: earlier intervals count whole, later ones not at all.
    upward = cross & (rho[:-1] < log_delta1) & free[None, :]
    tk = t[:-1, None]
    earlier = upward & (t[1:, None] < join_time[None, :]) & (jnp.arange(t.shape[0] - 1)[:, None] < n_k[None, :])
    holding = jnp.argmax((tk < join_time[None, :]) & (t[1:, None] >= join_time[None, :]), axis=0)
    h_x, h_h = root_in(t, g, drho, holding)
    at_holding = (upward[holding, cols] & (t[holding] < join_time) & (t[holding + 1] >= join_time) & (holding < n_k)
                  & (t[holding] + h_x * h_h < join_time) & (misalignment_at(holding, h_x, h_h) > alpha_sq))
    bad = earlier.any(axis=0) | at_holding

    # membership on the grid, ahat, discovery and fit times
    member_t = jnp.where(free[None, :] & (t[:, None] < join_time[None, :]), -1, new_member[None, :])  # (K, m)
    omega = model.weights(rho, order)
    ahat = by_group(jax.ops.segment_sum, omega, member_t, r)  # (K, r)
    was_empty = ~discovered(member, r)
    newly = free & joins
    group = jnp.where(newly, new_member, r)
    first_join = jax.ops.segment_min(jnp.where(newly, join_time, jnp.inf), group, num_segments=r + 1)[:r]
    joined = jax.ops.segment_sum(newly.astype(jnp.int32), group, num_segments=r + 1)[:r]

    def by_norm():  # lam > 0: a_i - ahat_i <= 2 lam
        dahat = by_group(jax.ops.segment_sum, float(model.norm_power(order)) * omega * drho, member_t, r)
        return first_crossing(t, a[None, :] - ahat - 2.0 * lam, -dahat, downward=True)

    def by_residual():  # lam = 0: the residual on u_i drops to fit_fraction a_i
        return first_crossing(t, obs.residual - fit_fraction * a[None, :], obs.dresidual, downward=True)

    # only the criterion in use is located (a select of both where lam differs across a batch)
    fit_time = jax.lax.cond(lam > 0, by_norm, by_residual) if model.fit_by_weight else by_residual()
    return Tracked(
        member=new_member.astype(jnp.int32), join_time=join_time, member_t=member_t.astype(jnp.int32),
        joined=joined, bad_crossings=bad.sum().astype(jnp.int32),
        discovery_time=jnp.where(was_empty, first_join, jnp.inf),
        fit_time=fit_time, ahat=ahat,
    )


def discovered(member: Int[Array, " m"], r: int) -> Bool[Array, " r"]:
    """``S_i`` non-empty, per ground truth."""
    return (member[None, :] == jnp.arange(r)[:, None]).any(axis=1)
