"""The abstract model: everything that differs between the factorization models of the package.

A model says how the fitted tensor ``T`` is built from the parameters ``W`` and so what the loss
``L(W) = 1/2 |T - T*|_F^2 + lam/2 |W|_F^2`` and its gradient flow ``dW/dt = -grad L`` are. The
models are ``eqx.Module`` values (as diffrax's solvers and terms are): pass one wherever a
``model=`` argument is taken, or its name (:func:`deflation.models.as_model`).

Every model computes its loss and velocity through Gram matrices of the columns, in
``O(m^2 d + m r d)`` per evaluation (no ``d^p`` array); :meth:`AbstractModel.dense` builds the
``d^p`` array of ``T`` for checks at small ``d`` only.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax


class AbstractModel(eqx.Module):
    """A factorization model ``W -> T(W)`` fitted to a target ``T*`` by gradient flow on
    ``L(W) = 1/2 |T(W) - T*|_F^2 + lam/2 |W|_F^2``.

    Subclasses define :attr:`name` (how studies and the command line call it) and the methods below;
    ``order`` (``p``) is always the target's.
    """

    #: The name of the model in study files and on the command line.
    name: ClassVar[str]

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
