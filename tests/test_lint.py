"""The repository passes ruff's lint (``ruff check``, configured in pyproject.toml under ``[tool.ruff]``):
the package, the tests, the benchmarks, the notebooks and the documentation's extension. Skipped
where ruff is not installed (it is in the ``test`` extra)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="needs ruff (pip install ruff)")
def test_the_repository_passes_ruff_check():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ruff check found problems:\n{proc.stdout}{proc.stderr}"
