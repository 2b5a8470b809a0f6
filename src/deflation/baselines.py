"""The tensor deflation baseline: Algorithm 1 of the paper with the tensor power method
(Anandkumar, Ge, Hsu, Kakade, Telgarsky 2014, "Tensor decompositions for learning latent
variable models", Algorithm 1 there).

Algorithm 1 (paper Section 3): start from the residual ``R = T*``; while components remain to be
found, find a best rank-1 approximation ``lam v^{(x)p}`` of ``R`` by power iteration
``v <- R(v^{p-1}, I) / |R(v^{p-1}, I)|`` from several random starts, keep the start with the
largest ``R(v^p)``, take the weight ``lam = R(v^p)`` (the least-squares weight for a unit ``v``),
and deflate ``R <- R - lam v^{(x)p}``. In the model's parametrization ``w^{(x)p} / |w|^{p-2}`` the
component is ``w = sqrt(lam) v``.

Everything is computed from inner products (never a d^p array):
``R(v^{p-1}, I) = U (a * (U^T v)^{p-1}) - V (lam * (V^T v)^{p-1})`` with the found components ``V``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _validate as check
from .init import unit_columns
from .target import Target


def _contract(U, a, V, lam, Q, p):
    """``(R(q^p), R(q^{p-1}, I))`` for every column ``q`` of ``Q``, ``R = sum a u^p - sum lam v^p``."""
    CU, CV = U.T @ Q, V.T @ Q  # (r, n), (k, n)
    vec = U @ (a[:, None] * CU ** (p - 1)) - V @ (lam[:, None] * CV ** (p - 1))
    return jnp.sum(Q * vec, axis=0), vec


@partial(jax.jit, static_argnames=("p", "iterations"))
def _power_iteration(U, a, V, lam, Q0, p: int, iterations: int):
    """Run ``iterations`` power steps from every column of ``Q0``; return the best unit vector and
    its value ``R(v^p)`` (the restart with the largest value, Anandkumar et al. 2014, Alg. 1)."""

    def step(_, Q):
        _, vec = _contract(U, a, V, lam, Q, p)
        norm = jnp.linalg.norm(vec, axis=0, keepdims=True)
        # a start with R(q^{p-1}, I) = 0 is a fixed point; keep it (its value is 0, it never wins)
        return jnp.where(norm > 0, vec / jnp.where(norm > 0, norm, 1.0), Q)

    Q = jax.lax.fori_loop(0, iterations, step, Q0)
    values, _ = _contract(U, a, V, lam, Q, p)
    best = jnp.argmax(values)
    return Q[:, best], values[best]


def residual_norm(target: Target, weights, components) -> float:
    """``|T* - sum_k weights_k v_k^{(x)p}|_F`` from Gram matrices (float route)."""
    p = target.order
    U, a = np.asarray(target.U), np.asarray(target.a)
    V, lam = np.asarray(components), np.asarray(weights)
    sq = a @ (U.T @ U) ** p @ a - 2 * a @ (U.T @ V) ** p @ lam + lam @ (V.T @ V) ** p @ lam
    return float(np.sqrt(max(sq, 0.0)))


def tensor_power_deflation(
    target: Target,
    key: jax.Array,
    *,
    n_components: int | None = None,
    restarts: int = 10,
    iterations: int = 100,
) -> tuple[Float[Array, " k"], Float[Array, "d k"]]:
    """Algorithm 1 (tensor deflation) with the tensor power method as the rank-1 step.

    Args:
        target: the ground truth ``T*``.
        key: PRNG key; the random starts of step ``k`` are drawn from ``fold_in(key, k)``.
        n_components: how many components to extract; ``None`` means ``target.r``. Extraction
            stops early if the best start has ``R(v^p) <= 0`` (nothing left that a component
            ``w^{(x)p}/|w|^{p-2}`` with positive weight can reduce).
        restarts: random starts per component (>= 1).
        iterations: power iterations per start (>= 1).

    Returns:
        ``(weights (k,), components (d, k))`` in the order found: unit vectors ``v_k`` and
        weights ``lam_k = R_k(v_k^p)``, so that ``T* ~ sum_k lam_k v_k^{(x)p}``
        (model columns ``w_k = sqrt(lam_k) v_k``).
    """
    if not isinstance(target, Target):
        raise TypeError(f"target must be a deflation.Target, got {type(target).__name__}")
    n = target.r if n_components is None else check.integer("n_components", n_components, 1)
    restarts = check.integer("restarts", restarts, 1)
    iterations = check.integer("iterations", iterations, 1)
    key = jnp.asarray(key)
    if not (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or (key.dtype == jnp.uint32 and key.shape == (2,))):
        raise TypeError(f"key must be a jax.random key (e.g. jax.random.PRNGKey(0)), got dtype {key.dtype} shape {key.shape}")
    d, p = target.d, target.order
    dtype = target.U.dtype
    V = jnp.zeros((d, n), dtype)  # padded with zero weights: one compiled power iteration for every k
    lam = jnp.zeros((n,), dtype)
    found = 0
    for k in range(n):
        Q0 = unit_columns(jax.random.fold_in(key, k), d, restarts, dtype)
        v, value = _power_iteration(target.U, target.a, V, lam, Q0, p, iterations)
        if not float(value) > 0:
            break
        V = V.at[:, k].set(v)
        lam = lam.at[k].set(value)
        found += 1
    return lam[:found], V[:, :found]
