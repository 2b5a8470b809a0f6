"""Option tables for the command line: each command lists its options as data, one row per
option; :func:`add_options` turns a table into ``argparse`` arguments and :func:`check_options`
checks the values parsed, so that every bad value is refused with a message naming the flag.

A library error about one parameter is a :class:`deflation.ParamError` carrying the parameter's
name (``.param``, e.g. ``params.rtol``). Each command module declares ``PARAM_FLAGS``, the
parameter each of its flags sets (derived from its option tables, :func:`param_flags`), and
:func:`deflation.cli.main` prints such an error's message as it is, after the flag
(``--rtol: params.rtol must be ...``). :func:`flag_names` is the older safety net of
``figure1`` and ``algorithm2``: a library error raised for their arguments is re-raised with the
library's parameter names (``ts``, ``delta1``) replaced by the flags the user typed (``--horizon``,
``--delta1``), keeping its ``.param``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .. import _validate as check
from ..errors import ParamError

#: One option: ``(flag, type, default, help)`` or ``(flag, type, default, help, check)``; ``type`` is
#: ``int``, ``float``, ``str`` or ``bool`` (a switch); ``check(flag, value)`` returns the value or
#: raises ``ValueError``/``TypeError`` naming the flag (see the checks below). The help gets
#: ``(default ...)`` appended when there is a default.
Option = tuple

#: A check of one option's value: ``check(flag, value) -> value``.
Check = Callable[[str, Any], Any]


def add_options(group, options: list[Option]) -> None:
    """Add every option of the table to ``group`` (a parser or an argument group)."""
    for flag, kind, default, text, *_ in options:
        if kind is bool:
            group.add_argument(flag, action="store_true", help=text)
            continue
        shown = f"{text} (default {default})" if default is not None else text
        extra = {} if kind is str else {"type": kind}
        group.add_argument(flag, default=default, help=shown, **extra)


class _Deprecated(argparse.Action):
    """An old spelling of a flag: stores into the new flag's attribute and prints one line on
    stderr saying which flag to use."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        deprecated(parser.prog, option_string, self.new)
        setattr(namespace, self.dest, values)


def add_aliases(group, aliases: dict[str, str], options: list[Option]) -> None:
    """Add the deprecated spellings ``aliases`` (old flag -> new flag of ``options``): hidden from
    ``--help``, they set the new flag's value (parsed as that flag) and print a deprecation line."""
    kinds = {flag: kind for flag, kind, *_ in options}
    for old, new in aliases.items():
        kind = kinds[new]
        extra = {} if kind is str else {"type": kind}
        group.add_argument(old, dest=dest(new), action=_Deprecated, new=new, default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS, **extra)


def deprecated(prog: str, old: str, new: str) -> None:
    """Print the one-line deprecation notice of an old spelling ``old`` (use ``new``) on stderr."""
    print(f"{prog}: {old} is deprecated; use {new}", file=sys.stderr)


def dest(flag: str) -> str:
    """The attribute of ``argparse``'s namespace for ``flag`` (``--t-end`` -> ``t_end``)."""
    return flag.lstrip("-").replace("-", "_")


def param_flags(options: list[Option], prefix: str = "") -> dict[str, str]:
    """``{parameter: flag}`` for every option of the table: the parameter a flag sets is its
    attribute (:func:`dest`) after ``prefix`` (``"params."``: ``--max-steps`` sets
    ``params.max_steps``)."""
    return {prefix + dest(flag): flag for flag, *_ in options}


def flag_of(err: BaseException, flags: dict[str, str]) -> str | None:
    """The flag that sets the parameter an error is about (:attr:`deflation.ParamError.param`,
    looked up in ``flags``), or None: not a parameter's error, not a parameter of these flags, or a
    message that names the flag already."""
    param = getattr(err, "param", None)
    flag = flags.get(param) if isinstance(param, str) else None
    if flag is None or re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", str(err)):
        return None
    return flag


def check_options(args, options: list[Option]) -> None:
    """Run every option's check on its parsed value (None, an unset optional value, is skipped)."""
    for flag, _, _, _, *rest in options:
        value = getattr(args, dest(flag))
        if rest and rest[0] is not None and value is not None:
            setattr(args, dest(flag), rest[0](flag, value))


# ---------------------------------------------------------------------------- checks


def at_least(minimum: int, maximum: int | None = None) -> Check:
    """An integer ``>= minimum`` (and ``<= maximum``)."""
    return lambda flag, value: check.integer(flag, value, minimum, maximum)


def positive(flag: str, value: Any) -> float:
    """A finite number > 0."""
    return check.positive(flag, value)


def nonnegative(flag: str, value: Any) -> float:
    """A finite number >= 0."""
    return check.nonnegative(flag, value)


def fraction(flag: str, value: Any) -> float:
    """A number in the open interval (0, 1)."""
    return check.in_open_interval(flag, value, 0.0, 1.0)


def ratio(flag: str, value: Any) -> float:
    """A finite number >= 1."""
    out = check.real_scalar(flag, value)
    if not (math.isfinite(out) and out >= 1):
        raise ValueError(f"{flag} must be a finite number >= 1, got {value!r}")
    return out


def one_of(names: tuple[str, ...]) -> Check:
    """One of the names ``names``."""
    return lambda flag, value: check.choice(flag, value, names)


def prng_seed(flag: str, value: Any) -> int:
    """A seed of ``jax.random.key``: a 64-bit signed integer."""
    return check.integer(flag, value, -(2**63), 2**63 - 1)


def seed_count(flag: str, value: Any) -> int:
    """A number of seeds: seed indices are 32-bit (``fold_in(key, k)``)."""
    return check.integer(flag, value, 1, check.SEED_LIMIT + 1)


# ---------------------------------------------------------------------------- library errors


@contextlib.contextmanager
def flag_names(names: dict[str, str]) -> Iterator[None]:
    """Re-raise a ``ValueError``/``TypeError`` of the library with its parameter names replaced by
    the command's flags (``names``: parameter -> flag, e.g. ``{"ts": "--t-end"}``).

    A parameter name is replaced where it stands as a word of its own: not after ``.`` (``target.a``)
    nor before ``(`` or ``[`` (``len(a)``, ``ts[0]``); a one-letter name only before `` must``,
    `` =`` or `` has`` (so that the article "a" stays).
    """
    try:
        yield
    except (ValueError, TypeError) as err:
        renamed = type(err)(rename(str(err), names))
        if isinstance(renamed, ParamError):  # the same parameter
            renamed.param = getattr(err, "param", None)
        raise renamed from None


def rename(text: str, names: dict[str, str]) -> str:
    """``text`` with the parameter names of ``names`` replaced by their flags (see :func:`flag_names`)."""
    for name in sorted(names, key=len, reverse=True):
        tail = r"(?= must| =| has)" if len(name) == 1 else r"(?![\w(\[])"
        text = re.sub(rf"(?<![\w.\-\[]){re.escape(name)}{tail}", names[name], text)
    return text
