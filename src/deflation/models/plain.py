"""The plain symmetric CP model ``T = sum_j w_j^{(x)p}`` (the paper's "standard objective").

Without the normalization, column ``j``'s term is weighed by ``|w_j|^p``, and its gradient flow
``dw/dt = p R(w^{p-1}, I) - lam w`` is of order ``|w|^{p-1}`` near zero: from ``delta0`` a column
needs a time of order ``delta0^{-(p-2)} / (p (p-2) a)`` to escape (at order 3 or more), against
``log(1/delta0) / (2a)`` for the normalized model. So small initializations are practical only at
moderate ``delta0`` (``1e-3`` to ``1e-1`` at order 4); the log-norm coordinates keep the state
exact, and the adaptive solver's steps grow as slowly as the escape does. At order 2 it coincides
with the normalized model (``T = W W^T``).
"""

from __future__ import annotations

from typing import ClassVar

from .symmetric import SymmetricModel


class Plain(SymmetricModel):
    """``T = sum_j w_j^{(x)p}`` (``q = p``: see :mod:`deflation.models.symmetric`)."""

    name: ClassVar[str] = "plain"

    def norm_power(self, order: int) -> int:
        return order
