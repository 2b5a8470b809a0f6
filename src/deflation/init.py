"""Random initialization ``delta0 Unif(S^{d-1})`` (paper Section 2 notation, Algorithm 2).

Every draw takes an explicit key. Batches derive seed ``k``'s key as ``fold_in(key, k)``, so a
seed's draw never depends on the batch size, the chunking or the device count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _validate as check


def unit_columns(key: jax.Array, d: int, m: int, dtype=jnp.float64) -> Float[Array, "d m"]:
    """``m`` columns i.i.d. uniform on the unit sphere ``S^{d-1}`` (normalized Gaussians)."""
    g = jax.random.normal(key, (d, m), dtype=dtype)
    return g / jnp.linalg.norm(g, axis=0, keepdims=True)


def orthonormal_columns(key: jax.Array, d: int, r: int, dtype=jnp.float64) -> Float[Array, "d r"]:
    """``r <= d`` orthonormal columns, uniformly (Haar) distributed: the Q factor of a Gaussian
    matrix, with the sign convention that makes it Haar (diagonal of R positive)."""
    g = jax.random.normal(key, (d, r), dtype=dtype)
    q, rr = jnp.linalg.qr(g)
    return q * jnp.sign(jnp.diagonal(rr))[None, :]


def equiangular_columns(d: int, r: int, c) -> Float[Array, "d r"]:
    """``r`` unit columns in ``R^d`` with ``<u_i, u_j> = c`` for ``i != j``: ``I[:, :r] L^T`` with
    ``L`` the Cholesky factor of ``(1 - c) I + c 1 1^T`` (``c`` may be traced)."""
    gram = (1.0 - c) * jnp.eye(r) + c * jnp.ones((r, r))
    L = jnp.linalg.cholesky(gram)
    return jnp.zeros((d, r), L.dtype).at[:r, :].set(L.T)


def sample_sphere(key: jax.Array, d: int, m: int, scale: float, dtype=jnp.float64) -> Float[Array, "d m"]:
    """``W`` (d, m) with columns i.i.d. from ``scale * Unif(S^{d-1})``.

    For scales below ~1e-300 (where ``W`` itself underflows) draw the directions with
    :func:`unit_columns` and pass ``(log(scale) * ones(m), directions)`` to ``gradient_flow``.
    """
    d = check.integer("d", d, 1)
    m = check.integer("m", m, 1)
    scale = check.positive("scale", scale)
    return scale * unit_columns(key, d, m, dtype)


def seed_keys(key: jax.Array, seeds) -> jax.Array:
    """Keys ``fold_in(key, k)`` for every seed index ``k`` in ``seeds`` (integers in
    ``[0, 2^32 - 1]``, checked when concrete: a larger or negative index would wrap around to
    another seed's key, a fractional one be truncated)."""
    if check.is_concrete(seeds):
        arr = np.asarray(seeds)
        big_ints = arr.dtype == object and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool)
                                               for x in arr.ravel())
        if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or big_ints or arr.size == 0):
            raise TypeError(f"seeds must be a sequence of integer seed indices, got {arr.dtype} array of shape "
                            f"{arr.shape}")
        bad = np.array([not 0 <= int(x) <= check.SEED_LIMIT for x in arr]) if big_ints else \
            (arr < 0) | (arr > check.SEED_LIMIT)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"seeds[{i}] must be an integer in [0, {check.SEED_LIMIT}] (a 32-bit seed index), "
                             f"got {int(arr[i])}")
        seeds = arr.astype(np.uint32)
    return jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.asarray(seeds, dtype=jnp.uint32))


def sample_sphere_batch(key: jax.Array, seeds, d: int, m: int, scale: float,
                        dtype=jnp.float64) -> Float[Array, "B d m"]:
    """A batch (B, d, m): seed ``k``'s matrix is ``sample_sphere(fold_in(key, k), d, m, scale)``."""
    d = check.integer("d", d, 1)
    m = check.integer("m", m, 1)
    scale = check.positive("scale", scale)
    keys = seed_keys(key, seeds)
    return jax.vmap(lambda k: scale * unit_columns(k, d, m, dtype))(keys)
