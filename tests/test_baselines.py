"""Baselines checked against independent routes (dense tensors, tensorly, hand-rolled Euler)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deflation as D
from deflation import baselines as bl


def _orthogonal_target(d=8, r=4, seed=0):
    a = np.array([0.4, 0.3, 0.2, 0.1])[:r]
    return D.Target.random_orthonormal(jax.random.PRNGKey(seed), a, d)


@pytest.mark.slow
def test_power_deflation_recovers_orthogonal_components_in_order():
    tg = _orthogonal_target()
    out = bl.tensor_power_deflation(tg, jax.random.PRNGKey(1), restarts=8, iterations=40)
    U = np.asarray(tg.U)
    corr = np.abs(U.T @ np.asarray(out.directions))  # (r, k)
    np.testing.assert_allclose(np.diag(corr), 1.0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(out.weights), np.asarray(tg.a), rtol=1e-10)
    assert float(out.residual_norm[-1]) < 1e-7  # float Gram formula: sqrt(eps)-level floor
    # W reproduces T* (dense check, d = 8)
    from deflation.dense import dense_model

    np.testing.assert_allclose(np.asarray(dense_model(out.W, 4)), np.asarray(tg.dense()), atol=1e-10)


@pytest.mark.slow
def test_power_deflation_matches_tensorly():
    tl_sym = pytest.importorskip("tensorly.decomposition._symmetric_cp")
    tg = _orthogonal_target(d=6, r=3, seed=3)
    T = np.asarray(tg.dense())
    np.random.seed(0)  # tensorly draws its restarts from NumPy's global generator
    w_tl, f_tl = tl_sym.symmetric_parafac_power_iteration(T, rank=3, n_repeat=10, n_iteration=40)
    out = bl.tensor_power_deflation(tg, jax.random.PRNGKey(0), restarts=10, iterations=40)
    np.testing.assert_allclose(np.asarray(out.weights), np.asarray(w_tl), rtol=1e-8)
    overlap = np.abs(np.sum(np.asarray(out.directions) * np.asarray(f_tl), axis=0))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-8)


def test_deflation_levels_are_algorithm1s_and_the_dense_residuals():
    tg = _orthogonal_target()
    levels = bl.deflation_levels(tg)
    a = np.asarray(tg.a)
    np.testing.assert_allclose(levels, 0.5 * np.array([np.sum(a[k:] ** 2) for k in range(5)]), rtol=1e-12)
    out = bl.tensor_power_deflation(tg, jax.random.PRNGKey(1), restarts=8, iterations=40)
    np.testing.assert_allclose(levels[1:-1], 0.5 * np.asarray(out.residual_norm[:-1]) ** 2, rtol=1e-8)
    # non-orthogonal, weights out of order: the dense |T* - fitted|^2 with the largest weights removed first
    U = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 3)))[0] + 0.3
    U /= np.linalg.norm(U, axis=0)
    tg = D.Target(np.array([0.2, 0.5, 0.3]), U)
    dense = [np.asarray(D.Target(np.asarray(tg.a)[idx], U[:, idx]).dense()) for idx in ([0, 1, 2], [0, 2], [0])]
    expect = [0.5 * np.sum(T**2) for T in dense] + [0.0]
    np.testing.assert_allclose(bl.deflation_levels(tg), expect, rtol=1e-12)


def test_power_deflation_rejects_bad_input():
    tg = _orthogonal_target()
    with pytest.raises(ValueError, match="restarts"):
        bl.tensor_power_deflation(tg, jax.random.PRNGKey(0), restarts=0)
    with pytest.raises(TypeError, match="Target"):
        bl.tensor_power_deflation(np.eye(3), jax.random.PRNGKey(0))


@pytest.mark.slow
def test_optax_sgd_is_euler_on_the_flow():
    tg = D.Target.geometric(6, 3)
    W0 = D.sample_sphere(jax.random.PRNGKey(2), 6, 10, 0.3)
    lr, steps = 0.05, 40
    gd = bl.discrete_gradient_descent(tg, W0, optax.sgd(lr), steps, record_every=10)
    # independent route 1: hand-rolled Euler on the velocity
    W = np.asarray(W0)
    for _ in range(steps):
        W = W + lr * np.asarray(D.velocity(jnp.asarray(W), tg))
    np.testing.assert_allclose(np.asarray(gd.W[-1]), W, rtol=1e-12, atol=1e-14)
    # independent route 2: diffrax Euler with dt = lr on the raw-W flow
    sol = bl.solve_raw(tg, W0, steps * lr, solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(),
                       dt0=lr)
    np.testing.assert_allclose(np.asarray(gd.W[-1]), np.asarray(sol.ys[0]), rtol=1e-10, atol=1e-13)
    # residual record: (T* - T)(u_i^p) against the dense tensors
    from deflation.dense import dense_model

    R = np.asarray(tg.dense()) - np.asarray(dense_model(gd.W[2], 4))
    want = np.einsum("abce,ai,bi,ci,ei->i", R, *(np.asarray(tg.U),) * 4)
    np.testing.assert_allclose(np.asarray(gd.residual[2]), want, atol=1e-13)


def test_descent_fit_iterations_and_checks():
    tg = D.Target.geometric(5, 2, ratio=2.0)
    W0 = D.sample_sphere(jax.random.PRNGKey(0), 5, 12, 1e-2)
    gd = bl.discrete_gradient_descent(tg, W0, optax.sgd(0.1), 3000, record_every=50)
    fit = bl.descent_fit_iterations(gd, tg)
    assert np.isfinite(fit).all() and fit[0] <= fit[1]
    with pytest.raises(ValueError, match="record_every"):
        bl.discrete_gradient_descent(tg, W0, optax.sgd(0.1), 10, record_every=3)
    with pytest.raises(TypeError, match="optax"):
        bl.discrete_gradient_descent(tg, W0, "sgd", 10)


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.slow
def test_dense_numpy_gradient_is_minus_velocity(order):
    d, m = 5, 7
    a = np.array([0.5, 0.3, 0.2])
    U = np.linalg.qr(np.random.default_rng(0).normal(size=(d, 3)))[0]
    tg = D.Target(a, U, order)
    W = np.random.default_rng(1).normal(size=(d, m))
    g = bl.numpy_dense_gradient(W, a, U, order, lam=0.1)
    np.testing.assert_allclose(g, -np.asarray(D.velocity(jnp.asarray(W), tg, 0.1)), rtol=1e-11, atol=1e-12)
    # and both equal jax.grad of the loss
    gj = jax.grad(lambda W: D.loss(W, tg, 0.1, precise=False))(jnp.asarray(W))
    np.testing.assert_allclose(g, np.asarray(gj), rtol=1e-9, atol=1e-11)


@pytest.mark.slow
def test_numpy_lognorm_rhs_matches_vector_field():
    from deflation.dynamics import lognorm_vector_field, to_lognorm

    tg = D.Target.geometric(6, 3)
    W = np.random.default_rng(2).normal(size=(6, 9))
    rho, ubar = to_lognorm(jnp.asarray(W))
    f = bl.numpy_lognorm_rhs(np.asarray(tg.a), np.asarray(tg.U), 4, 9)
    got = f(0.0, np.concatenate([np.asarray(rho), np.asarray(ubar).ravel()]))
    dr, du = lognorm_vector_field((rho, ubar), tg, 0.0)
    np.testing.assert_allclose(got, np.concatenate([np.asarray(dr), np.asarray(du).ravel()]), rtol=1e-12, atol=1e-14)


@pytest.mark.slow  # a flow program compiled for it alone; its right-hand side: test_numpy_lognorm_rhs_*
def test_scipy_flow_agrees_with_gradient_flow():
    pytest.importorskip("scipy")
    tg = D.Target.geometric(5, 2)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), jnp.arange(2), 5, 6, 1e-2)
    Ws, nfev = bl.scipy_flow(tg, W0, 20.0, rtol=1e-10, atol=1e-10)
    res = D.gradient_flow(tg, W0, [20.0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(Ws, np.asarray(res.W[:, -1]), rtol=1e-6, atol=1e-8)
    assert (nfev > 0).all()
