"""Run ``deflation.bench.solvers`` (same as ``deflation bench solvers``); see benchmarks/README.md.

Usage: python benchmarks/solvers.py [--quick] [--help]
"""

import sys

import deflation  # noqa: F401  (enables float64)
from deflation.bench.solvers import main

if __name__ == "__main__":
    sys.exit(main())
