"""``deflation figure1`` end to end at a reduced horizon, and the structure of its figure."""

import subprocess
import sys
import types

import numpy as np
import pytest

import deflation as D
from deflation.baselines import deflation_levels


@pytest.fixture(scope="module")
def figure1_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("figure1")
    out = subprocess.run(
        [sys.executable, "-m", "deflation.cli", "figure1", "--seeds", "2", "--horizon", "150", "--points", "151",
         "--rtol", "1e-8", "--atol", "1e-8", "--out", str(out_dir)],
        capture_output=True, text=True, check=True,
    )
    return out_dir, out.stdout


@pytest.mark.slow
def test_figure1_command_writes_png_data_and_table(figure1_run):
    tmp_path, stdout = figure1_run
    assert "fitted in order u_1, ..., u_5: 2/2 seeds" in stdout
    png = tmp_path / "figure1.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    data = np.load(tmp_path / "figure1.npz")
    assert data["loss"].shape == (2, 151) and data["residual"].shape == (2, 151, 5)
    assert data["fit_time"].shape == (2, 5) and np.isfinite(data["fit_time"]).all()
    assert (np.diff(data["fit_time"], axis=1) > 0).all()
    # the printed fit times are the saved ones
    row = [ln for ln in stdout.splitlines() if ln.strip().startswith("1 ")][0].split()
    np.testing.assert_allclose([float(x) for x in row[-2:]], data["fit_time"][:, 0], atol=0.006)


def _legend_texts(ax):
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_figure1_plot_shows_the_plateaus_markers_and_a_legend_that_hides_nothing(figure1_run):
    from deflation.plots import DISCOVERY_MARKER, FIT_MARKER, plot_figure1

    data = np.load(figure1_run[0] / "figure1.npz")
    result = types.SimpleNamespace(**{k: data[k] for k in ("ts", "loss", "loss_floor", "residual", "discovery_time",
                                                            "fit_time")})
    target = D.Target.geometric(10, 5, 1.2)
    levels = deflation_levels(target)
    fig = plot_figure1(result, target)
    ax_loss, ax_zoom, ax_res = fig.axes[:3]

    # (a): the loss axis spans the drawn (resolved) loss, not the ~1e-30 accuracy floor near t = 0
    resolved = data["loss"][data["loss"] > data["loss_floor"]]
    lo, hi = ax_loss.get_ylim()
    assert ax_loss.get_yscale() == "log"
    assert resolved.min() / 100 <= lo <= resolved.min() and hi >= resolved.max()
    assert np.log10(hi / lo) <= np.log10(resolved.max() / resolved.min()) + 3
    assert data["loss_floor"].min() < lo  # the floor near t = 0 would have stretched the axis

    # (b): every plateau level is drawn and takes at least 5% of the axis height
    lo, hi = ax_zoom.get_ylim()
    assert ax_zoom.get_yscale() == "linear"  # Figure 1's levels are within a factor 12 of each other
    hlines = [ln for ln in ax_zoom.get_lines() if list(ln.get_xdata()) == [0, 1]]  # axhline: axes x from 0 to 1
    drawn = sorted(ln.get_ydata()[0] for ln in hlines)
    np.testing.assert_allclose(drawn, sorted(levels))  # on a linear axis the last level, 0, is drawn too
    assert lo <= 0 and hi <= 1.2 * levels[0] and levels[-2] - lo >= 0.05 * (hi - lo)
    # ... and the loss rests on each of them (the staircase the panel is there to show)
    for lev in levels[:-1]:
        assert np.any(np.abs(data["loss"] / lev - 1) < 0.05), lev
    assert ax_zoom.get_xlim()[1] >= np.nanmax(data["fit_time"])

    # markers: one per discovery time and one per fit time, in (b) and in (c)
    n_disc, n_fit = np.isfinite(data["discovery_time"]).sum(), np.isfinite(data["fit_time"]).sum()
    for ax in (ax_zoom, ax_res):
        marks = [ln for ln in ax.get_lines() if ln.get_linestyle() in ("None", "none", "")]
        assert sum(len(ln.get_xdata()) for ln in marks if ln.get_marker() == DISCOVERY_MARKER) == n_disc
        assert sum(len(ln.get_xdata()) for ln in marks if ln.get_marker() == FIT_MARKER) == n_fit

    # legends: seeds, floor, levels, both markers, every component
    assert {"seed 0", "seed 1"} <= set(_legend_texts(ax_loss))
    assert any("accuracy floor" in t for t in _legend_texts(ax_loss))
    zoom_texts = _legend_texts(ax_zoom)
    assert any("deflation levels" in t for t in zoom_texts)
    assert any("discovery" in t for t in zoom_texts) and any("fit" in t for t in zoom_texts)
    res_texts = _legend_texts(ax_res)
    assert all(any(f"u_{{{i + 1}}}" in t for t in res_texts) for i in range(5))
    assert "discovery" in res_texts and "fit" in res_texts
    # ... and none of them covers its panel's data area
    fig.draw_without_rendering()
    for ax in (ax_loss, ax_zoom, ax_res):
        assert not ax.get_legend().get_window_extent().overlaps(ax.get_window_extent()), ax.get_title()


@pytest.mark.slow  # a second command run, compiling its own programs
def test_figure1_command_does_not_count_unfitted_components_as_in_order(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "deflation.cli", "figure1", "--seeds", "1", "--horizon", "115", "--points", "116",
         "--rtol", "1e-8", "--atol", "1e-8", "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )
    fit = np.load(tmp_path / "figure1.npz")["fit_time"]
    assert np.isfinite(fit[0, :-1]).all() and not np.isfinite(fit[0, -1])  # the horizon ends before u_5 is fitted
    assert "fitted in order u_1, ..., u_5: 0/1 seeds" in out.stdout
