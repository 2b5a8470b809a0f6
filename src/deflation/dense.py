"""Dense d^p arrays of ``T*`` and ``T``, for checks at small d.

Nothing in the simulator uses them: every computation goes through the Gram-matrix
contractions of :mod:`deflation.contract`. They exist so that tests, notebooks and users can
compare with the plain definition ``sum_j weights_j x_j^{(x)p}`` when ``d^p`` is small.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float

#: Largest array built unless told otherwise (bytes).
DENSE_MAX_BYTES = 2**30


def split_norms_plain(W):
    """``(omega, Wbar)`` with ``omega_j = |w_j|^2`` and unit columns (0 for a zero column)."""
    omega = jnp.sum(W * W, axis=-2)
    norm = jnp.sqrt(omega)[..., None, :]
    return omega, jnp.where(norm > 0, W / jnp.where(norm > 0, norm, 1.0), 0.0)


def dense_power_sum(X: ArrayLike, weights: ArrayLike, order: int,
                    max_bytes: int = DENSE_MAX_BYTES) -> Float[Array, "..."]:  # noqa: UP037  (a jaxtyping shape, not a forward reference)
    """The d^p array ``sum_j weights_j x_j^{(x)p}`` (small d only).

    Raises ``ValueError`` when the array would take more than ``max_bytes``.
    """
    X = jnp.asarray(X)
    d, m = X.shape
    itemsize = np.dtype(X.dtype).itemsize
    need = itemsize * d**order
    if need > max_bytes:
        raise ValueError(
            f"dense tensor of shape ({d},)*{order} needs {need / 2**20:.1f} MiB, more than "
            f"max_bytes = {max_bytes / 2**20:.1f} MiB; use the Gram-matrix functions instead"
        )
    chunk = max(1, int(max_bytes // (2 * need)))
    total = jnp.zeros((d,) * order, X.dtype)
    weights = jnp.asarray(weights, X.dtype)
    for start in range(0, m, chunk):
        Xc = X[:, start : start + chunk]
        P = Xc
        for _ in range(order - 1):
            P = (P[:, None, :] * Xc[None, :, :]).reshape(-1, Xc.shape[1])
        total = total + (P @ weights[start : start + chunk]).reshape((d,) * order)
    return total


def dense_model(W: ArrayLike, order: int, max_bytes: int = DENSE_MAX_BYTES) -> Float[Array, "..."]:  # noqa: UP037  (a jaxtyping shape, not a forward reference)
    """The d^p array of ``T = sum_j w_j^{(x)p} / |w_j|^{p-2}`` (small d only)."""
    omega, Wbar = split_norms_plain(jnp.asarray(W))
    return dense_power_sum(Wbar, omega, order, max_bytes)
