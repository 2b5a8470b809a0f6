"""A fourth model as a plug-in: one class, registered in ``deflation.models.MODELS``, and every
route takes it by name with no change to the package: the loss and the velocity (against the dense
tensor and ``jax.grad`` of the dense loss), ``gradient_flow(model=...)`` and a study's ``model``
parameter (whose result is the Python API's for the same seeds)."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deflation as D
from deflation import models
from deflation.models import SymmetricModel

from dense import dense_symmetric, dense_Tstar, random_unit_columns


class Halfway(SymmetricModel):
    """``T = sum_j |w_j|^(p-1) wbar_j^(x)p``: between the normalized (``q = 2``) and the plain
    (``q = p``) model; from ``delta0`` a column escapes in a time ``~ 1 / (a delta0^(p-3))``."""

    name: ClassVar[str] = "halfway"

    def norm_power(self, order: int) -> int:
        return order - 1


@pytest.fixture
def halfway(monkeypatch):
    monkeypatch.setitem(models.MODELS, Halfway.name, Halfway())
    return Halfway.name


@pytest.mark.parametrize("p", [pytest.param(4, marks=pytest.mark.slow), 5])  # (at p = 3 it is the normalized model)
def test_a_registered_model_has_the_dense_loss_and_its_gradient(halfway, p):
    rng = np.random.default_rng(p)
    a, U = rng.uniform(0.2, 1.0, 3), random_unit_columns(rng, 4, 3)
    target, W = D.Target(a, U, p), jnp.asarray(rng.standard_normal((4, 5)) * 0.6)

    def dense_loss(W_):
        R = dense_symmetric(W_, p, p - 1) - dense_Tstar(a, U, p)
        return 0.5 * jnp.sum(R * R) + 0.5 * 0.05 * jnp.sum(W_ * W_)

    np.testing.assert_allclose(D.loss(W, target, 0.05, model=halfway), dense_loss(W), rtol=1e-11)
    np.testing.assert_allclose(D.velocity(W, target, 0.05, model=halfway), -jax.grad(dense_loss)(W),
                               rtol=1e-9, atol=1e-11)
    # and it is not one of the shipped models under another name
    for other in ("normalized", "plain"):
        assert not np.isclose(float(D.loss(W, target, 0.05, model=other)), float(dense_loss(W)), rtol=1e-6)


@pytest.mark.slow
def test_a_registered_model_runs_by_name_in_gradient_flow_and_in_a_study(halfway, tmp_path):
    pytest.importorskip("zarr")
    from deflation.montecarlo import Study, run_study

    params = dict(d=3, m=3, delta0=1e-2, delta1=0.3, horizon=1500.0, event_points=32, model=halfway)
    ds = run_study(Study("flow", 4, {"kind": "basis", "a": [0.6, 0.4]}, params, chunk=4), tmp_path / "h.zarr",
                   progress=False)
    assert (ds["status"].values == 0).all()
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(4), 3, 3, 1e-2)
    res = D.gradient_flow(D.Target.basis([0.6, 0.4], 3), W0, [1500.0], model=halfway, delta1=0.3, event_points=32)
    got, want = ds["discovery_time"].values, np.asarray(res.discovery_time)
    found = np.isfinite(want)
    assert found.sum() >= 4  # most components found by the horizon
    np.testing.assert_array_equal(np.isfinite(got), found)
    np.testing.assert_allclose(got[found], want[found], rtol=1e-9)
    # slower to escape than the normalized model (its terms weigh |w|^3, not |w|^2)
    norm = np.asarray(D.gradient_flow(D.Target.basis([0.6, 0.4], 3), W0, [1500.0], delta1=0.3,
                                      event_points=32).discovery_time)
    assert (want[found & np.isfinite(norm)] > norm[found & np.isfinite(norm)]).all()
