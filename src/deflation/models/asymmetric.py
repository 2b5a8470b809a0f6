"""The asymmetric CP model ``T = sum_j w_j^(1) (x) ... (x) w_j^(p)``: one factor matrix per mode.

The state is a tuple ``(W_1, ..., W_p)`` of ``(d_k, m)`` matrices, fitted to a general target
``T* = sum_i a_i u_i^(1) (x) ... (x) u_i^(p)`` (Razin, Maman, Cohen, ICML 2021; at ``p = 2`` it is
matrix factorization ``W_1 W_2^T``). The target's factor matrices are ``target.factors`` when it
has them, else ``(U, ..., U)`` (a symmetric target). With the Gram matrices
``G_k = W_k^T W_k``, ``C_k = U_k^T W_k``, ``H_k = U_k^T U_k`` and ``*`` the entrywise product::

    |T - T*|_F^2 = 1^T (*_k G_k) 1 - 2 a^T (*_k C_k) 1 + a^T (*_k H_k) a,
    dW_k/dt = -grad_{W_k} L = U_k (a * (*_{l != k} C_l)) - W_k (*_{l != k} G_l) - lam W_k,

``O(p m^2 d + p m r d)`` per evaluation. In log-norm coordinates ``w_j^(k) = exp(rho_jk) ubar_jk``,
with ``s_j = sum_k rho_jk`` the log-size of term ``j``, the same flow reads exactly::

    g_k = e^{s - 2 rho_k} (U_k (a * (*_{l != k} Cbar_l)) - Ubar_k (e^{s} * (*_{l != k} Gbar_l))),
    d rho_k/dt = <ubar_k, g_k> - lam,     d ubar_k/dt = g_k - <ubar_k, g_k> ubar_k

(bars: Gram matrices of the unit columns; ``e^{s - 2 rho_k}`` and ``e^{s}`` act column-wise). From
a balanced start at ``delta0`` per factor the factor ``e^{s - 2 rho_k} = delta0^{p-2}``: as for the
plain model, the escape takes a time ``~ delta0^{-(p-2)}`` at order 3 or more.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ..contract import sum_rows
from ..init import sample_sphere
from ..state import check_W
from .base import AbstractModel


def target_factors(target: Any) -> tuple[jax.Array, ...]:
    """The target's factor matrices ``(U_1, ..., U_p)``: its own, or ``(U,) * p`` when symmetric."""
    factors = getattr(target, "factors", None)
    return tuple(factors) if factors is not None else (target.U,) * target.order


def _product(mats, skip: int | None = None):
    out = None
    for k, M in enumerate(mats):
        if k != skip:
            out = M if out is None else out * M
    return out


def _others(mats):
    """``*_{l != k} M_l`` for every ``k``."""
    return [_product(mats, skip=k) for k in range(len(mats))]


class Asymmetric(AbstractModel):
    """``T = sum_j w_j^(1) (x) ... (x) w_j^(p)`` with state ``(W_1, ..., W_p)`` (module docstring)."""

    name: ClassVar[str] = "asymmetric"

    def check_state(self, name: str, W: Any, target: Any, batch: bool = False) -> tuple[jax.Array, ...]:
        """A tuple of ``p`` factor matrices, each ``(d, m)`` with one ``m``."""
        if not isinstance(W, (tuple, list)) or len(W) != target.order:
            raise TypeError(f"{name} must be a tuple of {target.order} factor matrices (d, m) for the asymmetric "
                            f"model at order {target.order}, got {type(W).__name__}"
                            + (f" of length {len(W)}" if isinstance(W, (tuple, list)) else ""))
        out = tuple(check_W(f"{name}[{k}]", Wk, target, batch) for k, Wk in enumerate(W))
        widths = {Wk.shape[-1] for Wk in out}
        if len(widths) > 1:
            raise ValueError(f"{name}'s factor matrices must have one number of columns m, got {sorted(widths)}")
        return out

    def loss(self, W: Any, target: Any, lam: Any = 0.0, *, precise: bool | None = None) -> jax.Array:
        """The Gram formula in floating point (``precise`` is accepted and ignored: this model has
        no double-double route yet, so the loss is noise below ``~1e-16 |T*|^2``)."""
        U = target_factors(target)
        a = target.a
        t_model = jnp.sum(_product([Wk.T @ Wk for Wk in W]))
        t_cross = a @ jnp.sum(_product([Uk.T @ Wk for Uk, Wk in zip(U, W)]), axis=1)
        t_target = a @ _product([Uk.T @ Uk for Uk in U]) @ a
        reg = sum(jnp.sum(Wk * Wk) for Wk in W)
        return 0.5 * (t_model - 2 * t_cross + t_target) + 0.5 * lam * reg

    def residual(self, W: Any, target: Any, V: Any, *, precise: bool = True) -> jax.Array:
        """``(T* - T)(v^(1), ..., v^(p))`` for every column of the probes ``V = (V_1, ..., V_p)``
        (a single ``(d, k)`` array is used on every mode)."""
        U = target_factors(target)
        V = tuple(V) if isinstance(V, (tuple, list)) else (V,) * target.order
        truth = _product([Vk.T @ Uk for Vk, Uk in zip(V, U)]) @ target.a
        model = jnp.sum(_product([Vk.T @ Wk for Vk, Wk in zip(V, W)]), axis=1)
        return truth - model

    def velocity(self, W: Any, target: Any, lam: Any = 0.0) -> tuple[jax.Array, ...]:
        U = target_factors(target)
        P = _others([Wk.T @ Wk for Wk in W])
        Q = _others([Uk.T @ Wk for Uk, Wk in zip(U, W)])
        return tuple(Uk @ (target.a[:, None] * Qk) - Wk @ Pk - lam * Wk for Uk, Wk, Pk, Qk in zip(U, W, P, Q))

    def lognorm_field(self, state: tuple[Any, Any], target: Any, lam: Any,
                      frozen: bool = False) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
        """The flow in log-norm coordinates ``((rho_1..rho_p), (ubar_1..ubar_p))`` (module
        docstring). ``frozen``: ``R`` frozen at ``T*`` (the model's terms dropped)."""
        rho, ubar = state
        U = target_factors(target)
        u = [ub / jnp.sqrt(sum_rows(ub * ub))[None, :] for ub in ubar]
        s = sum(rho)
        Cb = _others([Uk.T @ uk for Uk, uk in zip(U, u)])
        Gb = _others([uk.T @ uk for uk in u])
        drho, du = [], []
        for k in range(len(u)):
            g = U[k] @ (target.a[:, None] * Cb[k])
            if not frozen:
                g = g - u[k] @ (jnp.exp(s)[:, None] * Gb[k])
            g = jnp.exp(s - 2 * rho[k])[None, :] * g
            proj = sum_rows(u[k] * g)
            drho.append(proj - lam)
            du.append(g - proj[None, :] * u[k])
        return tuple(drho), tuple(du)

    def dense(self, W: Any, order: int) -> jax.Array:
        W = [jnp.asarray(Wk) for Wk in W]
        total = W[0]
        for Wk in W[1:]:
            total = total[..., None, :] * Wk.reshape((1,) * (total.ndim - 1) + Wk.shape)
        return jnp.sum(total, axis=-1)

    def init(self, key: jax.Array, d: int, m: int, scale: float, order: int) -> tuple[jax.Array, ...]:
        """``order`` factor matrices (d, m), columns i.i.d. ``scale * Unif(S^{d-1})``, one key per mode
        (``fold_in(key, k)``): each rank-one term starts at size ``scale^p``."""
        return tuple(sample_sphere(jax.random.fold_in(key, k), d, m, scale) for k in range(order))
