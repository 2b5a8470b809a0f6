"""Discovery and fit times (paper Definition 1) located between save points.

The solve saves, on a uniform event grid, each quantity ``g`` whose crossing defines an event
together with its time derivative ``dg/dt``. They are computed exactly at the end of every solver
step (a Jacobian-vector product with the vector field there) and carried onto the grid points
inside the step by cubic Hermite interpolation (``flow._event_fill``). The first crossing is then
the root of the cubic Hermite interpolant on the bracketing grid interval: fourth-order accurate,
so the default 512-point grid locates the times to ~1e-8 relative on the Figure 1 setting at
rtol 1e-8 (``benchmarks/core_accuracy.py``; checked against a dense high-accuracy reference in
the tests), far better than the grid itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _hermite(x, g0, g1, m0, m1):
    """Cubic Hermite on [0, 1] with values g0, g1 and (scaled) slopes m0, m1."""
    x2, x3 = x * x, x * x * x
    return (2 * x3 - 3 * x2 + 1) * g0 + (x3 - 2 * x2 + x) * m0 + (-2 * x3 + 3 * x2) * g1 + (x3 - x2) * m1


def hermite_value_and_slope(x, h, g0, g1, d0, d1):
    """Cubic Hermite on a step of length ``h`` at ``x`` in ``[0, 1]`` from values ``g0, g1`` and
    time derivatives ``d0, d1`` at its ends: ``(value, time derivative)``."""
    slope = ((6 * x * x - 6 * x) * (g0 - g1)) / h + (3 * x * x - 4 * x + 1) * d0 + (3 * x * x - 2 * x) * d1
    return _hermite(x, g0, g1, d0 * h, d1 * h), slope


def first_upcrossing(t, g, dg, iterations: int = 60):
    """First time ``g`` goes from ``< 0`` to ``>= 0``, for every trailing index of ``g``.

    Args:
        t: grid (K,), increasing.
        g, dg: values and time derivatives on the grid, shape (K, ...).
    Returns:
        times of shape ``g.shape[1:]``; ``inf`` where there is no crossing on the grid.
    """
    cross = (g[:-1] < 0) & (g[1:] >= 0)
    found = cross.any(axis=0)
    k = jnp.argmax(cross, axis=0)

    def take(x):
        return jnp.take_along_axis(x, k[None], axis=0)[0]

    t0, t1 = t[k], t[k + 1]
    h = t1 - t0
    g0, g1 = take(g[:-1]), take(g[1:])
    m0, m1 = take(dg[:-1]) * h, take(dg[1:]) * h

    def bisect(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        below = _hermite(mid, g0, g1, m0, m1) < 0
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, bisect, (jnp.zeros_like(g0), jnp.ones_like(g0)))
    return jnp.where(found, t0 + 0.5 * (lo + hi) * h, jnp.inf)


def first_downcrossing(t, g, dg, iterations: int = 60):
    """First time ``g`` goes from ``> 0`` to ``<= 0`` (see :func:`first_upcrossing`)."""
    return first_upcrossing(t, -g, -dg, iterations)


def discovery_times(t, log_norm, dlog_norm, misalignment, best_idx, *, r: int, delta1, alpha):
    """Definition 1: per column the first time its norm reaches ``delta1``, whether it then had
    ``wbar_i^2 >= 1 - alpha^2`` for some ground-truth ``i`` (the best-correlated one), and the
    discovery time of each ``i`` (the earliest such column; ``inf`` if none).

    Args:
        t: event grid (K,); log_norm, dlog_norm: (K, m); misalignment: ``1 - wbar_i^2`` for the
            best-correlated ``i`` (computed as ``|u - <u_i, u> u_i|^2``, accurate when tiny), (K, m);
            best_idx: that ``i``, (K, m).
    Returns:
        ``(discovery (r,), crossing (m,), member (m,) int: i or -1)``.
    """
    crossing = first_upcrossing(t, log_norm - jnp.log(delta1), dlog_norm)
    found = jnp.isfinite(crossing)
    # misalignment at the crossing, linearly interpolated on the bracket
    k = jnp.clip(jnp.searchsorted(t, crossing, side="right") - 1, 0, t.shape[0] - 2)
    cols = jnp.arange(log_norm.shape[1])
    w = jnp.clip((crossing - t[k]) / (t[k + 1] - t[k]), 0.0, 1.0)
    w = jnp.where(found, w, 0.0)
    mis = (1 - w) * misalignment[k, cols] + w * misalignment[k + 1, cols]
    idx = jnp.where(w < 0.5, best_idx[k, cols], best_idx[k + 1, cols])
    qualifies = found & (mis <= alpha**2)
    member = jnp.where(qualifies, idx, -1)
    onehot = member[None, :] == jnp.arange(r)[:, None]  # (r, m)
    discovery = jnp.min(jnp.where(onehot, crossing[None, :], jnp.inf), axis=1)
    return discovery, crossing, member


def fit_times(t, residual, dresidual, log_norm, dlog_norm, crossing, member, a, lam, fit_fraction):
    """First time ground-truth ``i`` is fitted.

    For ``lam > 0``: ``a_i - ahat_i <= 2 lam`` with ``ahat_i`` the total squared norm of the
    columns in ``S_i`` (Definition 1). For ``lam = 0``: the residual ``(T* - T)(u_i^p)`` drops to
    ``fit_fraction * a_i`` or below. ``inf`` if never on the grid.

    Args:
        t: (K,); residual, dresidual: (K, r); log_norm, dlog_norm: (K, m);
        crossing, member: (m,) from :func:`discovery_times`; a: (r,).
    """
    r = a.shape[0]
    by_residual = first_downcrossing(t, residual - fit_fraction * a[None, :], dresidual)
    joined = (crossing[None, :] <= t[:, None])[:, :, None] & (member[None, :, None] == jnp.arange(r))  # (K, m, r)
    omega = jnp.exp(2.0 * log_norm)
    ahat = jnp.einsum("km,kmr->kr", omega, joined)
    dahat = jnp.einsum("km,kmr->kr", 2.0 * omega * dlog_norm, joined)
    by_norm = first_downcrossing(t, a[None, :] - ahat - 2 * lam, -dahat)
    return jnp.where(lam > 0, by_norm, by_residual)
