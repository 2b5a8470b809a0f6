"""Summary of a study: per-component discovery probability with Wilson 95% intervals and
discovery-time quantiles (the figure is :func:`deflation.plots.plot_study`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..integrate import SUCCESS

#: Quantiles of the discovery time (among seeds where the component was discovered).
QUANTILES = (0.1, 0.5, 0.9)


def wilson_interval(k, n, z: float = 1.959963984540054):
    """Wilson score interval for a binomial proportion ``k / n`` (default 95%).

    Returns ``(lo, hi)`` (arrays if ``k``, ``n`` are); ``(nan, nan)`` where ``n = 0``.
    """
    k = np.asarray(k, np.float64)
    n = np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        center = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        lo, hi = np.clip(center - half, 0, 1), np.clip(center + half, 0, 1)
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


def summarize(ds):
    """A ``pandas.DataFrame``, one row per (sweep value,) component: ``a``, seeds computed (``n``),
    failed solves (``failed``, excluded from ``n``), ``discovered``, probability ``p`` with its
    Wilson 95% interval ``p_lo, p_hi``, discovery-time quantiles ``t_q10, t_q50, t_q90`` and the
    median fit time; in decoupled mode also the share of seeds whose coupling bound exceeded
    ``coupling_tol`` (``coupling_flagged``)."""
    import pandas as pd

    sweep = ds.attrs.get("sweep") or None
    points = list(ds[sweep].values) if sweep else [None]
    rows = []
    for j, value in enumerate(points):
        sub = ds.isel({sweep: j}) if sweep else ds
        status = np.asarray(sub["status"].values)
        computed = status >= 0
        ok = computed & (status == SUCCESS)
        disc = np.asarray(sub["discovered"].values)[ok]
        times = np.asarray(sub["discovery_time"].values)[ok]
        fits = np.asarray(sub["fit_time"].values)[ok]
        n = int(ok.sum())
        for i, a in enumerate(np.asarray(ds["a"].values)):
            k = int(disc[:, i].sum())
            lo, hi = wilson_interval(k, n)
            t = times[disc[:, i], i]
            q = np.quantile(t, QUANTILES) if t.size else [np.nan] * len(QUANTILES)
            f = fits[np.isfinite(fits[:, i]), i]
            row = {} if sweep is None else {sweep: value}
            row.update(component=i, a=float(a), n=n, failed=int((computed & ~ok).sum()), discovered=k,
                       p=k / n if n else np.nan, p_lo=float(lo), p_hi=float(hi))
            row.update({f"t_q{round(100 * qq):02d}": float(v) for qq, v in zip(QUANTILES, q)})
            row["fit_median"] = float(np.median(f)) if f.size else np.nan
            if "coupling" in ds:
                c = np.asarray(sub["coupling"].values)[ok]
                row["coupling_flagged"] = float((~(c <= float(ds.attrs["coupling_tol"]))).mean()) if n else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def format_table(df) -> str:
    """The summary as a fixed-width text table."""
    return df.to_string(index=False, float_format=lambda x: f"{x:.4g}")


def default_paths(out) -> tuple[Path, Path]:
    """``(csv, png)`` next to the store: ``study.zarr`` -> ``study.csv``, ``study.png``."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix == ".zarr" else out
    return base.with_name(base.name + ".csv"), base.with_name(base.name + ".png")

