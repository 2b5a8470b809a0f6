"""The Wilson score interval of a binomial proportion, for every probability a study reports (its
own module so that the figures, which :mod:`deflation.montecarlo.summary` draws, can use it too)."""

from __future__ import annotations

import numpy as np


def wilson_interval(k, n, z: float = 1.959963984540054):
    """Wilson score interval for a binomial proportion ``k / n`` (default 95%).

    Returns ``(lo, hi)`` (arrays if ``k``, ``n`` are) within ``[0, 1]``: ``lo`` is exactly 0 where
    ``k = 0`` and ``hi`` exactly 1 where ``k = n`` (the formula gives them up to rounding, e.g.
    ``0.9999999999999999``); ``(nan, nan)`` where ``n = 0``.
    """
    k = np.asarray(k, np.float64)
    n = np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        center = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        lo = np.where(k <= 0, 0.0, np.clip(center - half, 0, 1))
        hi = np.where(k >= n, 1.0, np.clip(center + half, 0, 1))
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)
