"""The abstract model: everything that differs between the factorization models of the package.

A model says how the fitted tensor ``T`` is built from the parameters ``W`` and so what the loss
``L(W) = 1/2 |T - T*|_F^2 + lam/2 |W|_F^2`` and its gradient flow ``dW/dt = -grad L`` are. The
models are ``eqx.Module`` values (as diffrax's solvers and terms are): pass one wherever a
``model=`` argument is taken, or its name (:func:`deflation.models.as_model`).

Every model computes its loss and velocity through Gram matrices of the columns, in
``O(m^2 d + m r d)`` per evaluation (no ``d^p`` array); :meth:`AbstractModel.dense` builds the
``d^p`` array of ``T`` for checks at small ``d`` only.

Definition 1 (discovery and fit, paper Section 5.1) is read through *slots*: the rank-one terms of
``T`` a model exposes, ``m`` of them, each with a log-size ``rho_k`` compared with ``log delta1``
and a misalignment with every ground-truth component compared with ``alpha^2``
(:meth:`AbstractModel.event_terms`). :meth:`AbstractModel.definition` says which slots:

- ``"columns"`` (order ``p >= 3``): the columns of ``W`` (the terms ``w_j^(1) (x) ... (x) w_j^(p)``);
- ``"spectral"`` (order 2): the eigenpairs of ``W W^T`` or the singular pairs of ``W_1 W_2^T``,
  largest first (a column means nothing by itself there: :mod:`deflation.models.spectral`).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

#: Definition 1's slots by kind (:meth:`AbstractModel.definition`): the columns, or the spectrum.
DEFINITIONS = ("columns", "spectral")


class AbstractModel(eqx.Module):
    """A factorization model ``W -> T(W)`` fitted to a target ``T*`` by gradient flow on
    ``L(W) = 1/2 |T(W) - T*|_F^2 + lam/2 |W|_F^2``.

    Subclasses define :attr:`name` (how studies and the command line call it) and the methods below;
    ``order`` (``p``) is always the target's.
    """

    #: The name of the model in study files and on the command line.
    name: ClassVar[str]
    #: Whether ``lam > 0`` fits are read from ``a_i - ahat_i <= 2 lam`` (paper Lemma 7, proved for
    #: the normalized model) rather than from the residual.
    fit_by_weight: ClassVar[bool] = False

    def factor_count(self, order: int) -> int:
        """How many factor matrices ``(d, m)`` the state holds (1: a single ``W``)."""
        return 1

    def definition(self, order: int) -> str:
        """Which slots Definition 1 reads at this order (:data:`DEFINITIONS`): ``"spectral"`` at
        order 2, where single columns mean nothing, else ``"columns"``."""
        return "spectral" if order == 2 else "columns"

    @abc.abstractmethod
    def norm_power(self, order: int) -> int:
        """``q``: a slot of log-size ``rho`` weighs ``exp(q rho)`` in ``T`` (:meth:`weights`)."""

    def weights(self, rho: jax.Array, order: int) -> jax.Array:
        """The weight in ``T`` of each slot of log-size ``rho``: ``exp(q rho)``, ``q`` =
        :meth:`norm_power` (``ahat_i`` of Definition 1 sums them over ``S_i``)."""
        return jnp.exp(float(self.norm_power(order)) * rho)

    @abc.abstractmethod
    def lognorm_field(self, state: Any, target: Any, lam: Any, frozen: bool = False) -> Any:
        """The gradient flow (``frozen``: with ``R`` frozen at ``T*``) in log-norm coordinates."""

    @abc.abstractmethod
    def column_log_sizes(self, state: Any, order: int) -> jax.Array:
        """Each column's (term's) log-size in log-norm coordinates, (..., m): the size Definition 1
        compares with ``log delta1`` when :meth:`definition` is ``"columns"``."""

    @abc.abstractmethod
    def event_terms(self, state: Any, target: Any, norm: bool) -> tuple[jax.Array, list, jax.Array, jax.Array]:
        """Definition 1's quantities at a log-norm state, differentiable in it (the events take
        their time derivatives by a Jacobian-vector product): ``(log_size (m,), misalignment rows
        (r rows (m,): slot k against component i), residual (T* - T) on each component (r,),
        |T - T*|_F (()): 0 unless norm)``."""

    @abc.abstractmethod
    def series(self, state: Any, target: Any, lam: Any, precise: Any, tol: Any) -> tuple[Any, dict]:
        """At one saved log-norm state: ``(W, dict(loss, loss_floor, residual))``; the floor is the
        larger of the rounding bound and the integration floor for tolerance ``tol``."""

    def deflation_levels(self, target: Any) -> np.ndarray:
        """The loss levels of an exact deflation process, ``1/2 |T* - sum_{j <= k} a_(j) u_(j)|_F^2``
        for ``k = 0, ..., r`` fitted components in decreasing order of ``a`` (the plateaus of
        gradient flow from a small initialization, ``lam = 0``), from the target's components as
        this model reads them (:meth:`target_grams`). NumPy (r + 1,), the last entry 0."""
        a = np.asarray(target.a, dtype=np.float64)
        order = np.argsort(-a, kind="stable")
        a = a[order]
        G = None
        for H in self.target_grams(target):
            H = np.asarray(H, dtype=np.float64)[np.ix_(order, order)]
            G = H if G is None else G * H
        assert G is not None  # a target has at least one mode
        levels = [0.5 * float(a[k:] @ G[k:, k:] @ a[k:]) for k in range(a.shape[0])]
        return np.maximum(np.array(levels + [0.0]), 0.0)

    def target_grams(self, target: Any) -> list:
        """The Gram matrices ``U_k^T U_k`` of the target's components per mode, one per mode
        (``<u_i, u_j>^p`` is their entrywise product): ``(U^T U,) * p`` for a symmetric target."""
        U = np.asarray(target.U, dtype=np.float64)
        return [U.T @ U] * target.order

    @abc.abstractmethod
    def check_state(self, name: str, W: Any, target: Any, batch: bool = False) -> Any:
        """``W`` checked against ``target`` (shape, finiteness) and converted to its working dtype,
        or ``ValueError``/``TypeError`` naming ``name``."""

    @abc.abstractmethod
    def loss(self, W: Any, target: Any, lam: Any = 0.0, *, precise: bool | None = None) -> jax.Array:
        """``L(W) = 1/2 |T(W) - T*|_F^2 + lam/2 |W|_F^2`` by the Gram formula."""

    @abc.abstractmethod
    def velocity(self, W: Any, target: Any, lam: Any = 0.0) -> Any:
        """``-grad_W L`` in the coordinates of ``W``."""

    @abc.abstractmethod
    def dense(self, W: Any, order: int) -> jax.Array:
        """The ``d^p`` array of ``T(W)`` (small ``d`` only: for checks)."""

    @abc.abstractmethod
    def init(self, key: jax.Array, d: int, m: int, scale: float, order: int) -> Any:
        """An initialization at scale ``scale`` (``delta0``) drawn with ``key``."""
