"""Loss, velocity and residual against independent routes: dense tensors, jax.grad, finite
differences, and exact (50-digit) arithmetic for the loss far below float64 resolution."""

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

import deflation as D

from dense import contract_all, dense_loss, dense_T, dense_Tstar, random_unit_columns


def make_target(kind, d, r, p, rng):
    a = rng.uniform(0.2, 1.0, r)
    if kind == "orthogonal":
        return D.Target.random_orthonormal(jax.random.PRNGKey(int(rng.integers(1 << 30))), a, d, p)
    return D.Target(a, random_unit_columns(rng, d, r), p)


CASES = [(p, kind, lam) for p in (3, 4, 5) for kind in ("orthogonal", "general") for lam in (0.0, 0.07)]


@pytest.mark.parametrize("p,kind,lam", CASES)
@pytest.mark.slow
def test_velocity_is_minus_grad_of_dense_loss(p, kind, lam):
    rng = np.random.default_rng(p * 10 + len(kind) + int(lam * 100))
    d, r, m = 4, 3, 5
    target = make_target(kind, d, r, p, rng)
    W = jnp.asarray(rng.standard_normal((d, m)) * 0.5)
    a, U = np.asarray(target.a), np.asarray(target.U)
    dense_grad = jax.grad(lambda W_: dense_loss(W_, a, U, p, lam))(W)
    v = D.velocity(W, target, lam)
    np.testing.assert_allclose(v, -dense_grad, rtol=1e-10, atol=1e-12)
    # jax.grad of the package's own (Gram, double-double) loss agrees too
    np.testing.assert_allclose(jax.grad(lambda W_: D.loss(W_, target, lam))(W), dense_grad, rtol=1e-10, atol=1e-12)
    # central finite differences of the dense loss in plain NumPy-float64
    f = lambda W_: float(dense_loss(jnp.asarray(W_), a, U, p, lam))  # noqa: E731
    h = 1e-6
    for (i, j) in [(0, 0), (d - 1, m - 1), (1, 2)]:
        Wp, Wm = np.array(W), np.array(W)
        Wp[i, j] += h
        Wm[i, j] -= h
        fd = (f(Wp) - f(Wm)) / (2 * h)
        assert abs(-fd - float(v[i, j])) <= 1e-6 * max(1.0, abs(fd))


@pytest.mark.parametrize("p,kind", [(3, "general"), (4, "orthogonal"), (4, "general"), (5, "orthogonal")])
@pytest.mark.slow
def test_loss_and_residual_match_dense(p, kind):
    rng = np.random.default_rng(7 * p)
    d, r, m = 5, 3, 6
    target = make_target(kind, d, r, p, rng)
    W = jnp.asarray(rng.standard_normal((d, m)) * 0.7)
    a, U = np.asarray(target.a), np.asarray(target.U)
    lam = 0.3
    want = dense_loss(W, a, U, p, lam)
    for precise in (True, False):
        np.testing.assert_allclose(D.loss(W, target, lam, precise=precise), want, rtol=1e-12)
    V = jnp.asarray(rng.standard_normal((d, 4)))
    R = dense_Tstar(a, U, p) - dense_T(W, p)
    want_res = np.array([contract_all(R, V[:, k]) for k in range(4)])
    np.testing.assert_allclose(D.residual(W, target, V), want_res, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(D.residual(W, target, V, precise=False), want_res, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(target.dense(), dense_Tstar(a, U, p), atol=1e-15)


@pytest.mark.slow
def test_tensor_power_velocity_is_gradient_with_residual_frozen_at_target():
    """Paper Eq. (1): R frozen at T*, i.e. dW/dt = grad_W <T*, T(W)> - lam W."""
    rng = np.random.default_rng(3)
    for p in (3, 4):
        target = make_target("general", 4, 3, p, rng)
        W = jnp.asarray(rng.standard_normal((4, 5)))
        Ts = dense_Tstar(np.asarray(target.a), np.asarray(target.U), p)
        g = jax.grad(lambda W_: jnp.sum(Ts * dense_T(W_, p)))(W)
        np.testing.assert_allclose(D.tensor_power_velocity(W, target, 0.2), g - 0.2 * W, rtol=1e-10, atol=1e-12)
        # a batch under vmap (fused products on CPU) against the same dense gradient
        Wb = jnp.asarray(rng.standard_normal((3, 4, 5)))
        gb = jnp.stack([jax.grad(lambda W_: jnp.sum(Ts * dense_T(W_, p)))(w) for w in Wb])
        got = jax.jit(jax.vmap(lambda w: D.tensor_power_velocity(w, target, 0.2)))(Wb)
        np.testing.assert_allclose(got, gb - 0.2 * Wb, rtol=1e-10, atol=1e-12)


def _exact_loss(W, a, U, p):
    """1/2 |T - T*|_F^2 in 60-digit arithmetic by the Gram formula (exact inputs: float64 W)."""
    mpmath.mp.dps = 60
    d, m = W.shape
    cols = [[mpmath.mpf(float(x)) for x in W[:, j]] for j in range(m)]
    us = [[mpmath.mpf(float(x)) for x in U[:, i]] for i in range(U.shape[1])]
    aa = [mpmath.mpf(float(x)) for x in a]
    n2 = [mpmath.fsum(x * x for x in c) for c in cols]
    dot = lambda x, y: mpmath.fsum(xi * yi for xi, yi in zip(x, y))  # noqa: E731
    total = mpmath.mpf(0)
    for j in range(m):
        for k in range(m):
            total += dot(cols[j], cols[k]) ** p / (mpmath.sqrt(n2[j] * n2[k]) ** (p - 2))
    for i in range(len(us)):
        for j in range(m):
            total -= 2 * aa[i] * dot(us[i], cols[j]) ** p / mpmath.sqrt(n2[j]) ** (p - 2)
    for i in range(len(us)):
        for k in range(len(us)):
            total += aa[i] * aa[k] * dot(us[i], us[k]) ** p
    return float(total / 2)


@pytest.mark.parametrize("level", [1e-8, 1e-14, 1e-20, 1e-24])
@pytest.mark.slow
def test_precise_loss_is_truthful_far_below_float_resolution(level):
    """At the Figure 1 size (d = 10, m = 50, r = 5), the reported loss matches the exact loss of
    the same float64 W to 1e-6 relative down to 1e-20 |T*|^2 and below."""
    rng = np.random.default_rng(11)
    target = D.Target.geometric(10, 5, 1.2)
    a = np.asarray(target.a)
    eps = np.sqrt(level)  # residual size ~ eps so the loss ~ level
    W = np.zeros((10, 50))
    for i in range(5):  # each direction fitted by two columns, slightly off in angle and weight
        for j, share in enumerate((0.6, 0.4)):
            v = np.eye(10)[:, i] + eps * 0.3 * rng.standard_normal(10)
            v /= np.linalg.norm(v)
            W[:, 2 * i + j] = np.sqrt(share * a[i] * (1 + eps * rng.standard_normal())) * v
    W[:, 10:] = eps * rng.standard_normal((10, 40)) / np.sqrt(10)
    exact = _exact_loss(W, a, np.asarray(target.U), 4)
    assert exact < 50 * level
    got = float(D.loss(jnp.asarray(W), target))
    assert abs(got - exact) <= 1e-6 * exact, (got, exact)
    if level <= 1e-20:  # the float Gram formula is pure noise there: the reason for the precise route
        # (its error is of the order of its floor, 64 eps |T*|^2 ~ 1e-14, so it either misses the
        # value by orders of magnitude or rounds to about 0: wrong in its leading digit either way)
        fast = float(D.loss(jnp.asarray(W), target, precise=False))
        assert abs(fast - exact) >= 0.5 * exact, (fast, exact)


@pytest.mark.slow
def test_functions_jit_and_vmap():
    rng = np.random.default_rng(5)
    target = make_target("general", 4, 2, 4, rng)
    Ws = jnp.asarray(rng.standard_normal((3, 4, 6)))
    for fn in (D.velocity, D.tensor_power_velocity, D.loss):
        batched = jax.jit(jax.vmap(lambda W: fn(W, target, 0.1)))(Ws)
        for b in range(3):
            np.testing.assert_allclose(batched[b], fn(Ws[b], target, 0.1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda t, W: D.velocity(W[:3], t), "rows"),
        (lambda t, W: D.velocity(W[None, None], t), "shape"),
        (lambda t, W: D.loss(W, t, lam=-1.0), "lam"),
        (lambda t, W: D.loss(W, t, lam=float("nan")), "lam"),
        (lambda t, W: D.velocity(W.at[0, 0].set(jnp.nan), t), "finite"),
        (lambda t, W: D.residual(W, t, jnp.ones((3, 2))), "V"),
        (lambda t, W: D.velocity(W, "not a target"), "Target"),
    ],
)
def test_bad_input(call, match):
    target = D.Target.basis([0.6, 0.4], 4)
    W = jnp.ones((4, 3))
    with pytest.raises((ValueError, TypeError), match=match):
        call(target, W)
