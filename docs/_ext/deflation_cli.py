"""``.. deflation-cli:: COMMAND``: the options of ``deflation COMMAND``, read from the argument
parser that the command line itself uses (``deflation.cli.build_parser()``), so the page cannot
disagree with ``deflation COMMAND --help``.

It renders the usage line, the parser's description, each argument group as a list of options
(the flags as ``--help`` shows them, the help text with its defaults expanded) and, recursively,
any sub-commands (``deflation montecarlo summarize``). Help texts are plain text, not reST: a
``|T - T*|_F`` in a help string is shown as written.
"""

from __future__ import annotations

import argparse
import re

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _text(text: str) -> nodes.paragraph:
    """A help text as written, with its ````literal```` spans (module docstrings) as code."""
    para = nodes.paragraph()
    for i, part in enumerate(re.split(r"``(.+?)``", text)):
        if part:
            para += nodes.literal(text=part) if i % 2 else nodes.Text(part)
    return para


def _term(formatter, action) -> nodes.term:
    term = nodes.term()
    term += nodes.literal(text=formatter._format_action_invocation(action))
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        term += nodes.Text(f"  (one of: {', '.join(map(str, action.choices))})")
    return term


def render(parser: argparse.ArgumentParser, section_id: str, subcommands: bool = True) -> list[nodes.Node]:
    """Nodes for one parser: usage, description, option groups, then its sub-commands."""
    formatter = parser._get_formatter()
    out: list[nodes.Node] = [nodes.literal_block(text=parser.format_usage().strip(), language="none")]
    if parser.description:
        out.append(_text(parser.description))
    for group in parser._action_groups:
        actions = [a for a in group._group_actions
                   if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)]
        if not actions:
            continue
        out.append(nodes.rubric(text=group.title[:1].upper() + group.title[1:]))
        items = nodes.definition_list(classes=["cli-options"])
        for action in actions:
            item = nodes.definition_list_item()
            item += _term(formatter, action)
            definition = nodes.definition()
            definition += _text(formatter._expand_help(action) if action.help else "")
            item += definition
            items += item
        out.append(items)
    for name, sub in (_subcommands(parser) if subcommands else {}).items():
        sid = f"{section_id}-{name}"
        section = nodes.section(ids=[sid], names=[sid])
        section += nodes.title(text=sub.prog)
        section.extend(render(sub, sid))
        out.append(section)
    return out


class CliDirective(SphinxDirective):
    """``.. deflation-cli:: figure1``; no argument: the top-level ``deflation`` parser, and
    ``:no-subcommands:`` leaves out the sub-commands' own sections."""

    optional_arguments = 1
    option_spec = {"no-subcommands": directives.flag}

    def run(self):
        from deflation.cli import build_parser

        parser = build_parser()
        path = self.arguments[0].split() if self.arguments else []
        for name in path:
            commands = _subcommands(parser)
            if name not in commands:
                raise self.error(f"deflation has no command {' '.join(path)!r}; it has {sorted(commands)}")
            parser = commands[name]
        return render(parser, "cli-" + "-".join(path or ["deflation"]), "no-subcommands" not in self.options)


def setup(app):
    app.add_directive("deflation-cli", CliDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
