"""The order in which a study's seeds discover the components, and the plateaus between discoveries.

The deflation process (paper Section 5) discovers components one at a time, the largest weight
first. Per grid point, over the intact seeds that succeeded:

- :func:`discovery_order`: ``p_in_order``, the share of seeds that discover every component and
  do so in the order of decreasing weight ``a_i`` (strictly: a tie in time or, for
  ``algorithm2``, in epoch, is not in order), with its Wilson 95% interval, and how many seeds
  discovered every component;
- :func:`order_distribution`: every discovery order that occurs (``"1>2>3"``: ``u_1`` first;
  components never discovered are left out, ``"1>3"``; a tie is written ``"1=2"``), its count and
  share with Wilson 95% intervals, most frequent first;
- :func:`plateau_times`: the plateaus of the loss staircase, the time from the ``k``-th to the
  ``(k+1)``-th discovery (``k = 0``: from the start to the first), their median over the seeds
  that reached the ``(k+1)``-th with a bootstrap 95% interval of the median (a fixed generator:
  the same store gives the same table).

Flow-like studies read ``discovery_time``; ``algorithm2`` reads ``discovery_epoch`` (the epoch
counts as the time, so plateaus are in epochs).
"""

from __future__ import annotations

import numpy as np

from .points import grid_points, seed_counts
from .wilson import wilson_interval

#: Bootstrap resamples of a median (plateau times) and the generator's seed.
BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0


def _times(sub) -> np.ndarray:
    """Discovery times (n, r) of the successful seeds: ``inf`` where never discovered."""
    ok, _, _, _ = seed_counts(sub)
    if "discovery_epoch" in sub:
        e = np.asarray(sub["discovery_epoch"].values)[ok].astype(float)
        return np.where(e >= 0, e, np.inf)
    return np.asarray(sub["discovery_time"].values, float)[ok]


def _order_text(t: np.ndarray) -> str:
    """``"1>2>3"`` for one seed's times (r,), ties as ``"1=2"``, never-discovered left out."""
    found = [i for i in np.argsort(t, kind="stable") if np.isfinite(t[i])]
    if not found:
        return "none"
    text = str(found[0] + 1)
    for prev, i in zip(found, found[1:]):
        text += ("=" if t[i] == t[prev] else ">") + str(i + 1)
    return text


def _in_weight_order(t: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Per seed: every component discovered, strictly in the order of decreasing weight."""
    ranked = t[:, np.argsort(-a, kind="stable")]
    with np.errstate(invalid="ignore"):  # inf - inf where a component is never discovered
        rising = (np.diff(ranked, axis=1) > 0).all(axis=1)
    return np.isfinite(ranked).all(axis=1) & rising


def discovery_order(ds):
    """One row per grid point: the grid coordinates, ``n``, ``all_discovered``, ``in_order``
    (seeds discovering every component in the order of decreasing weight) and ``p_in_order``
    with its Wilson 95% interval ``p_in_order_lo``, ``p_in_order_hi``."""
    import pandas as pd

    rows = []
    for coords, sel in grid_points(ds):
        sub = ds.isel(sel)
        t, a = _times(sub), np.asarray(sub["a"].values)
        n = t.shape[0]
        k = int(_in_weight_order(t, a).sum())
        lo, hi = wilson_interval(k, n)
        rows.append(dict(coords, n=n, all_discovered=int(np.isfinite(t).all(axis=1).sum()), in_order=k,
                         p_in_order=k / n if n else np.nan, p_in_order_lo=float(lo), p_in_order_hi=float(hi)))
    return pd.DataFrame(rows)


def order_distribution(ds):
    """A long table: per grid point, each discovery ``order`` that occurs, ``count``, ``n``,
    ``p = count / n`` with its Wilson 95% interval, and ``weight_order`` (whether it is every
    component in the order of decreasing weight); most frequent first."""
    import pandas as pd

    frames = []
    for coords, sel in grid_points(ds):
        sub = ds.isel(sel)
        t, a = _times(sub), np.asarray(sub["a"].values)
        n = t.shape[0]
        want = ">".join(str(i + 1) for i in np.argsort(-a, kind="stable"))
        texts, counts = np.unique([_order_text(row) for row in t], return_counts=True)
        order = np.lexsort((texts, -counts))
        lo, hi = wilson_interval(counts[order], n)
        frame = pd.DataFrame(dict(order=texts[order], count=counts[order], n=n, p=counts[order] / max(n, 1),
                                  p_lo=lo, p_hi=hi, weight_order=texts[order] == want))
        for key, value in reversed(list(coords.items())):
            frame.insert(0, key, value)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _median_interval(x: np.ndarray, rng) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the median of ``x``."""
    if x.size < 2:
        return (float(x[0]), float(x[0])) if x.size else (np.nan, np.nan)
    medians = np.median(rng.choice(x, size=(BOOTSTRAP, x.size), replace=True), axis=1)
    lo, hi = np.quantile(medians, [0.025, 0.975])
    return float(lo), float(hi)


def plateau_times(ds):
    """A long table: per grid point and ``k = 0 .. r - 1``, the plateau before the ``(k+1)``-th
    discovery (``k = 0``: the time to the first), over the ``seeds`` that made it: ``median``,
    its bootstrap 95% interval ``median_lo``, ``median_hi``, and the 10% and 90% quantiles."""
    import pandas as pd

    rows = []
    for coords, sel in grid_points(ds):
        sub = ds.isel(sel)
        t = np.sort(_times(sub), axis=1)
        start = np.concatenate([np.zeros((t.shape[0], 1)), t[:, :-1]], axis=1)
        with np.errstate(invalid="ignore"):  # inf - inf: no plateau after the last discovery
            gaps = t - start
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        for k in range(t.shape[1]):
            x = gaps[:, k][np.isfinite(gaps[:, k])]
            lo, hi = _median_interval(x, rng)
            q10, q50, q90 = np.quantile(x, [0.1, 0.5, 0.9]) if x.size else (np.nan,) * 3
            rows.append(dict(coords, k=k, seeds=int(x.size), median=float(q50), median_lo=lo, median_hi=hi,
                             q10=float(q10), q90=float(q90)))
    return pd.DataFrame(rows)
