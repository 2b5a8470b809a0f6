"""The loss, its gradient flow and the tensor-power dynamics, as pure functions.

Notation (paper Section 2): ``T* = sum_i a_i u_i^{(x)p}``, ``T = sum_j w_j^{(x)p} / |w_j|^{p-2}``,
``R = T* - T``, ``L(W) = 1/2 |T - T*|_F^2 + lam/2 |W|_F^2`` (Section 4).

Gradient flow ``dW/dt = -grad L`` is, column by column (the paper takes p = 4)::

    dw/dt = p R(wbar^{p-2}, w, I) - (p-2) R(wbar^p) w - lam w.

In log-norm coordinates ``w = exp(rho) ubar`` (``|ubar| = 1``) the same flow reads exactly::

    d rho/dt = 2 R(ubar^p) - lam,        d ubar/dt = p (I - ubar ubar^T) R(ubar^{p-1}, I),

every entry O(1) whatever the scale of ``w``: an initialization of 1e-15, 1e-100 or Theorem 1's
``delta0`` (far below 1e-30) integrates with full relative accuracy, and a small column's direction
is resolved even while others are large. Freezing ``R`` at ``T*`` gives the tensor-power dynamics of
paper Eq. (1).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from . import _validate as check
from .contract import (
    column_norms,
    frozen_residual_vectors,
    residual_norm_sq,
    residual_on,
    residual_vectors,
    split_norms,
    sum_rows,
)
from .target import Target, as_target

LogNormState = tuple[Float[Array, "*B m"], Float[Array, "*B d m"]]


def working_dtype(name: str, dtype: Any, target: Target) -> np.dtype:
    """The one floating dtype in which an array ``name`` of dtype ``dtype`` and ``target`` are
    computed together: NumPy/JAX promotion of the floating dtypes among ``dtype``, ``target.a``
    and ``target.U`` (an integer ``dtype`` counts as the default float, float64). So a float32
    ``W0`` with a float64 target (every built-in constructor) runs in float64, and a float32 one
    with a float32 target in float32.

    Raises:
        TypeError: ``dtype`` is not a real dtype, or the promotion is narrower than float32
            (float16, bfloat16: the double-double loss and the solver tolerances need at least
            float32), naming both dtypes.
    """
    dtype = np.dtype(dtype)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"{name} must be a real (floating or integer) array, got dtype {dtype}")
    kinds = [dt for dt in (dtype, target.a.dtype, target.U.dtype) if jnp.issubdtype(dt, jnp.floating)]
    out = np.dtype(jnp.result_type(*kinds)) if kinds else np.dtype(jnp.result_type(float))
    if jnp.finfo(out).bits < 32:
        raise TypeError(
            f"{name} has dtype {dtype} and the target a: {target.a.dtype}, U: {target.U.dtype}, which compute "
            f"in {out}; the package computes in float32 or float64: pass {name} or the target in float32 or float64"
        )
    return out


def check_W(name: str, W: Any, target: Target, batch: bool = False) -> jax.Array:
    """Check shape (and, when concrete, finiteness) of a (d, m) [or (B, d, m)] state against
    ``target``; return it as a JAX array of :func:`working_dtype` (integers become floats)."""
    as_target(target)
    ndims = (2, 3) if batch else (2,)
    shape = jnp.shape(W)
    if len(shape) not in ndims:
        want = "(d, m) or (B, d, m)" if batch else "(d, m)"
        raise ValueError(f"{name} must have shape {want}, got shape {shape}")
    if shape[-2] != target.d:
        raise ValueError(
            f"{name} has {shape[-2]} rows but the target lives in d = {target.d} dimensions "
            f"({name} must be (d, m) with d = U.shape[0])"
        )
    if shape[-1] < 1:
        raise ValueError(f"{name} must have m >= 1 columns, got shape {shape}")
    W = jnp.asarray(W)
    W = W.astype(working_dtype(name, W.dtype, target))
    if check.is_concrete(W):
        check.finite_array(name, jax.device_get(W))
    return W


def _check_lam(lam: Any) -> Any:
    if check.is_concrete(lam):
        check.nonnegative("lam", lam)
    return lam


# ---------------------------------------------------------------------------- loss and residual


def loss(W: ArrayLike, target: Target, lam: Any = 0.0, *, precise: bool | None = None) -> Float[Array, ""]:
    """``L(W) = 1/2 |T - T*|_F^2 + lam/2 |W|_F^2`` (paper Section 4), without forming T.

    Args:
        W: the columns of ``W`` (d, m), any real array-like.
        target: the ground truth.
        lam: the regularization coefficient (>= 0).
        precise: compute ``|T - T*|^2`` in double-double arithmetic (accurate to ``~1e-30 |T*|^2``)
            instead of the float Gram formula (which is noise below ``~1e-16 |T*|^2``). ``None``:
            precise when ``d m (m + r) <= 2^22``.
    """
    W = check_W("W", W, target)
    lam = _check_lam(lam)
    sq, _ = residual_norm_sq(W, None, target, precise)  # weights |w_j|^2 from W itself
    return 0.5 * sq + 0.5 * lam * jnp.sum(W * W)


def residual(W: ArrayLike, target: Target, V: ArrayLike, *, precise: bool = True) -> Float[Array, " k"]:
    """``(T* - T)(v^{(x)p})`` for every column ``v`` of ``V`` (paper Figure 1, right panel, for V = U).

    ``precise=True`` sums in double-double arithmetic, so a fitted direction's residual is
    accurate to ~1e-30 rather than ~1e-16.
    """
    W = check_W("W", W, target)
    V = jnp.asarray(V)
    if V.ndim != 2 or V.shape[0] != target.d:
        raise ValueError(f"V must have shape (d, k) with d = {target.d}, got shape {V.shape}")
    V = V.astype(working_dtype("V", V.dtype, target))
    if check.is_concrete(V):
        check.finite_array("V", jax.device_get(V))
    omega, Wbar = split_norms(W)
    return residual_on(Wbar, omega, target, V, precise=precise)


# ---------------------------------------------------------------------------- velocities


def velocity(W: ArrayLike, target: Target, lam: Any = 0.0) -> Float[Array, "d m"]:
    """``-grad_W L`` = ``p R(wbar^{p-2}, w, I) - (p-2) R(wbar^p) w - lam w`` (for the
    paper's p = 4: ``4R(wbar^2,w,I) - 2R(wbar^4)w - lam w``), in O(m^2 d + m r d)."""
    W = check_W("W", W, target)
    lam = _check_lam(lam)
    p = target.order
    omega, norm, _, Wbar = column_norms(W)
    Rp, Rvec = residual_vectors(Wbar, omega, target)
    return norm * (p * Rvec - (p - 2) * Rp * Wbar) - lam * W


def tensor_power_velocity(W: ArrayLike, target: Target, lam: Any = 0.0) -> Float[Array, "d m"]:
    """Paper Eq. (1) with ``R`` frozen at ``T*``: ``p T*(wbar^{p-2}, w, I) - (p-2) T*(wbar^p) w - lam w``.

    The columns decouple; this is the model of Phase 1 (Section 3).
    """
    W = check_W("W", W, target)
    lam = _check_lam(lam)
    p = target.order
    _, norm, _, Wbar = column_norms(W)
    Rp, Rvec = frozen_residual_vectors(Wbar, target)
    return norm * (p * Rvec - (p - 2) * Rp * Wbar) - lam * W


# ---------------------------------------------------------------------------- log-norm coordinates


def to_lognorm(W: Float[Array, "*B d m"]) -> LogNormState:
    """``(rho, ubar)`` with ``w_j = exp(rho_j) ubar_j``; a zero column gets ``rho = -inf``.

    Accurate for every finite ``W``, whatever its scale (each column is scaled by its largest entry
    where ``|w|^2`` would underflow or overflow, see :func:`deflation.contract.column_norms`):
    ``rho`` is finite for every non-zero column, down to entries of 5e-324.
    """
    _, _, log_norm, Wbar = column_norms(W)
    return log_norm, Wbar


def normalize(ubar: Float[Array, "*B d m"]) -> Float[Array, "*B d m"]:
    """Columns of ``ubar`` scaled to unit length (the integrator lets them drift by O(tol))."""
    return ubar / jnp.sqrt(sum_rows(ubar * ubar))[..., None, :]


def from_lognorm(rho: Float[Array, "*B m"], ubar: Float[Array, "*B d m"]) -> Float[Array, "*B d m"]:
    """``W`` from log-norm coordinates."""
    return jnp.exp(rho)[..., None, :] * normalize(ubar)


def lognorm_vector_field(state: LogNormState, target: Target, lam, frozen: bool = False) -> LogNormState:
    """The gradient flow (or, with ``frozen=True``, the tensor-power dynamics) in log-norm coordinates.

    ``d rho/dt = 2 R(u^p) - lam`` and ``du/dt = p (R(u^{p-1}, I) - R(u^p) u)`` with ``u`` the
    normalized ``ubar``; exact (no small-norm approximation), O(1) entries at any scale.
    """
    rho, ubar = state
    u = normalize(ubar)
    if frozen:
        Rp, Rvec = frozen_residual_vectors(u, target)
    else:
        Rp, Rvec = residual_vectors(u, jnp.exp(2.0 * rho), target)
    return 2.0 * Rp - lam, target.order * (Rvec - Rp * u)
