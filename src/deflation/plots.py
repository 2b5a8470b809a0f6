"""Every figure of the package: Figure 1, an Algorithm 2 run, a Monte Carlo study, and the
notebooks' ``show`` helper.

matplotlib is imported inside the functions, and figures are built as ``matplotlib.figure.Figure``
objects (no pyplot state, no backend chosen for the user): saving a PNG works on any machine, and
in a notebook the returned figure displays itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2))]


def component_colors(r: int) -> list:
    """``r`` colours that can be told apart: tab10, then tab20 and further hues for larger ``r``."""
    from matplotlib import colormaps

    if r <= 10:
        return [colormaps["tab10"](i) for i in range(r)]
    if r <= 20:
        return [colormaps["tab20"](i) for i in range(r)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, r)]


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def show(fig, name: str, prefix: str = "") -> None:
    """Display ``fig`` in a notebook, and save it as ``{prefix}_{name}.png`` in the folder named by
    the environment variable ``DEFLATION_NB_FIGDIR`` when it is set (the notebooks' test run and
    ``notebooks/render.py`` set it)."""
    figdir = os.environ.get("DEFLATION_NB_FIGDIR")
    if figdir:
        Path(figdir).mkdir(parents=True, exist_ok=True)
        stem = f"{prefix}_{name}" if prefix else name
        fig.savefig(Path(figdir) / f"{stem}.png", dpi=110, bbox_inches="tight")
    if getattr(fig.canvas, "manager", None) is not None:  # made by pyplot: its backend shows it
        import matplotlib.pyplot as plt

        plt.show()
        plt.close(fig)
        return
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - outside IPython there is nothing to display
        return
    display(fig)


def plot_figure1(result, target, path: str | Path | None = None, title: str | None = None):
    """The two panels of the paper's Figure 1 from a batched :class:`deflation.FlowResult`.

    Left: the loss ``1/2 |T - T*|_F^2`` on a log scale, one line style per seed; values below the
    accuracy floor ``result.loss_floor`` (rounding and integration error) are not drawn, since
    they would be noise, and the floor itself is drawn as a thin grey line. Right: the residual
    ``(T* - T)(u_i^{(x)p})`` on each ground-truth direction, one colour per direction and the same
    line style per seed; a dot marks each fit time. Returns the figure; writes it to ``path`` if given.
    """
    ts = np.asarray(result.ts)
    loss = np.atleast_2d(np.asarray(result.loss))
    floor = np.atleast_2d(np.asarray(result.loss_floor))
    residual = np.asarray(result.residual)
    if residual.ndim == 2:
        residual = residual[None]
    fit = np.atleast_2d(np.asarray(result.fit_time))
    a = np.asarray(target.a)
    n_seeds, r = loss.shape[0], residual.shape[-1]
    colors = component_colors(r)

    fig = _figure(figsize=(11, 4.2), layout="constrained")
    ax_l, ax_r = fig.subplots(1, 2)
    for s in range(n_seeds):
        ls = LINESTYLES[s % len(LINESTYLES)]
        shown = np.where(loss[s] > floor[s], loss[s], np.nan)
        ax_l.plot(ts, shown, ls=ls, color="k", lw=1.2, label=f"seed {s}")
        for i in range(r):
            ax_r.plot(ts, residual[s, :, i], ls=ls, color=colors[i], lw=1.1)
            if np.isfinite(fit[s, i]):
                ax_r.plot(fit[s, i], np.interp(fit[s, i], ts, residual[s, :, i]), "o", ms=3, color=colors[i])
    ax_l.plot(ts, floor.max(axis=0), color="0.6", lw=0.8, label="accuracy floor (not resolved below)")
    ax_l.set_yscale("log")
    ax_l.set_xlabel("time t")
    ax_l.set_ylabel(r"loss $\frac{1}{2}\|T - T^*\|_F^2$")
    ax_l.legend(fontsize=8, loc="lower left")
    for i in range(r):
        ax_r.plot([], [], color=colors[i], label=rf"$u_{{{i + 1}}}$, $a={a[i]:.3f}$")
    ax_r.axhline(0.0, color="0.7", lw=0.8)
    ax_r.set_xlabel("time t")
    ax_r.set_ylabel(r"residual $(T^* - T)(u_i^{\otimes p})$")
    ax_r.legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


def _seed_slice(result, seed: int):
    """NumPy copies of the record and scalars of one run (``seed``: batch index)."""
    import jax

    rec = jax.tree_util.tree_map(np.asarray, result.record)
    if result.batched:
        rec = jax.tree_util.tree_map(lambda x: x[seed], rec)
    return rec


def plot_algorithm2(result, target, path: str | os.PathLike, *, seed: int = 0, title: str | None = None) -> str:
    """Save a PNG of one run of :func:`deflation.modified_gradient_flow`.

    Top: the residual ``(T* - T)(u_i^p)`` along every ground-truth direction and ``|T - T*|_F``
    against time across all epochs that ran (log scale), with epoch starts (solid) and the
    re-draws between the phases (dotted) marked, and the thresholds ``2 lam`` (fitted),
    ``lam / 2`` (the regularized equilibrium) and ``eps``. Bottom left: ``beta`` and
    ``|T - T*|_F`` after each phase per epoch. Bottom right: phase lengths ``t1``, ``t2`` per
    epoch and the measured discovery / fit times of the components within their epoch.

    Args:
        result: an :class:`deflation.algorithm.Algorithm2Result`.
        target: the :class:`deflation.Target` it ran on (for the weights).
        path: output file (PNG).
        seed: batch index to plot when the result is batched.
        title: figure title (default: a summary of the run).

    Returns:
        the path written.
    """
    from matplotlib.figure import Figure

    rec = _seed_slice(result, seed)
    cfg = result.config
    a = np.asarray(target.a)
    r = a.shape[0]
    active = rec.active.astype(bool)
    E = int(active.sum())
    fig = Figure(figsize=(12, 8.5), layout="constrained")
    gs = fig.add_gridspec(2, 2, height_ratios=[1.35, 1])
    ax = fig.add_subplot(gs[0, :])
    colors = component_colors(r)
    floor = 1e-3 * cfg.lam
    marked = False
    for s in range(E):
        t = rec.trace_t[s]
        for i in range(r):
            ax.plot(t, np.maximum(np.abs(rec.trace_residual[s, :, i]), floor), color=colors[i], lw=1.2,
                    label=f"$i={i}$, $a_i$={a[i]:.3g}" if s == 0 else None)
        ax.plot(t, rec.trace_residual_norm[s], color="k", lw=1.6, label=r"$\|T-T^*\|_F$" if s == 0 else None)
        ax.axvline(rec.t_start[s], color="0.3", lw=0.8)
        ax.axvline(rec.t_start[s] + rec.t1[s], color="0.5", lw=0.8, ls=":")
        ax.annotate(f"s={s}", (rec.t_start[s], 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                    textcoords="offset points", fontsize=8, color="0.3")
        for i in np.flatnonzero(np.isfinite(rec.discovery_time[s])):  # discovery: S_i becomes non-empty
            td = rec.t_start[s] + rec.discovery_time[s, i]
            ax.plot([td], [max(abs(float(np.interp(td, t, rec.trace_residual[s, :, i]))), floor)], "^",
                    color=colors[i], mec="k", mew=0.5, ms=7, label=None if marked else "discovery (Def. 1)")
            marked = True
    ax.axhline(2 * cfg.lam, color="tab:red", ls="--", lw=1, label=r"$2\lambda$ (fitted)")
    ax.axhline(cfg.lam / 2, color="tab:orange", ls="--", lw=1, label=r"$\lambda/2$ (equilibrium)")
    ax.axhline(cfg.eps, color="k", ls="-.", lw=1, label=r"$\epsilon$")
    ax.set_yscale("log")
    ax.set_xlabel("time t (solid: epoch starts, dotted: re-draws between Phase 1 and Phase 2)")
    ax.set_ylabel(r"residual $(T^*-T)(u_i^{\otimes 4})$")
    ax.legend(fontsize=7, ncol=2 if r > 8 else 1, loc="upper right")
    conv = bool(np.asarray(result.converged)[seed] if result.batched else result.converged)
    ax.set_title(title or (
        f"Algorithm 2: d={target.d}, r={r}, m={cfg.m}, lam={cfg.lam:.3g}, delta0={cfg.delta0:.3g}, "
        f"delta1={cfg.delta1:.3g}, gamma={cfg.gamma:g}, eps={cfg.eps:g} - "
        + (f"converged in {E} epochs" if conv else f"not converged after {E} epochs")))

    s_idx = np.arange(E)
    bx = fig.add_subplot(gs[1, 0])
    bx.plot(s_idx, rec.beta[:E], "-", marker=".", color="tab:blue", label=r"$\beta^{(s)}$")
    bx.plot(s_idx, rec.residual_norm_phase1[:E], "o", color="tab:green", label=r"$\|T-T^*\|_F$ after Phase 1")
    bx.plot(s_idx, rec.residual_norm_phase2[:E], "s", color="k", mfc="none", label=r"$\|T-T^*\|_F$ after Phase 2")
    bx.axhline(cfg.eps, color="k", ls="-.", lw=1, label=r"$\epsilon$")
    for i in range(r):
        bx.axhline(a[i], color=colors[i], lw=0.5, alpha=0.6)
    bx.set_yscale("log")
    bx.set_xlabel("epoch s")
    bx.set_title(r"$\beta$ and residual per epoch (thin lines: $a_i$)", fontsize=10)
    bx.legend(fontsize=7)

    cx = fig.add_subplot(gs[1, 1])
    cx.plot(s_idx, rec.t1[:E], "-", color="tab:blue", label=r"$t_1$ (Phase 1)")
    cx.plot(s_idx, rec.t2[:E], "-", color="tab:purple", label=r"$t_2$ (Phase 2)")
    cx.plot(s_idx, rec.t1[:E] + rec.t2[:E], ":", color="0.4", label="epoch length")
    for i in range(r):
        d_t = rec.discovery_time[:E, i]
        f_t = rec.fit_time[:E, i]
        ok = np.isfinite(d_t)
        cx.plot(s_idx[ok], d_t[ok], "^", color=colors[i], ms=6, label="discovery time" if i == 0 else None)
        ok = np.isfinite(f_t)
        cx.plot(s_idx[ok], f_t[ok], "v", color=colors[i], ms=6, mfc="none", label="fit time" if i == 0 else None)
    cx.set_yscale("log")
    cx.set_xlabel("epoch s")
    cx.set_title("phase lengths and measured discovery / fit times (from epoch start)", fontsize=10)
    cx.legend(fontsize=7)
    from matplotlib.ticker import MaxNLocator

    for axis in (bx, cx):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.savefig(path, dpi=110)
    return str(path)


def _yerr(df, col: str = "p"):
    return [np.clip(df[col] - df[f"{col}_lo"], 0, None), np.clip(df[f"{col}_hi"] - df[col], 0, None)]


def _study_title(ds, extra: str = "", inches: float = 7.0) -> str:
    """What a study figure shows: the experiment, the fixed parameters and the seed count."""
    from .montecarlo.store import study_of

    study = study_of(ds)
    grid = set(ds.attrs.get("grid") or [])
    point = study.points()[0]
    fixed = [f"{k}={point[k]:.3g}" if isinstance(point[k], float) else f"{k}={point[k]}"
             for k in ("d", "m", "horizon", "eps", "lam", "delta0", "delta1") if k in point and k not in grid]
    kind = point["target"]["kind"]
    text = (f"{study.experiment}, target {kind}, " + ", ".join(fixed) + f"; {study.seeds} seeds per point"
            + (f"; {extra}" if extra else ""))
    import textwrap

    return "\n".join(textwrap.wrap(text, width=int(13 * inches)))  # ~13 characters per inch at 9 pt


def _log_axis(values) -> bool:
    v = np.asarray(values, float)
    return bool(v.size > 1 and v.min() > 0 and v.max() / v.min() > 20)


def plot_study(df, ds, path) -> Path:
    """The main figure of a study (``df``: :func:`deflation.montecarlo.summarize`'s table): the
    probability that each component is discovered (Definition 1; by the horizon, or in some epoch
    of Algorithm 2) with Wilson 95% intervals, drawn against the component (no grid), against the
    swept parameter (a 1-D grid: one line per component), or as one heatmap per component (a 2-D
    grid; further grid dimensions give further rows). Algorithm 2 adds P(converged)."""
    grid = list(ds.attrs.get("grid") or [])
    alg2 = ds.attrs["experiment"] == "algorithm2"
    r = int(df["component"].max()) + 1
    colors = component_colors(r)
    what = "P(discovered in some epoch)" if alg2 else "P(discovered by the horizon)"
    if len(grid) <= 1:
        fig = _figure(figsize=(7.5, 4.6), dpi=120, layout="constrained")
        ax = fig.subplots()
        if not grid:
            ax.errorbar(df["component"], df["p"], yerr=_yerr(df), fmt="o", ms=7, capsize=5, elinewidth=1.5,
                        color="k", ecolor="0.3", label=what)
            ax.set_xticks(df["component"], [f"$u_{{{i + 1}}}$\n$a$={a:.3g}" for i, a in zip(df["component"], df["a"])])
            ax.set_xlabel("ground-truth component (weight $a_i$)")
            ax.set_xlim(-0.5, r - 0.5)
            if alg2:
                row = df.iloc[0]
                ax.axhspan(row["p_converged_lo"], row["p_converged_hi"], color="tab:green", alpha=0.2)
                ax.axhline(row["p_converged"], color="tab:green", lw=1.5, label="P(converged), 95% band")
        else:
            name = grid[0]
            for i, g in df.groupby("component"):
                x = g[name].astype(float)
                ax.errorbar(x, g["p"], yerr=_yerr(g), marker="o", ms=5, capsize=4, elinewidth=1.2, color=colors[i],
                            label=f"$u_{{{i + 1}}}$ ($a$ = {g['a'].iloc[0]:.3g})")
            if alg2:
                g = df[df["component"] == 0]
                ax.errorbar(g[name].astype(float), g["p_converged"], yerr=_yerr(g, "p_converged"), marker="s",
                            color="k", ls="--", capsize=4, label="P(converged)")
            if _log_axis(df[name]):
                ax.set_xscale("log")
            ax.set_xlabel(name)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel(what)
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
        ax.set_title(_study_title(ds, "95% Wilson intervals", 7.5), fontsize=9)
    else:
        fig = _heatmaps(df, ds, grid, what, alg2)
    path = Path(path)
    fig.savefig(path)
    return path


def _heatmaps(df, ds, grid, what: str, alg2: bool):
    """One heatmap per component (and P(converged)) over the first two grid dimensions; one row
    per combination of the others (at most four)."""
    import itertools

    ydim, xdim = grid[0], grid[1]
    rest = grid[2:]
    combos = list(itertools.product(*[list(ds[k].values) for k in rest]))[:4] if rest else [()]
    r = int(df["component"].max()) + 1
    panels = [(i, "p", f"$u_{{{i + 1}}}$") for i in range(r)] + ([(0, "p_converged", "converged")] if alg2 else [])
    ncol = len(panels)
    fig = _figure(figsize=(2.9 * ncol + 1.2, 2.7 * len(combos) + 0.9), dpi=120, layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(combos), ncol, squeeze=False))
    yv, xv = list(ds[ydim].values), list(ds[xdim].values)
    image = None
    for row, combo in enumerate(combos):
        sub = df
        for k, v in zip(rest, combo):
            sub = sub[sub[k] == v]
        for col, (i, column, label) in enumerate(panels):
            ax = axes[row, col]
            g = sub[sub["component"] == i]
            Z = np.full((len(yv), len(xv)), np.nan)
            for _, rec in g.iterrows():
                Z[yv.index(rec[ydim]), xv.index(rec[xdim])] = rec[column]
            image = ax.imshow(Z, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
            for (yi, xi), z in np.ndenumerate(Z):
                if np.isfinite(z):
                    ax.text(xi, yi, f"{z:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if z < 0.6 else "black")
            ax.set_xticks(range(len(xv)), [f"{v:g}" for v in xv])
            ax.set_yticks(range(len(yv)), [f"{v:g}" for v in yv])
            ax.set_xlabel(xdim)
            if col == 0:
                ax.set_ylabel(ydim)
            a = g["a"].iloc[0] if len(g) and column == "p" else None
            title = label if a is None else f"{label} ($a$ = {a:.3g})"
            if combo:
                title += " | " + ", ".join(f"{k}={v:g}" for k, v in zip(rest, combo))
            ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.9, label=what + " (P(converged) in the last panel)" if alg2 else what)
    fig.suptitle(_study_title(ds, "cell value: probability over the seeds", 2.9 * ncol + 1.2), fontsize=9)
    return fig


def _point_label(row, grid) -> str:
    return ", ".join(f"{k}={row[k]:g}" for k in grid) if grid else "all seeds"


def plot_discovery_cdf(cdf, ds, path) -> Path:
    """P(discovered by time t) of each component (one panel each) with its Wilson 95% band, one
    curve per grid point (at most eight; ``cdf``: :func:`deflation.montecarlo.discovery_cdf`)."""
    grid = list(ds.attrs.get("grid") or [])
    r = int(cdf["component"].max()) + 1
    ncol = min(r, 4)
    nrow = -(-r // ncol)
    fig = _figure(figsize=(3.6 * ncol, 3.0 * nrow + 0.6), dpi=120, layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    keys = cdf[grid].drop_duplicates().head(8) if grid else None
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    n_lines = 1 if keys is None else len(keys)
    for i in range(r):
        ax = axes[i]
        sub = cdf[cdf["component"] == i]
        rows = [None] if keys is None else [row for _, row in keys.iterrows()]
        for j, row in enumerate(rows):
            g = sub if row is None else sub[(sub[grid] == row[grid].values).all(axis=1)]
            color = "k" if n_lines == 1 else cmap(0.9 * j / max(n_lines - 1, 1))
            ax.plot(g["t"], g["p"], color=color, lw=1.4, label=None if row is None else _point_label(row, grid))
            ax.fill_between(g["t"], g["p_lo"], g["p_hi"], color=color, alpha=0.18, lw=0)
        ax.set_ylim(-0.03, 1.03)
        a = float(ds["a"].values.reshape(-1, r)[0, i])
        ax.set_title(f"$u_{{{i + 1}}}$ ($a$ = {a:.3g})", fontsize=9)
        ax.set_xlabel("time t")
        ax.grid(alpha=0.3)
        if i % ncol == 0:
            ax.set_ylabel("P(discovered by t)")
    for ax in axes[r:]:
        ax.set_visible(False)
    if keys is not None and n_lines > 1:
        axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(_study_title(ds, "shaded: 95% Wilson band", 3.6 * ncol), fontsize=9)
    path = Path(path)
    fig.savefig(path)
    return path


def plot_convergence(conv, ds, path) -> Path:
    """P(Algorithm 2 converged within k epochs) against k with its Wilson 95% band, one curve per
    grid point (at most eight; ``conv``: :func:`deflation.montecarlo.convergence`)."""
    grid = list(ds.attrs.get("grid") or [])
    fig = _figure(figsize=(6.5, 4.2), dpi=120, layout="constrained")
    ax = fig.subplots()
    keys = conv[grid].drop_duplicates().head(8) if grid else None
    rows = [None] if keys is None else [row for _, row in keys.iterrows()]
    colors = component_colors(len(rows))
    for j, row in enumerate(rows):
        g = conv if row is None else conv[(conv[grid] == row[grid].values).all(axis=1)]
        ax.step(g["epochs"], g["p"], where="post", color="k" if row is None else colors[j], lw=1.5,
                label=None if row is None else _point_label(row, grid))
        ax.fill_between(g["epochs"], g["p_lo"], g["p_hi"], step="post", color="k" if row is None else colors[j],
                        alpha=0.15, lw=0)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("epochs k")
    ax.set_ylabel("P(converged within k epochs)")
    ax.grid(alpha=0.3)
    if keys is not None:
        ax.legend(fontsize=8)
    ax.set_title(_study_title(ds, "shaded: 95% Wilson band", 6.5), fontsize=9)
    path = Path(path)
    fig.savefig(path)
    return path
