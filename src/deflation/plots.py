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


def _yerr(df):
    return [np.clip(df["p"] - df["p_lo"], 0, None), np.clip(df["p_hi"] - df["p"], 0, None)]


def plot_study(df, ds, path) -> Path:
    """PNG of a Monte Carlo study's discovery probability (Wilson 95% intervals) against ``a_i``,
    or against the swept parameter with one line per component (``df``: the summary table)."""
    sweep = ds.attrs.get("sweep") or None
    fig = _figure(figsize=(6, 4), dpi=120, layout="constrained")
    ax = fig.subplots()
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
    path = Path(path)
    fig.savefig(path)
    return path
