"""The ``deflation`` command line: ``deflation <command> --help``.

Each command lives in its own module ``deflation.commands.<name>`` exposing
``register(subparsers)``, which adds an ``argparse`` sub-parser whose ``func`` default runs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
        return int(args.func(args) or 0)
    except (ValueError, TypeError) as err:  # bad input: one clear line, no traceback
        print(f"deflation {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
