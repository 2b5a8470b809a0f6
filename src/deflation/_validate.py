"""Input checks that run in Python, on concrete values, before anything is traced.

Every check raises :class:`~deflation.errors.ParamError` (a ``ValueError``), or
:class:`~deflation.errors.ParamTypeError` (also a ``TypeError``) for a wrong kind of object, with a
message naming the argument, the value received and what is allowed, and the argument's name as
given (``name``) in its ``param``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from .errors import ParamError, ParamTypeError


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a JAX tracer), so it can be checked in Python."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of the names ``options``, or raise ``ValueError`` naming ``name``,
    the value and the choices."""
    if not isinstance(value, str) or value not in options:
        raise ParamError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}", param=name)
    return value


def unit_interval_from_zero(name: str, value: Any) -> float:
    """Return ``value`` as a float in ``[0, 1)`` (a momentum), or raise naming ``name``."""
    out = real_scalar(name, value)
    if not 0.0 <= out < 1.0:
        raise ParamError(f"{name} must be in [0, 1), got {value!r}", param=name)
    return out


def real_scalar(name: str, value: Any) -> float:
    """Return ``value`` as a Python float, or raise ``TypeError`` naming ``name``."""
    if isinstance(value, bool) or value is None:
        raise ParamTypeError(f"{name} must be a real number, got {_show(value)}", param=name)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ParamTypeError(f"{name} must be a real number, got {_show(value)}", param=name) from None
    return out


def finite(name: str, value: Any) -> float:
    """A finite real number."""
    out = real_scalar(name, value)
    if not math.isfinite(out):
        raise ParamError(f"{name} must be finite, got {_show(value)}", param=name)
    return out


def positive(name: str, value: Any) -> float:
    """A finite real number > 0."""
    out = real_scalar(name, value)
    if not (math.isfinite(out) and out > 0):
        raise ParamError(f"{name} must be a finite number > 0, got {_show(value)}", param=name)
    return out


def nonnegative(name: str, value: Any) -> float:
    """A finite real number >= 0."""
    out = real_scalar(name, value)
    if not (math.isfinite(out) and out >= 0):
        raise ParamError(f"{name} must be a finite number >= 0, got {_show(value)}", param=name)
    return out


def in_open_interval(name: str, value: Any, lo: float, hi: float) -> float:
    """A real number in the open interval (lo, hi)."""
    out = real_scalar(name, value)
    if not (lo < out < hi):
        raise ParamError(f"{name} must lie in the open interval ({lo}, {hi}), got {_show(value)}", param=name)
    return out


def integer(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """An integer >= ``minimum`` (and <= ``maximum`` if given; bools refused)."""
    allowed = f">= {minimum}" if maximum is None else f">= {minimum} and <= {maximum}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParamTypeError(f"{name} must be an integer {allowed}, got {_show(value)}", param=name)
    if value < minimum or (maximum is not None and value > maximum):
        raise ParamError(f"{name} must be an integer {allowed}, got {value}", param=name)
    return int(value)


#: The largest step budget: the solvers count steps in int32.
MAX_STEPS_LIMIT = 2**31 - 1
#: Seed indices are folded into keys as uint32.
SEED_LIMIT = 2**32 - 1


def array(name: str, value: Any, ndim: int | tuple[int, ...]) -> np.ndarray:
    """A real floating array of the given number of dimensions, as NumPy (float64)."""
    try:
        out = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything that is not array-like
        raise ParamTypeError(f"{name} must be an array, got {type(value).__name__}", param=name) from None
    if out.dtype == object or not (np.issubdtype(out.dtype, np.floating) or np.issubdtype(out.dtype, np.integer)):
        raise ParamTypeError(f"{name} must be a real array, got dtype {out.dtype}", param=name)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if out.ndim not in allowed:
        want = " or ".join(str(k) for k in allowed)
        raise ParamError(f"{name} must have {want} dimensions, got shape {out.shape}", param=name)
    return out


def finite_array(name: str, value: np.ndarray) -> None:
    """Raise if any entry of ``value`` is NaN or infinite."""
    bad = ~np.isfinite(value)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ParamError(f"{name} must be finite, got {value[idx]!r} at index {idx}", param=name)
