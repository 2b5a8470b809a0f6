"""A study parameter's declaration (:class:`Param`) and the checks the declarations use.

Every key of a study's ``[params]`` table is one :class:`Param`: the study's common ones in
:mod:`deflation.montecarlo.study`, an experiment's own in its module of
:mod:`deflation.montecarlo.experiments`. The study file's schema, its checks, its defaults and the
docs' table of parameters are all read from these declarations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import _validate as check

#: What a common parameter's ``experiments`` may say besides a tuple of experiment names: every
#: experiment, those an ODE solver integrates (``solved``), those run to a time ``horizon``
#: (``timed``) and those that record a continuous time series (``continuous``).
SELECTORS = ("all", "solved", "timed", "continuous")


@dataclass(frozen=True)
class Param:
    """One parameter of a study: how it is checked, for which experiments (names, or one of
    :data:`SELECTORS`), its default (None: required, or set from other parameters), what it
    means, whether it may be swept and whether it changes the compiled program (``static``)."""

    check: Callable[[str, Any], Any]
    experiments: tuple[str, ...] | str
    default: Any
    doc: str
    sweep: bool = True
    static: bool = False


def positive(name, v):
    return check.positive(name, v)


def nonnegative(name, v):
    return check.nonnegative(name, v)


def unit_interval(name, v):
    return check.in_open_interval(name, v, 0.0, 1.0)


def int_at_least(lo: int, hi: int | None = None) -> Callable[[str, Any], int]:
    return lambda name, v: check.integer(name, v, lo, hi)


def momentum(name, v):
    return check.unit_interval_from_zero(name, v)


def choice(options) -> Callable[[str, Any], str]:
    """One of ``options``: a tuple of names, or a function returning them (read at each check, so
    that a registry's later entries, e.g. a model registered by a plug-in, are choices too)."""
    return lambda name, v: check.choice(name, v, tuple(options() if callable(options) else options))
