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
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from . import _validate as check
from .contract import column_norms
from .models import AbstractModel, as_model
from .state import check_W, normalize, working_dtype  # noqa: F401  (check_W: re-exported for flow, baselines)
from .target import Target, as_target

LogNormState = tuple[Float[Array, "*B m"], Float[Array, "*B d m"]]
#: The log-norm state of a model of several factor matrices (the asymmetric one): one ``rho`` and
#: one ``ubar`` per mode.
FactorLogNormState = tuple[tuple[Float[Array, "*B m"], ...], tuple[Float[Array, "*B d m"], ...]]


def _check_lam(lam: Any) -> Any:
    if check.is_concrete(lam):
        check.nonnegative("lam", lam)
    return lam


# ---------------------------------------------------------------------------- loss and residual

#: ``model=`` of every public function: a name (``"normalized"``, ``"plain"``, ``"asymmetric"``) or a
#: :mod:`deflation.models` model; the default is the paper's normalized model.
DEFAULT_MODEL = "normalized"


def loss(W: Any, target: Target, lam: Any = 0.0, *, precise: bool | None = None,
         model: Any = DEFAULT_MODEL) -> Float[Array, ""]:
    """``L(W) = 1/2 |T - T*|_F^2 + lam/2 |W|_F^2`` (paper Section 4), without forming T.

    Args:
        W: the model's state: for the symmetric models ``W`` (d, m), any real array-like; for
            ``"asymmetric"`` a tuple of ``p`` factor matrices (d, m).
        target: the ground truth.
        lam: the regularization coefficient (>= 0).
        precise: compute ``|T - T*|^2`` in double-double arithmetic (accurate to ``~1e-30 |T*|^2``)
            instead of the float Gram formula (which is noise below ``~1e-16 |T*|^2``). ``None``:
            precise when ``d m (m + r) <= 2^22``.
        model: which ``T(W)`` (:mod:`deflation.models`); default the paper's
            ``T = sum_j w_j^{(x)p} / |w_j|^{p-2}``.
    """
    model = as_model(model)
    W = model.check_state("W", W, as_target(target))
    lam = _check_lam(lam)
    return model.loss(W, target, lam, precise=precise)


def residual(W: Any, target: Target, V: ArrayLike, *, precise: bool = True,
             model: Any = DEFAULT_MODEL) -> Float[Array, " k"]:
    """``(T* - T)(v^{(x)p})`` for every column ``v`` of ``V`` (paper Figure 1, right panel, for V = U).

    ``precise=True`` sums in double-double arithmetic, so a fitted direction's residual is
    accurate to ~1e-30 rather than ~1e-16 (the symmetric models; the asymmetric model sums in
    floating point).
    """
    model = as_model(model)
    W = model.check_state("W", W, as_target(target))
    V = jnp.asarray(V)
    if V.ndim != 2 or V.shape[0] != target.d:
        raise ValueError(f"V must have shape (d, k) with d = {target.d}, got shape {V.shape}")
    V = V.astype(working_dtype("V", V.dtype, target))
    if check.is_concrete(V):
        check.finite_array("V", jax.device_get(V))
    return model.residual(W, target, V, precise=precise)


# ---------------------------------------------------------------------------- velocities


def velocity(W: Any, target: Target, lam: Any = 0.0, *, model: Any = DEFAULT_MODEL) -> Any:
    """``-grad_W L``, in O(m^2 d + m r d): for the normalized model ``p R(wbar^{p-2}, w, I) -
    (p-2) R(wbar^p) w - lam w`` (for the paper's p = 4: ``4R(wbar^2,w,I) - 2R(wbar^4)w - lam w``);
    the other models' fields are in :mod:`deflation.models`."""
    model = as_model(model)
    W = model.check_state("W", W, as_target(target))
    lam = _check_lam(lam)
    return model.velocity(W, target, lam)


def tensor_power_velocity(W: ArrayLike, target: Target, lam: Any = 0.0, *,
                          model: Any = DEFAULT_MODEL) -> Float[Array, "d m"]:
    """Paper Eq. (1) with ``R`` frozen at ``T*``: ``p T*(wbar^{p-2}, w, I) - (p-2) T*(wbar^p) w - lam w``
    (the normalized model; a symmetric model's frozen field in general).

    The columns decouple; this is the model of Phase 1 (Section 3).
    """
    model = as_model(model)
    frozen = getattr(model, "frozen_velocity", None)
    if frozen is None:
        raise ValueError(f"model {model.name!r} has no tensor-power (frozen) form; the symmetric models have one")
    W = model.check_state("W", W, as_target(target))
    lam = _check_lam(lam)
    return frozen(W, target, lam)


# ---------------------------------------------------------------------------- log-norm coordinates


def to_lognorm(W: Float[Array, "*B d m"]) -> LogNormState:
    """``(rho, ubar)`` with ``w_j = exp(rho_j) ubar_j``; a zero column gets ``rho = -inf``.

    Accurate for every finite ``W``, whatever its scale (each column is scaled by its largest entry
    where ``|w|^2`` would underflow or overflow, see :func:`deflation.contract.column_norms`):
    ``rho`` is finite for every non-zero column, down to entries of 5e-324.
    """
    _, _, log_norm, Wbar = column_norms(W)
    return log_norm, Wbar


def from_lognorm(rho: Float[Array, "*B m"], ubar: Float[Array, "*B d m"]) -> Float[Array, "*B d m"]:
    """``W`` from log-norm coordinates."""
    return jnp.exp(rho)[..., None, :] * normalize(ubar)


def lognorm_vector_field(state: LogNormState | FactorLogNormState, target: Target, lam, frozen: bool = False,
                         model: AbstractModel | None = None) -> LogNormState | FactorLogNormState:
    """The gradient flow (or, with ``frozen=True``, the tensor-power dynamics) in log-norm coordinates.

    For the normalized model (``model=None``) ``d rho/dt = 2 R(u^p) - lam`` and
    ``du/dt = p (R(u^{p-1}, I) - R(u^p) u)`` with ``u`` the normalized ``ubar``; exact (no
    small-norm approximation), O(1) entries at any scale. Other models: their ``lognorm_field``.
    """
    return as_model(DEFAULT_MODEL if model is None else model).lognorm_field(state, target, lam, frozen)
