"""The ``deflation`` command line: ``deflation <command> --help``.

Each command lives in its own module ``deflation.commands.<name>`` exposing
``register(subparsers)``, which adds an ``argparse`` sub-parser whose ``func`` default runs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

#: Command modules, in the order ``--help`` lists them.
COMMANDS = [
    "figure1",
    "algorithm2",
    "montecarlo",
    "study",
]


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="deflation",
        description="Gradient flow on over-parametrized tensor decomposition (Ge, Ren, Wang, Zhou, NeurIPS 2021).",
    )
    parser.add_argument("--version", action="version", version=f"deflation {__version__}")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="JAX's persistent compilation cache: a folder, or 'off' (default: $DEFLATION_CACHE_DIR, "
                             "else the user's cache directory, e.g. ~/.cache/deflation/jax)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"deflation.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from . import compilation_cache

    compilation_cache.enable(compilation_cache.choose(args.cache_dir))  # a second run reads compiled programs
    try:
        with warnings.catch_warnings():  # a deprecated spelling in a study file: one line, no source line
            warnings.showwarning = lambda message, category, *_, **__: print(
                f"deflation {args.command}: {message}", file=sys.stderr)
            return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError) as err:  # bad input or an unusable path: one clear line, no traceback
        print(f"deflation {args.command}: error: {_flag_prefix(err, args)}{_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deflation {args.command}: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as err:
        # the device ran out of memory although the estimate let the call through (memory.py)
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        print(f"deflation {args.command}: error: out of device memory ({_one_line(err)[:200]}); use fewer seeds "
              "per call or a smaller --m", file=sys.stderr)
        return 2


def _flag_prefix(err: BaseException, args) -> str:
    """``"--rtol: "`` for an error about one parameter (:class:`deflation.ParamError`) that a flag
    of the command sets (its module's ``PARAM_FLAGS``), unless the message names that flag
    already; else ``""``. The message itself is printed as it is."""
    from .commands._options import flag_of

    module = sys.modules.get(getattr(args.func, "__module__", "") or "")
    flag = flag_of(err, getattr(module, "PARAM_FLAGS", {}))
    return "" if flag is None else f"{flag}: "


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line."""
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
