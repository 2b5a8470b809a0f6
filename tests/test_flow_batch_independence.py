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
        np.testing.assert_allclose(x[fin], y[fin], rtol=tol, atol=tol * max(1.0, np.abs(x[fin]).max(initial=0)),
                                   err_msg=f)


@pytest.mark.slow
def test_seed_result_independent_of_batch_size():
    tg, W0 = _problem(8)
    kw = dict(rtol=1e-9, atol=1e-9, event_points=64)
    batch = D.gradient_flow(tg, W0, [20.0, 60.0], **kw)
    for k in (0, 5):
        alone = D.gradient_flow(tg, W0[k], [20.0, 60.0], **kw)
        one = jax.tree_util.tree_map(lambda x: x[k] if x.ndim and x.shape[0] == 8 else x, batch)
        _assert_same(alone, one)


@pytest.mark.slow  # (31 s of CPU without a cache) the default suite's chunked case: the overlapping-blocks test below
def test_chunked_batch_equals_unchunked(monkeypatch):
    tg, W0 = _problem(8)
    kw = dict(rtol=1e-9, atol=1e-9, event_points=64)
    whole = D.gradient_flow(tg, W0, [20.0, 60.0], **kw)
    monkeypatch.setitem(integrate.SEED_CHUNK, jax.default_backend(), 3)  # 8 seeds -> chunks 3, 3, 2 (+1 pad)
    assert integrate.seed_chunk(8) == 3
    chunked = D.gradient_flow(tg, W0, [20.0, 60.0], **kw)
    _assert_same(whole, chunked)


@pytest.mark.slow
def test_series_blocks_that_overlap_give_the_same_result(monkeypatch):
    """The saved directions are turned into W in place, block by block; a last block that overlaps
    the one before (a chunk's states not a multiple of the block) must not convert a state twice
    (harmless at ordinary scales, NaN where W underflows to 0), and a last chunk that overlaps the
    one before (8 seeds in chunks of 3: rows 5..7 solved twice) must write the same values again."""
    from deflation import memory

    tg, W0 = _problem(8)
    rho, ubar = D.to_lognorm(W0)
    kw = dict(rtol=1e-9, atol=1e-9, event_points=64, precise_loss=False)
    cases = {"ordinary": (W0, [5.0, 20.0, 60.0]), "underflowing W": ((rho - 800.0, ubar), [1.0, 2.0, 3.0])}
    whole = {name: D.gradient_flow(tg, x, ts, **kw) for name, (x, ts) in cases.items()}
    monkeypatch.setattr(memory, "SERIES_BLOCK_BYTES", 2 * memory._loss_per_state(6, 10, 3, False, 8))
    monkeypatch.setitem(integrate.SEED_CHUNK, jax.default_backend(), 3)
    plan = D.flow.flow_plan(8, 6, 10, 3, 3, 64, False, 8)
    assert (plan.chunk, plan.block) == (3, 2)  # 9 states a chunk, in blocks of 2: the last overlaps
    for name, (x, ts) in cases.items():
        blocked = D.gradient_flow(tg, x, ts, **kw)
        _assert_same(whole[name], blocked)
        assert (np.asarray(blocked.status) == 0).all(), name
        logs = np.asarray(blocked.log_norm)
        if name == "underflowing W":
            assert (logs < -745).all() and (np.asarray(blocked.W) == 0).all()
        else:  # |w_j| = exp(log_norm_j) at every save point
            np.testing.assert_allclose(np.linalg.norm(np.asarray(blocked.W), axis=-2), np.exp(logs), rtol=1e-13)
