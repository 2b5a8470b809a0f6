"""Target construction, dense tensors and input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deflation as D

from dense import contract_all, dense_Tstar


@pytest.mark.smoke
def test_constructors():
    t = D.Target.basis([0.5, 0.3, 0.2], 6)
    np.testing.assert_array_equal(t.U, np.eye(6)[:, :3])
    assert (t.d, t.r, t.order, t.orthogonal) == (6, 3, 4, True)
    g = D.Target.geometric(10, 5, 1.2)
    a = np.asarray(g.a)
    np.testing.assert_allclose(a.sum(), 1.0, rtol=1e-15)
    np.testing.assert_allclose(a[:-1] / a[1:], 1.2, rtol=1e-13)
    q = D.Target.random_orthonormal(jax.random.PRNGKey(0), [0.6, 0.4], 5, order=3)
    np.testing.assert_allclose(q.U.T @ q.U, np.eye(2), atol=1e-14)
    q2 = D.Target.random_orthonormal(jax.random.PRNGKey(0), [0.6, 0.4], 5, order=3)
    np.testing.assert_array_equal(q.U, q2.U)  # explicit key: reproducible
    U = np.array([[1.0, np.cos(0.3)], [0.0, np.sin(0.3)], [0.0, 0.0]])
    n = D.Target([0.5, 0.5], U, 5)  # non-orthogonal (Appendix E)
    assert not n.orthogonal and n.order == 5


@pytest.mark.smoke
def test_dense_and_norm_match_contractions():
    rng = np.random.default_rng(0)
    U = rng.standard_normal((4, 3))
    U /= np.linalg.norm(U, axis=0)
    t = D.Target([0.2, 0.5, 0.3], U, 3)
    T = np.asarray(t.dense())
    np.testing.assert_allclose(T, dense_Tstar(np.asarray(t.a), U, 3), atol=1e-15)
    np.testing.assert_allclose(float(t.norm()), np.linalg.norm(T.ravel()), rtol=1e-13)
    v = rng.standard_normal(4)
    np.testing.assert_allclose(contract_all(T, v), np.sum(t.a * (U.T @ v) ** 3), rtol=1e-12)


def test_dense_refuses_large_sizes():
    t = D.Target.basis([1.0], 200)
    with pytest.raises(ValueError, match="MiB"):
        t.dense()  # 200^4 * 8 bytes = 12.8 GB
    with pytest.raises(ValueError, match="max_bytes"):
        D.Target.basis([1.0], 10).dense(max_bytes=1000)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: D.Target([-0.1, 0.5], np.eye(3)[:, :2]), "a must be >= 0"),
        (lambda: D.Target([np.nan, 0.5], np.eye(3)[:, :2]), "finite"),
        (lambda: D.Target([np.inf, 0.5], np.eye(3)[:, :2]), "finite"),
        (lambda: D.Target([0.5, 0.5], 2 * np.eye(3)[:, :2]), "unit columns"),
        (lambda: D.Target([0.5, 0.5], np.array([[1.0, 0.6], [0.0, 0.8], [0.0, 0.0]]), orthogonal=True), "orthonormal"),
        (lambda: D.Target([0.5, 0.5, 0.1], np.eye(3)[:, :2]), "columns"),
        (lambda: D.Target([0.5], np.eye(3)[:, :1], order=1), "order"),
        (lambda: D.Target([0.5], np.eye(3)[:, :1], order=3.0), "order"),
        (lambda: D.Target([[0.5]], np.eye(3)[:, :1]), "dimensions"),
        (lambda: D.Target.basis([0.5, 0.5], 1), "d must be >= r"),
        (lambda: D.Target.geometric(10, 5, 0.5), "ratio"),
        (lambda: D.sample_sphere(jax.random.PRNGKey(0), 3, 0, 1.0), "m must be"),
        (lambda: D.sample_sphere(jax.random.PRNGKey(0), 3, 2, 0.0), "scale"),
        (lambda: D.sample_sphere(jax.random.PRNGKey(0), 3, 2, -1.0), "scale"),
    ],
)
def test_bad_input(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.slow
def test_sample_sphere():
    W = D.sample_sphere(jax.random.PRNGKey(3), 7, 4000, 1e-15)
    np.testing.assert_allclose(jnp.linalg.norm(W, axis=0), 1e-15, rtol=1e-13)
    # uniform on the sphere: E[x_1^2] = 1/d, and mean ~ 0
    x = np.asarray(W) / 1e-15
    assert abs((x[0] ** 2).mean() - 1 / 7) < 0.02 and np.abs(x.mean(axis=1)).max() < 0.05
    batch = D.sample_sphere_batch(jax.random.PRNGKey(3), [5, 2], 7, 3, 2.0)
    alone = D.sample_sphere_batch(jax.random.PRNGKey(3), [2], 7, 3, 2.0)
    np.testing.assert_array_equal(batch[1], alone[0])  # seed 2's draw does not depend on the batch
