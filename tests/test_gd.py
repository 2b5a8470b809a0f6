"""Gradient descent (``deflation.gd``) against independent routes: its iterates against a loop
written here on ``jax.grad`` of the dense ``d^p`` loss (plain steps and heavy-ball momentum, both
symmetric models); its Definition 1 times against the gradient flow's as ``lr -> 0`` (first order
in ``lr``, as forward Euler); a step too large for descent reported per seed; bad arguments
refused by name."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deflation as D
from deflation.gd import gradient_descent

from dense import dense_Tstar, outer_power, random_unit_columns


def dense_T(W, q, p):
    total = 0.0
    for j in range(W.shape[1]):
        n = jnp.linalg.norm(W[:, j])
        total = total + n**q * outer_power(W[:, j] / n, p)
    return total


@pytest.mark.parametrize("model, q, momentum", [
    ("normalized", 2, None),
    pytest.param("plain", 4, None, marks=pytest.mark.slow),
    pytest.param("normalized", 2, 0.5, marks=pytest.mark.slow),
    pytest.param("plain", 4, 0.5, marks=pytest.mark.slow),
])
def test_iterates_are_gradient_steps_on_the_dense_loss(model, q, momentum):
    rng = np.random.default_rng(7)
    d, r, m, p, lam, lr, n = 4, 2, 3, 4, 0.05, 0.1, 5
    U = random_unit_columns(rng, d, r)
    a = np.array([0.7, 0.4])
    target = D.Target(a, U, p)
    W0 = jnp.asarray(rng.standard_normal((d, m)) * 0.5)
    Tstar = dense_Tstar(a, U, p)

    def loss(W):
        R = dense_T(W, q, p) - Tstar
        return 0.5 * jnp.sum(R * R) + 0.5 * lam * jnp.sum(W * W)

    W, trace = W0, jnp.zeros_like(W0)
    for _ in range(n):
        g = jax.grad(loss)(W)
        trace = g if momentum is None else g + momentum * trace
        W = W - lr * trace
    res = gradient_descent(target, W0, n * lr, lr, model=model, momentum=momentum, lam=lam, event_points=n + 1)
    assert res.iterations == n
    np.testing.assert_allclose(res.W, W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.loss[-1], loss(W), rtol=1e-10)
    np.testing.assert_allclose(res.ts, lr * np.arange(n + 1), rtol=1e-14)


@pytest.mark.slow
def test_times_converge_to_the_flow_at_first_order_in_lr():
    tg = D.Target.geometric(d=6, r=3, ratio=1.5)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(3), 6, 8, 1e-6)
    flow = D.gradient_flow(tg, W0, [60.0], event_points=256, rtol=1e-10, atol=1e-10)
    want = np.concatenate([np.asarray(flow.discovery_time), np.asarray(flow.fit_time)], -1)
    seen = np.isfinite(want)
    assert seen.sum() >= 12  # most of the 18 times happen within the horizon
    err = {}
    for lr in (0.02, 0.01):
        res = gradient_descent(tg, W0, 60.0, lr, event_points=256)
        assert (np.asarray(res.status) == 0).all(), res.failed()
        got = np.concatenate([np.asarray(res.discovery_time), np.asarray(res.fit_time)], -1)
        np.testing.assert_array_equal(np.isfinite(got), seen)
        err[lr] = np.abs(got[seen] - want[seen]) / want[seen]
    assert err[0.01].max() < 5e-3
    ratio = err[0.02] / err[0.01]
    assert (1.6 < ratio).all() and (ratio < 2.4).all(), ratio  # halving lr halves the error: first order


@pytest.mark.slow
def test_a_step_too_large_is_reported_per_seed():
    tg = D.Target.geometric(d=6, r=3, ratio=1.5)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(3), 6, 8, 1e-6)
    res = gradient_descent(tg, W0, 60.0, 2.0, event_points=64)
    assert [b for b, _ in res.failed()] == [0, 1, 2]
    assert {why for _, why in res.failed()} == {"loss increased"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=0.0), "lr must be"),
    (dict(lr=0.1, momentum=1.0), "momentum must be in"),
    (dict(lr=1e-12), "iterations, more than"),
    (dict(lr=0.1, model="asymmetric"), "model 'asymmetric'"),
])
def test_bad_arguments_are_named(kwargs, message):
    tg = D.Target.geometric(d=4, r=2, ratio=1.5)
    with pytest.raises(ValueError, match=message):
        gradient_descent(tg, jnp.ones((4, 3)) * 1e-3, 10.0, **kwargs)


@pytest.mark.slow
def test_a_gd_study_is_gradient_descent_seed_by_seed(tmp_path):
    pytest.importorskip("zarr")
    from deflation.montecarlo import Study, run_study, summarize

    study = Study("gd", 6, {"kind": "basis", "a": [0.6, 0.4]},
                  dict(d=4, m=4, delta0=1e-6, horizon=40.0, event_points=64, lr=[0.1, 0.05]), chunk=4)
    ds = run_study(study, tmp_path / "gd.zarr", progress=False)
    assert ds["discovery_time"].dims == ("lr", "seed", "component")
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(6), 4, 4, 1e-6)
    for lr in (0.1, 0.05):
        res = gradient_descent(D.Target.basis([0.6, 0.4], 4), W0, 40.0, lr, event_points=64)
        got = ds.sel(lr=lr)
        np.testing.assert_allclose(got["discovery_time"].values, res.discovery_time, rtol=1e-12)
        np.testing.assert_allclose(got["fit_time"].values, res.fit_time, rtol=1e-12)
        np.testing.assert_array_equal(got["status"].values, res.status)
    assert (summarize(ds)["discovered"] > 0).all()


@pytest.mark.parametrize("params, message", [
    (dict(d=4, m=4, horizon=10.0), "params: missing key 'lr'"),
    (dict(d=4, m=4, horizon=10.0, lr=0.1, rtol=1e-6), "params.rtol does not apply to experiment 'gd'"),
    (dict(d=4, m=4, horizon=1e6, lr=1e-9), "iterations, more than 2147483647"),
    (dict(d=4, m=4, horizon=10.0, lr=0.1, momentum=1.0), "params.momentum must be in [0, 1)"),
])
def test_bad_gd_studies_are_refused_naming_the_key(params, message):
    from deflation.montecarlo import Study

    with pytest.raises(ValueError, match=re.escape(message)):
        Study("gd", 4, {"kind": "basis", "a": [0.6, 0.4]}, params)
