"""Option tables for the command line: each command lists its options as data, one row per
option, and :func:`add_options` turns a table into ``argparse`` arguments."""

from __future__ import annotations

from typing import Any

#: One option: ``(flag, type, default, help)``; ``type`` is ``int``, ``float``, ``str`` or ``bool``
#: (a switch), and the help gets ``(default ...)`` appended when there is a default.
Option = tuple[str, Any, Any, str]


def add_options(group, options: list[Option]) -> None:
    """Add every option of the table to ``group`` (a parser or an argument group)."""
    for flag, kind, default, text in options:
        if kind is bool:
            group.add_argument(flag, action="store_true", help=text)
            continue
        shown = f"{text} (default {default})" if default is not None else text
        extra = {} if kind is str else {"type": kind}
        group.add_argument(flag, default=default, help=shown, **extra)
