"""Discovery orders and plateaus (``deflation.montecarlo.order``) on datasets whose answers are
known by construction: hand-written discovery times (ties, never-discovered components, failed
seeds, weights not sorted), a grid of two points, and Algorithm 2's epochs."""

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from deflation.montecarlo import discovery_order, order_distribution, plateau_times  # noqa: E402

INF = np.inf


def dataset(times, a, status=None, epochs=False):
    """A study-shaped dataset of one grid point: (seed, component) discovery times."""
    times = np.asarray(times, float)
    status = np.zeros(times.shape[0], np.int8) if status is None else np.asarray(status, np.int8)
    data = dict(status=(("seed",), status), a=(("component",), np.asarray(a, float)))
    if epochs:
        data["discovery_epoch"] = (("seed", "component"), np.where(np.isfinite(times), times, -1).astype(np.int32))
    else:
        data["discovery_time"] = (("seed", "component"), times)
    return xr.Dataset(data, attrs=dict(grid=[], experiment="algorithm2" if epochs else "flow"))


def test_orders_ties_missing_components_and_failed_seeds():
    # weights not sorted: u_2 is the largest, then u_1, then u_3
    ds = dataset([[2.0, 1.0, 3.0],      # 2>1>3: the weight order
                  [2.0, 1.0, 3.0],      # again
                  [1.0, 2.0, 3.0],      # 1>2>3
                  [1.0, 1.0, 5.0],      # tie: 1=2>3, not in order
                  [INF, 1.0, 4.0],      # u_1 never: 2>3
                  [9.0, 9.0, 9.0]],     # a failed seed: not counted
                 a=[0.3, 0.5, 0.2], status=[0, 0, 0, 0, 0, 1])
    row = discovery_order(ds).iloc[0]
    assert (row["n"], row["all_discovered"], row["in_order"]) == (5, 4, 2)
    assert row["p_in_order"] == pytest.approx(0.4)
    assert row["p_in_order_lo"] < 0.4 < row["p_in_order_hi"]
    dist = order_distribution(ds)
    assert list(dist["order"]) == ["2>1>3", "1=2>3", "1>2>3", "2>3"]
    assert list(dist["count"]) == [2, 1, 1, 1] and (dist["n"] == 5).all()
    assert list(dist["weight_order"]) == [True, False, False, False]
    assert ((dist["p_lo"] <= dist["p"]) & (dist["p"] <= dist["p_hi"])).all()


def test_plateaus_are_the_gaps_between_sorted_discoveries():
    ds = dataset([[1.0, 3.0, 6.0], [2.0, 5.0, 9.0], [1.5, 4.0, INF]], a=[0.5, 0.3, 0.2])
    pl = plateau_times(ds)
    assert list(pl["k"]) == [0, 1, 2] and list(pl["seeds"]) == [3, 3, 2]
    np.testing.assert_allclose(pl["median"], [1.5, 2.5, 3.5])  # gaps (1, 2, 1.5), (2, 3, 2.5), (3, 4)
    assert (pl["median_lo"] <= pl["median"]).all() and (pl["median"] <= pl["median_hi"]).all()
    assert pl.equals(plateau_times(ds))  # a fixed generator: the same table every time


def test_algorithm2_epochs_and_a_grid():
    one = dataset([[0, 1], [0, 0], [1, INF]], a=[0.6, 0.4], epochs=True)
    assert list(order_distribution(one)["order"]) == ["1", "1=2", "1>2"]  # counts 1 each, then by text
    grid = xr.concat([dataset([[1.0, 2.0]] * 4, [0.6, 0.4]), dataset([[2.0, 1.0]] * 4, [0.6, 0.4])], dim="d")
    grid = grid.assign_coords(d=[4, 8])
    grid.attrs.update(grid=["d"], experiment="flow")
    table = discovery_order(grid)
    assert list(table["d"]) == [4, 8] and list(table["p_in_order"]) == [1.0, 0.0]
