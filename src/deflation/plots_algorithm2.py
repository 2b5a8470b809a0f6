"""Figure of one Algorithm 2 run (matplotlib is imported lazily, inside the function)."""

from __future__ import annotations

import os

import numpy as np


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
    colors = [_viridis(i / max(r - 1, 1)) for i in range(r)]
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
    bx.plot(s_idx, rec.residual_phase1[:E], "o", color="tab:green", label=r"$\|T-T^*\|_F$ after Phase 1")
    bx.plot(s_idx, rec.residual_phase2[:E], "s", color="k", mfc="none", label=r"$\|T-T^*\|_F$ after Phase 2")
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


def _viridis(x: float):
    from matplotlib import colormaps

    return colormaps["viridis"](0.9 * x)
