"""Run ``deflation.bench.throughput`` (same as ``deflation bench throughput``); see benchmarks/README.md.

Usage: python benchmarks/throughput.py [--quick] [--help]
"""

import sys

import deflation  # noqa: F401  (enables float64)
from deflation.bench.throughput import main

if __name__ == "__main__":
    sys.exit(main())
