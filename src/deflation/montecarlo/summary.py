"""Summary of a study: per-component discovery probability with Wilson 95% intervals,
discovery-time quantiles, and a PNG of the probability against ``a_i`` (or the swept parameter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..flow import SUCCESS

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


def _yerr(df):
    return [np.clip(df["p"] - df["p_lo"], 0, None), np.clip(df["p_hi"] - df["p"], 0, None)]


def plot(df, ds, path) -> Path:
    """PNG of discovery probability (Wilson 95% intervals) against ``a_i``, or against the swept
    parameter with one line per component."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sweep = ds.attrs.get("sweep") or None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    if sweep is None:
        ax.errorbar(df["a"], df["p"], yerr=_yerr(df), fmt="o", capsize=3)
        ax.set_xlabel("ground-truth weight $a_i$")
        for _, row in df.iterrows():
            ax.annotate(f"i={int(row['component'])}", (row["a"], row["p"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    else:
        for i, g in df.groupby("component"):
            x = g[sweep].astype(float)
            ax.errorbar(x, g["p"], yerr=_yerr(g), marker="o", capsize=3,
                        label=f"$a_{{{i}}}$ = {g['a'].iloc[0]:.3g}")
        vals = df[sweep].astype(float)
        if vals.min() > 0 and vals.max() / vals.min() > 20:
            ax.set_xscale("log")
        ax.set_xlabel(sweep)
        ax.legend(fontsize=7)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("P(discovered by horizon)")
    n = int(df["n"].max()) if len(df) else 0
    ax.set_title(f"{ds.attrs.get('mode', 'full')} flow, d={ds.attrs['d']}, m={ds.attrs['m']}, "
                 f"horizon={ds.attrs['horizon']}, {n} seeds (95% Wilson)", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def default_paths(out) -> tuple[Path, Path]:
    """``(csv, png)`` next to the store: ``study.zarr`` -> ``study.csv``, ``study.png``."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix == ".zarr" else out
    return base.with_name(base.name + ".csv"), base.with_name(base.name + ".png")

