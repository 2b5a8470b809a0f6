"""Sphinx configuration of the deflation documentation site.

Build (from the repository root, after ``pip install -e '.[docs]'``)::

    python -m sphinx -M html docs site -W --keep-going      # then open site/html/index.html

Everything the build writes goes under ``site/`` (git-ignored): the pages in ``site/html``, Sphinx's
environment in ``site/doctrees``, MyST-NB's execution cache in ``site/.jupyter_cache`` and the
notebooks' outputs in ``site/jupyter_execute``. The notebooks in ``notebooks/`` (jupytext
percent-format ``.py`` files, reached through the ``docs/notebooks`` symbolic link) are executed
at ``DEFLATION_NB_SIZE=small`` during the build (unless the environment sets another size); the
cache re-runs only a notebook that changed. ``-D nb_execution_mode=off`` builds without executing
them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

# The notebook kernels inherit this process's environment: the quick size unless the caller chose.
os.environ.setdefault("DEFLATION_NB_SIZE", "small")
# figures are shown inline, as in Jupyter (an inherited MPLBACKEND=Agg would show none)
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
for _var in ("DEFLATION_NB_FIGDIR", "DEFLATION_NB_RESULTS"):  # figures go into the pages, not files
    os.environ.pop(_var, None)

import deflation  # noqa: E402  (after the environment is set; turns on float64)

project = "deflation"
author = "the deflation authors"
copyright = "the deflation authors"
release = deflation.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_nb",
    "sphinx-mathjax-offline",  # MathJax 3 shipped with the site (site/html/_static/mathjax): math renders offline
    "deflation_docs",  # _ext/deflation_docs.py: module pages, reference rules, API completeness
    "deflation_cli",  # _ext/deflation_cli.py: the command line pages from build_parser()
]

# --- sources ------------------------------------------------------------------------------------
root_doc = "index"
exclude_patterns = [
    "_build",
    "conf.py",
    "_ext",
    "notebooks/README.md",  # the folder's own read-me; the site's notebooks page is notebooks.md
    "notebooks/render.py",
    "notebooks/_*",
    "**/.ipynb_checkpoints",
]
# notebooks/*.py are jupytext percent-format notebooks
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}

# --- every reference into the package must resolve -----------------------------------------------
# nitpicky + -W: a docstring's :func:`deflation.nope` or a page's {py:class}`...` that does not
# resolve fails the build. Without network access there is no intersphinx: _ext/deflation_docs.py
# renders references to other packages (jax, numpy, diffrax, ...) as plain code.
nitpicky = True
# every name in these modules' __all__ must be documented somewhere in the API reference
api_complete_modules = ["deflation", "deflation.montecarlo"]

# --- API reference from the docstrings (Google-style sections, reST inline markup) ---------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = False
python_use_unqualified_type_names = True

# --- MyST (Markdown pages) and MyST-NB (notebooks) ----------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "cache"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# --- HTML ---------------------------------------------------------------------------------------
smartquotes_action = "qe"  # quotes and ellipses, but no dashes: ``--seeds`` stays ``--seeds``
html_theme = "furo"
html_title = f"deflation {release}"
html_static_path: list[str] = []
# no CDN: the MathJax of sphinx-mathjax-offline (a PyPI package), copied into _static/mathjax
mathjax_path = "mathjax/tex-chtml.js"
html_show_sourcelink = False
