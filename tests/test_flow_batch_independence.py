"""A seed's result from ``gradient_flow`` does not depend on the batch it is solved in."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deflation as D
from deflation import integrate

FIELDS = ["W", "log_norm", "loss", "residual", "discovery_time", "fit_time", "member", "num_steps", "status"]


def _problem(B=8):
    tg = D.Target.geometric(6, 3, ratio=1.5)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(3), jnp.arange(B), 6, 10, 1e-6)
    return tg, W0


def _assert_same(a, b, tol=1e-12):
    for f in FIELDS:
        x, y = np.asarray(getattr(a, f)), np.asarray(getattr(b, f))
        assert x.shape == y.shape, f
        fin = np.isfinite(x)
        np.testing.assert_array_equal(fin, np.isfinite(y), err_msg=f)
        np.testing.assert_allclose(x[fin], y[fin], rtol=tol, atol=tol * max(1.0, np.abs(x[fin]).max(initial=0)), err_msg=f)


def test_seed_result_independent_of_batch_size():
    tg, W0 = _problem(8)
    kw = dict(rtol=1e-9, atol=1e-9, event_points=64)
    batch = D.gradient_flow(tg, W0, [20.0, 60.0], **kw)
    for k in (0, 5):
        alone = D.gradient_flow(tg, W0[k], [20.0, 60.0], **kw)
        one = jax.tree_util.tree_map(lambda x: x[k] if x.ndim and x.shape[0] == 8 else x, batch)
        _assert_same(alone, one)


def test_chunked_batch_equals_unchunked(monkeypatch):
    tg, W0 = _problem(8)
    kw = dict(rtol=1e-9, atol=1e-9, event_points=64)
    whole = D.gradient_flow(tg, W0, [20.0, 60.0], **kw)
    monkeypatch.setitem(integrate.SEED_CHUNK, jax.default_backend(), 3)  # 8 seeds -> chunks 3, 3, 2 (+1 pad)
    assert integrate.seed_chunk(8) == 3
    chunked = D.gradient_flow(tg, W0, [20.0, 60.0], **kw)
    _assert_same(whole, chunked)
