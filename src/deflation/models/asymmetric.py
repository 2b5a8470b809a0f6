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
import numpy as np

from ..contract import materialize, sum_rows
from ..init import sample_sphere
from ..state import check_W, normalize
from .base import AbstractModel
from .spectral import misalignments, singular_pairs


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


def joint_misalignment(rows: list[jax.Array]) -> jax.Array:
    """``1 - prod_k (1 - mis_k)`` from the misalignments ``mis_k = 1 - <x^(k), u^(k)>^2`` of the
    factors: the misalignment ``1 - <x^(1) (x) ... (x) x^(p), u^(1) (x) ... (x) u^(p)>^2`` of the
    unit rank-one terms, summed as ``mis_1 + (1 - mis_1) mis_2 + ...`` (no cancellation: resolved
    down to the factors' own resolution, and polynomial, so its time derivative is finite)."""
    out = rows[0]
    for x in rows[1:]:
        out = out + (1.0 - out) * x
    return out


class Asymmetric(AbstractModel):
    """``T = sum_j w_j^(1) (x) ... (x) w_j^(p)`` with state ``(W_1, ..., W_p)`` (module docstring).

    Definition 1 (paper Section 5.1, read on rank-one terms). At order ``p >= 3``
    (``definition = "columns"``) the slots are the terms ``j``: term ``j`` joins ``S_i`` when its
    size, the geometric mean ``sigma_j = (|w_j^(1)| ... |w_j^(p)|)^{1/p}`` of its factor norms,
    reaches ``delta1`` while its unit term is aligned with the component's,
    ``<wbar_j^(1) (x) ... (x) wbar_j^(p), u_i^(1) (x) ... (x) u_i^(p)>^2 = prod_k <wbar_j^(k),
    u_i^(k)>^2 >= 1 - alpha^2`` (:func:`joint_misalignment`); for ``W_1 = ... = W_p = W`` and a
    symmetric target the size is ``|w_j|``, as for the symmetric models. ``ahat_i = sum_{j in S_i}
    sigma_j^p`` (the term's weight ``|w_j^(1)| ... |w_j^(p)|`` in ``T``); ``i`` is discovered when
    ``S_i`` is non-empty and fitted when its residual ``(T* - T)(u_i^(1), ..., u_i^(p))`` falls to
    ``fit_fraction a_i`` (at every ``lam``: Lemma 7's weight test is not used).

    At order 2 (``definition = "spectral"``: ``W_1 Q, W_2 Q^{-T}`` give the same ``T = W_1 W_2^T``)
    the slots are the singular pairs ``(s_k, x_k, y_k)`` of ``W_1 W_2^T``, largest first
    (:func:`deflation.models.spectral.singular_pairs`, from ``m x m`` Gram matrices): size
    ``sqrt(s_k)``, misalignment ``1 - <x_k, u_i^(1)>^2 <y_k, u_i^(2)>^2``, weight ``s_k``; a pair
    joins ``S_i`` at the first time at which it is both at least ``delta1`` and aligned (as for
    the symmetric models' eigenpairs). From a balanced start at ``delta0`` per factor a component of
    weight ``a`` grows like ``e^{a t}`` in size (``dW_1/dt = (T* - W_1 W_2^T) W_2``), so its discovery
    takes ``~ log(delta1/delta0) / a`` (leading order).
    """

    name: ClassVar[str] = "asymmetric"

    def factor_count(self, order: int) -> int:
        return order

    def norm_power(self, order: int) -> int:
        """``p``: a term of log-size ``sigma`` (the mean of its factors' log-norms) weighs
        ``exp(p sigma) = |w^(1)| ... |w^(p)|`` in ``T`` (a singular value ``s_k`` at order 2)."""
        return order

    def column_log_sizes(self, state: tuple[Any, Any], order: int) -> jax.Array:
        """Each term's log-size ``sigma_j = (1/p) sum_k log |w_j^(k)|``."""
        return sum(state[0]) / order

    def target_grams(self, target: Any) -> list:
        """``U_k^T U_k`` of the target's factor matrices, one per mode."""
        return [np.asarray(Uk, dtype=np.float64).T @ np.asarray(Uk, dtype=np.float64) for Uk in target_factors(target)]

    def event_terms(self, state: tuple[Any, Any], target: Any, norm: bool):
        """Definition 1's slots (the class docstring): the terms, or at order 2 the singular pairs
        of ``W_1 W_2^T``; the residual ``(T* - T)(u_i^(1), ..., u_i^(p))``; ``|T - T*|_F``."""
        rho, ubar = state
        U = target_factors(target)
        u = [normalize(ub) for ub in ubar]
        if self.definition(target.order) == "spectral":
            size, X, Y = singular_pairs(rho[0], u[0], rho[1], u[1])
            per_mode = [misalignments(X, U[0]), misalignments(Y, U[1])]
        else:
            size = sum(rho) / target.order
            per_mode = [misalignments(uk, Uk) for uk, Uk in zip(u, U)]
        mis = [joint_misalignment([rows[i] for rows in per_mode]) for i in range(target.a.shape[-1])]
        omega = jnp.exp(sum(rho))
        res = self._residual_on(omega, u, U, target.a)
        if norm:
            sq, _ = self._residual_norm_sq(omega, u, U, target.a)
            rn = jnp.sqrt(jnp.maximum(sq, 0.0))
        else:
            rn = jnp.zeros((), omega.dtype)
        return size, mis, res, rn

    @staticmethod
    def _residual_on(omega, u, U, a):
        """``(T* - T)(u_i^(1), ..., u_i^(p))`` for every ``i``, ``T = sum_j omega_j u_j^(1) (x) ...``."""
        truth = _product([Uk.T @ Uk for Uk in U]) @ a
        return truth - _product([Uk.T @ uk for Uk, uk in zip(U, u)]) @ omega

    @staticmethod
    def _residual_norm_sq(omega, u, U, a):
        """``(|T - T*|_F^2, rounding floor)`` by the Gram formula on the unit factors."""
        t_model = omega @ (_product([uk.T @ uk for uk in u]) @ omega)
        t_cross = a @ (_product([Uk.T @ uk for Uk, uk in zip(U, u)]) @ omega)
        t_target = a @ (_product([Uk.T @ Uk for Uk in U]) @ a)
        scale = jnp.abs(t_model) + 2 * jnp.abs(t_cross) + jnp.abs(t_target)
        return t_model - 2 * t_cross + t_target, 64 * jnp.finfo(omega.dtype).eps * scale

    def series(self, state: tuple[Any, Any], target: Any, lam: Any, precise: Any, tol: Any):
        """The factor matrices ``W_k``, the loss, its accuracy floor and the residual on every
        component at a saved state (float Gram route: ``precise`` is not used)."""
        rho, ubar = state
        p = target.order
        U = target_factors(target)
        u = [materialize(normalize(ub)) for ub in ubar]
        omega = jnp.exp(sum(rho))  # T = sum_j omega_j u_j^(1) (x) ... (x) u_j^(p)
        sq, floor = self._residual_norm_sq(omega, u, U, target.a)
        norms_sq = sum((jnp.exp(2.0 * r) for r in rho), jnp.zeros_like(rho[0]))  # sum_k |w_j^(k)|^2
        loss = 0.5 * sq + 0.5 * lam * norms_sq.sum(-1)
        eps = jnp.finfo(omega.dtype).eps
        floor = jnp.maximum(floor, (10 * (p + 2) * jnp.maximum(tol, eps) * omega.sum(-1)) ** 2)
        W = tuple(jnp.exp(r)[..., None, :] * uk for r, uk in zip(rho, u))
        return W, dict(loss=loss, loss_floor=0.5 * floor, residual=self._residual_on(omega, u, U, target.a))

    def check_state(self, name: str, W: Any, target: Any, batch: bool = False) -> tuple[jax.Array, ...]:
        """A tuple of ``p`` factor matrices, each ``(d, m)`` (``batch``: or each ``(B, d, m)``) with
        one ``m`` (and one ``B``). ``ValueError`` for a single array or a tuple of another length
        (naming ``name`` and what was given), ``TypeError`` for anything else."""
        p = target.order
        want = f"a tuple of {p} factor matrices (d, m) for the asymmetric model at order {p} (one per mode)"
        if isinstance(W, (tuple, list)):
            if len(W) != p:
                raise ValueError(f"{name} must be {want}, got a {type(W).__name__} of length {len(W)}")
        elif hasattr(W, "shape"):
            raise ValueError(f"{name} must be {want}, got a single array of shape {tuple(W.shape)}")
        else:
            raise TypeError(f"{name} must be {want}, got {type(W).__name__}")
        out = tuple(check_W(f"{name}[{k}]", Wk, target, batch) for k, Wk in enumerate(W))
        widths = {Wk.shape[-1] for Wk in out}
        if len(widths) > 1:
            raise ValueError(f"{name}'s factor matrices must have one number of columns m, got {sorted(widths)}")
        batches = {Wk.shape[:-2] for Wk in out}
        if len(batches) > 1:
            raise ValueError(f"{name}'s factor matrices must have one batch shape, got {sorted(batches)}")
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
