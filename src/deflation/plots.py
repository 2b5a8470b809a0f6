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
DISCOVERY_MARKER = "^"  # discovery time (Definition 1), in every figure
FIT_MARKER = "o"  # fit time


def component_colors(r: int) -> list:
    """``r`` colours that can be told apart, one per ground-truth component: tab10 (without its grey
    for ``r <= 9``, since every figure draws its reference lines in grey), then tab20 (without its
    greys for ``r <= 18``), then evenly spaced hues of turbo for larger ``r``."""
    from matplotlib import colormaps

    if r <= 10:
        keep = [i for i in range(10) if i != 7 or r == 10]  # tab10's index 7 is grey
        return [colormaps["tab10"](i) for i in keep[:r]]
    if r <= 20:
        keep = [i for i in range(20) if i not in (14, 15) or r > 18]  # tab20's 14, 15 are greys
        return [colormaps["tab20"](i) for i in keep[:r]]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, r)]


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def plain_log_ticks(axis, max_decades: float = 2.5) -> None:
    """On a log-scaled ``axis`` (``ax.xaxis`` or ``ax.yaxis``) spanning at most ``max_decades``
    decades, put the labelled ticks at 1, 2 and 5 x 10^k, written as plain numbers (``20``,
    ``0.005``, ``1e-06``), and leave the other ticks unlabelled; matplotlib would otherwise label
    minor ticks as ``3 x 10^1``, ``4 x 10^1``, ... which overlap on a short axis. Wider axes are left
    as they are. Call it after the axis limits are final."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    if lo <= 0 or np.log10(hi / lo) > max_decades:
        return
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


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


def _marker_handles(discovery_label: str, fit_label: str) -> list:
    """Legend entries for the discovery and fit markers (neutral colour: the colour is the component's)."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], ls="none", marker=DISCOVERY_MARKER, color="0.55", mec="k", mew=0.6, ms=6, label=discovery_label),
            Line2D([], [], ls="none", marker=FIT_MARKER, color="0.55", mec="k", mew=0.6, ms=5, label=fit_label)]


def _mark_times(ax, ts, curve, times, color, marker, size) -> None:
    """One marker per finite time in ``times``, on ``curve`` (sampled at ``ts``)."""
    times = np.asarray(times, dtype=float)
    times = times[np.isfinite(times)]
    if times.size:
        ax.plot(times, np.interp(times, ts, curve), ls="none", marker=marker, ms=size, color=color, mec="k",
                mew=0.5, zorder=3)


def plot_figure1(result, target, path: str | Path | None = None, title: str | None = None, *, levels=None,
                 levels_label: str | None = None, discovery_label: str = "discovery time (Definition 1)",
                 fit_label: str = "fit time"):
    """The paper's Figure 1 from a batched :class:`deflation.FlowResult`, in three panels.

    (a) The loss ``1/2 |T - T*|_F^2`` of every seed (one line style per seed, in every panel) on a
    log scale whose range is that of the drawn loss; values below the accuracy floor
    ``result.loss_floor`` (rounding and integration error) are not drawn, and the floor is a grey
    band. (b) The plateaus: the same loss up to a little after the last fit, with the deflation
    levels (dashed, labelled on the right by the number ``k`` of components fitted); on a linear
    scale when every level is at least 5% of the first, else on a log scale from the levels and the
    markers down to at most 1e-3 of the smallest level. (c) The residual ``(T* - T)(u_i^{(x)p})`` on each ground-truth direction, one
    colour per direction. In (b) and (c) a triangle marks each discovery time
    (``result.discovery_time``) and a circle each fit time (``result.fit_time``), in the
    component's colour. Every legend sits below its panel, where it hides no data.

    Args:
        result: a :class:`deflation.FlowResult` (batched or one seed).
        target: the :class:`deflation.Target` it ran on.
        path: if given, the PNG is written there.
        title: figure title.
        levels: the loss levels to draw in (b), ``levels[k]`` after ``k`` fitted components
            (default :func:`deflation.baselines.deflation_levels`: ``1/2 sum_{j>k} a_j^2`` for an
            orthogonal target; pass Algorithm 1's for a non-orthogonal one).
        levels_label: legend text of the levels (default: their formula when ``levels`` is None).
        discovery_label, fit_label: legend text of the two markers in (b) (say which criteria
            were used); (c) repeats them in short.

    Returns:
        the ``matplotlib.figure.Figure``.
    """
    from matplotlib.patches import Patch

    ts = np.asarray(result.ts)
    loss = np.atleast_2d(np.asarray(result.loss))
    floor = np.atleast_2d(np.asarray(result.loss_floor))
    residual = np.asarray(result.residual)
    if residual.ndim == 2:
        residual = residual[None]
    disc = np.atleast_2d(np.asarray(result.discovery_time))
    fit = np.atleast_2d(np.asarray(result.fit_time))
    a = np.asarray(target.a)
    n_seeds, r = loss.shape[0], residual.shape[-1]
    colors = component_colors(r)
    if levels is None:
        from .baselines import deflation_levels

        levels = deflation_levels(target)
        if levels_label is None:
            levels_label = (r"deflation levels $\frac{1}{2}\sum_{j>k} a_j^2$" if target.orthogonal else
                            r"deflation levels $\frac{1}{2}\|T^* - \sum_{j\leq k} a_j u_j^{\otimes p}\|_F^2$")
    levels_label = (levels_label or "deflation levels") + " (right: $k$ fitted)"
    levels = np.asarray(levels, dtype=float)
    positive = levels[levels > 0]

    fig = _figure(figsize=(15, 5.6), layout="constrained")
    ax_l, ax_z, ax_r = fig.subplots(1, 3)
    shown = np.where(loss > floor, loss, np.nan)  # below the floor: not resolved, not drawn
    for s in range(n_seeds):
        ls = LINESTYLES[s % len(LINESTYLES)]
        label = f"seed {s}" if s < len(LINESTYLES) else None
        ax_l.plot(ts, shown[s], ls=ls, color="k", lw=1.2, label=label)
        ax_z.plot(ts, shown[s], ls=ls, color="k", lw=1.2)
        for i in range(r):
            ax_r.plot(ts, residual[s, :, i], ls=ls, color=colors[i], lw=1.1)
            _mark_times(ax_r, ts, residual[s, :, i], disc[s, i], colors[i], DISCOVERY_MARKER, 6)
            _mark_times(ax_r, ts, residual[s, :, i], fit[s, i], colors[i], FIT_MARKER, 5)
            _mark_times(ax_z, ts, loss[s], disc[s, i], colors[i], DISCOVERY_MARKER, 6)
            _mark_times(ax_z, ts, loss[s], fit[s, i], colors[i], FIT_MARKER, 5)

    # (b): time range up to a little after the last fit; loss range from the plateaus and the markers.
    # Linear when every level is at least 5% of the first (each step is visible), else log.
    last = np.nanmax(np.where(np.isfinite(fit), fit, np.nan)) if np.isfinite(fit).any() else np.nan
    t_zoom = float(min(ts[-1], ts[0] + 1.15 * (last - ts[0]))) if np.isfinite(last) else float(ts[-1])
    z_hi = max(positive.max() if positive.size else 0.0, float(np.nanmax(loss[:, 0])))
    linear = positive.size > 0 and positive.min() >= 0.05 * z_hi
    if linear:
        z_lo, z_hi = -0.03 * z_hi, 1.08 * z_hi
    else:
        marked = [np.interp(t, ts, loss[s]) for s in range(n_seeds) for t in np.r_[disc[s], fit[s]] if np.isfinite(t)]
        base = positive.min() if positive.size else np.nanmin(shown)
        z_lo = max(0.5 * min([base] + [x for x in marked if x > 0]), 1e-3 * base)  # at most 3 decades below the levels
        z_hi = 1.5 * z_hi
        ax_z.set_yscale("log")
    for k, lev in enumerate(levels):
        if lev > 0:
            ax_z.axhline(lev, color="0.45", ls="--", lw=0.9, zorder=1,
                         label=levels_label if k == 0 else None)
    ax_z.set_xlim(ts[0], t_zoom)
    ax_z.set_ylim(z_lo, z_hi)
    kax = ax_z.secondary_yaxis("right")
    kax.set_yticks(levels[levels > 0], [f"k={k}" for k in np.flatnonzero(levels > 0)])
    kax.minorticks_off()
    kax.tick_params(labelsize=8, length=3)
    ax_z.set_xlabel("time t")
    ax_z.set_ylabel(r"loss $\frac{1}{2}\|T - T^*\|_F^2$")
    ax_z.set_title(f"(b) plateaus ({'linear' if linear else 'log'} scale): the loss rests on the deflation levels",
                   fontsize=10)
    handles, _ = ax_z.get_legend_handles_labels()
    ax_z.legend(handles=handles + _marker_handles(discovery_label, fit_label), fontsize=8,
                loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1)

    # (a): the whole run; the range is that of the drawn (resolved) loss
    lo, hi = float(np.nanmin(shown)), float(np.nanmax(shown))
    y_lo, y_hi = lo / 10, 3 * hi
    if floor.max() > y_lo:  # the floor reaches into the drawn range (else there is nothing to show)
        ax_l.fill_between(ts, y_lo, np.maximum(floor.max(axis=0), y_lo), color="0.85", lw=0, zorder=0,
                          label="accuracy floor (rounding, solver): not resolved")
    ax_l.set_yscale("log")
    ax_l.set_ylim(y_lo, y_hi)
    ax_l.set_xlabel("time t")
    ax_l.set_ylabel(r"loss $\frac{1}{2}\|T - T^*\|_F^2$")
    ax_l.set_title("(a) loss of every seed (log scale)", fontsize=10)
    ax_l.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2,
                title="line style: seed (all panels)" if n_seeds <= len(LINESTYLES)
                else f"line style: seed mod {len(LINESTYLES)} (all panels)", title_fontsize=8)

    handles = [Patch(color=colors[i], label=rf"$u_{{{i + 1}}}$, $a_{{{i + 1}}}={a[i]:.3f}$") for i in range(r)]
    ax_r.axhline(0.0, color="0.7", lw=0.8)
    ax_r.set_xlim(ts[0], t_zoom)
    ax_r.set_xlabel("time t")
    ax_r.set_ylabel(r"residual $(T^* - T)(u_i^{\otimes p})$")
    ax_r.set_title("(c) residual on each direction: fitted one by one", fontsize=10)
    ax_r.legend(handles=handles + _marker_handles("discovery", "fit"), fontsize=8, loc="upper center",
                bbox_to_anchor=(0.5, -0.13), ncol=3 if r > 4 else 2)
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


def plot_algorithm2(result, target, path: str | os.PathLike | None = None, *, seed: int = 0,
                    title: str | None = None):
    """One run of :func:`deflation.modified_gradient_flow`, in three panels.

    Top: ``|(T* - T)(u_i^p)|`` along every ground-truth direction (one colour per direction, the
    same in every panel) and ``|T - T*|_F`` against time across all epochs that ran (log scale),
    with epoch starts (solid grey) and the re-draws between the phases (dotted grey), the
    thresholds ``2 lam`` (fitted), ``lam / 2`` (the regularized equilibrium) and ``eps``, and a
    triangle at each discovery (Definition 1: ``S_i`` becomes non-empty) and a circle at each fit
    (``a_i - ahat_i <= 2 lam``). Bottom left: ``beta`` and ``|T - T*|_F`` after each phase per
    epoch, against the weights ``a_i``. Bottom right: the phase lengths ``t1``, ``t2`` per epoch
    and the discovery / fit times of the components within their epoch (components side by side).
    Every legend sits outside its panel, where it hides no data.

    Args:
        result: an :class:`deflation.algorithm.Algorithm2Result`.
        target: the :class:`deflation.Target` it ran on (for the weights).
        path: if given, the PNG is written there.
        seed: batch index to plot when the result is batched.
        title: figure title (default: a summary of the run).

    Returns:
        the ``matplotlib.figure.Figure``.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    rec = _seed_slice(result, seed)
    cfg = result.config
    a = np.asarray(target.a)
    r, p = a.shape[0], target.order
    active = rec.active.astype(bool)
    E = int(active.sum())
    colors = component_colors(r)
    fig = _figure(figsize=(13, 9.5), layout="constrained")
    gs = fig.add_gridspec(2, 2, height_ratios=[1.3, 1])

    ax = fig.add_subplot(gs[0, :])
    floor = 1e-3 * cfg.lam  # |residual| below this (never reached: fitted directions sit at lam / 2) is clipped
    for s in range(E):
        t = rec.trace_t[s]
        shown = np.maximum(np.abs(rec.trace_residual[s]), floor)
        for i in range(r):
            ax.plot(t, shown[:, i], color=colors[i], lw=1.2, label=f"$u_{{{i + 1}}}$, $a_{{{i + 1}}}$={a[i]:.3g}"
                    if s == 0 else None)
            for times, marker, size in ((rec.discovery_time[s, i], DISCOVERY_MARKER, 7), (rec.fit_time[s, i], FIT_MARKER, 6)):
                _mark_times(ax, t, shown[:, i], rec.t_start[s] + times, colors[i], marker, size)
        ax.plot(t, rec.trace_residual_norm[s], color="k", lw=1.6, label=r"$\|T-T^*\|_F$" if s == 0 else None)
        ax.axvline(rec.t_start[s], color="0.35", lw=0.8, label="epoch start" if s == 0 else None)
        ax.axvline(rec.t_start[s] + rec.t1[s], color="0.5", lw=0.8, ls=":",
                   label="re-draw (end of Phase 1)" if s == 0 else None)
        ax.annotate(f"s={s}", (rec.t_start[s], 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                    textcoords="offset points", fontsize=8, color="0.3")
    ax.axhline(2 * cfg.lam, color="tab:red", ls="--", lw=1, label=rf"$2\lambda$ = {2 * cfg.lam:.3g} (fitted below)")
    ax.axhline(cfg.lam / 2, color="tab:orange", ls="--", lw=1, label=rf"$\lambda/2$ = {cfg.lam / 2:.3g} (equilibrium)")
    ax.axhline(cfg.eps, color="k", ls="-.", lw=1, label=rf"$\epsilon$ = {cfg.eps:g}")
    ax.set_yscale("log")
    ax.set_xlabel("time t (all epochs)")
    ax.set_ylabel(rf"$|(T^*-T)(u_i^{{\otimes {p}}})|$ and $\|T-T^*\|_F$")
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + _marker_handles("discovery (Definition 1)", r"fit ($a_i - \hat a_i \leq 2\lambda$)"),
              fontsize=7.5, ncol=2 if r > 8 else 1, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    conv = bool(np.asarray(result.converged)[seed] if result.batched else result.converged)
    ax.set_title(title or (
        f"Algorithm 2: d={target.d}, r={r}, m={cfg.m}, lam={cfg.lam:.3g}, delta0={cfg.delta0:.3g}, "
        f"delta1={cfg.delta1:.3g}, gamma={cfg.gamma:g}, eps={cfg.eps:g} - "
        + (f"converged in {E} epochs" if conv else f"not converged after {E} epochs")), fontsize=10)

    s_idx = np.arange(E)
    bx = fig.add_subplot(gs[1, 0])
    bx.plot(s_idx, rec.beta[:E], "-", marker=".", color="tab:blue", label=r"$\beta^{(s)}$")
    bx.plot(s_idx, rec.residual_norm_phase1[:E], "o", color="0.55", label=r"$\|T-T^*\|_F$ after Phase 1")
    bx.plot(s_idx, rec.residual_norm_phase2[:E], "s", color="k", mfc="none", ms=8,
            label=r"$\|T-T^*\|_F$ after Phase 2")
    bx.axhline(cfg.eps, color="k", ls="-.", lw=1, label=r"$\epsilon$")
    for i in range(r):
        bx.axhline(a[i], color=colors[i], lw=0.8, alpha=0.7)
    handles, _ = bx.get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.5", lw=0.8, label=r"$a_i$ (colour of $u_i$)"))
    bx.set_yscale("log")
    bx.set_xlabel("epoch s")
    bx.set_ylabel(r"$\beta^{(s)}$, $\|T-T^*\|_F$, $a_i$")
    bx.set_title(r"$\beta$ halves per epoch; the residual after each phase", fontsize=10)
    bx.legend(handles=handles, fontsize=7.5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))

    cx = fig.add_subplot(gs[1, 1])
    cx.plot(s_idx, rec.t1[:E], "-", color="tab:blue", label=r"$t_1$ (Phase 1)")
    cx.plot(s_idx, rec.t2[:E], "-", color="tab:purple", label=r"$t_2$ (Phase 2)")
    cx.plot(s_idx, rec.t1[:E] + rec.t2[:E], ":", color="0.4", label="epoch length")
    width = min(0.5, 0.08 * r)  # components side by side within an epoch
    for i in range(r):
        x = s_idx + (i - (r - 1) / 2) * (width / max(r - 1, 1))
        for times, marker, size in ((rec.discovery_time[:E, i], DISCOVERY_MARKER, 7), (rec.fit_time[:E, i], FIT_MARKER, 6)):
            ok = np.isfinite(times)
            cx.plot(x[ok], times[ok], ls="none", marker=marker, ms=size, color=colors[i], mec="k", mew=0.5)
    handles, _ = cx.get_legend_handles_labels()
    cx.set_yscale("log")
    cx.set_xlabel("epoch s (components side by side)")
    cx.set_ylabel("time from the epoch's start")
    cx.set_title("phase lengths and the discovery / fit times in each epoch", fontsize=10)
    cx.legend(handles=handles + _marker_handles("discovery", "fit"), fontsize=7.5, ncol=3, loc="upper center",
              bbox_to_anchor=(0.5, -0.16))
    for axis in (bx, cx):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


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
