"""Benchmarks shipped with the package (run by ``deflation bench ...`` and ``benchmarks/*.py``).

Every figure is a ratio measured side by side in one run (the best of several repeats), written
to a JSON file with the device it ran on. Nothing here is imported by ``import deflation``.
"""
