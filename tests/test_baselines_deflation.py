"""Algorithm 1 + tensor power method (deflation.baselines), checked against dense NumPy tensors."""

import jax
import numpy as np
import pytest

import deflation as df
from deflation.baselines import residual_norm, tensor_power_deflation


def dense(V, w):
    """sum_k w_k v_k^{(x)4} with NumPy (independent of the package's contractions)."""
    V = np.asarray(V)
    return np.einsum("k,ik,jk,lk,mk->ijlm", np.asarray(w), V, V, V, V)


def test_orthogonal_target_is_recovered_in_order():
    a = np.array([0.4, 0.3, 0.2, 0.1])
    target = df.Target.random_orthonormal(jax.random.PRNGKey(3), a, d=6)
    weights, V = tensor_power_deflation(target, jax.random.PRNGKey(0))
    np.testing.assert_allclose(weights, a, rtol=1e-10)
    overlap = np.abs(np.asarray(target.U).T @ np.asarray(V))
    np.testing.assert_allclose(overlap, np.eye(4), atol=1e-8)
    R = dense(target.U, target.a) - dense(V, weights)
    assert np.sqrt((R**2).sum()) < 1e-9
    assert residual_norm(target, weights, V) == pytest.approx(np.sqrt((R**2).sum()), abs=1e-7)


def test_non_orthogonal_first_component_is_a_tensor_eigenvector():
    theta = 0.3
    U = np.array([[1.0, np.cos(theta)], [0.0, np.sin(theta)], [0.0, 0.0], [0.0, 0.0]])
    target = df.Target(np.array([0.6, 0.4]), U)
    weights, V = tensor_power_deflation(target, jax.random.PRNGKey(1), n_components=3, iterations=500)
    T = dense(U, target.a)
    v = np.asarray(V[:, 0])
    # power-method fixed point: T(v, v, v, I) = lam v with lam = T(v^4)
    Tv3 = np.einsum("ijkl,i,j,k->l", T, v, v, v)
    lam = Tv3 @ v
    np.testing.assert_allclose(Tv3, lam * v, atol=1e-9)
    assert float(weights[0]) == pytest.approx(lam, rel=1e-12)
    # each step does not increase the residual (best rank-1 step of a deflation)
    norms = [np.sqrt((T**2).sum())]
    for k in range(1, weights.shape[0] + 1):
        R = T - dense(V[:, :k], weights[:k])
        norms.append(np.sqrt((R**2).sum()))
        assert residual_norm(target, weights[:k], V[:, :k]) == pytest.approx(norms[-1], rel=1e-8, abs=1e-12)
    assert all(b < a for a, b in zip(norms, norms[1:]))
    # a single component fits the two-component target worse than the model with both
    assert norms[1] > 1e-2


def test_prefix_property_and_determinism():
    target = df.Target.geometric(5, 4, ratio=1.3)
    w2, V2 = tensor_power_deflation(target, jax.random.PRNGKey(7), n_components=2)
    w4, V4 = tensor_power_deflation(target, jax.random.PRNGKey(7), n_components=4)
    np.testing.assert_array_equal(w2, w4[:2])
    np.testing.assert_array_equal(V2, V4[:, :2])


def test_stops_when_nothing_positive_remains():
    target = df.Target.basis(np.array([0.7, 0.3]), d=4)
    weights, V = tensor_power_deflation(target, jax.random.PRNGKey(0), n_components=4)
    assert weights.shape == (2,) and V.shape == (4, 2)


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(restarts=0), ValueError, "restarts"),
        (dict(iterations=0), ValueError, "iterations"),
        (dict(n_components=0), ValueError, "n_components"),
        (dict(n_components=2.0), TypeError, "n_components"),
    ],
)
def test_bad_arguments(kwargs, exc, word):
    target = df.Target.geometric(4, 2)
    with pytest.raises(exc, match=word):
        tensor_power_deflation(target, jax.random.PRNGKey(0), **kwargs)


def test_bad_target_and_key():
    with pytest.raises(TypeError, match="target"):
        tensor_power_deflation(np.eye(3), jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match="key"):
        tensor_power_deflation(df.Target.geometric(4, 2), 0)
