"""Every figure of the package: Figure 1, an Algorithm 2 run, a Monte Carlo study, and the
notebooks' ``show`` helper.

matplotlib is imported inside the functions, and figures are built as ``matplotlib.figure.Figure``
objects (no pyplot state, no backend chosen for the user): saving a PNG works on any machine, and
in a notebook the returned figure displays itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .status import Status

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


#: Legend title of the marker shapes, which are drawn in the component's colour.
MARKER_NOTE = "marker shape: event; colour = component"


def _marker_handles(discovery_label: str, fit_label: str) -> list:
    """Legend entries for the discovery and fit markers: the shapes, hollow and black (in the
    figures each marker takes its component's colour; the legend says so with :data:`MARKER_NOTE`)."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], ls="none", marker=DISCOVERY_MARKER, mfc="none", mec="k", mew=1.0, ms=7,
                   label=discovery_label),
            Line2D([], [], ls="none", marker=FIT_MARKER, mfc="none", mec="k", mew=1.0, ms=6, label=fit_label)]


def _mark_times(ax, ts, curve, times, color, marker, size) -> None:
    """One marker per finite time in ``times``, on ``curve`` (sampled at ``ts``)."""
    times = np.asarray(times, dtype=float)
    times = times[np.isfinite(times)]
    if times.size:
        ax.plot(times, np.interp(times, ts, curve), ls="none", marker=marker, ms=size, color=color, mec="k",
                mew=0.5, zorder=3)


def _figure1_time_range(ts, shown, fit) -> float:
    """The end of Figure 1's time axis: when every component of every seed is fitted, 10% past
    the last fit or the last time ``shown`` (the loss, NaN where below its floor) is drawn,
    whichever is later (at most the horizon); else the horizon ``ts[-1]``."""
    fit = np.asarray(fit, float)
    if not (fit.size and np.isfinite(fit).all()):
        return float(ts[-1])
    end = float(fit.max())
    drawn = np.flatnonzero(np.isfinite(shown).any(axis=0))
    if drawn.size and drawn[-1] < len(ts) - 1:  # the loss falls below its floor before the horizon
        end = max(end, float(ts[drawn[-1] + 1]))
    return float(min(ts[-1], ts[0] + 1.1 * (end - ts[0])))


def plot_figure1(result, target, path: str | Path | None = None, title: str | None = None, *, levels=None,
                 levels_label: str | None = None, discovery_label: str = "discovery time (Definition 1)",
                 fit_label: str = "fit time"):
    """The paper's Figure 1 from a batched :class:`deflation.FlowResult`, in three panels on one
    time range: when every component of every seed is fitted, up to 10% past the last fit or the
    last time the loss is above its floor, whichever is later; else the whole run.

    (a) The loss ``1/2 |T - T*|_F^2`` of every seed (one line style per seed, in every panel) on a
    log scale whose range is that of the drawn loss; values below the accuracy floor
    ``result.loss_floor`` (rounding and integration error) are not drawn, and the floor is a grey
    band. (b) The plateaus: the same loss with the deflation levels (dashed, labelled on the right
    by the number ``k`` of components fitted, up to ``k = r``); on a linear scale when every level
    is at least 5% of the first, else on a log scale from the levels and the markers down to at
    most 1e-3 of the smallest level (a zero level is then named at the bottom). (c) The residual
    ``(T* - T)(u_i^{(x)p})`` on each ground-truth direction, one colour per direction. In (b) and
    (c) a triangle marks each discovery time (``result.discovery_time``) and a circle each fit time
    (``result.fit_time``), in the component's colour; the legends show the two shapes in black
    and say that the colour is the component's. Every legend sits below its panel, where it hides
    no data.

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

    # One time range for the three panels, from the data: when every component of every seed is
    # fitted, up to a little after the last fit or the last time the loss is drawn above its
    # floor, whichever is later; else the whole run (something may still happen at the horizon).
    t_view = _figure1_time_range(ts, shown, fit)
    # (b): loss range from the plateaus and the markers. Linear when every level is at least 5% of
    # the first (each step is visible), else log.
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
    drawn_levels = np.isfinite(levels) & ((levels > 0) | linear)  # a zero level only on a linear axis
    for k in np.flatnonzero(drawn_levels):
        ax_z.axhline(levels[k], color="0.45", ls="--", lw=0.9, zorder=1,
                     label=levels_label if k == np.flatnonzero(drawn_levels)[0] else None)
    ax_z.set_xlim(ts[0], t_view)
    ax_z.set_ylim(z_lo, z_hi)
    kax = ax_z.secondary_yaxis("right")
    ticks = [float(levels[k]) for k in np.flatnonzero(drawn_levels)]
    names = [f"k={k}" for k in np.flatnonzero(drawn_levels)]
    below = np.flatnonzero(np.isfinite(levels) & ~drawn_levels)  # zero levels on a log axis: at its bottom
    if below.size:
        ticks.append(z_lo)
        names.append(f"k={below[0]}: 0 (below)")
    kax.set_yticks(ticks, names)
    kax.minorticks_off()
    kax.tick_params(labelsize=8, length=3)
    ax_z.set_xlabel("time t")
    ax_z.set_ylabel(r"loss $\frac{1}{2}\|T - T^*\|_F^2$")
    ax_z.set_title(f"(b) plateaus ({'linear' if linear else 'log'} scale): the loss rests on the deflation levels",
                   fontsize=10)
    handles, _ = ax_z.get_legend_handles_labels()
    ax_z.legend(handles=handles + _marker_handles(discovery_label, fit_label), fontsize=8,
                loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1,
                title=MARKER_NOTE + " (colours: legend of (c))", title_fontsize=8)

    # (a): the loss range is that of the drawn (resolved) loss
    lo, hi = float(np.nanmin(shown)), float(np.nanmax(shown))
    y_lo, y_hi = lo / 10, 3 * hi
    if floor.max() > y_lo:  # the floor reaches into the drawn range (else there is nothing to show)
        ax_l.fill_between(ts, y_lo, np.maximum(floor.max(axis=0), y_lo), color="0.85", lw=0, zorder=0,
                          label="accuracy floor (rounding, solver): not resolved")
    ax_l.set_yscale("log")
    ax_l.set_xlim(ts[0], t_view)
    ax_l.set_ylim(y_lo, y_hi)
    ax_l.set_xlabel("time t" if t_view >= ts[-1] else f"time t (every component fitted; the run goes on to {ts[-1]:g})")
    ax_l.set_ylabel(r"loss $\frac{1}{2}\|T - T^*\|_F^2$")
    ax_l.set_title("(a) loss of every seed (log scale)", fontsize=10)
    ax_l.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2,
                title="line style: seed (all panels)" if n_seeds <= len(LINESTYLES)
                else f"line style: seed mod {len(LINESTYLES)} (all panels)", title_fontsize=8)

    handles = [Patch(color=colors[i], label=rf"$u_{{{i + 1}}}$, $a_{{{i + 1}}}={a[i]:.3f}$") for i in range(r)]
    ax_r.axhline(0.0, color="0.7", lw=0.8)
    ax_r.set_xlim(ts[0], t_view)
    ax_r.set_xlabel("time t")
    ax_r.set_ylabel(r"residual $(T^* - T)(u_i^{\otimes p})$")
    ax_r.set_title("(c) residual on each direction: fitted one by one", fontsize=10)
    ax_r.legend(handles=handles + _marker_handles("discovery", "fit"), fontsize=8, loc="upper center",
                bbox_to_anchor=(0.5, -0.13), ncol=3 if r > 4 else 2, title="colour = component (all panels)",
                title_fontsize=8)
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


def _epoch_axis(ax, starts, ends, min_gap: float = 0.035) -> None:
    """Label the epochs of a time axis on a secondary axis on top: ``s`` at the middle of each epoch
    (``starts[s]`` to ``ends[s]``), leaving out a label closer than ``min_gap`` of the axis width to
    the previous one (the first epochs of Algorithm 2 are short)."""
    lo, hi = ax.get_xlim()
    hi = max(hi, float(np.max(ends)))
    ticks, labels, last = [], [], -np.inf
    for s, (a, b) in enumerate(zip(starts, ends)):
        mid = 0.5 * (a + b)
        if mid - last >= min_gap * (hi - lo):
            ticks.append(mid)
            labels.append(str(s))
            last = mid
    top = ax.secondary_xaxis("top")
    top.set_xticks(ticks, labels)
    top.tick_params(length=0, labelsize=8, colors="0.3")
    top.set_xlabel("epoch s", fontsize=8, color="0.3")


def plot_algorithm2(result, target, path: str | os.PathLike | None = None, *, seed: int = 0,
                    title: str | None = None):
    """One run of :func:`deflation.modified_gradient_flow`, in three panels.

    Top: ``|(T* - T)(u_i^p)|`` along every ground-truth direction (one colour per direction, the
    same in every panel) over ``|T - T*|_F`` (a wide grey line beneath them, so that a component's
    line and markers stay visible where it is all that is left) against time across all epochs
    that ran (log scale), with epoch starts (solid grey, the epoch numbers on top, thinned where
    the epochs are short) and the re-draws between the phases (dotted grey), the thresholds
    ``2 lam`` (fitted), ``lam / 2`` (the regularized equilibrium) and ``eps``, and a triangle at
    each discovery (Definition 1: ``S_i`` becomes non-empty) and a circle at each fit
    (``a_i - ahat_i <= 2 lam``). Bottom left: ``beta`` and ``|T - T*|_F`` after each phase per
    epoch, against the weights ``a_i``. Bottom right: each epoch's two phases as stacked bars on
    the time from the epoch's start (Phase 1 from 0 to ``t1``, Phase 2 from ``t1`` to
    ``t1 + t2``) and the discovery / fit times of the components within their epoch (components
    side by side). Every legend sits outside its panel, where it hides no data.

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
            for times, marker, size in ((rec.discovery_time[s, i], DISCOVERY_MARKER, 7),
                                        (rec.fit_time[s, i], FIT_MARKER, 6)):
                _mark_times(ax, t, shown[:, i], rec.t_start[s] + times, colors[i], marker, size)
        # the total under the components (wide, grey): where one component is all that is left the
        # two coincide, and that component's line and markers stay on top
        ax.plot(t, rec.trace_residual_norm[s], color="0.55", lw=4.0, alpha=0.6, zorder=1.5, solid_capstyle="butt",
                label=r"$\|T-T^*\|_F$ (wide grey, under the components)" if s == 0 else None)
        ax.axvline(rec.t_start[s], color="0.35", lw=0.8, label="epoch start" if s == 0 else None)
        ax.axvline(rec.t_start[s] + rec.t1[s], color="0.5", lw=0.8, ls=":",
                   label="re-draw (end of Phase 1)" if s == 0 else None)
    ax.axhline(2 * cfg.lam, color="tab:red", ls="--", lw=1, label=rf"$2\lambda$ = {2 * cfg.lam:.3g} (fitted below)")
    ax.axhline(cfg.lam / 2, color="tab:orange", ls="--", lw=1, label=rf"$\lambda/2$ = {cfg.lam / 2:.3g} (equilibrium)")
    ax.axhline(cfg.eps, color="k", ls="-.", lw=1, label=rf"$\epsilon$ = {cfg.eps:g}")
    ax.set_yscale("log")
    ax.set_xlabel("time t (all epochs)")
    _epoch_axis(ax, rec.t_start[:E], rec.t_start[:E] + rec.t1[:E] + rec.t2[:E])
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
    t1, t2 = rec.t1[:E], rec.t2[:E]
    ev = np.r_[rec.discovery_time[:E].ravel(), rec.fit_time[:E].ravel(), t1]
    ev = ev[np.isfinite(ev) & (ev > 0)]
    c_lo = 0.5 * ev.min() if ev.size else 1.0  # the bars start at the bottom of the (log) axis
    cx.bar(s_idx, t1 - c_lo, bottom=c_lo, width=0.8, color="tab:blue", alpha=0.18, edgecolor="tab:blue",
           label=r"Phase 1: from 0 to $t_1$")
    cx.bar(s_idx, t2, bottom=t1, width=0.8, color="tab:purple", alpha=0.18, edgecolor="tab:purple",
           label=r"Phase 2: from $t_1$ to $t_1 + t_2$")
    width = min(0.6, 0.08 * r)  # components side by side within an epoch
    for i in range(r):
        x = s_idx + (i - (r - 1) / 2) * (width / max(r - 1, 1))
        for times, marker, size in ((rec.discovery_time[:E, i], DISCOVERY_MARKER, 7),
                                    (rec.fit_time[:E, i], FIT_MARKER, 6)):
            ok = np.isfinite(times)
            cx.plot(x[ok], times[ok], ls="none", marker=marker, ms=size, color=colors[i], mec="k", mew=0.5, zorder=3)
    handles, _ = cx.get_legend_handles_labels()
    cx.set_yscale("log")
    cx.set_ylim(c_lo, 1.6 * float(np.max(t1 + t2)))
    cx.set_xlim(-0.6, E - 0.4)
    cx.set_xlabel("epoch s (components side by side)")
    cx.set_ylabel("time from the epoch's start")
    cx.set_title("each epoch's two phases, and the discovery / fit times in it", fontsize=10)
    cx.legend(handles=handles + _marker_handles("discovery", "fit"), fontsize=7.5, ncol=2, loc="upper center",
              bbox_to_anchor=(0.5, -0.16), title=MARKER_NOTE, title_fontsize=7.5)
    for axis in (bx, cx):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _yerr(df, col: str = "p"):
    return [np.clip(df[col] - df[f"{col}_lo"], 0, None), np.clip(df[f"{col}_hi"] - df[col], 0, None)]


def _study_title(caption: str, extra: str = "", inches: float = 7.0) -> str:
    """A study figure's title: ``caption`` (what the study is, see
    :func:`deflation.montecarlo.study_caption`) and ``extra`` (what the figure's marks mean),
    wrapped to the figure's width ``inches``."""
    import textwrap

    text = "; ".join(t for t in (caption, extra) if t)
    return "\n".join(textwrap.wrap(text, width=int(13 * inches)))  # ~13 characters per inch at 9 pt


def _log_axis(values) -> bool:
    v = np.asarray(values, float)
    return bool(v.size > 1 and v.min() > 0 and v.max() / v.min() > 20)


def _integer_valued(values) -> bool:
    v = np.asarray(values, float)
    return bool(v.size and np.all(np.isfinite(v)) and np.all(v == np.round(v)))


def _value(v) -> str:
    """A grid coordinate as text: numbers in ``%g``, names (``model``) as they are."""
    return f"{v:g}" if isinstance(v, (int, float, np.number)) else str(v)


def _categorical(values) -> bool:
    """Whether a swept parameter's values are names (``model``), drawn at positions 0, 1, ..."""
    return not all(isinstance(v, (int, float, np.number)) for v in np.asarray(values, dtype=object).ravel())


def _grid_x(column, levels) -> np.ndarray:
    """x positions of a swept parameter's values: the values, or for names their index in ``levels``."""
    return np.asarray([levels.index(v) for v in column], float) if levels else np.asarray(column, float)


def _grid_axis(ax, values, name: str, levels=None) -> None:
    """The x axis of a swept parameter: log scale when its values span more than a factor 20,
    ticks at the values themselves when there are at most 12 of them (else integer ticks for an
    integer parameter), labelled plainly; names (``levels``) at positions 0, 1, ..."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

    if levels:
        ax.set_xticks(range(len(levels)), [str(v) for v in levels])
        ax.set_xlim(-0.5, len(levels) - 0.5)
        ax.set_xlabel(name)
        return
    v = np.unique(np.asarray(values, float))
    if _log_axis(v):
        ax.set_xscale("log")
    if v.size <= 12:
        ax.xaxis.set_major_locator(FixedLocator(v.tolist()))
        ax.xaxis.set_minor_locator(NullLocator())
    elif _integer_valued(v):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel(name)


def _dodge(values, j: int, count: int, log: bool, share: float = 0.025):
    """x positions of series ``j`` of ``count`` drawn at ``values``, shifted side by side by a
    small share of the axis (so that equal values, e.g. several probabilities of 1, stay visible)."""
    v = np.asarray(values, float)
    shift = (j - (count - 1) / 2) * share
    if log:
        span = np.log10(v.max() / v.min()) if v.size > 1 and v.max() > v.min() else 1.0
        return v * 10 ** (shift * span)
    span = v.max() - v.min() if v.size > 1 and v.max() > v.min() else 1.0
    return v + shift * span


def _ok_values(ds, name: str):
    """``ds[name]`` of the intact, successful seeds only (status :attr:`deflation.Status.SUCCESS`;
    the others are NaN, or -1 for integer arrays); ``None`` if the study does not record it."""
    if name not in ds:
        return None
    values = np.asarray(ds[name].values)
    ok = np.asarray(ds["status"].values) == Status.SUCCESS
    ok = ok.reshape(ok.shape + (1,) * (values.ndim - ok.ndim))
    fill = np.nan if np.issubdtype(values.dtype, np.floating) else -1
    return np.where(ok, values, fill)


def plot_study(df, ds, path, caption: str = "") -> Path:
    """The main figure of a study (``df``: :func:`deflation.montecarlo.summarize`'s table), with
    Wilson 95% intervals throughout. Without a grid (one point): the probability that each
    component is discovered (Definition 1; by the horizon, or in some epoch of Algorithm 2) and
    fitted as bars, and the distribution of the discovery and fit times (boxes: 10%, 25%, 50%,
    75%, 90% of the seeds where it happened; Algorithm 2: the share of seeds discovering each
    component in each epoch). A 1-D grid: P(discovered) against the swept parameter (one line per
    component, side by side where they coincide), and the discovery-time quantiles (Algorithm 2:
    P(converged)). A 2-D grid: one heatmap per component (and P(converged)), coloured on the range
    of the data, each cell reading ``P [lo, hi]``; further grid dimensions give further rows.

    The figures of a study take its data only: ``ds`` is the study's dataset (the records of
    :func:`deflation.montecarlo.open_study`) and ``caption`` the first part of the title
    (:func:`deflation.montecarlo.study_caption`: the experiment and its fixed parameters)."""
    path = Path(path)
    _study_figure(df, ds, caption).savefig(path)
    return path


def _study_figure(df, ds, caption: str = ""):
    grid = list(ds.attrs.get("grid") or [])
    alg2 = "discovery_epoch" in ds  # events counted in epochs (Algorithm 2), not times
    what = "P(discovered in some epoch)" if alg2 else "P(discovered by the horizon)"
    if not grid:
        return _single_point(df, ds, what, alg2, caption)
    if len(grid) == 1:
        return _line_plots(df, ds, grid[0], what, alg2, caption)
    return _heatmaps(df, ds, grid, what, alg2, caption)


def _single_point(df, ds, what: str, alg2: bool, caption: str):
    """A study without a grid: probabilities per component as bars, and the event times."""
    df = df.sort_values("component")
    r = len(df)
    colors = component_colors(r)
    fig = _figure(figsize=(11.5, 4.8), dpi=120, layout="constrained")
    ax, tx = fig.subplots(1, 2, width_ratios=[1, 1.25])
    x = np.arange(r)
    has_fit = "fitted" in df
    w = 0.38 if has_fit else 0.6
    ax.bar(x - (w / 2 if has_fit else 0), df["p"], width=w, color=colors, edgecolor="k", lw=0.6,
           yerr=_yerr(df), capsize=4, label="discovered")
    if has_fit:
        pf, lo, hi = (df[k].to_numpy() for k in ("p_fit", "p_fit_lo", "p_fit_hi"))
        ax.bar(x + w / 2, pf, width=w, color=colors, edgecolor="k", lw=0.6, hatch="///", alpha=0.45,
               yerr=[np.clip(pf - lo, 0, None), np.clip(hi - pf, 0, None)], capsize=4, label="fitted")
    counts = [("discovered", -w / 2 if has_fit else 0.0, df["p_hi"].to_numpy())]
    if has_fit:
        counts.append(("fitted", w / 2, hi))
    for column, shift, top in counts:  # the seed count above each bar's interval
        for xi, k, t in zip(x, df[column].to_numpy(), top):
            ax.annotate(f"{int(k)}", (xi + shift, t if np.isfinite(t) else 0), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)
    labels = [f"$u_{{{i + 1}}}$\n$a$={a:.3g}" for i, a in zip(df["component"], df["a"])]
    if alg2:
        row = df.iloc[0]
        ax.bar([r], [row["p_converged"]], width=0.6, color="0.7", edgecolor="k", lw=0.6,
               yerr=_yerr(df.iloc[:1], "p_converged"), capsize=4)
        labels.append("converged")
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("probability over the seeds")
    ax.set_xlabel("ground-truth component (weight $a_i$)")
    if has_fit:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(facecolor="0.6", edgecolor="k", label="discovered"),
                           Patch(facecolor="0.6", edgecolor="k", hatch="///", alpha=0.45, label="fitted")],
                  fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
                  title="bar colour = component; bars: 95% Wilson intervals", title_fontsize=8)
    n_txt = f"out of n = {int(df['n'].iloc[0])}"
    ax.set_title((f"{what}; fitted" if has_fit else what) + f" (numbers: seeds {n_txt})", fontsize=9)

    if alg2:
        epochs = _ok_values(ds, "discovery_epoch")
        e_max = int(max(epochs.max(), 0))
        ks = np.arange(e_max + 1)
        width = 0.8 / r
        n_ok = max(int(df["n"].iloc[0]), 1)
        for i in range(r):
            share = [(epochs[..., i] == k).sum() / n_ok for k in ks]
            tx.bar(ks + (i - (r - 1) / 2) * width, share, width=width, color=colors[i], edgecolor="k", lw=0.4,
                   label=f"$u_{{{i + 1}}}$")
        from matplotlib.ticker import MaxNLocator

        tx.xaxis.set_major_locator(MaxNLocator(integer=True))
        tx.set_xlabel("epoch of discovery")
        tx.set_ylabel("share of the seeds")
        tx.set_title("when each component is discovered (colour = component)", fontsize=9)
        tx.legend(fontsize=8, ncol=min(r, 6), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    else:
        times = _ok_values(ds, "discovery_time")
        fits = _ok_values(ds, "fit_time")
        groups = [("discovery", times, 0.0)] + ([("fit", fits, 0.2)] if fits is not None else [])
        bw = 0.18 if fits is not None else 0.4
        drawn = []
        for name, values, offset in groups:
            for i in range(r):
                t = values[..., i].ravel()
                t = t[np.isfinite(t)]
                if not t.size:
                    continue
                drawn.append(t)
                pos = i + offset - (0.1 if fits is not None else 0)
                box = tx.boxplot([t], positions=[pos], widths=bw, whis=(10, 90), showfliers=False,
                                 patch_artist=True, manage_ticks=False)
                box["boxes"][0].set(facecolor=colors[i], alpha=1.0 if name == "discovery" else 0.45,
                                    hatch=None if name == "discovery" else "///")
                for key in ("medians",):
                    box[key][0].set(color="k")
        for i in range(r):
            if not np.isfinite(times[..., i]).any():
                tx.text(i, 0.5, "never\ndiscovered", transform=tx.get_xaxis_transform(), ha="center", va="center",
                        fontsize=8, color="0.35")
        tx.set_xticks(x, [f"$u_{{{i + 1}}}$" for i in range(r)])
        tx.set_xlim(-0.6, r - 0.4)
        if drawn and _log_axis(np.concatenate(drawn)):
            tx.set_yscale("log")
            plain_log_ticks(tx.yaxis)
        tx.set_xlabel("ground-truth component")
        tx.set_ylabel("time t")
        tx.set_title("discovery" + (" and fit" if fits is not None else "") + " times of the seeds where they happen",
                     fontsize=9)
        from matplotlib.patches import Patch

        handles = [Patch(facecolor="0.6", edgecolor="k", label="discovery time")]
        if fits is not None:
            handles.append(Patch(facecolor="0.6", edgecolor="k", hatch="///", alpha=0.45, label="fit time"))
        tx.legend(handles=handles, fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  title="box: 25-75%, line: median, whiskers: 10-90% of the seeds", title_fontsize=8)
    fig.suptitle(_study_title(caption, "95% Wilson intervals", 11.5), fontsize=9)
    return fig


def _line_plots(df, ds, name: str, what: str, alg2: bool, caption: str):
    """A 1-D grid: P(discovered) against the swept parameter, and the discovery-time quantiles
    (Algorithm 2: P(converged) and the epochs it took)."""
    r = int(df["component"].max()) + 1
    colors = component_colors(r)
    markers = ["o", "s", "D", "v", "P", "X", "<", ">", "h", "*"]
    fig = _figure(figsize=(12, 4.8), dpi=120, layout="constrained")
    ax, bx = fig.subplots(1, 2)
    levels = list(ds[name].values) if _categorical(ds[name].values) else None
    values = _grid_x(df[name], levels)
    log = not levels and _log_axis(values)
    for i, g in df.groupby("component"):
        x = _dodge(_grid_x(g[name], levels), i, r, log, share=0.06 if levels else 0.025)
        ax.errorbar(x, g["p"], yerr=_yerr(g), marker=markers[i % len(markers)], ms=5, capsize=3, elinewidth=1.2,
                    ls="none" if levels else "-", color=colors[i],
                    label=f"$u_{{{i + 1}}}$ ($a$ = {g['a'].iloc[0]:.3g})")
    ax.set_ylim(-0.04, 1.06)
    ax.set_ylabel(what)
    ax.set_title(what + " (side by side where equal)", fontsize=9)
    _grid_axis(ax, values, name, levels)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=min(r, 6),
               title=("colour = component; bars: 95% Wilson intervals" if alg2 else
                      "colour = component (both panels); left: bars are 95% Wilson intervals"), title_fontsize=8)
    if alg2:
        g = df[df["component"] == 0]
        bx.errorbar(_grid_x(g[name], levels), g["p_converged"], yerr=_yerr(g, "p_converged"), marker="s", color="k",
                    capsize=4)
        bx.set_ylim(-0.04, 1.06)
        bx.set_ylabel(r"P(converged: $\|T - T^*\|_F \leq \epsilon$)")
        bx.set_title("P(Algorithm 2 converged within max_epochs), 95% Wilson intervals", fontsize=9)
    else:
        drawn = []
        for i, g in df.groupby("component"):
            ok = np.isfinite(g["t_q50"].to_numpy())
            if not ok.any():
                continue
            g = g[ok]
            x = _dodge(_grid_x(g[name], levels), i, r, log, share=0.06 if levels else 0.025)
            bx.errorbar(x, g["t_q50"], yerr=[g["t_q50"] - g["t_q10"], g["t_q90"] - g["t_q50"]],
                        marker=markers[i % len(markers)], ms=5, capsize=3, color=colors[i],
                        ls="none" if levels else "-")
            drawn.append(g[["t_q10", "t_q90"]].to_numpy().ravel())
        bx.set_ylabel("discovery time t")
        if drawn and _log_axis(np.concatenate(drawn)):
            bx.set_yscale("log")
            plain_log_ticks(bx.yaxis)
        never = sorted(set(range(r)) - set(df.loc[np.isfinite(df["t_q50"]), "component"]))
        bx.set_title("discovery time: median, bars 10-90% of the seeds that discover"
                     + ("\nnever discovered (not drawn): " + ", ".join(f"$u_{{{i + 1}}}$" for i in never)
                        if never else ""), fontsize=9)
    _grid_axis(bx, values, name, levels)
    bx.grid(alpha=0.3)
    fig.suptitle(_study_title(caption, "", 12), fontsize=9)
    return fig


def _heatmap_limits(values) -> tuple[float, float]:
    """Colour limits of the probability heatmaps from the data: the range of the values, widened to
    at least 0.02 and rounded out to 0.01, within [0, 1]."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not v.size:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 0.02:
        mid = 0.5 * (lo + hi)
        lo, hi = mid - 0.01, mid + 0.01
    lo, hi = np.floor(lo * 100) / 100, np.ceil(hi * 100) / 100
    if hi > 1:
        lo, hi = max(0.0, lo - (hi - 1)), 1.0
    if lo < 0:
        lo, hi = 0.0, min(1.0, hi - lo)
    return float(lo), float(hi)


def _heatmaps(df, ds, grid, what: str, alg2: bool, caption: str):
    """One heatmap per component (and P(converged)) over the first two grid dimensions; one row
    per combination of the others (at most four). One colour scale for all, from the range of the
    data; each cell reads ``P [lo, hi]`` (Wilson 95%)."""
    import itertools

    from matplotlib import colormaps

    ydim, xdim = grid[0], grid[1]
    rest = grid[2:]
    combos = list(itertools.product(*[list(ds[k].values) for k in rest]))[:4] if rest else [()]
    r = int(df["component"].max()) + 1
    panels = [(i, "p", f"$u_{{{i + 1}}}$") for i in range(r)] + ([(0, "p_converged", "converged")] if alg2 else [])
    ncol = len(panels)
    yv, xv = list(ds[ydim].values), list(ds[xdim].values)
    cells = len(yv) * len(xv)
    size = 8 if cells <= 16 else 6.5 if cells <= 36 else 5
    cell_w = 3.1 if cells <= 16 else 3.6
    fig = _figure(figsize=(cell_w * ncol + 1.4, 2.9 * len(combos) + 1.0), dpi=120, layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(combos), ncol, squeeze=False))
    vmin, vmax = _heatmap_limits(np.r_[df["p"].to_numpy(), df["p_converged"].to_numpy() if alg2 else []])
    cmap = colormaps["viridis"]
    image = None
    for row, combo in enumerate(combos):
        sub = df
        for k, v in zip(rest, combo):
            sub = sub[sub[k] == v]
        for col, (i, column, label) in enumerate(panels):
            ax = axes[row, col]
            g = sub[sub["component"] == i]
            Z, LO, HI = (np.full((len(yv), len(xv)), np.nan) for _ in range(3))
            for _, rec in g.iterrows():
                at = yv.index(rec[ydim]), xv.index(rec[xdim])
                Z[at], LO[at], HI[at] = rec[column], rec[f"{column}_lo"], rec[f"{column}_hi"]
            image = ax.imshow(Z, vmin=vmin, vmax=vmax, cmap=cmap, origin="lower", aspect="auto")
            for (yi, xi), z in np.ndenumerate(Z):
                if np.isfinite(z):
                    rgb = cmap((z - vmin) / (vmax - vmin))[:3]
                    dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 0.5
                    ax.text(xi, yi, f"{z:.2f}\n[{LO[yi, xi]:.2f}, {HI[yi, xi]:.2f}]", ha="center", va="center",
                            fontsize=size, color="white" if dark else "black", linespacing=1.3)
            ax.set_xticks(range(len(xv)), [_value(v) for v in xv])
            ax.set_yticks(range(len(yv)), [_value(v) for v in yv])
            ax.set_xlabel(xdim)
            if col == 0:
                ax.set_ylabel(ydim)
            a = g["a"].iloc[0] if len(g) and column == "p" else None
            title = label if a is None else f"{label} ($a$ = {a:.3g})"
            if combo:
                title += " | " + ", ".join(f"{k}={_value(v)}" for k, v in zip(rest, combo))
            ax.set_title(title, fontsize=9)
    bar = fig.colorbar(image, ax=axes, shrink=0.9, label=f"probability (scale: the data's range, {vmin:g} to {vmax:g})")
    from matplotlib.ticker import MaxNLocator

    ticks = [t for t in MaxNLocator(6, steps=[1, 2, 5, 10]).tick_values(vmin, vmax) if vmin - 1e-9 <= t <= vmax + 1e-9]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else vmax - vmin
    ticks = sorted({round(float(t), 6) for t in ticks} | {e for e in (vmin, vmax)  # the ends, unless close to a tick
                                                          if min(abs(np.asarray(ticks) - e), default=1) > 0.4 * step})
    bar.set_ticks(ticks, labels=[f"{v:.3g}" for v in ticks])
    cells_say = what + (" (last panel: P(converged))" if alg2 else "") + " [95% Wilson interval]"
    fig.suptitle(_study_title(caption, "cell: " + cells_say, cell_w * ncol + 1.4), fontsize=9)
    return fig


def _point_label(row, grid) -> str:
    return ", ".join(f"{k}={_value(row[k])}" for k in grid) if grid else "all seeds"


def _curve_styles(n: int) -> list[tuple]:
    """``(colour, line style)`` of ``n`` curves, one per grid point: dark-to-orange steps of plasma
    (no light yellow: every curve stands out on white), and a line style per curve as well."""
    from matplotlib import colormaps

    if n == 1:
        return [("k", "-")]
    cmap = colormaps["plasma"]
    styles = ["-", "--", "-.", (0, (6, 1.5, 1, 1.5, 1, 1.5))]  # no dotted style: the bands' edges are dotted
    return [(cmap(0.78 * j / (n - 1)), styles[j % len(styles)]) for j in range(n)]


def _band(ax, x, lo, hi, color, step=None) -> None:
    """A 95% band: a light fill and its two edges as thin lines (visible however narrow it is,
    and told apart from its neighbours' where bands overlap)."""
    ax.fill_between(x, lo, hi, color=color, alpha=0.12, lw=0, step=step)
    kw = dict(color=color, lw=0.7, alpha=0.9, ls=(0, (1, 1)))
    if step:
        ax.step(x, lo, where=step, **kw)
        ax.step(x, hi, where=step, **kw)
    else:
        ax.plot(x, lo, **kw)
        ax.plot(x, hi, **kw)


def _panel_grid(n: int) -> tuple[int, int]:
    """Rows and columns for ``n`` panels: one row up to five, else rows of at most four, as even as
    possible."""
    if n <= 5:
        return 1, max(n, 1)
    nrow = -(-n // 4)
    return nrow, -(-n // nrow)


def _cdf_time_range(cdf, grid) -> tuple[float, float]:
    """The time axis of the CDF panels: from a little before the first time any curve leaves 0 to
    a little after the last time any curve changes (10% of that span each side), within the
    sampled times."""
    t0, t1 = float(cdf["t"].min()), float(cdf["t"].max())
    first, last = np.inf, -np.inf
    for _, g in cdf.groupby(["component"] + list(grid)):
        t, p = g["t"].to_numpy(), g["p"].to_numpy()
        moved = np.flatnonzero(np.diff(p) != 0)
        if moved.size:
            first, last = min(first, t[moved[0]]), max(last, t[moved[-1] + 1])
    if not np.isfinite(first):
        return t0, t1
    pad = 0.1 * max(last - first, (t1 - t0) / 50)
    return max(t0, first - pad), min(t1, last + pad)


def plot_discovery_cdf(cdf, ds, path, caption: str = "") -> Path:
    """P(discovered by time t) of each component discovered by some seed (one panel each, the
    probability axis up to 1, or up to the band's top when that is below 0.5; the components no
    seed discovered are named in the title) with its Wilson 95% band (light fill and dotted
    edges), one curve per grid point (at most eight; ``cdf``:
    :func:`deflation.montecarlo.discovery_cdf`), over the times where some curve changes (the
    same in every panel). ``ds`` and ``caption`` as in :func:`plot_study`."""
    path = Path(path)
    _cdf_figure(cdf, ds, caption).savefig(path)
    return path


def _cdf_figure(cdf, ds, caption: str = ""):
    grid = list(ds.attrs.get("grid") or [])
    r = int(cdf["component"].max()) + 1
    shown = [i for i in range(r) if (cdf.loc[cdf["component"] == i, "p"] > 0).any()]
    never = [i for i in range(r) if i not in shown]
    nrow, ncol = _panel_grid(len(shown))
    fig = _figure(figsize=(3.6 * ncol + 0.4, 3.0 * nrow + 1.3), dpi=120, layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    all_keys: Any = cdf[grid].drop_duplicates() if grid else None
    keys = all_keys.head(8) if grid else None
    rows = [None] if keys is None else [row for _, row in keys.iterrows()]
    styles = _curve_styles(len(rows))
    t_lo, t_hi = _cdf_time_range(cdf[cdf["component"].isin(shown)], grid)
    for ax, i in zip(axes, shown):
        sub = cdf[cdf["component"] == i]
        for (color, ls), row in zip(styles, rows):
            g = sub if row is None else sub[(sub[grid] == row[grid].values).all(axis=1)]
            _band(ax, g["t"], g["p_lo"], g["p_hi"], color)
            ax.plot(g["t"], g["p"], color=color, ls=ls, lw=1.6, label=None if row is None else _point_label(row, grid))
        top = float(np.nanmax(sub["p_hi"]))  # a component rarely discovered gets a shorter axis
        ax.set_ylim(-0.03, 1.03 if top > 0.5 else top + 0.05)
        ax.set_xlim(t_lo, t_hi)
        a = float(ds["a"].values.reshape(-1, r)[0, i])
        ax.set_title(f"$u_{{{i + 1}}}$ ($a$ = {a:.3g})", fontsize=9)
        ax.set_xlabel("time t" + (f" (the run: 0 to {float(cdf['t'].max()):g})"
                                  if t_hi - t_lo < 0.9 * float(cdf["t"].max()) else ""))
        ax.grid(alpha=0.3)
    for k, ax in enumerate(axes[: len(shown)]):
        if k % ncol == 0:
            ax.set_ylabel("P(discovered by t)")
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    if not shown:
        axes[0].set_visible(True)
        axes[0].set_axis_off()
        axes[0].text(0.5, 0.5, "no seed discovered any component by the horizon", ha="center", va="center",
                     transform=axes[0].transAxes)
    if keys is not None and len(rows) > 1 and shown:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=min(len(rows), 4),
                   title="grid point" + (f" (first 8 of {len(all_keys)})" if len(all_keys) > 8 else ""),
                   title_fontsize=8)
    note = "line: P; band: 95% Wilson (dotted edges)"
    if never:
        note += "; never discovered (not drawn): " + ", ".join(f"u{i + 1}" for i in never)
    fig.suptitle(_study_title(caption, note, 3.6 * ncol + 0.4), fontsize=9)
    return fig


def plot_convergence(conv, ds, path, caption: str = "") -> Path:
    """P(Algorithm 2 converged within k epochs) against k with its Wilson 95% band, one curve per
    grid point (at most eight; ``conv``: :func:`deflation.montecarlo.convergence`). The epoch axis
    ends one epoch after the last change of any curve (the curves are flat beyond). ``ds`` and
    ``caption`` as in :func:`plot_study`."""
    path = Path(path)
    _convergence_figure(conv, ds, caption).savefig(path)
    return path


def _convergence_figure(conv, ds, caption: str = ""):
    from matplotlib.ticker import MaxNLocator

    grid = list(ds.attrs.get("grid") or [])
    fig = _figure(figsize=(7.0, 4.6), dpi=120, layout="constrained")
    ax = fig.subplots()
    all_keys: Any = conv[grid].drop_duplicates() if grid else None
    keys = all_keys.head(8) if grid else None
    rows = [None] if keys is None else [row for _, row in keys.iterrows()]
    styles = _curve_styles(len(rows))
    k_max = int(conv["epochs"].max())
    k_last = 1
    for (color, ls), row in zip(styles, rows):
        g = conv if row is None else conv[(conv[grid] == row[grid].values).all(axis=1)]
        p = g["p"].to_numpy()
        changes = np.flatnonzero(np.diff(p) != 0)
        k_last = max(k_last, int(g["epochs"].to_numpy()[changes[-1] + 1]) if changes.size else 1)
        _band(ax, g["epochs"], g["p_lo"], g["p_hi"], color, step="post")
        ax.step(g["epochs"], p, where="post", color=color, ls=ls, lw=1.6,
                label=None if row is None else _point_label(row, grid))
    k_end = min(k_max, k_last + 1)
    ax.set_xlim(0.8, k_end + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("epochs k" + (f" (flat up to max_epochs = {k_max})" if k_end < k_max else ""))
    ax.set_ylabel("P(converged within k epochs)")
    ax.grid(alpha=0.3)
    if keys is not None:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                  title="grid point" + (f" (first 8 of {len(all_keys)})" if len(all_keys) > 8 else ""),
                  title_fontsize=8)
    ax.set_title(_study_title(caption, "band: 95% Wilson (dotted edges)", 7.0), fontsize=9)
    return fig
