"""Execute the notebooks and render them to HTML with their figures, in one command.

    python notebooks/render.py                    # all notebooks, full size -> notebooks/_build/
    python notebooks/render.py figure1 solvers    # only these
    python notebooks/render.py --size small       # the quick size the test suite uses

Each ``notebooks/<name>.py`` (jupytext percent format) is converted to a notebook, executed in a
fresh ``python3`` kernel (ipykernel) with ``DEFLATION_NB_SIZE`` set, and written as
``<out>/<name>.ipynb`` (with outputs) and ``<out>/<name>.html``; the figures are also saved as PNG
under ``<out>/figures/`` and the notebook's ``RESULTS`` as ``<out>/<name>.json``. Needs the
``notebooks`` extra: ``pip install -e '.[notebooks]'``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def notebook_names() -> list[str]:
    """Every notebook in this folder (``*.py`` except this script and private helpers)."""
    return sorted(p.stem for p in HERE.glob("*.py") if p.name != "render.py" and not p.name.startswith("_"))


def execute(name: str, out: Path, size: str, timeout: int) -> float:
    """Run one notebook and write its ``.ipynb``, ``.html`` and ``.json``; return the wall time."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = jupytext.read(HERE / f"{name}.py")
    env = {"DEFLATION_NB_SIZE": size, "DEFLATION_NB_FIGDIR": str(out / "figures"),
           "DEFLATION_NB_RESULTS": str(out / f"{name}.json")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(HERE)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        nbformat.write(nb, out / f"{name}.ipynb")  # also when a cell failed: shows the traceback
    wall = time.perf_counter() - start
    html, _ = HTMLExporter().from_notebook_node(nb)
    (out / f"{name}.html").write_text(html)
    return wall


def main(argv: list[str] | None = None) -> int:
    names = notebook_names()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"notebooks to render (default: all of {names})")
    parser.add_argument("--size", choices=["full", "small"], default="full", help="problem sizes (default full)")
    parser.add_argument("--out", type=Path, default=HERE / "_build", help="output folder (default notebooks/_build)")
    parser.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; available: {names}")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.names or names:
        print(f"{name}: running at size {args.size} ...", flush=True)
        try:
            wall = execute(name, args.out, args.size, args.timeout)
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            failed.append(name)
            print(f"{name}: FAILED ({type(exc).__name__}); see {args.out / (name + '.ipynb')}", flush=True)
            continue
        print(f"{name}: {wall:.0f} s -> {args.out / (name + '.html')}", flush=True)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
