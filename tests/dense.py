"""Independent dense-tensor route for tests: build the d^p arrays explicitly (small d only)."""

import jax.numpy as jnp
import numpy as np


def outer_power(v, p):
    """v^{(x)p} as a d^p array."""
    out = v
    for _ in range(p - 1):
        out = jnp.multiply.outer(out, v)
    return out


def dense_T(W, p):
    """sum_j w_j^{(x)p} / |w_j|^{p-2}."""
    total = 0.0
    for j in range(W.shape[1]):
        w = W[:, j]
        total = total + outer_power(w, p) / jnp.linalg.norm(w) ** (p - 2)
    return total


def dense_symmetric(W, p, q):
    """sum_j |w_j|^q (w_j/|w_j|)^{(x)p}, column by column (q = 2: :func:`dense_T`)."""
    total = 0.0
    for j in range(W.shape[1]):
        w = W[:, j]
        n = jnp.linalg.norm(w)
        total = total + n**q * outer_power(w / n, p)
    return total


def dense_Tstar(a, U, p):
    total = 0.0
    for i in range(U.shape[1]):
        total = total + a[i] * outer_power(U[:, i], p)
    return total


def dense_loss(W, a, U, p, lam=0.0):
    R = dense_T(W, p) - dense_Tstar(a, U, p)
    return 0.5 * jnp.sum(R * R) + 0.5 * lam * jnp.sum(W * W)


def contract_all(Tens, v):
    """Tens(v, v, ..., v)."""
    out = Tens
    while out.ndim:
        out = out @ v
    return out


def random_unit_columns(rng, d, r):
    U = rng.standard_normal((d, r))
    return U / np.linalg.norm(U, axis=0)


def dense_rank_one_sum(a, factors):
    """sum_i a_i u_i^(1) (x) ... (x) u_i^(p) as a d^p array (one factor matrix per mode)."""
    total = 0.0
    for i in range(factors[0].shape[1]):
        term = a[i] * factors[0][:, i]
        for F in factors[1:]:
            term = jnp.multiply.outer(term, F[:, i])
        total = total + term
    return total
