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


# ---------------------------------------------------------------------------- study figures and table


def _study_ds(experiment="flow", grid=None, seeds=40, r=3, p_disc=None, rng=0, horizon=50.0):
    """A study dataset of the stored layout with made-up outcomes (no solve): ``grid`` maps swept
    parameters to their values; component ``i`` is discovered with probability ``p_disc[i]`` at a
    uniform time in (0, horizon), and fitted (flow) in half of the discoveries."""
    import xarray as xr

    from deflation.montecarlo import Study

    rng = np.random.default_rng(rng)
    grid = dict(grid or {})
    p_disc = np.asarray(p_disc if p_disc is not None else np.linspace(0.97, 0.2, r))
    if experiment == "algorithm2":
        params = dict(d=6, eps=1e-2)
    else:
        params = dict(d=6, m=8, horizon=horizon)
    params.update({k: list(v) for k, v in grid.items()})
    study = Study(experiment, seeds, {"kind": "basis", "ratio": 1.2, "r": r}, params)
    shape = tuple(len(v) for v in grid.values())
    dims = tuple(grid)
    disc = rng.random(shape + (seeds, r)) < p_disc
    data = dict(discovered=(dims + ("seed", "component"), disc),
                status=(dims + ("seed",), np.zeros(shape + (seeds,), np.int32)))
    if experiment == "algorithm2":
        epoch = np.where(disc, rng.integers(0, 3, disc.shape), -1)
        data.update(discovery_epoch=(dims + ("seed", "component"), epoch),
                    fit_epoch=(dims + ("seed", "component"), np.where(disc, epoch + 1, -1)),
                    converged=(dims + ("seed",), disc.all(axis=-1)),
                    epochs=(dims + ("seed",), np.where(disc.all(axis=-1), epoch.max(axis=-1) + 2, 30)))
    else:
        t = np.where(disc, rng.uniform(0, horizon, disc.shape), np.inf)
        fitted = disc & (rng.random(disc.shape) < 0.5)
        data.update(discovery_time=(dims + ("seed", "component"), t),
                    fit_time=(dims + ("seed", "component"), np.where(fitted, t + 1.0, np.inf)))
    a = np.broadcast_to(np.asarray([w for w in 1.2 ** -np.arange(r)]) / sum(1.2 ** -np.arange(r)), shape + (r,))
    coords = {k: list(v) for k, v in grid.items()}
    coords.update(seed=np.arange(seeds), component=np.arange(r), a=(dims + ("component",), a))
    if experiment == "algorithm2":
        coords["epoch"] = np.arange(30)
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(experiment=experiment, grid=list(grid), study=study.to_json())
    return ds


def test_wilson_bounds_stay_in_0_1_and_are_exact_at_the_ends():
    from deflation.montecarlo import wilson_interval

    n = np.arange(1, 5001)
    lo, hi = wilson_interval(n, n)  # every seed: the upper bound is 1, not 0.9999999999999999
    assert (hi == 1.0).all() and (lo < 1).all()
    lo, hi = wilson_interval(0 * n, n)
    assert (lo == 0.0).all() and (hi > 0).all()
    k = n // 3
    lo, hi = wilson_interval(k[k > 0], n[k > 0])
    assert ((0 < lo) & (lo < hi) & (hi < 1)).all()


def test_summary_counts_fitted_seeds_and_leaves_quantiles_nan_where_nothing_happened():
    from deflation.montecarlo import summarize

    ds = _study_ds(seeds=30, r=3, p_disc=[1.0, 0.6, 0.0])
    status = ds["status"].values.copy()
    status[[2, 5]] = 3  # two failed seeds: counted apart, not in n, discovered or fitted
    ds["status"] = ("seed", status)
    df = summarize(ds).set_index("component")
    ok = status == 0
    fit = ds["fit_time"].values[ok]
    assert list(df.columns).index("fitted") == list(df.columns).index("discovered") + 1
    np.testing.assert_array_equal(df["fitted"], np.isfinite(fit).sum(axis=0))
    np.testing.assert_array_equal(df["discovered"], ds["discovered"].values[ok].sum(axis=0))
    assert (df["n"] == 28).all() and (df["failed"] == 2).all()
    assert df.loc[0, "p_hi"] == 1.0 and df.loc[2, "p_lo"] == 0.0 and (df["p_hi"] <= 1).all()
    assert df.loc[2, "fitted"] == 0 and np.isnan(df.loc[2, ["t_q10", "t_q50", "t_q90", "fit_q50"]]).all()
    assert np.isfinite(df.loc[0, ["t_q50", "fit_q50"]].astype(float)).all()
    # Algorithm 2: a fit is an epoch >= 0
    ds2 = _study_ds("algorithm2", seeds=20, r=2, p_disc=[1.0, 0.5])
    df2 = summarize(ds2)
    np.testing.assert_array_equal(df2["fitted"], (ds2["fit_epoch"].values >= 0).sum(axis=0))


def _images(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def test_heatmap_colours_span_the_data_and_cells_show_the_interval():
    from deflation.montecarlo import summarize

    ds = _study_ds(grid=dict(d=[6, 10], m=[8, 24]), seeds=64, p_disc=[0.99, 0.97, 0.96])
    df = summarize(ds)
    assert df["p"].min() >= 0.85  # every cell near 1: a 0-1 scale would paint them all the same
    fig = plots._study_figure(df, ds)
    images = _images(fig)
    assert len(images) == 3 * 1
    lo, hi = images[0].get_clim()
    assert lo <= df["p"].min() and hi >= df["p"].max() and hi - lo <= 1.05 * (df["p"].max() - df["p"].min()) + 0.02
    assert all(im.get_clim() == (lo, hi) for im in images)  # one scale for every panel
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    row = df.iloc[0]
    assert f"{row['p']:.2f}\n[{row['p_lo']:.2f}, {row['p_hi']:.2f}]" in texts


def test_figure1_time_axis_ends_soon_after_the_data_when_it_ends_early():
    target = D.Target.geometric(6, 3, ratio=1.5)
    fits = [10.0, 20.0, 30.0]
    res = _staircase(target, fits, [5.0, 15.0, 25.0], floor=1e-13, t_end=100.0)  # at its floor from t = 30
    fig = plots.plot_figure1(res, target)
    limits = {ax.get_xlim()[1] for ax in fig.axes[:3]}
    assert len(limits) == 1  # (a), (b), (c): one time range
    end = limits.pop()
    assert 30.0 <= end <= 40.0 < res.ts[-1]
    # a component never fitted: something may still happen at the horizon, the whole run is shown
    res.fit_time = np.asarray([10.0, 20.0, np.inf])
    assert plots.plot_figure1(res, target).axes[0].get_xlim()[1] >= res.ts[-1]


@pytest.mark.parametrize("ratio", [1.2, 2.0])  # a linear and a log plateau panel
def test_figure1_labels_every_deflation_level_up_to_the_last(ratio):
    r = 5
    target = D.Target.geometric(8, r, ratio=ratio)
    fits = [10.0, 20.0, 30.0, 40.0, 50.0]
    fig = plots.plot_figure1(_staircase(target, fits, [f - 5 for f in fits]), target)
    ax_zoom = fig.axes[1]
    labels = [t.get_text() for t in ax_zoom.child_axes[0].get_yticklabels()]
    assert [s.split(":")[0] for s in labels] == [f"k={k}" for k in range(r + 1)]


def test_marker_legend_shows_black_shapes_and_says_colour_is_the_component():
    target = D.Target.geometric(6, 3, ratio=1.5)
    fig = plots.plot_figure1(_staircase(target, [10.0, 20.0, 30.0], [5.0, 15.0, 25.0]), target)
    from matplotlib.colors import to_rgba

    for ax in fig.axes[1:3]:
        legend = ax.get_legend()
        marks = [h for h in legend.legend_handles if getattr(h, "get_marker", lambda: None)() in
                 (plots.DISCOVERY_MARKER, plots.FIT_MARKER)]
        assert len(marks) == 2
        assert all(to_rgba(h.get_markeredgecolor()) == to_rgba("k") and h.get_markerfacecolor() == "none"
                   for h in marks)
        assert "colour = component" in legend.get_title().get_text()


def test_epoch_labels_of_algorithm2_leave_room_between_them():
    fig = plots._figure()
    ax = fig.subplots()
    starts = np.r_[0.0, np.cumsum(10.0 * 2.0 ** np.arange(7))]  # epoch lengths double
    ax.set_xlim(0, starts[-1])
    plots._epoch_axis(ax, starts[:-1], starts[1:])
    top = ax.child_axes[0]
    ticks = np.asarray(top.get_xticks())
    assert np.all(np.diff(ticks) >= 0.035 * starts[-1]) and len(ticks) < len(starts) - 1
    labels = [t.get_text() for t in top.get_xticklabels()]
    assert labels[-1] == str(len(starts) - 2)  # the long last epochs are all labelled


def test_a_one_dimensional_grid_has_ticks_at_its_values_and_integer_ticks():
    from deflation.montecarlo import summarize

    ds = _study_ds(grid=dict(m=[8, 16, 24, 50]), r=3, seeds=20)
    fig = plots._study_figure(summarize(ds), ds)
    for ax in fig.axes[:2]:
        np.testing.assert_array_equal(ax.get_xticks(), [8, 16, 24, 50])
    ds = _study_ds(grid=dict(d=list(range(3, 20))), r=2, seeds=10)
    fig = plots._study_figure(summarize(ds), ds)
    fig.draw_without_rendering()
    lo, hi = fig.axes[0].get_xlim()
    ticks = [t for t in fig.axes[0].get_xticks() if lo <= t <= hi]
    assert len(ticks) >= 3 and all(float(t).is_integer() for t in ticks)


def test_algorithm2_study_title_states_only_what_holds_at_every_grid_point():
    from deflation.montecarlo import study_caption, summarize

    ds = _study_ds("algorithm2", grid=dict(d=[4, 6]), r=3, seeds=16)
    fig = plots._study_figure(summarize(ds), ds, study_caption(ds))
    title = fig.get_suptitle()
    assert "eps=0.01" in title and "vary with the grid" in title
    assert "m=" not in title and "lam=" not in title  # Theorem 1's m = 2 d^2 and lam differ between d = 4 and 6


def test_single_point_figure_shows_probabilities_with_intervals_and_the_times():
    from matplotlib.patches import PathPatch, Rectangle

    from deflation.montecarlo import summarize

    ds = _study_ds(r=4, seeds=40, p_disc=[1.0, 0.8, 0.4, 0.0])
    df = summarize(ds)
    fig = plots._study_figure(df, ds)
    bars, times = fig.axes[:2]
    heights = sorted(p.get_height() for p in bars.patches if isinstance(p, Rectangle))
    expected = sorted(np.r_[df["p"], df["fitted"] / df["n"]])
    np.testing.assert_allclose(heights, expected)
    assert len(bars.containers) and any(c.has_yerr for c in bars.containers if hasattr(c, "has_yerr"))
    boxes = [p for p in times.patches if isinstance(p, PathPatch)]
    assert len(boxes) == 2 * 3  # discovery and fit boxes of the three components discovered by some seed
    assert any("never" in t.get_text() for t in times.texts)


def test_cdf_panels_only_for_components_some_seed_discovered_and_no_empty_slots():
    from deflation.montecarlo import discovery_cdf

    ds = _study_ds(grid=dict(m=[8, 24]), r=5, seeds=30, p_disc=[1.0, 0.8, 0.5, 0.2, 0.0])
    fig = plots._cdf_figure(discovery_cdf(ds), ds)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 4 and len(fig.axes) == 4  # one row of four: u_5 (never discovered) is not drawn
    assert "never discovered" in fig.get_suptitle() and "u5" in fig.get_suptitle()
    from matplotlib.colors import to_rgb

    for ax in shown:  # every curve dark enough to read on white (no light yellow)
        for line in ax.get_lines():
            assert sum(to_rgb(line.get_color())) < 2.4


def test_convergence_axis_ends_soon_after_the_last_change():
    from deflation.montecarlo import convergence

    ds = _study_ds("algorithm2", grid=dict(d=[4, 6]), r=2, seeds=16, p_disc=[1.0, 1.0])
    conv = convergence(ds)
    last = int(ds["epochs"].values.max())
    assert last < 10 and conv["epochs"].max() == 30
    fig = plots._convergence_figure(conv, ds)
    ax = fig.axes[0]
    assert last <= ax.get_xlim()[1] <= last + 2
    fig.draw_without_rendering()
    assert all(float(t).is_integer() for t in ax.get_xticks())
