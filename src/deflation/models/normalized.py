"""The paper's normalized model ``T = sum_j w_j^{(x)p} / |w_j|^{p-2}`` (Ge, Ren, Wang, Zhou 2021).

Each column's rank-one term is weighed by ``|w_j|^2`` whatever the order, so the gradient flow
``dw/dt = p R(wbar^{p-2}, w, I) - (p-2) R(wbar^p) w - lam w`` is linear in ``|w|`` near zero: from
``delta0`` a column aligned with a component of weight ``a`` grows like ``e^{2 a t}`` and reaches
size ``delta1`` after ``~ log(delta1/delta0) / (2a)``. At order 2 it is symmetric matrix
factorization ``T = W W^T``, the setting of greedy low-rank learning. The package's default model.
"""

from __future__ import annotations

from typing import ClassVar

from .symmetric import SymmetricModel


class Normalized(SymmetricModel):
    """``T = sum_j w_j^{(x)p} / |w_j|^{p-2}`` (``q = 2``: see :mod:`deflation.models.symmetric`)."""

    name: ClassVar[str] = "normalized"
    fit_by_weight: ClassVar[bool] = True

    def norm_power(self, order: int) -> int:
        return 2
