"""Symmetric models: ``T = sum_j |w_j|^q wbar_j^{(x)p}``, one factor matrix ``W`` (d, m).

The paper's normalized model has ``q = 2`` (``T = sum_j w_j^{(x)p} / |w_j|^{p-2}``), the plain CP
model ``q = p`` (``T = sum_j w_j^{(x)p}``). With ``R = T* - T`` and ``wbar = w / |w|``, the gradient
flow of ``L = 1/2 |T - T*|_F^2 + lam/2 |W|_F^2`` is, column by column::

    dw/dt = |w|^{q-1} (p R(wbar^{p-1}, I) - (p - q) R(wbar^p) wbar) - lam w

(paper Section 4 for ``q = 2``: ``p R(wbar^{p-2}, w, I) - (p-2) R(wbar^p) w - lam w``), and in
log-norm coordinates ``w = exp(rho) ubar``, exactly::

    d rho/dt = q e^{(q-2) rho} R(ubar^p) - lam,    d ubar/dt = p e^{(q-2) rho} (I - ubar ubar^T) R(ubar^{p-1}, I).

For ``q = 2`` the factor ``e^{(q-2) rho}`` is 1: a column escapes a tiny norm ``delta0`` at a rate
that does not depend on ``delta0`` (time ``~ log(1/delta0)``). For ``q = p > 2`` it is
``|w|^{p-2}``: the escape takes a time ``~ delta0^{-(p-2)}`` (the "standard objective" the
paper's normalization speeds up). Everything goes through the Gram contractions of
:mod:`deflation.contract` with the weights ``omega_j = |w_j|^q``.
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp

from ..contract import (
    column_norms,
    frozen_residual_vectors,
    materialize,
    residual_norm_sq,
    residual_on,
    residual_vectors,
)
from ..dense import dense_power_sum
from ..init import sample_sphere
from ..state import check_W, normalize
from .base import AbstractModel
from .spectral import eigenpairs, misalignments


class SymmetricModel(AbstractModel):
    """``T = sum_j |w_j|^q wbar_j^{(x)p}`` with ``q = norm_power(p)``; ``W`` is (d, m).

    Definition 1 (paper Section 5.1) reads the same for every symmetric model. At order ``p >= 3``
    (``definition = "columns"``): column ``k`` joins ``S_i`` when ``|w_k| = delta1`` while
    ``wbar_{k,i}^2 >= 1 - alpha^2``; ``ahat_i = sum_{k in S_i} |w_k|^q`` (the weight of the column's
    rank-one term in ``T``); ``i`` is discovered when ``S_i`` is non-empty and fitted when its
    residual ``(T* - T)(u_i^p)`` falls to ``fit_fraction a_i`` (or, for a model with
    :attr:`~deflation.models.AbstractModel.fit_by_weight` and ``lam > 0``, when ``a_i - ahat_i <= 2 lam``).

    At order 2 (``definition = "spectral"``; ``T = W W^T`` for both ``q``) the slots are the
    eigenpairs ``(lam_k, v_k)`` of ``W W^T``, largest first
    (:func:`deflation.models.spectral.eigenpairs`, from the ``m x m`` Gram matrix):
    ``lam_k v_k v_k^T`` is the rank-one term
    ``w w^T`` with ``|w| = sqrt(lam_k)``. Slot ``k`` joins ``S_i`` at the first time at which
    ``lam_k >= delta1^2`` while ``<v_k, u_i>^2 >= 1 - alpha^2`` (a state, not a crossing: an
    eigenvector has no identity of its own across time, and the one that grows past ``delta1^2``
    turns towards ``u_i`` afterwards as often as before); ``ahat_i = sum_{k in S_i} lam_k``;
    ``i`` is discovered when ``S_i`` is non-empty and fitted as above, on the residual
    ``(T* - T)(u_i, u_i) = a_i - u_i^T W W^T u_i`` (or ``a_i - ahat_i <= 2 lam``), which depends
    on ``W W^T`` only. From ``|w| = delta0`` a component of weight ``a`` grows like
    ``e^{2 a t}`` (``dW/dt = 2 (T* - W W^T) W``), so it is discovered after
    ``~ log(delta1/delta0) / (2a)`` (leading order).
    """

    @abc.abstractmethod
    def norm_power(self, order: int) -> int:
        """``q``: the power of ``|w_j|`` that weighs column ``j``'s unit rank-one term in ``T``."""

    def check_state(self, name: str, W: Any, target: Any, batch: bool = False) -> jax.Array:
        return check_W(name, W, target, batch)

    def unit_weights(self, W: jax.Array, order: int) -> tuple[jax.Array, jax.Array]:
        """``(omega, Wbar)``: ``T = sum_j omega_j wbar_j^{(x)p}``, exact at every scale of ``W``."""
        omega, norm, _, Wbar = column_norms(W)
        q = self.norm_power(order)
        return (omega if q == 2 else norm**q), Wbar

    def loss(self, W: Any, target: Any, lam: Any = 0.0, *, precise: bool | None = None) -> jax.Array:
        if self.norm_power(target.order) == 2:  # the weights |x_j|^2 taken from W itself, in dd
            sq, _ = residual_norm_sq(W, None, target, precise)
        else:
            omega, Wbar = self.unit_weights(W, target.order)
            sq, _ = residual_norm_sq(Wbar, omega, target, precise)
        return 0.5 * sq + 0.5 * lam * jnp.sum(W * W)

    def residual(self, W: jax.Array, target: Any, V: jax.Array, *, precise: bool = True) -> jax.Array:
        """``(T* - T)(v^{(x)p})`` for every column ``v`` of ``V``."""
        omega, Wbar = self.unit_weights(W, target.order)
        return residual_on(Wbar, omega, target, V, precise=precise)

    def _field(self, norm, Rp, Rvec, Wbar, order):
        """``|w|^{q-1} (p Rvec - (p - q) Rp wbar)``."""
        q = self.norm_power(order)
        scale = norm if q == 2 else norm ** (q - 1)
        inner = order * Rvec if q == order else order * Rvec - (order - q) * Rp * Wbar
        return scale * inner

    def velocity(self, W: Any, target: Any, lam: Any = 0.0) -> jax.Array:
        omega, norm, _, Wbar = column_norms(W)
        q = self.norm_power(target.order)
        Rp, Rvec = residual_vectors(Wbar, omega if q == 2 else norm**q, target)
        return self._field(norm, Rp, Rvec, Wbar, target.order) - lam * W

    def frozen_velocity(self, W: Any, target: Any, lam: Any = 0.0) -> jax.Array:
        """The velocity with ``R`` frozen at ``T*`` (the tensor-power dynamics of paper Eq. 1 for
        the normalized model): the columns decouple."""
        _, norm, _, Wbar = column_norms(W)
        Rp, Rvec = frozen_residual_vectors(Wbar, target)
        return self._field(norm, Rp, Rvec, Wbar, target.order) - lam * W

    def lognorm_field(self, state: tuple[jax.Array, jax.Array], target: Any, lam: Any,
                      frozen: bool = False) -> tuple[jax.Array, jax.Array]:
        """The flow (``frozen``: the tensor-power dynamics) in log-norm coordinates ``(rho, ubar)``
        (module docstring), exact at every scale; ``ubar`` is normalized here."""
        rho, ubar = state
        p = target.order
        q = self.norm_power(p)
        u = normalize(ubar)
        if frozen:
            Rp, Rvec = frozen_residual_vectors(u, target)
        else:
            Rp, Rvec = residual_vectors(u, self.weights(rho, p), target)
        drho, du = float(q) * Rp, p * (Rvec - Rp * u)
        if q != 2:
            s = jnp.exp((q - 2) * rho)
            drho, du = s * drho, s[..., None, :] * du
        return drho - lam, du

    def column_log_sizes(self, state: tuple[jax.Array, jax.Array], order: int) -> jax.Array:
        """The log-norms ``rho``."""
        return state[0]

    def event_terms(self, state: tuple[jax.Array, jax.Array], target: Any, norm: bool):
        """Definition 1's slots (the class docstring): the columns (``log |w_j|``, ``wbar_j``), or
        at order 2 the eigenpairs of ``W W^T``; the residual ``(T* - T)(u_i^p)``."""
        rho, ubar = state
        u = normalize(ubar)
        omega = self.weights(rho, target.order)
        size, V = eigenpairs(rho, u) if self.definition(target.order) == "spectral" else (rho, u)
        mis = misalignments(V, target.U)
        res = residual_on(u, omega, target)
        if norm:
            sq, _ = residual_norm_sq(u, omega, target, precise=False)
            rn = jnp.sqrt(jnp.maximum(sq, 0.0))
        else:
            rn = jnp.zeros((), rho.dtype)
        return size, mis, res, rn

    def series(self, state: tuple[jax.Array, jax.Array], target: Any, lam: Any, precise: Any, tol: Any):
        """``W``, the loss, its accuracy floor and the residual on every ``u_i`` at a saved state."""
        rho, ubar = state
        p = target.order
        eps = jnp.finfo(rho.dtype).eps
        u = materialize(normalize(ubar))  # computed once: the Gram products read every entry m times
        omega = self.weights(rho, p)  # T = sum_j omega_j u_j^(x)p
        sq, floor = residual_norm_sq(u, omega, target, precise)
        norms_sq = omega if self.norm_power(p) == 2 else jnp.exp(2.0 * rho)  # |w_j|^2
        loss = 0.5 * sq + 0.5 * lam * norms_sq.sum(-1)
        floor = jnp.maximum(floor, (10 * (p + 2) * jnp.maximum(tol, eps) * omega.sum(-1)) ** 2)
        residual = residual_on(u, omega, target, precise=bool(precise))
        W = jnp.exp(rho)[..., None, :] * u  # deflation.dynamics.from_lognorm, from the u at hand
        return W, dict(loss=loss, loss_floor=0.5 * floor, residual=residual)

    def dense(self, W: Any, order: int) -> jax.Array:
        omega, Wbar = self.unit_weights(jnp.asarray(W), order)
        return dense_power_sum(Wbar, omega, order)

    def init(self, key: jax.Array, d: int, m: int, scale: float, order: int) -> jax.Array:
        """``W`` (d, m) with columns i.i.d. ``scale * Unif(S^{d-1})``."""
        return sample_sphere(key, d, m, scale)
