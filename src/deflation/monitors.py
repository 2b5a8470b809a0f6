"""Definition 1 tracked through one phase of Algorithm 2, and the Proposition 1 monitors.

Definition 1: column ``k`` is in ``S_i`` once, at some time after its latest (re-)initialization,
``|w_k| = delta1`` while ``wbar_{k,i}^2 >= 1 - alpha^2``; ``ahat_i = sum_{k in S_i} |w_k|^2``;
``i`` is *discovered* when ``S_i`` is non-empty and *fitted* when ``a_i - ahat_i <= 2 lam``.

How crossings are found. A phase's solve saves, on a uniform grid of ``K`` times (diffrax
``SubSaveAt(ts=..., fn=...)``), for every column its log-norm ``rho``, its *misalignment*
``1 - wbar_i^2`` with a *reference* direction ``u_i`` (its ``S_i`` direction if it is a member,
else its best-correlated direction) and the exact time derivatives of both (a Jacobian-vector
product with the log-norm vector field). The misalignment is computed as ``|u - <u_i, u> u_i|^2``
for the unit direction ``u``, without the cancellation of ``1 - <u_i, u>^2``: Theorem 1's ``alpha``
is ~1e-8, so Definition 1's test ``1 - wbar_i^2 <= alpha^2`` compares with ~1e-16, which
``wbar_i^2`` itself cannot resolve in float64. Every grid interval on which ``rho - log delta1`` changes sign (upward or downward:
Definition 1 asks for ``|w| = delta1`` at any time) holds a crossing, located as the root of the
cubic Hermite interpolant of ``rho`` (as :mod:`deflation.events` does; fourth order in the grid
spacing); the misalignment at that root is the Hermite interpolant of the misalignment (linear
if the best direction changes across the interval). A column joins ``S_i`` at its first crossing that
qualifies. A crossing can be missed only if ``rho`` crosses ``log delta1`` twice within one grid
interval, which the norm's smooth, monotone-near-threshold growth makes negligible for grids of a
few dozen points per phase.

Membership at each grid time (columns that joined at or before it) gives ``ahat_i(t)`` and the
Proposition 1 monitors as extremes over the phase's grid:

(a) ``max`` over ``t`` and ``w in S_k`` of ``1 - wbar_k^2`` (claim: ``<= alpha``);
(b) ``max`` over ``t`` with ``S_k`` non-empty of the ``|w|^2``-weighted average ``E_{k,w} (1 - wbar_k^2)``
    (claim: ``<= alpha^2 + 4 s m delta1^2``);
(c) ``min`` and ``max`` over ``t`` of ``a_k - ahat_k`` (claims: ``>= lam/6 - s m delta1^2``, and
    ``<= lam + s m delta1^2`` when ``a_k >= beta^{(s)} / (1 - gamma)``);
(d) ``max`` over ``t`` of ``log |w|`` over columns outside every ``S_k`` (claim: ``<= log delta1``).

A minimum over an empty set is ``+inf`` and a maximum ``-inf``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .contract import evaluate, residual_norm_sq
from .dynamics import lognorm_vector_field, normalize
from .events import _hermite, first_downcrossing
from .target import Target


def observer(target: Target, lam, member):
    """``fn(t, y, args)`` for ``diffrax.SubSaveAt``: what :func:`track_phase` needs on the grid.

    ``member`` (m,) int: each column's ``S_i`` index at the start of the phase, or -1.
    Saves ``rho, drho, mis, dmis, ref`` (m,) (``mis = 1 - wbar_ref^2``, see the module docstring) (``ref`` as float: diffrax fills unsaved
    entries with inf), ``residual`` (r,) = ``(T* - T)(u_i^p)`` and ``residual_norm`` = ``|T - T*|_F`` (float Gram
    route: resolved down to about 1e-8 |T*|_F, enough for a trace).
    """
    truth = evaluate(target.U, target.a, target.U, target.order)

    def fn(t, y, args):
        rho, ubar = y
        u = normalize(ubar)
        C2 = (target.U.T @ u) ** 2
        ref = jnp.where(member >= 0, member, jnp.argmax(C2, axis=0))

        u_ref = target.U[:, ref]  # (d, m)

        def misalignment(state):
            x = normalize(state[1])
            return jnp.sum((x - u_ref * jnp.sum(u_ref * x, axis=0)) ** 2, axis=0)

        f = lognorm_vector_field(y, target, lam)
        mis, dmis = jax.jvp(misalignment, (y,), (f,))
        omega = jnp.exp(2.0 * rho)
        sq, _ = residual_norm_sq(u, omega, target, precise=False)
        return dict(
            rho=rho, drho=f[0], mis=mis, dmis=dmis, ref=ref.astype(rho.dtype),
            residual=truth - evaluate(u, omega, target.U, target.order),
            residual_norm=jnp.sqrt(jnp.maximum(sq, 0.0)),
        )

    return fn


def _interval_roots(t, g, dg, iterations: int = 50):
    """Root of the cubic Hermite interpolant on every interval where ``g`` (K, m) changes sign.

    Returns ``(cross (K-1, m) bool, x (K-1, m) in [0, 1], h (K-1, 1))``: root at ``t[k] + x h``.
    """
    h = (t[1:] - t[:-1])[:, None]
    g0, g1 = g[:-1], g[1:]
    m0, m1 = dg[:-1] * h, dg[1:] * h
    neg0 = g0 < 0
    cross = neg0 != (g1 < 0)

    def bisect(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        same = (_hermite(mid, g0, g1, m0, m1) < 0) == neg0
        return jnp.where(same, mid, lo), jnp.where(same, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, bisect, (jnp.zeros_like(g0), jnp.ones_like(g0)))
    return cross, 0.5 * (lo + hi), h


def _segment(op, values, ids, r):
    """``op`` (segment_sum/min/max) of ``values`` (K, m) by group ``ids`` (K, m) in [-1, r) -> (K, r)."""
    return jax.vmap(lambda v, i: op(v, i + 1, num_segments=r + 1))(values, ids)[:, 1:]


def track_phase(t, obs, member, a, lam, delta1, alpha):
    """Definition 1 membership and the Proposition 1 monitors over one phase.

    Args:
        t: the phase's save grid (K,), starting at 0 (phase-relative time).
        obs: the dict saved by :func:`observer` on ``t``, entries (K, ...).
        member: (m,) ``S_i`` index of each column at the start of the phase, or -1.
        a: ground-truth weights (r,); lam, delta1, alpha: scalars.

    Returns:
        dict with ``member`` (m,) at the end; ``join_time`` (m,) (inf: did not join in this phase);
        ``joined`` (r,) number of columns that joined each ``S_i``; ``joined_mask`` (m,);
        ``bad_crossings``: columns outside every ``S_i`` whose norm reached ``delta1`` while
        ``1 - wbar_i^2 > alpha^2`` for every ``i``; ``discovery_time`` (r,) first join into an ``S_i`` that was empty at the start
        (inf otherwise); ``fit_time`` (r,) first time ``a_i - ahat_i`` falls to ``2 lam`` (inf if
        not in the phase); ``ahat`` (r,) at the end; monitors ``misalignment_max``, ``misalignment_avg_max``,
        ``gap_min``, ``gap_max`` (r,) and ``log_norm_outside_max`` () (see module docstring).
    """
    r = a.shape[0]
    rho, drho, mis, dmis = obs["rho"], obs["drho"], obs["mis"], obs["dmis"]
    ref = obs["ref"].astype(member.dtype)
    K, m = rho.shape
    free = member < 0

    # --- crossings of |w| = delta1 and the misalignment there
    cross, x, h = _interval_roots(t, rho - jnp.log(delta1), drho)
    same_ref = ref[:-1] == ref[1:]
    m_herm = _hermite(x, mis[:-1], mis[1:], dmis[:-1] * h, dmis[1:] * h)
    m_lin = (1 - x) * mis[:-1] + x * mis[1:]
    m_at = jnp.where(same_ref, m_herm, m_lin)
    qualifies = cross & (m_at <= alpha**2) & free[None, :]
    when = t[:-1, None] + x * h
    joins = qualifies.any(axis=0)
    k = jnp.argmax(qualifies, axis=0)
    cols = jnp.arange(m)
    join_time = jnp.where(joins, when[k, cols], jnp.inf)
    join_dir = jnp.where(x[k, cols] < 0.5, ref[k, cols], ref[k + 1, cols])
    new_member = jnp.where(free & joins, join_dir, member)
    upward = cross & (rho[:-1] < jnp.log(delta1))
    bad_cross = (upward & ~qualifies & (when < join_time[None, :]) & free[None, :]).any(axis=0)

    # --- membership on the grid, ahat and monitors
    mem_t = jnp.where(free[None, :] & (t[:, None] < join_time[None, :]), -1, new_member[None, :])  # (K, m)
    omega = jnp.exp(2.0 * rho)
    ahat = _segment(jax.ops.segment_sum, omega, mem_t, r)  # (K, r)
    dahat = _segment(jax.ops.segment_sum, 2.0 * omega * drho, mem_t, r)
    wmis = _segment(jax.ops.segment_sum, omega * mis, mem_t, r)
    nonempty = ahat > 0
    avg = jnp.where(nonempty, wmis / jnp.where(nonempty, ahat, 1.0), -jnp.inf)
    mis_max = _segment(jax.ops.segment_max, mis, mem_t, r).max(axis=0)
    gap = a[None, :] - ahat
    outside = jnp.where(mem_t < 0, rho, -jnp.inf).max()

    was_empty = ~(member[None, :] == jnp.arange(r)[:, None]).any(axis=1)  # (r,)
    newly = free & joins
    first_join = jax.ops.segment_min(jnp.where(newly, join_time, jnp.inf), jnp.where(newly, new_member, r),
                                     num_segments=r + 1)[:r]
    joined = jax.ops.segment_sum(newly.astype(jnp.int32), jnp.where(newly, new_member, r), num_segments=r + 1)[:r]
    return dict(
        member=new_member,
        join_time=join_time,
        joined_mask=newly,
        joined=joined,
        bad_crossings=bad_cross.sum(),
        discovery_time=jnp.where(was_empty, first_join, jnp.inf),
        fit_time=first_downcrossing(t, gap - 2.0 * lam, -dahat),
        ahat=ahat[-1],
        misalignment_max=mis_max,
        misalignment_avg_max=avg.max(axis=0),
        gap_min=gap.min(axis=0),
        gap_max=gap.max(axis=0),
        log_norm_outside_max=outside,
    )
