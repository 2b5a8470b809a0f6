"""A state's checks: its shape against the target and the one dtype they compute in."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as check
from .contract import sum_rows
from .target import Target, as_target


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


def normalize(ubar: Any) -> jax.Array:
    """Columns of ``ubar`` scaled to unit length (the integrator lets them drift by O(tol))."""
    return ubar / jnp.sqrt(sum_rows(ubar * ubar))[..., None, :]
