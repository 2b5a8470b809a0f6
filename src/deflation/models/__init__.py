"""The factorization models: what ``T(W)`` is, and so the loss and its gradient flow.

- :class:`Normalized` (``"normalized"``, the default): ``T = sum_j w_j^{(x)p} / |w_j|^{p-2}``, the
  paper's model;
- :class:`Plain` (``"plain"``): ``T = sum_j w_j^{(x)p}``, the standard CP objective;
- :class:`Asymmetric` (``"asymmetric"``): ``T = sum_j w_j^(1) (x) ... (x) w_j^(p)``.

Each is an ``eqx.Module`` value; :func:`as_model` turns a name into one. A new model is a new file
with a subclass of :class:`AbstractModel` (or :class:`SymmetricModel`) registered in ``MODELS`` (every
model by name). ``gradient_flow`` and ``deflation figure1 --model`` integrate every model at every
order ``p >= 2``; ``SYMMETRIC_MODELS`` names those of one factor matrix (what gradient descent runs).
"""

from __future__ import annotations

from typing import Any

from .asymmetric import Asymmetric
from .base import AbstractModel
from .normalized import Normalized
from .plain import Plain
from .symmetric import SymmetricModel

# every model by name (documented in the module docstring)
MODELS: dict[str, AbstractModel] = {model.name: model for model in (Normalized(), Plain(), Asymmetric())}
# the models whose gradient flow the studies integrate (the symmetric ones), by name
SYMMETRIC_MODELS: tuple[str, ...] = tuple(name for name, model in MODELS.items() if isinstance(model, SymmetricModel))


def as_model(value: Any, name: str = "model") -> AbstractModel:
    """The model ``value`` names (``"normalized"``, ``"plain"``, ``"asymmetric"``) or is.

    Raises:
        ValueError: an unknown name, listing the known ones.
        TypeError: neither a name nor an :class:`AbstractModel`.
    """
    if isinstance(value, AbstractModel):
        return value
    if isinstance(value, str):
        try:
            return MODELS[value]
        except KeyError:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, MODELS))}, got {value!r}") from None
    raise TypeError(f"{name} must be a model name ({', '.join(map(repr, MODELS))}) or a deflation.models model, "
                    f"got {type(value).__name__}")


__all__ = ["MODELS", "SYMMETRIC_MODELS", "AbstractModel", "Asymmetric", "Normalized", "Plain", "SymmetricModel",
           "as_model"]
