"""Baselines a user would otherwise pick, to compare the gradient flow against.

- :func:`tensor_power_deflation`: the tensor deflation process of the paper's Algorithm 1, each
  rank-1 step found by the robust tensor power method of Anandkumar et al. (2014)
  (``w <- R(w^{p-1}, I) / |R(w^{p-1}, I)|`` from several random restarts, the best by ``R(w^p)``).
  Matrix-free: ``R = T* - sum_k lam_k v_k^{(x)p}`` is never formed.
- :func:`deflation_levels`: the loss levels of an exact deflation process (the plateaus of
  Figure 1), in closed form.
- :func:`discrete_gradient_descent`: discrete training of the same loss through an ``optax``
  optimizer (``optax.sgd`` is Euler's method on the flow with ``dt`` = learning rate).
- :func:`solve_raw`: the gradient flow integrated by diffrax in the raw ``W`` coordinates (the
  naive alternative to the log-norm coordinates of :mod:`deflation.flow`).
- NumPy references: :func:`numpy_dense_gradient` (what paper code usually does: build ``T`` with
  ``einsum`` each step) and :func:`numpy_lognorm_rhs` / :func:`scipy_flow` (the best a careful
  NumPy user writes: a Gram-matrix right-hand side for ``scipy.integrate.solve_ivp``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from . import _validate as check
from .contract import residual_norm_sq_fast, residual_on, split_norms
from .dynamics import check_W, velocity
from .target import Target, as_target

# ---------------------------------------------------------------------------- Algorithm 1


class PowerDeflation(eqx.Module):
    """Result of :func:`tensor_power_deflation`.

    Attributes:
        W: columns ``w_k = sqrt(max(lam_k, 0)) v_k`` so that ``sum_k w_k^{(x)p}/|w_k|^{p-2}``
            approximates ``T*`` (the output format of Algorithm 1), (d, rank).
        directions: unit vectors ``v_k`` in the order found, (d, rank).
        weights: eigenvalues ``lam_k = R_k(v_k^p)`` of the residual when ``v_k`` was found, (rank,).
        residual_norm: ``|R|_F`` after each deflation step, (rank,).
    """

    W: Float[Array, "d k"]
    directions: Float[Array, "d k"]
    weights: Float[Array, " k"]
    residual_norm: Float[Array, " k"]


def _residual_apply(v, target: Target, V, lams, power: int):
    """``R(v^{power}, I) = sum_i a_i <u_i,v>^power u_i - sum_k lams_k <v_k,v>^power v_k`` for
    ``R = T* - sum_k lams_k v_k^{(x)p}`` (``power = p - 1``), without forming ``R``."""
    cu = target.U.T @ v
    cv = V.T @ v
    return target.U @ (target.a * cu**power) - V @ (lams * cv**power)


def _residual_value(v, target: Target, V, lams):
    """``R(v^p) = sum_i a_i <u_i, v>^p - sum_k lams_k <v_k, v>^p``."""
    return residual_on(V, lams, target, v[:, None])[0]


def _residual_norm_sq(target: Target, V, lams):
    """``|R|_F^2`` by the Gram formula (float route; fine for a baseline)."""
    return residual_norm_sq_fast(V, lams, target)[0]


@eqx.filter_jit
def _power_deflation(target: Target, key, rank: int, restarts: int, iterations: int):
    d, p = target.d, target.order
    dtype = target.U.dtype

    def power_steps(v, V, lams, n):
        def body(_, v):
            g = _residual_apply(v, target, V, lams, p - 1)
            return g / jnp.linalg.norm(g)

        return jax.lax.fori_loop(0, n, body, v)

    def step(k, carry):
        V, lams, norms = carry
        g = jax.random.normal(jax.random.fold_in(key, k), (restarts, d), dtype)
        starts = g / jnp.linalg.norm(g, axis=1, keepdims=True)
        cands = jax.vmap(lambda v: power_steps(v, V, lams, iterations))(starts)
        scores = jax.vmap(lambda v: _residual_value(v, target, V, lams))(cands)
        v = power_steps(cands[jnp.argmax(scores)], V, lams, iterations)
        lam = _residual_value(v, target, V, lams)
        V, lams = V.at[:, k].set(v), lams.at[k].set(lam)
        norms = norms.at[k].set(jnp.sqrt(jnp.maximum(_residual_norm_sq(target, V, lams), 0.0)))
        return V, lams, norms

    init = (jnp.zeros((d, rank), dtype), jnp.zeros((rank,), dtype), jnp.zeros((rank,), dtype))
    V, lams, norms = jax.lax.fori_loop(0, rank, step, init)
    return V, lams, norms


def tensor_power_deflation(
    target: Target, key: jax.Array, rank: int | None = None, *, restarts: int = 10, iterations: int = 30
) -> PowerDeflation:
    """The tensor deflation process (paper Algorithm 1) with the robust tensor power method.

    Starting from ``R = T*``, ``rank`` times: run ``iterations`` power steps
    ``v <- R(v^{p-1}, I) / |R(v^{p-1}, I)|`` (Anandkumar et al. 2014, Algorithm 1) from each of
    ``restarts`` uniform random unit vectors, keep the one with the largest ``R(v^p)``, refine it
    with ``iterations`` more steps, record ``lam = R(v^p)`` and deflate ``R <- R - lam v^{(x)p}``.
    For an orthogonal ``T*`` the components come out in decreasing order of ``a_i``.

    Args:
        target: the tensor to decompose.
        key: PRNG key; deflation step ``k`` draws its restarts from ``fold_in(key, k)``.
        rank: number of components to extract (default ``target.r``).
        restarts: random starts per step (>= 1).
        iterations: power steps per start and for the refinement (>= 1).
    """
    target = as_target(target)
    rank = target.r if rank is None else check.integer("rank", rank, 1)
    restarts = check.integer("restarts", restarts, 1)
    iterations = check.integer("iterations", iterations, 1)
    V, lams, norms = _power_deflation(target, key, rank, restarts, iterations)
    return PowerDeflation(W=V * jnp.sqrt(jnp.maximum(lams, 0.0)), directions=V, weights=lams, residual_norm=norms)


def deflation_levels(target: Target) -> np.ndarray:
    """Loss levels of an exact deflation process: ``1/2 |T* - sum_{j <= k} a_(j) u_(j)^{(x)p}|_F^2``
    for ``k = 0, ..., r`` fitted components, taken in decreasing order of ``a``.

    For an orthogonal ``T*`` this is ``1/2 sum_{j > k} a_(j)^2``, the loss after Algorithm 1 has
    extracted the ``k`` largest components (``1/2 tensor_power_deflation(...).residual_norm[k - 1]^2``)
    and the level on which gradient flow from a small initialization rests between fits (``lam = 0``;
    the plateaus of the paper's Figure 1). For a non-orthogonal ``T*``, Algorithm 1's rank-1 steps
    are not the ``u_i`` and its levels differ: use :func:`tensor_power_deflation` there.

    Returns:
        NumPy array (r + 1,), decreasing, the last entry 0.
    """
    target = as_target(target)
    a = np.asarray(target.a, dtype=np.float64)
    U = np.asarray(target.U, dtype=np.float64)
    order = np.argsort(-a, kind="stable")
    a, U = a[order], U[:, order]
    G = (U.T @ U) ** target.order  # <u_i, u_j>^p
    levels = [0.5 * float(a[k:] @ G[k:, k:] @ a[k:]) for k in range(a.shape[0])]
    return np.maximum(np.array(levels + [0.0]), 0.0)


# ---------------------------------------------------------------------------- discrete GD (optax)


class DescentResult(eqx.Module):
    """Result of :func:`discrete_gradient_descent`.

    Attributes:
        iterations: iteration counts at which the state was recorded, (K,).
        W: the columns of ``W`` at those iterations, (K, d, m).
        residual: ``(T* - T)(u_i^p)`` for each ground truth ``i`` at those iterations, (K, r).
    """

    iterations: Int[Array, " K"]
    W: Float[Array, "K d m"]
    residual: Float[Array, "K r"]


def _truth_residual(W, target: Target):
    """``(T* - T)(u_i^p)`` for every ground-truth direction (float Gram route)."""
    omega, Wbar = split_norms(W)
    return residual_on(Wbar, omega, target)


@eqx.filter_jit
def _descent(target, W0, optimizer, steps: int, record_every: int, lam):
    def grad(W):
        return -velocity(W, target, lam)

    def one(carry, _):
        W, state = carry
        updates, state = optimizer.update(grad(W), state, W)
        return (W + updates, state), None

    def block(carry, _):
        carry, _ = jax.lax.scan(one, carry, None, length=record_every)
        return carry, (carry[0], _truth_residual(carry[0], target))

    state = optimizer.init(W0)
    _, (Ws, res) = jax.lax.scan(block, (W0, state), None, length=steps // record_every)
    Ws = jnp.concatenate([W0[None], Ws])
    res = jnp.concatenate([_truth_residual(W0, target)[None], res])
    return Ws, res


def discrete_gradient_descent(
    target: Target, W0: Any, optimizer: Any, steps: int, *, lam: float = 0.0, record_every: int = 1
) -> DescentResult:
    """Discrete training ``W <- W + optimizer.update(grad L(W))`` on the loss of paper Section 4.

    ``grad L = -velocity(W)`` (:func:`deflation.velocity`). With ``optax.sgd(lr)`` this is exactly
    Euler's method on the gradient flow with step ``lr``, so iteration ``n`` corresponds to flow
    time ``n * lr``.

    Args:
        target: the ground truth.
        W0: initial columns of ``W`` (d, m).
        optimizer: an ``optax.GradientTransformation`` (``optax.sgd(1e-2)``, ``optax.adam(...)``, ...).
        steps: number of iterations (a multiple of ``record_every``).
        lam: regularization ``lam/2 |W|_F^2``.
        record_every: record ``W`` and the residuals every this many iterations (also at 0).
    """
    target = as_target(target)
    W0 = check_W("W0", W0, target)
    steps = check.integer("steps", steps, 1)
    record_every = check.integer("record_every", record_every, 1)
    if steps % record_every:
        raise ValueError(f"steps must be a multiple of record_every = {record_every}, got steps = {steps}")
    lam = check.nonnegative("lam", lam)
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}")
    Ws, res = _descent(target, W0, optimizer, steps, record_every, jnp.asarray(lam, W0.dtype))
    its = jnp.arange(0, steps + 1, record_every)
    return DescentResult(iterations=its, W=Ws, residual=res)


def descent_fit_iterations(result: DescentResult, target: Target, fit_fraction: float = 0.1):
    """First recorded iteration at which ``(T* - T)(u_i^p) <= fit_fraction * a_i`` (the ``lam = 0``
    fit criterion of :func:`deflation.gradient_flow`), per ground truth; ``inf`` if never. (r,)"""
    fit_fraction = check.in_open_interval("fit_fraction", fit_fraction, 0.0, 1.0)
    res = np.asarray(result.residual)
    below = res <= fit_fraction * np.asarray(target.a)[None, :]
    its = np.asarray(result.iterations, dtype=float)
    return np.where(below.any(axis=0), its[np.argmax(below, axis=0)], np.inf)


# ---------------------------------------------------------------------------- raw-W flow (diffrax)


def solve_raw(
    target: Target, W0, t1, *, solver=None, stepsize_controller=None, dt0=None, saveat=None,
    max_steps: int = 1_000_000, lam: float = 0.0, t0: float = 0.0,
) -> diffrax.Solution:
    """The gradient flow ``dW/dt = velocity(W)`` integrated by diffrax in raw ``W`` coordinates
    (no log-norm change of variables): the naive route, for comparisons. Traceable; ``throw=False``."""
    solver = diffrax.Tsit5() if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=1e-8, atol=1e-8)
    term = diffrax.ODETerm(lambda t, W, args: velocity(W, target, lam))
    return diffrax.diffeqsolve(
        term, solver, t0, t1, dt0, W0, saveat=saveat or diffrax.SaveAt(t1=True),
        stepsize_controller=stepsize_controller, max_steps=max_steps, throw=False,
    )


# ---------------------------------------------------------------------------- NumPy references


def numpy_dense_tensor(X: np.ndarray, weights: np.ndarray, order: int) -> np.ndarray:
    """The d^p array ``sum_j weights_j x_j^{(x)p}`` built with ``np.einsum`` (p = 3 or 4 fast path)."""
    if order == 4:
        return np.einsum("j,aj,bj,cj,ej->abce", weights, X, X, X, X, optimize=True)
    if order == 3:
        return np.einsum("j,aj,bj,cj->abc", weights, X, X, X, optimize=True)
    T = np.zeros((X.shape[0],) * order)
    for j in range(X.shape[1]):
        outer = X[:, j]
        for _ in range(order - 1):
            outer = np.multiply.outer(outer, X[:, j])
        T += weights[j] * outer
    return T


def numpy_dense_gradient(W: np.ndarray, a: np.ndarray, U: np.ndarray, order: int = 4, lam: float = 0.0) -> np.ndarray:
    """``grad_W L`` the way paper code usually computes it: build ``T`` and ``T*`` as dense d^p
    arrays with ``einsum`` each call, ``R = T* - T``, then
    ``grad w = -(p R(wbar^{p-2}, w, I) - (p-2) R(wbar^p) w) + lam w``. O(m d^p) per call."""
    W, a, U = np.asarray(W, float), np.asarray(a, float), np.asarray(U, float)
    p = order
    omega = (W * W).sum(axis=0)
    Wbar = W / np.sqrt(omega)
    R = numpy_dense_tensor(U, a, p) - numpy_dense_tensor(Wbar, omega, p)
    M = R.reshape(-1, R.shape[-1])  # contract the first p-1 modes with wbar^{(x)(p-1)}
    ones = Wbar
    for _ in range(p - 2):
        ones = (ones[:, None, :] * Wbar[None, :, :]).reshape(-1, W.shape[1])
    Rvec = M.T @ ones  # R(wbar^{p-1}, I), (d, m)
    Rp = (Rvec * Wbar).sum(axis=0)
    vel = np.sqrt(omega) * (p * Rvec - (p - 2) * Rp * Wbar) - lam * W
    return -vel


def numpy_gram_residual(Xbar: np.ndarray, omega: np.ndarray, a: np.ndarray, U: np.ndarray, order: int):
    """NumPy ``(R(x_j^p), R(x_j^{p-1}, I))`` for unit columns by Gram matrices (as in
    :func:`deflation.contract.residual_vectors`)."""
    p = order
    G = Xbar.T @ Xbar
    C = U.T @ Xbar
    Rvec = U @ (a[:, None] * C ** (p - 1)) - Xbar @ (omega[:, None] * G ** (p - 1))
    return (Xbar * Rvec).sum(axis=0), Rvec


def numpy_lognorm_rhs(a: np.ndarray, U: np.ndarray, order: int, m: int, lam: float = 0.0) -> Callable:
    """``f(t, y)`` for ``scipy.integrate.solve_ivp``: the log-norm flow (:mod:`deflation.dynamics`)
    with ``y = concat(rho (m,), ubar.ravel() (d*m,))``, by NumPy Gram matrices."""
    a, U = np.asarray(a, float), np.asarray(U, float)
    d = U.shape[0]

    def f(t, y):
        rho, ubar = y[:m], y[m:].reshape(d, m)
        u = ubar / np.sqrt((ubar * ubar).sum(axis=0))
        Rp, Rvec = numpy_gram_residual(u, np.exp(2.0 * rho), a, U, order)
        return np.concatenate([2.0 * Rp - lam, (order * (Rvec - Rp * u)).ravel()])

    return f


def scipy_flow(target: Target, W0, t1: float, *, rtol: float = 1e-6, atol: float = 1e-6, method: str = "RK45"):
    """The log-norm gradient flow of every seed in ``W0`` (B, d, m), one ``solve_ivp`` call per
    seed with a NumPy Gram-matrix right-hand side. Returns ``(W (B, d, m) at t1, nfev (B,))``."""
    from scipy.integrate import solve_ivp

    W0 = np.asarray(W0, float)
    if W0.ndim == 2:
        W0 = W0[None]
    B, d, m = W0.shape
    f = numpy_lognorm_rhs(np.asarray(target.a), np.asarray(target.U), target.order, m)
    out, nfev = np.empty_like(W0), np.empty(B, int)
    for b in range(B):
        omega = (W0[b] ** 2).sum(axis=0)
        y0 = np.concatenate([0.5 * np.log(omega), (W0[b] / np.sqrt(omega)).ravel()])
        sol = solve_ivp(f, (0.0, t1), y0, method=method, rtol=rtol, atol=atol)
        if sol.status != 0:
            raise RuntimeError(f"solve_ivp failed for seed {b}: {sol.message}")
        y = sol.y[:, -1]
        ubar = y[m:].reshape(d, m)
        out[b] = np.exp(y[:m]) * ubar / np.sqrt((ubar**2).sum(axis=0))
        nfev[b] = sol.nfev
    return out, nfev


def numpy_loss(W: np.ndarray, a: np.ndarray, U: np.ndarray, order: int) -> float:
    """``1/2 |T - T*|_F^2`` of ``W`` (d, m) by the float Gram formula in NumPy (what a careful NumPy
    user writes: ``omega^T G^p omega - 2 a^T C^p omega + a^T H^p a`` with the Gram matrices)."""
    omega = (W * W).sum(axis=0)
    Wb = W / np.sqrt(omega)
    G, C, H = Wb.T @ Wb, U.T @ Wb, U.T @ U
    return 0.5 * float(omega @ G**order @ omega - 2 * a @ C**order @ omega + a @ H**order @ a)


def scipy_flow_series(target: Target, W0, ts, *, rtol: float = 1e-6, atol: float = 1e-6, method: str = "RK45"):
    """:func:`scipy_flow` saving at every time of ``ts`` (``solve_ivp``'s ``t_eval``) and computing
    the loss there in NumPy (:func:`numpy_loss`): the time series a NumPy user would produce.
    Returns ``(loss (B, K), nfev (B,))``."""
    from scipy.integrate import solve_ivp

    W0 = np.asarray(W0, float)
    if W0.ndim == 2:
        W0 = W0[None]
    B, d, m = W0.shape
    ts = np.asarray(ts, float)
    a, U = np.asarray(target.a, float), np.asarray(target.U, float)
    f = numpy_lognorm_rhs(a, U, target.order, m)
    loss, nfev = np.empty((B, ts.shape[0])), np.empty(B, int)
    for b in range(B):
        omega = (W0[b] ** 2).sum(axis=0)
        y0 = np.concatenate([0.5 * np.log(omega), (W0[b] / np.sqrt(omega)).ravel()])
        sol = solve_ivp(f, (0.0, ts[-1]), y0, method=method, rtol=rtol, atol=atol, t_eval=ts)
        if sol.status != 0:
            raise RuntimeError(f"solve_ivp failed for seed {b}: {sol.message}")
        for k in range(ts.shape[0]):
            y = sol.y[:, k]
            ubar = y[m:].reshape(d, m)
            loss[b, k] = numpy_loss(np.exp(y[:m]) * ubar / np.sqrt((ubar**2).sum(axis=0)), a, U, target.order)
        nfev[b] = sol.nfev
    return loss, nfev
