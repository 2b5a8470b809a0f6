"""Summaries of a study: per grid point and component, the probability of discovery with Wilson 95%
intervals and quantiles of the discovery and fit times; the curve P(discovered by time t) with its
band; for Algorithm 2, P(converged within k epochs). Only intact, successful seeds count: a seed
that was not computed (a missing or damaged chunk) or whose solve failed is counted apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..status import Status, describe
from .experiments import EXPERIMENTS
from .points import grid_points, seed_counts
from .store import study_of
from .wilson import wilson_interval

#: Quantiles of the discovery and fit times (among seeds where the event happened).
QUANTILES = (0.1, 0.5, 0.9)

def _status_text(status: np.ndarray) -> str:
    """``"ok"``, or how many computed seeds failed and why (e.g. ``"failed 8 of 8: max_steps reached"``)."""
    computed = status[status >= 0]
    bad = computed[computed != Status.SUCCESS]
    if not bad.size:
        return "ok"
    kinds, counts = np.unique(bad, return_counts=True)
    why = ", ".join(f"{describe(k)} ({c})" if len(kinds) > 1 else describe(k) for k, c in zip(kinds, counts))
    return f"failed {bad.size} of {computed.size}: {why}"


def _ranges(indices) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0..2, 5, 7..8"`` (at most 10 ranges, then ``...``)."""
    parts, idx = [], list(indices)
    i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        parts.append(str(idx[i]) if i == j else f"{idx[i]}..{idx[j]}")
        i = j + 1
    return ", ".join(parts[:10]) + (", ..." if len(parts) > 10 else "")


def failures(ds) -> list[str]:
    """One line per grid point where computed seeds failed (solver status other than success):
    the grid point, the seed indices and the status, e.g. ``"max_steps = 3: seeds 0..7 failed
    (failed 8 of 8: max_steps reached)"``. Empty when every computed seed succeeded."""
    lines = []
    for coords, sel in grid_points(ds):
        status = np.asarray(ds["status"].isel(sel).values)
        bad = np.flatnonzero((status >= 0) & (status != Status.SUCCESS))
        if bad.size:
            where = ", ".join(f"{k} = {v!r}" for k, v in coords.items()) or "the study"
            lines.append(f"{where}: seeds {_ranges(bad.tolist())} failed ({_status_text(status)})")
    return lines


def _quantiles(x, prefix: str) -> dict:
    q = np.quantile(x, QUANTILES) if x.size else [np.nan] * len(QUANTILES)
    return {f"{prefix}_q{round(100 * qq):02d}": float(v) for qq, v in zip(QUANTILES, q)}


def study_caption(ds) -> str:
    """What a study's figures show, as the first part of their titles: the experiment, the target
    kind, the parameters that are the same at every grid point, those that vary with it without
    being swept (Theorem 1's scalings), and the seed count per point."""
    study = study_of(ds)
    grid = set(ds.attrs.get("grid") or [])
    points = study.points()
    fixed, varying = [], []
    for k in ("d", "m", "horizon", "eps", "lam", "delta0", "delta1"):
        if k not in points[0] or k in grid:
            continue
        values = {points[j][k] for j in range(len(points))}
        if len(values) > 1:
            varying.append(k)
        else:
            v = points[0][k]
            fixed.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    kind = points[0]["target"]["kind"]
    return (f"{study.experiment}, target {kind}, " + ", ".join(fixed)
            + (f"; {', '.join(varying)} vary with the grid (Theorem 1)" if varying else "")
            + f"; {study.seeds} seeds per point")


def summarize(ds):
    """A ``pandas.DataFrame``, one row per grid point and component: the grid coordinates, ``a``,
    ``n`` (intact, successful seeds), ``failed`` (solver failures), ``missing`` (not computed),
    ``status`` (``"ok"``, or how many seeds failed and why),
    ``discovered`` (seeds that discovered the component), ``fitted`` (seeds that fitted it; flow
    and algorithm2, which record fits), ``p = discovered / n`` with its Wilson 95% interval
    ``p_lo``, ``p_hi`` (and ``p_fit = fitted / n`` with ``p_fit_lo``, ``p_fit_hi``), and by
    experiment: discovery and fit time quantiles (``t_q10``, ``t_q50``,
    ``t_q90``, ``fit_q..``; flow and phase1), the seeds whose coupling bound exceeded
    ``coupling_tol`` (phase1: ``flagged``, their number among the ``n``, and ``coupling_flagged``,
    their share; such a seed left the regime where Phase 1 approximates the gradient flow), or the
    discovery and fit epochs' quantiles and ``p_converged`` with its interval (algorithm2). A
    quantile is taken over the seeds where the event happened: it is NaN where no seed discovered
    (``discovered = 0``) or fitted (``fitted = 0``) the component."""
    import pandas as pd

    study = study_of(ds)
    points = study.points()
    rows = []
    for j, (coords, sel) in enumerate(grid_points(ds)):
        sub = ds.isel(sel)
        ok, n, failed, missing = seed_counts(sub)
        disc = np.asarray(sub["discovered"].values)[ok]
        a = np.asarray(sub["a"].values)
        extra = {}
        if "converged" in sub:
            conv = int(np.asarray(sub["converged"].values)[ok].sum())
            lo, hi = wilson_interval(conv, n)
            extra = dict(p_converged=conv / n if n else np.nan, p_converged_lo=float(lo), p_converged_hi=float(hi))
            extra.update(_quantiles(np.asarray(sub["epochs"].values)[ok], "epochs"))
        for i in range(a.shape[0]):
            k = int(disc[:, i].sum())
            lo, hi = wilson_interval(k, n)
            row = dict(coords)
            row.update(component=i, a=float(a[i]), n=n, failed=failed, missing=missing,
                       status=_status_text(np.asarray(sub["status"].values)), discovered=k)
            if "fit_epoch" in sub:
                fe = np.asarray(sub["fit_epoch"].values)[ok, i]
                row["fitted"] = int((fe >= 0).sum())
            elif "fit_time" in sub:
                row["fitted"] = int(np.isfinite(np.asarray(sub["fit_time"].values)[ok, i]).sum())
            row.update(p=k / n if n else np.nan, p_lo=float(lo), p_hi=float(hi))
            if "fitted" in row:
                f_lo, f_hi = wilson_interval(row["fitted"], n)
                row.update(p_fit=row["fitted"] / n if n else np.nan, p_fit_lo=float(f_lo), p_fit_hi=float(f_hi))
            if "discovery_epoch" in sub:
                de = np.asarray(sub["discovery_epoch"].values)[ok, i]
                row.update(_quantiles(de[de >= 0], "epoch"))
                if "fit_epoch" in sub:
                    row.update(_quantiles(fe[fe >= 0], "fit_epoch"))
            elif "discovery_time" in sub:
                t = np.asarray(sub["discovery_time"].values)[ok, i]
                row.update(_quantiles(t[np.isfinite(t)], "t"))
                if "fit_time" in sub:
                    f = np.asarray(sub["fit_time"].values)[ok, i]
                    row.update(_quantiles(f[np.isfinite(f)], "fit"))
                if "coupling" in sub:
                    c = np.asarray(sub["coupling"].values)[ok]
                    tol = points[j]["coupling_tol"]
                    row["flagged"] = int((~(c <= tol)).sum())
                    row["coupling_flagged"] = float((~(c <= tol)).mean()) if n else np.nan
            row.update(extra)
            rows.append(row)
    return pd.DataFrame(rows)


def discovery_cdf(ds, num: int = 101):
    """``P(discovered by time t)`` per grid point and component on ``num`` times from 0 to the
    point's horizon, with Wilson 95% bands (flow and phase1): a long ``pandas.DataFrame`` with the
    grid coordinates, ``component``, ``t``, ``p``, ``p_lo``, ``p_hi``, ``n``."""
    import pandas as pd

    if not EXPERIMENTS[ds.attrs["experiment"]].timed:
        raise ValueError(f"discovery_cdf is for studies run to a horizon ({_timed()}); {ds.attrs['experiment']} "
                         "records epochs: see convergence")
    points = study_of(ds).points()
    frames = []
    for j, (coords, sel) in enumerate(grid_points(ds)):
        sub = ds.isel(sel)
        ok, n, _, _ = seed_counts(sub)
        times = np.linspace(0.0, points[j]["horizon"], num)
        t = np.asarray(sub["discovery_time"].values)[ok]  # (n, r)
        for i in range(t.shape[1]):
            k = (t[:, i][None, :] <= times[:, None]).sum(axis=1)
            lo, hi = wilson_interval(k, n)
            frame = pd.DataFrame(dict(component=i, t=times, p=k / n if n else np.nan, p_lo=lo, p_hi=hi, n=n))
            for key, value in coords.items():
                frame[key] = value
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _timed() -> str:
    return ", ".join(e.name for e in EXPERIMENTS.values() if e.timed)


def convergence(ds):
    """``P(converged within k epochs)`` per grid point for ``k = 1 .. max_epochs`` with Wilson 95%
    intervals (algorithm2): a long ``pandas.DataFrame`` with the grid coordinates, ``epochs``,
    ``p``, ``p_lo``, ``p_hi``, ``n``."""
    import pandas as pd

    if EXPERIMENTS[ds.attrs["experiment"]].timed:
        raise ValueError(f"convergence is for studies counted in epochs "
                         f"({', '.join(e.name for e in EXPERIMENTS.values() if not e.timed)}), not "
                         f"{ds.attrs['experiment']}")
    frames = []
    E = ds.sizes["epoch"]
    ks = np.arange(1, E + 1)
    for coords, sel in grid_points(ds):
        sub = ds.isel(sel)
        ok, n, _, _ = seed_counts(sub)
        conv = np.asarray(sub["converged"].values)[ok]
        epochs = np.asarray(sub["epochs"].values)[ok]
        k = ((conv[None, :]) & (epochs[None, :] <= ks[:, None])).sum(axis=1)
        lo, hi = wilson_interval(k, n)
        frame = pd.DataFrame(dict(epochs=ks, p=k / n if n else np.nan, p_lo=lo, p_hi=hi, n=n))
        for key, value in coords.items():
            frame[key] = value
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def format_table(df) -> str:
    """A summary table as fixed-width text."""
    return df.to_string(index=False, float_format=lambda x: f"{x:.4g}")


def integrity(ds) -> str:
    """One line (two if damaged) on what the dataset holds: seeds computed, and the missing or
    damaged chunks, if any."""
    status = np.asarray(ds["status"].values)
    computed, total = int((status >= 0).sum()), int(status.size)
    line = f"{computed}/{total} seeds computed"
    damaged = list(ds.attrs.get("chunks_damaged") or [])
    missing = int(ds.attrs.get("chunks_missing", 0))
    if ds.attrs.get("complete"):
        return line + " (complete, every chunk verified)"
    parts = []
    if missing:
        parts.append(f"{missing} chunk(s) missing")
    if damaged:
        parts.append(f"{len(damaged)} damaged: " + "; ".join(damaged[:3]) + (" ..." if len(damaged) > 3 else ""))
    return line + " (INCOMPLETE: " + ", ".join(parts or ["not finished"]) + "; rerun the study to compute them)"


def default_paths(out) -> dict[str, Path]:
    """The summary files next to a store ``X.zarr``: ``X.csv``, ``X_order.csv`` (the discovery
    orders), ``X_plateaus.csv`` (the times between discoveries), ``X.png`` and ``X_cdf.png``
    (algorithm2: ``X_convergence.png``)."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix == ".zarr" else out
    name = base.name
    return dict(csv=base.with_name(name + ".csv"), order=base.with_name(name + "_order.csv"),
                plateaus=base.with_name(name + "_plateaus.csv"), png=base.with_name(name + ".png"),
                cdf=base.with_name(name + "_cdf.png"), convergence=base.with_name(name + "_convergence.png"))


def _write(path: Path, write, out) -> Path:
    """``write(temporary path)``, then moved onto ``path`` (``os.replace``): a file either is
    complete or is not there (a full disk leaves no truncated file). An ``OSError`` says which path
    and that the store itself is untouched."""
    import os
    import tempfile

    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        failed = OSError(f"cannot write {path} ({err.strerror or err}); the stored chunks in {out} are safe (only the "
                         "summary files are not written): free space, or choose --csv/--png in a writable place")
        failed.errno = err.errno
        raise failed from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_summary(ds, out, csv=None, png=None) -> dict[str, Path]:
    """Write the summary tables (CSV: per component, the discovery orders, the plateaus) and
    figures, each atomically; returns their paths. By default they go next to the store
    (:func:`default_paths`); with ``csv`` the other two tables go next to it (``<csv
    stem>_order.csv``, ``_plateaus.csv``), with ``png`` the second figure goes next to it (``<png
    stem>_cdf.png``, algorithm2: ``_convergence.png``)."""
    from ..plots import plot_convergence, plot_discovery_cdf, plot_study

    paths = default_paths(out)
    if csv is not None:
        csv = Path(csv)
        paths.update(csv=csv, order=csv.with_name(csv.stem + "_order.csv"),
                     plateaus=csv.with_name(csv.stem + "_plateaus.csv"))
    if png is not None:
        png = Path(png)
        paths.update(png=png, cdf=png.with_name(png.stem + "_cdf.png"),
                     convergence=png.with_name(png.stem + "_convergence.png"))
    from .order import order_distribution, plateau_times

    df = summarize(ds)
    _write(paths["csv"], lambda tmp: df.to_csv(tmp, index=False), out)
    _write(paths["order"], lambda tmp: order_distribution(ds).to_csv(tmp, index=False), out)
    _write(paths["plateaus"], lambda tmp: plateau_times(ds).to_csv(tmp, index=False), out)
    caption = study_caption(ds)
    _write(paths["png"], lambda tmp: plot_study(df, ds, tmp, caption), out)
    written = dict(csv=paths["csv"], order=paths["order"], plateaus=paths["plateaus"], png=paths["png"])
    if not EXPERIMENTS[ds.attrs["experiment"]].timed:
        _write(paths["convergence"], lambda tmp: plot_convergence(convergence(ds), ds, tmp, caption), out)
        written["convergence"] = paths["convergence"]
    else:
        # 401 times: fine enough for steep rises
        _write(paths["cdf"], lambda tmp: plot_discovery_cdf(discovery_cdf(ds, num=401), ds, tmp, caption), out)
        written["cdf"] = paths["cdf"]
    return written
