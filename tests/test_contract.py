"""The vector field's kernels (deflation.contract) in each of their layouts, against independent
routes: the dense-tensor loss and its jax.grad (tests/dense.py), and plain jnp operations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deflation as D
from deflation import contract

from dense import dense_loss, random_unit_columns

LAYOUTS = ["one seed", "one seed, dots", "batched", "seed by seed"]


def _problem(p, B=3, d=6, m=9, r=3, seed=0):
    rng = np.random.default_rng(seed)
    U = random_unit_columns(rng, d, r)  # not orthogonal: every term of the kernel matters
    a = rng.uniform(0.5, 2.0, r)
    W = jnp.asarray(rng.standard_normal((B, d, m)))
    return D.Target(a, U, order=p), jnp.asarray(a), jnp.asarray(U), W


def _force(layout, monkeypatch):
    """Make the layout asked for the one the kernel picks at the test's small size."""
    if layout == "seed by seed":
        monkeypatch.setattr(contract, "SEQUENTIAL_MIN_FLOPS", 0)
    if layout == "one seed, dots":  # what one seed gets for d > UNROLL_MAX
        monkeypatch.setattr(contract, "UNROLL_MAX", 0)


def primitives(fn, *args) -> list[str]:
    """Names of every primitive ``fn`` traces to, in nested jaxprs too (scan bodies, custom rules)."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            found.append(eqn.primitive.name)
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        walk(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def _velocities(layout, target, W):
    f = lambda w: D.velocity(w, target)  # noqa: E731
    if layout.startswith("one seed"):
        return jnp.stack([jax.jit(f)(w) for w in W])
    return jax.jit(jax.vmap(f))(W)


@pytest.mark.parametrize("p", [3, 4])
@pytest.mark.parametrize("layout", [pytest.param(x, marks=pytest.mark.smoke) if x == "batched" else x for x in LAYOUTS])
def test_velocity_in_every_layout_is_minus_grad_of_dense_loss(layout, p, monkeypatch):
    """One small seed (the target's products as fused outer products, two dots), one seed by dots
    ([U, X]^T X, then two products; forced here by UNROLL_MAX = 0), a batch (fused outer
    products) and a batch taken seed by seed (forced by a zero threshold) all give -grad of the
    dense d^p loss."""
    _force(layout, monkeypatch)
    target, a, U, W = _problem(p)
    want = jnp.stack([-jax.grad(lambda w: dense_loss(w, a, U, p))(w) for w in W])
    np.testing.assert_allclose(_velocities(layout, target, W), want, rtol=1e-10, atol=1e-12)
    # the layout asked for is the one that ran: seed by seed is a scan over the batch, and one
    # seed by dots has three dots where the small-seed form has two
    batched = primitives(jax.vmap(lambda w: D.velocity(w, target)), W)
    assert ("scan" in batched) == (layout == "seed by seed")
    dots = primitives(lambda w: D.velocity(w, target), W[0]).count("dot_general")
    if jax.default_backend() == "cpu":
        assert dots == (3 if layout == "one seed, dots" else 2)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.slow
def test_velocity_derivative_in_every_layout_is_dense_hessian(layout, monkeypatch):
    """Forward derivative (what implicit solvers use) and reverse derivative of the velocity
    through each layout equal those of the dense route."""
    _force(layout, monkeypatch)
    p = 4
    target, a, U, W = _problem(p, seed=1)
    dW = jax.random.normal(jax.random.PRNGKey(2), W.shape)
    dense_vel = lambda w: -jax.grad(lambda w_: dense_loss(w_, a, U, p))(w)  # noqa: E731
    vel = lambda w: D.velocity(w, target)  # noqa: E731
    if layout.startswith("one seed"):
        got = jnp.stack([jax.jvp(vel, (w,), (t,))[1] for w, t in zip(W, dW)])
        got_vjp = jnp.stack([jax.vjp(vel, w)[1](t)[0] for w, t in zip(W, dW)])
    else:
        got = jax.jvp(jax.vmap(vel), (W,), (dW,))[1]
        got_vjp = jax.vjp(jax.vmap(vel), W)[1](dW)[0]
    want = jax.jvp(jax.vmap(dense_vel), (W,), (dW,))[1]
    want_vjp = jax.vjp(jax.vmap(dense_vel), W)[1](dW)[0]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(got_vjp, want_vjp, rtol=1e-9, atol=1e-11)


def test_seed_by_seed_is_chosen_for_large_seeds_only():
    """The threshold: 2 m^2 d >= SEQUENTIAL_MIN_FLOPS (on CPU) takes the batch seed by seed."""
    target, *_ = _problem(4)
    small = jnp.zeros((2, 6, 9))
    large_m = int(np.ceil(np.sqrt(contract.SEQUENTIAL_MIN_FLOPS / (2 * 6))))
    large = jnp.ones((2, 6, large_m))
    f = jax.vmap(lambda w: D.velocity(w, target))
    on_cpu = jax.default_backend() == "cpu"
    assert "scan" not in primitives(f, small)
    assert ("scan" in primitives(f, large)) == on_cpu


@pytest.mark.slow
def test_sum_rows_and_materialize_are_exact():
    X = jax.random.normal(jax.random.PRNGKey(0), (5, 7, 11))
    np.testing.assert_allclose(contract.sum_rows(X[0]), X[0].sum(axis=0), rtol=1e-15)
    np.testing.assert_allclose(jax.vmap(contract.sum_rows)(X), X.sum(axis=1), rtol=1e-14)
    g = jax.grad(lambda X: jnp.sin(jax.vmap(contract.sum_rows)(X)).sum())(X)
    np.testing.assert_allclose(g, jnp.broadcast_to(jnp.cos(X.sum(axis=1))[:, None, :], X.shape), rtol=1e-13)
    x = jnp.concatenate([jnp.array([0.0, -0.0, 2.3e-308, -1e-300, 1.5, -3.25e300, 1.7e308]), X.ravel()])
    same_bits = np.asarray(jax.jit(contract.materialize)(x)).view(np.int64) == np.asarray(x).view(np.int64)
    assert same_bits.all()  # bit for bit (normal floats; see the docstring for subnormals)


@pytest.mark.slow
def test_batched_matmul_equals_plain_and_is_differentiable():
    """contract.matmul: the fused outer-product form used under vmap on CPU equals ``@``, and
    forward and reverse derivatives (also under vmap) equal those of ``@``."""
    from deflation.contract import matmul

    A = jax.random.normal(jax.random.PRNGKey(0), (6, 5, 10))
    Bm = jax.random.normal(jax.random.PRNGKey(1), (6, 10, 7))
    np.testing.assert_allclose(jax.vmap(matmul)(A, Bm), A @ Bm, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(matmul(A[0], Bm[0]), A[0] @ Bm[0], rtol=1e-13, atol=1e-13)
    f = lambda mm: jax.vmap(jax.grad(lambda a, b: jnp.sin(mm(a, b)).sum()))  # noqa: E731
    np.testing.assert_allclose(f(matmul)(A, Bm), f(jnp.matmul)(A, Bm), rtol=1e-12, atol=1e-12)
    tangent = jax.jvp(jax.vmap(matmul), (A, Bm), (A, Bm))[1]  # dA B + A dB with dA = A, dB = B
    np.testing.assert_allclose(tangent, 2 * (A @ Bm), rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the outer-product layouts are CPU-only")
@pytest.mark.slow
def test_small_seed_in_a_batch_of_one_or_five_gives_the_same_bits():
    """A small seed's R(x^{p-1}, I) is the same bit for bit in a batch of one and in a batch of
    five (a batch of one once took dots, which round differently); alone, it differs by rounding."""
    target, a, U, W = _problem(4, B=5, d=20, m=100, r=5, seed=3)
    omega, Xbar = jax.vmap(contract.split_norms)(W)
    f = lambda x, o: contract.residual_vector(x, o, U, a, 4)  # noqa: E731
    alone = np.stack([jax.jit(f)(x, o) for x, o in zip(Xbar, omega)])
    batch_of_one = np.concatenate([jax.jit(jax.vmap(f))(Xbar[i : i + 1], omega[i : i + 1]) for i in range(5)])
    batch = np.asarray(jax.jit(jax.vmap(f))(Xbar, omega))
    np.testing.assert_array_equal(batch_of_one, batch)
    np.testing.assert_allclose(alone, batch, rtol=0, atol=1e-14 * np.abs(batch).max())
