"""Figures of gradient-flow results (matplotlib is imported lazily, inside the functions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2))]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_figure1(result, target, path: str | Path | None = None, title: str | None = None):
    """The two panels of the paper's Figure 1 from a batched :class:`deflation.FlowResult`.

    Left: the loss ``1/2 |T - T*|_F^2`` on a log scale, one line style per seed; values below the
    accuracy floor ``result.loss_floor`` (rounding and integration error) are not drawn, since
    they would be noise, and the floor itself is drawn as a thin grey line. Right: the residual ``(T* - T)(u_i^{(x)p})`` on each
    ground-truth direction, one colour per direction and the same line style per seed; a dot marks
    each fit time. Returns the matplotlib figure; writes it to ``path`` if given.
    """
    plt = _pyplot()
    ts = np.asarray(result.ts)
    loss = np.atleast_2d(np.asarray(result.loss))
    floor = np.atleast_2d(np.asarray(result.loss_floor))
    residual = np.asarray(result.residual)
    if residual.ndim == 2:
        residual = residual[None]
    fit = np.atleast_2d(np.asarray(result.fit_time))
    a = np.asarray(target.a)
    n_seeds, r = loss.shape[0], residual.shape[-1]
    colors = plt.get_cmap("tab10")(np.arange(r) % 10)

    fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
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
