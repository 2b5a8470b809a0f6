"""The documentation site (docs/, Sphinx) builds with warnings as errors, and says what the code does.

- default suite: a strict build without executing the notebooks (about 10 s); it must contain a page
  for every notebook, every public name of ``deflation`` and ``deflation.montecarlo``, and every
  option of every command; a second strict build with a broken reference (one in a page, one in a
  docstring) must fail and name both.
- ``-m slow``: the documented build, executing the notebooks at small size, whose notebook pages
  must show figures; and the code of the getting-started page runs, with the shapes its comments
  state.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py")
                   if p.name != "render.py" and not p.name.startswith("_"))


def sphinx_build(src: Path, out: Path, *options: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The README's build command (``python -m sphinx -M html docs site -W --keep-going``) into ``out``."""
    cmd = [sys.executable, "-m", "sphinx", "-M", "html", str(src), str(out), "-W", "--keep-going", "-q", *options]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})


def assert_built(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"docs build failed:\n{proc.stderr[-6000:]}"


def all_options(parser: argparse.ArgumentParser, prog: str = "deflation"):
    """``(command, option string)`` for every option of every command, recursively."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_options(sub, f"{prog} {name}")
        elif action.help is not argparse.SUPPRESS:
            for flag in action.option_strings or [action.dest]:
                yield prog, flag


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    assert_built(sphinx_build(DOCS, out, "-D", "nb_execution_mode=off"))
    return out / "html"


@pytest.mark.slow
def test_site_has_every_page(site):
    for page in ["index", "getting-started", "cli", "notebooks", "architecture", "api/index", "api/deflation",
                 "api/montecarlo", "api/baselines", "api/plots", *(f"notebooks/{n}" for n in NOTEBOOKS)]:
        assert (site / f"{page}.html").is_file(), page


def test_api_reference_documents_every_public_name(site):
    import deflation
    import deflation.montecarlo

    for module, page in [(deflation, "api/deflation"), (deflation.montecarlo, "api/montecarlo")]:
        html = (site / f"{page}.html").read_text()
        missing = [n for n in module.__all__ if not n.startswith("__") and f'id="{module.__name__}.{n}"' not in html]
        assert not missing, f"{page}: {missing}"
    assert 'id="deflation.baselines.tensor_power_deflation"' in (site / "api/baselines.html").read_text()
    assert 'id="deflation.plots.plot_figure1"' in (site / "api/plots.html").read_text()


def test_cli_page_lists_every_option_of_every_command(site):
    from deflation.cli import build_parser

    html = (site / "cli.html").read_text()
    options = list(all_options(build_parser()))
    assert {prog for prog, _ in options} >= {"deflation figure1", "deflation algorithm2", "deflation montecarlo",
                                              "deflation montecarlo summarize"}
    missing = [(prog, flag) for prog, flag in options
               if not re.search(f'<span class="pre">{re.escape(flag)}[,<]', html)]
    assert not missing, missing


def test_site_text_stands_alone(site):
    for page in site.rglob("*.html"):
        text = page.read_text()
        for needle in ("DESIGN.md", "/work/shared", "design card"):
            assert needle not in text, f"{page.relative_to(site)} mentions {needle!r}"


@pytest.mark.slow  # a second whole build of the site
def test_broken_reference_fails_the_build(tmp_path):
    """The same strict build, on a copy of docs/ with a broken reference in a page and one in a
    docstring: it must fail and name both (nitpicky + -W are what make a wrong name an error)."""
    src = tmp_path / "docs"
    shutil.copytree(DOCS, src, symlinks=True, ignore=shutil.ignore_patterns("notebooks"))
    (src / "notebooks").symlink_to(ROOT / "notebooks", target_is_directory=True)
    (tmp_path / "broken_module.py").write_text('def f():\n    """See :func:`deflation.no_such_function`."""\n')
    with open(src / "getting-started.md", "a") as page:
        page.write("\n\nSee {py:class}`deflation.NoSuchClass`.\n\n"
                   "```{eval-rst}\n.. autofunction:: broken_module.f\n```\n")
    proc = sphinx_build(src, tmp_path / "out", "-D", "nb_execution_mode=off",
                        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode != 0
    assert "deflation.NoSuchClass" in proc.stderr and "deflation.no_such_function" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_documented_build_executes_the_notebooks_and_shows_their_figures(tmp_path):
    assert_built(sphinx_build(DOCS, tmp_path, "-D", "nb_execution_mode=force", env={"DEFLATION_NB_SIZE": "small"}))
    site = tmp_path / "html"
    for name in NOTEBOOKS:
        html = (site / f"notebooks/{name}.html").read_text()
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
        assert images, f"notebook {name}: no figure on its page"
        for src in images:
            assert (site / "notebooks" / src).resolve().is_file(), f"notebook {name}: missing {src}"


def getting_started_script() -> str:
    """The getting-started page's Python blocks, with ``EXPR.shape  # (8, 301)`` made into asserts."""
    text = (DOCS / "getting-started.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    lines = []
    for line in "\n".join(blocks).splitlines():
        m = re.match(r"^(\S[^#]*\.shape)\s+#\s+(\(.*)$", line)
        if m:
            expected = None
            for end in range(len(m.group(2)), 0, -1):  # the longest prefix that is a Python literal
                try:
                    expected = ast.literal_eval(m.group(2)[:end])
                    break
                except (ValueError, SyntaxError):
                    continue
            assert expected is not None, line
            line = f"assert ({m.group(1).strip()}) == {expected!r}, {line!r}"
        lines.append(line)
    return "\n".join(lines)


def test_getting_started_shape_comments_are_checked():
    script = getting_started_script()
    assert "assert (res.loss.shape) == (8, 301)" in script
    assert "assert (sol.rho.shape, sol.ubar.shape) == ((8, 31, 50), (8, 31, 10, 50))" in script


@pytest.mark.slow
def test_getting_started_code_runs(tmp_path):
    script = tmp_path / "getting_started.py"
    script.write_text(getting_started_script() + textwrap.dedent("""
        assert not res.failed() and bool(jnp.all(res.fit_time[0] > res.discovery_time[0]))
        assert bool(jnp.all(jnp.diff(res.fit_time[0]) > 0))  # largest component first
        assert bool(a2.converged.all()) and a2.discovery_epoch.shape == (2, 8)
        assert bool((sol.status == 0).all()) and sol.tracked.discovery_time.shape == (8, 5)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
