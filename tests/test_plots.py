"""Structure of the library's figures on synthetic inputs (no solve): colours, axis ranges, ticks."""

import types

import numpy as np
import pytest

import deflation as D
from deflation.baselines import deflation_levels

plots = pytest.importorskip("deflation.plots")


@pytest.mark.parametrize("r", [1, 3, 8, 9, 10, 12, 18, 20, 25])
def test_component_colors_are_distinct_and_not_grey_where_possible(r):
    from matplotlib.colors import to_rgb

    rgb = np.array([to_rgb(c) for c in plots.component_colors(r)])
    assert rgb.shape == (r, 3) and len({tuple(c) for c in rgb}) == r
    if r in (10, 19, 20):  # tab10 / tab20 need their greys to reach r colours
        return
    assert (rgb.max(axis=1) - rgb.min(axis=1)).min() > 0.1  # every colour saturated: grey is for reference lines


def _staircase(target, fits, discoveries, floor=1e-30, t_end=None):
    """A FlowResult-like record whose loss rests on the deflation levels between fits (lam = 0)."""
    a = np.asarray(target.a)
    levels = deflation_levels(target)
    t_end = t_end or 1.5 * max(fits)
    ts = np.linspace(0.0, t_end, 601)
    k = np.searchsorted(np.asarray(fits), ts, side="right")  # components fitted by time t
    loss = np.where(k < len(levels), levels[np.minimum(k, len(levels) - 1)], 0.0) + 1e-12 * np.exp(-ts)
    residual = np.where(ts[:, None] < np.asarray(fits)[None, :], a[None, :], 0.01 * a[None, :])
    return types.SimpleNamespace(ts=ts, loss=loss, loss_floor=np.full_like(ts, floor), residual=residual,
                                 discovery_time=np.asarray(discoveries, float), fit_time=np.asarray(fits, float))


def test_figure1_plateau_panel_is_log_and_limited_when_the_levels_span_decades():
    target = D.Target.geometric(8, 6, ratio=2.0)
    levels = deflation_levels(target)
    assert levels[-2] < 0.05 * levels[0]  # a linear axis would squash the last steps
    fits = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    res = _staircase(target, fits, [f - 5 for f in fits])
    fig = plots.plot_figure1(res, target)
    ax_loss, ax_zoom = fig.axes[:2]
    assert ax_zoom.get_yscale() == "log"
    lo, hi = ax_zoom.get_ylim()
    assert lo <= levels[-2] and hi >= levels[0]
    # the range is set by the plateaus and the markers on them, down to 1e-3 of the smallest level at most
    # (here the last fit marker sits at ~1e-38: it must not stretch the axis), not by the 1e-30 floor
    marked = np.interp(np.r_[fits, [f - 5 for f in fits]], res.ts, res.loss)
    on_plateaus = marked[marked >= levels[-2]]
    assert lo <= on_plateaus.min() and lo >= 0.999e-3 * levels[-2]
    assert np.log10(hi / lo) < np.log10(levels[0] / levels[-2]) + 3.5
    lo, hi = ax_loss.get_ylim()
    assert lo > 1e-20  # (a): the drawn loss goes down to ~1e-14, the floor (1e-30) does not set the axis


def test_figure1_seed_legend_stays_readable_for_many_seeds():
    target = D.Target.geometric(6, 3, ratio=1.5)
    one = _staircase(target, [10.0, 20.0, 30.0], [5.0, 15.0, 25.0])
    n = len(plots.LINESTYLES) + 3
    batch = types.SimpleNamespace(**{k: (v if k == "ts" else np.stack([v] * n)) for k, v in vars(one).items()})
    fig = plots.plot_figure1(batch, target)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sum(t.startswith("seed ") for t in texts) == len(plots.LINESTYLES)
    assert "mod" in fig.axes[0].get_legend().get_title().get_text()


def test_plain_log_ticks_labels_short_axes_at_1_2_5_only():
    fig = plots._figure()
    ax = fig.subplots()
    ax.loglog([15.0, 700.0], [3e-3, 4e-1])
    plots.plain_log_ticks(ax.xaxis)
    fig.draw_without_rendering()
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.xaxis.get_majorticklocs() if lo <= t <= hi]
    mantissas = {round(t / 10 ** np.floor(np.log10(t)), 6) for t in ticks}
    assert mantissas <= {1.0, 2.0, 5.0} and len(ticks) >= 4
    labels = [t.get_text() for t in ax.xaxis.get_ticklabels() if t.get_text()]
    assert "20" in labels and "500" in labels and not any("times" in s for s in labels)
    assert not any(t.get_text() for t in ax.xaxis.get_ticklabels(minor=True))
    # a wide axis (about 5 decades) is left to matplotlib
    before = type(ax.yaxis.get_major_locator())
    ax.set_ylim(1e-6, 1.0)
    plots.plain_log_ticks(ax.yaxis)
    assert type(ax.yaxis.get_major_locator()) is before
