"""The models of ``deflation.models`` against independent routes: the loss against the dense ``d^p``
tensors built in the test, the velocity against ``jax.grad`` of that dense loss, and the log-norm
field against the chain rule of the velocity; every model at every order 2..5, with and without
``lam``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deflation as D
from deflation import models
from deflation.contract import column_norms, residual_vectors

from dense import dense_rank_one_sum, dense_symmetric, dense_Tstar, random_unit_columns

ORDERS = (2, 3, 4, 5)
LAMS = (0.0, 0.07)


def case(model, p, seed):
    """(target, W, dense loss function of W) for a random instance of ``model`` at order ``p``."""
    rng = np.random.default_rng(100 * p + seed)
    d, r, m = 4, 3, 5
    a = rng.uniform(0.2, 1.0, r)
    if model == "asymmetric":
        factors = [random_unit_columns(rng, d, r) for _ in range(p)]
        target = D.Target.asymmetric(a, factors)
        W = tuple(jnp.asarray(rng.standard_normal((d, m)) * 0.6) for _ in range(p))
        Tstar = dense_rank_one_sum(a, factors)

        def T(W_):
            return dense_rank_one_sum(np.ones(m), W_)
    else:
        U = random_unit_columns(rng, d, r)
        target = D.Target(a, U, p)
        W = jnp.asarray(rng.standard_normal((d, m)) * 0.6)
        Tstar = dense_Tstar(a, U, p)
        q = 2 if model == "normalized" else p

        def T(W_):
            return dense_symmetric(W_, p, q)

    def dense_loss(W_, lam):
        R = T(W_) - Tstar
        reg = sum(jnp.sum(w * w) for w in (W_ if isinstance(W_, tuple) else (W_,)))
        return 0.5 * jnp.sum(R * R) + 0.5 * lam * reg

    return target, W, dense_loss, T


@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("p", ORDERS)
@pytest.mark.parametrize("model", list(models.MODELS))
@pytest.mark.slow
def test_loss_and_velocity_match_dense_autodiff(model, p, lam):
    target, W, dense_loss, T = case(model, p, seed=int(lam * 100))
    want = dense_loss(W, lam)
    np.testing.assert_allclose(D.loss(W, target, lam, model=model), want, rtol=1e-11)
    grad = jax.grad(dense_loss)(W, lam)
    v = D.velocity(W, target, lam, model=model)
    for vk, gk in zip(jax.tree.leaves(v), jax.tree.leaves(grad)):
        np.testing.assert_allclose(vk, -gk, rtol=1e-9, atol=1e-11)
    # the model's own dense form is T(W) as built here
    np.testing.assert_allclose(models.as_model(model).dense(W, p), T(W), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("p", ORDERS)
@pytest.mark.parametrize("model", list(models.MODELS))
def test_residual_matches_dense(model, p):
    target, W, _, T = case(model, p, seed=3)
    rng = np.random.default_rng(p)
    V = jnp.asarray(rng.standard_normal((target.d, 2)))
    R = (dense_rank_one_sum(target.a, models.asymmetric.target_factors(target)) if model == "asymmetric"
         else dense_Tstar(np.asarray(target.a), np.asarray(target.U), p)) - T(W)
    want = []
    for k in range(V.shape[1]):
        out = R
        while out.ndim:
            out = out @ V[:, k]
        want.append(out)
    np.testing.assert_allclose(D.residual(W, target, V, model=model), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("p", ORDERS)
@pytest.mark.parametrize("model", list(models.MODELS))
def test_lognorm_field_is_the_chain_rule_of_the_velocity(model, p, lam):
    """``d rho/dt = <ubar, v>/|w|``, ``d ubar/dt = (I - ubar ubar^T) v/|w|`` for ``w = exp(rho) ubar``."""
    target, W, _, _ = case(model, p, seed=7)
    mod = models.as_model(model)
    v = mod.velocity(W, target, lam)
    Ws, vs = (W, v) if isinstance(W, tuple) else ((W,), (v,))
    rho = tuple(D.to_lognorm(Wk)[0] for Wk in Ws)
    ubar = tuple(D.to_lognorm(Wk)[1] for Wk in Ws)
    state = (rho, ubar) if isinstance(W, tuple) else (rho[0], ubar[0])
    drho, du = mod.lognorm_field(state, target, lam)
    drho, du = (drho, du) if isinstance(W, tuple) else ((drho,), (du,))
    for rk, uk, vk, dr, dk in zip(rho, ubar, vs, drho, du):
        scaled = vk / jnp.exp(rk)[None, :]
        radial = jnp.sum(uk * scaled, axis=0)
        np.testing.assert_allclose(dr, radial, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dk, scaled - radial[None, :] * uk, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("model", ["normalized", "plain"])
def test_frozen_field_is_the_velocity_with_R_frozen_at_the_target(model):
    """The tensor-power dynamics is the velocity of the loss with ``T`` dropped from ``R``:
    ``-grad_W <T(W), T*>`` ... plus the regularizer, checked against ``jax.grad`` of the dense cross term."""
    p, lam = 4, 0.05
    target, W, _, T = case(model, p, seed=11)
    Tstar = dense_Tstar(np.asarray(target.a), np.asarray(target.U), p)
    cross = jax.grad(lambda W_: -jnp.sum(T(W_) * Tstar) + 0.5 * lam * jnp.sum(W_ * W_))(W)
    np.testing.assert_allclose(D.tensor_power_velocity(W, target, lam, model=model), -cross, rtol=1e-10, atol=1e-12)


def test_normalized_model_is_the_papers_formula_bit_for_bit():
    """The default model computes exactly ``|w| (p R(wbar^{p-1}, I) - (p-2) R(wbar^p) wbar) - lam w``
    from the Gram contractions, and its log-norm field exactly ``(2 R(u^p) - lam, p (Rvec - R(u^p) u))``."""
    rng = np.random.default_rng(5)
    target = D.Target(rng.uniform(0.2, 1, 3), random_unit_columns(rng, 6, 3), 4)
    W = jnp.asarray(rng.standard_normal((6, 7)))
    omega, norm, rho, Wbar = column_norms(W)
    Rp, Rvec = residual_vectors(Wbar, omega, target)
    want = norm * (4 * Rvec - 2 * Rp * Wbar) - 0.1 * W
    assert np.array_equal(D.velocity(W, target, 0.1), want)
    u = D.dynamics.normalize(Wbar)
    Rp, Rvec = residual_vectors(u, jnp.exp(2.0 * rho), target)
    field = D.dynamics.lognorm_vector_field((rho, Wbar), target, 0.1)
    assert np.array_equal(field[0], 2.0 * Rp - 0.1)
    assert np.array_equal(field[1], 4 * (Rvec - Rp * u))


def test_plain_model_is_slower_to_escape_by_its_norm_factor():
    """At the same tiny state, the plain model's log-norm growth rate is the normalized one's times
    ``(p/2) |w|^{p-2}``: the escape from ``delta0`` takes ``~delta0^{-(p-2)}`` instead of ``log(1/delta0)``."""
    rng = np.random.default_rng(1)
    target = D.Target.geometric(5, 2, 1.5)
    rho = jnp.full(3, np.log(1e-3))
    ubar = jnp.asarray(random_unit_columns(rng, 5, 3))
    fast = models.Normalized().lognorm_field((rho, ubar), target, 0.0)[0]
    slow = models.Plain().lognorm_field((rho, ubar), target, 0.0)[0]
    np.testing.assert_allclose(slow, fast * 2 * 1e-6, rtol=1e-3)  # (p/2) |w|^2 = 2e-6, up to the model term


def test_models_by_name_and_bad_names():
    assert models.as_model("plain") is models.MODELS["plain"]
    assert models.as_model(models.Asymmetric()) == models.Asymmetric()
    with pytest.raises(ValueError, match="model must be one of 'normalized', 'plain', 'asymmetric', got 'cp'"):
        D.loss(jnp.ones((3, 2)), D.Target.geometric(3, 2), model="cp")
    with pytest.raises(TypeError, match="model must be a model name"):
        D.velocity(jnp.ones((3, 2)), D.Target.geometric(3, 2), model=3)


def test_asymmetric_state_and_target_checks():
    target = D.Target.asymmetric([0.5, 0.5], [np.eye(3)[:, :2]] * 3)
    with pytest.raises(ValueError, match=r"W must be a tuple of 3 factor matrices .* got a single array"):
        D.loss(jnp.ones((3, 2)), target, model="asymmetric")
    with pytest.raises(TypeError, match=r"W must be a tuple of 3 factor matrices"):
        D.loss(None, target, model="asymmetric")
    with pytest.raises(ValueError, match="one number of columns"):
        D.loss((jnp.ones((3, 2)), jnp.ones((3, 2)), jnp.ones((3, 4))), target, model="asymmetric")
    with pytest.raises(ValueError, match=r"W\[1\] has 4 rows"):
        D.loss((jnp.ones((3, 2)), jnp.ones((4, 2)), jnp.ones((3, 2))), target, model="asymmetric")
    with pytest.raises(ValueError, match=r"factors\[1\]: U must have unit columns"):
        D.Target.asymmetric([0.5, 0.5], [np.eye(3)[:, :2], 2 * np.eye(3)[:, :2]])
    with pytest.raises(ValueError, match="at least 2 factor matrices"):
        D.Target.asymmetric([1.0], [np.eye(3)[:, :1]])


def test_initializations_are_at_the_scale_and_reproducible():
    key = jax.random.PRNGKey(3)
    for model in models.MODELS.values():
        W = model.init(key, 6, 4, 1e-5, 3)
        again = model.init(key, 6, 4, 1e-5, 3)
        for Wk, Ak in zip(jax.tree.leaves(W), jax.tree.leaves(again)):
            np.testing.assert_allclose(np.linalg.norm(Wk, axis=0), 1e-5, rtol=1e-12)
            assert np.array_equal(Wk, Ak)
    factors = models.Asymmetric().init(key, 6, 4, 1.0, 3)
    assert not np.allclose(factors[0], factors[1])  # one key per mode


@pytest.mark.slow
def test_gradient_flow_of_the_plain_model_against_a_high_accuracy_raw_solve():
    """``gradient_flow(model="plain")`` (log-norm coordinates, events) against diffrax's Dopri8 at
    1e-12 on the plain model's raw velocity: the states, the loss series and Definition 1's
    discovery times read off a fine grid of the reference."""
    import diffrax

    target = D.Target(np.array([0.6, 0.4]), np.eye(4)[:, :2], 4)
    W0 = D.sample_sphere(jax.random.PRNGKey(2), 4, 3, 0.3)
    ts = jnp.linspace(0.0, 40.0, 4001)
    delta1, alpha = 0.5, 0.5
    res = D.gradient_flow(target, W0, ts, model="plain", rtol=1e-10, atol=1e-10, delta1=delta1, alpha=alpha)
    assert res.status == 0
    term = diffrax.ODETerm(lambda t, W, _: models.Plain().velocity(W, target, 0.0))
    ref = diffrax.diffeqsolve(term, diffrax.Dopri8(), 0.0, 40.0, 1e-3, W0, saveat=diffrax.SaveAt(ts=ts),
                              stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12), max_steps=100_000).ys
    np.testing.assert_allclose(res.W, ref, atol=1e-7)
    np.testing.assert_allclose(res.loss, jax.vmap(lambda W: D.loss(W, target, model="plain"))(ref), rtol=1e-5,
                               atol=1e-12)
    # Definition 1 on the reference: the first upward crossing of |w_k| = delta1 while aligned with u_i
    norms = np.linalg.norm(ref, axis=1)  # (K, m)
    cos2 = (np.asarray(ref)[:, :2, :] / norms[:, None, :]) ** 2  # (K, r, m): e_i = u_i
    want = np.full(2, np.inf)
    for k in range(3):
        up = np.flatnonzero((norms[:-1, k] < delta1) & (norms[1:, k] >= delta1))
        for j in up[:1]:
            i = int(np.argmax(cos2[j + 1, :, k]))
            if cos2[j + 1, i, k] >= 1 - alpha**2:
                want[i] = min(want[i], float(ts[j + 1]))
    assert np.isfinite(want).any()
    assert np.array_equal(np.isfinite(res.discovery_time), np.isfinite(want))
    found = np.isfinite(want)
    np.testing.assert_allclose(res.discovery_time[found], want[found], atol=2 * float(ts[1] - ts[0]))
    # the plain model's T carries |w|^4 per column: the normalized model's flow is another trajectory
    other = D.gradient_flow(target, W0, ts[:11], rtol=1e-10, atol=1e-10)
    assert not np.allclose(other.W[-1], res.W[10], atol=1e-3)


def test_gradient_flow_refuses_unknown_models_and_asymmetric_states_that_are_one_matrix():
    W0 = jnp.full((3, 2), 0.1)
    with pytest.raises(ValueError, match=r"W0 must be a tuple of 4 factor matrices .* got a single array"):
        D.gradient_flow(D.Target.geometric(3, 2), W0, [1.0], model="asymmetric")
    with pytest.raises(ValueError, match="model must be one of"):
        D.gradient_flow(D.Target.geometric(3, 2), W0, [1.0], model="Plain")


def test_algorithm2_refuses_order_2():
    with pytest.raises(ValueError, match="Algorithm 2.*order >= 3, got order 2"):
        D.modified_gradient_flow(D.Target.geometric(3, 2, order=2), jax.random.key(0), m=4, lam=1e-3, delta0=1e-6,
                                 delta1=1e-3, alpha=0.1, gamma=0.1, eps=1e-2)
