"""Hostile input: dtypes, extreme scales, loose tolerances, memory, and values a traced or careless
caller can pass. Each case once gave a crash or a wrong answer; numerics are checked against an
independent route (exact arithmetic, the log-norm initial state, a float64 run)."""

import re
import time

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

import deflation as D
from deflation import Status, contract
from deflation.flow import _as_initial_state

# ---------------------------------------------------------------------------- dtypes


def _small_flow(W0, target=None, **kw):
    target = D.Target.geometric(4, 2, 1.5) if target is None else target
    return D.gradient_flow(target, W0, [5.0, 40.0], event_points=16, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.slow
def test_narrow_W0_with_float64_target_runs_in_float64(dtype):
    """float32 / float16 W0 with a float64 target crashed inside diffrax ("switch branches must
    have equal output types"); it runs in the promoted dtype, float64, exactly as the same values
    given in float64."""
    W0 = np.asarray(D.sample_sphere(jax.random.PRNGKey(0), 4, 3, 1e-2)).astype(dtype)
    res = _small_flow(W0)
    ref = _small_flow(W0.astype(np.float64))
    assert res.W.dtype == jnp.float64 and res.loss.dtype == jnp.float64
    for field in ("W", "log_norm", "loss", "residual", "discovery_time", "status"):
        np.testing.assert_array_equal(getattr(res, field), getattr(ref, field), err_msg=field)
    # the same through (rho, ubar) given in the narrow dtype
    rho, ubar = D.to_lognorm(jnp.asarray(W0, jnp.float64))
    res2 = _small_flow((np.asarray(rho).astype(dtype), np.asarray(ubar).astype(dtype)))
    assert res2.W.dtype == jnp.float64 and int(res2.status) == Status.SUCCESS


def test_float16_computation_is_refused_before_tracing_naming_both_dtypes():
    target16 = D.Target(np.array([0.6, 0.4], np.float16), np.eye(4, 2, dtype=np.float16))
    W0 = np.full((4, 3), 1e-2, np.float16)
    start = time.perf_counter()
    with pytest.raises(TypeError, match=r"W0 has dtype float16 and the target a: float16, U: float16"):
        _small_flow(W0, target16)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(TypeError, match="float16"):
        D.loss(W0, target16)


@pytest.mark.slow
def test_integer_W_is_accepted_by_loss_like_velocity_and_residual():
    """loss() refused integer W ("not inexact") that velocity() and residual() accepted."""
    target = D.Target.geometric(4, 2, 1.5)
    Wi = np.array([[1, 0, 2], [0, 1, 1], [1, 1, 0], [0, 2, 1]])
    Wf = Wi.astype(np.float64)
    for precise in (True, False):
        assert float(D.loss(Wi, target, 0.1, precise=precise)) == float(D.loss(Wf, target, 0.1, precise=precise))
    np.testing.assert_array_equal(D.velocity(Wi, target), D.velocity(Wf, target))
    np.testing.assert_array_equal(D.residual(Wi, target, np.eye(4, dtype=int)), D.residual(Wf, target, np.eye(4)))
    # an integer target is stored as float64
    t = D.Target(np.array([1, 2]), np.eye(4, 2, dtype=int))
    assert t.a.dtype == jnp.float64 and t.U.dtype == jnp.float64
    with pytest.raises(TypeError, match="real"):
        D.loss(np.ones((4, 3), bool), target)


# ---------------------------------------------------------------------------- underflow


def _exact_log_norms(W):
    """log |w_j| of every column in 60-digit arithmetic, from the float entries as stored."""
    with mpmath.workdps(60):
        return np.array([float(mpmath.log(mpmath.sqrt(mpmath.fsum(mpmath.mpf(float(x)) ** 2 for x in col))))
                         for col in W.T])


def test_to_lognorm_is_exact_at_every_scale():
    """log |w| and w / |w| of a column at any scale; sum(W * W) underflowed below ~1e-154 (rho =
    -inf, the loss NaN) and overflowed above ~1e154. Ordinary scales keep the plain formulas bit
    for bit."""
    U0 = np.asarray(D.sample_sphere(jax.random.PRNGKey(1), 5, 7, 1.0))
    for scale in [1e-155, 1e-162, 1e-200, 1e-300, 1e-310, 1e200, 1e300, 1.0, 1e-15, 1e-100]:
        W = U0 * scale
        rho, ubar = D.to_lognorm(jnp.asarray(W))
        np.testing.assert_allclose(rho, _exact_log_norms(W), rtol=1e-15, atol=1e-13, err_msg=str(scale))
        tol = 1e-5 if scale < 1e-300 else 1e-15  # subnormal entries carry fewer digits
        np.testing.assert_allclose(ubar, U0, rtol=0, atol=tol, err_msg=str(scale))
        omega, Wbar = contract.split_norms(jnp.asarray(W))
        np.testing.assert_array_equal(Wbar, ubar)
        if 1e-140 < scale < 1e140:  # ordinary scales: the plain formulas, bit for bit
            plain = jnp.sum(jnp.asarray(W) ** 2, axis=0)
            np.testing.assert_array_equal(omega, plain)
            np.testing.assert_array_equal(rho, 0.5 * jnp.log(plain))
            np.testing.assert_array_equal(ubar, jnp.asarray(W) / jnp.sqrt(plain))


def test_to_lognorm_of_subnormal_columns():
    """Entries that are multiples of the smallest subnormal 5e-324 (XLA:CPU flushes subnormal
    operands to zero, so these go through their bits)."""
    k = np.array([[1, 3, -7, 0], [0, 2, 5, 0], [0, -1, 1000, 0]], dtype=np.float64)
    W = k * 5e-324
    assert (W == k * np.nextafter(0, 1)).all()
    rho, ubar = D.to_lognorm(jnp.asarray(W))
    np.testing.assert_allclose(rho[:3], _exact_log_norms(W[:, :3]), rtol=1e-15)
    np.testing.assert_allclose(ubar[:, :3], k[:, :3] / np.linalg.norm(k[:, :3], axis=0), rtol=1e-15)
    assert rho[3] == -np.inf and (np.asarray(ubar[:, 3]) == 0).all()  # only an exactly zero column


def test_velocity_of_tiny_columns_is_not_zero():
    """velocity() multiplied by sqrt(|w|^2), which underflowed to 0 below ~1e-162."""
    target = D.Target.geometric(4, 2, 1.5)
    U0 = np.asarray(D.sample_sphere(jax.random.PRNGKey(2), 4, 3, 1.0))
    ref = np.asarray(D.velocity(U0 * 1e-100, target)) / 1e-100
    for scale in (1e-170, 1e-250):
        v = np.asarray(D.velocity(U0 * scale, target)) / scale
        np.testing.assert_allclose(v, ref, rtol=1e-12)


@pytest.mark.slow
def test_flow_from_tiny_scales_matches_the_log_norm_route():
    """Initial scales 1e-155 .. 1e-300 (and subnormal entries) integrate like the same state given
    as log-norms: same discovery order and times, finite log-norms. Before, 1e-155 gave rho = -inf
    and 'max_steps reached', and 1e-200 'zero column' although no column was zero."""
    target = D.Target.geometric(4, 2, 1.5)
    U0 = np.asarray(D.sample_sphere(jax.random.PRNGKey(1), 4, 8, 1.0))
    k = np.round(U0 * 1000)  # the subnormal case: integer multiples of 5e-324
    tiny = np.nextafter(0, 1)
    scales = [1e-155, 1e-162, 1e-200, 1e-300]
    W0 = np.stack([s * U0 for s in scales] + [k * tiny])
    with mpmath.workdps(40):
        rho_k = np.array([float(mpmath.log(mpmath.mpf(tiny)) + mpmath.log(mpmath.norm(list(map(mpmath.mpf, c)))))
                          for c in k.T])
    rho = np.stack([np.full(8, np.log(s)) for s in scales] + [rho_k])
    ubar = np.stack([U0] * len(scales) + [k / np.linalg.norm(k, axis=0)])
    ts = jnp.linspace(0.0, 1200.0, 4)
    res = D.gradient_flow(target, W0, ts)
    ref = D.gradient_flow(target, (rho, ubar), ts)
    assert res.failed() == [] and ref.failed() == []
    assert np.isfinite(np.asarray(res.log_norm)).all() and np.isfinite(np.asarray(res.loss)).all()
    disc = np.asarray(res.discovery_time)
    assert np.isfinite(disc).all()
    assert (np.argsort(disc, axis=1) == [0, 1]).all()  # u_1 first at every scale
    np.testing.assert_allclose(disc, ref.discovery_time, rtol=1e-9)
    # the two routes start from states that differ by rounding and are solved at rtol = atol =
    # 1e-8: they agree to the solver's tolerance (measured: 5e-12 to 5e-8 after 1200 time units,
    # depending on whether both take the same accepted steps), not bit for bit
    np.testing.assert_allclose(res.log_norm, ref.log_norm, rtol=1e-9, atol=1e-6)
    assert (np.diff(disc[:4, 0]) > 0).all()  # smaller scales take longer


def test_zero_column_is_named_only_when_exactly_zero():
    target = D.Target.geometric(4, 2, 1.5)
    W0 = np.full((4, 3), 1e-250)
    W0[:, 1] = [0.0, 0.0, 5e-324, 0.0]  # not zero: one subnormal entry
    state, _ = _as_initial_state(W0, target)
    assert np.isfinite(np.asarray(state[0])).all()
    np.testing.assert_array_equal(state[1][0, :, 1], [0.0, 0.0, 1.0, 0.0])
    W0[:, 2] = 0.0
    with pytest.raises(ValueError, match=r"zero column at \(2,\)"):
        D.gradient_flow(target, W0, [1.0])


# ---------------------------------------------------------------------------- a loss that rises


def test_loss_increased_compares_each_rise_with_the_smaller_floor():
    loss = np.array([[1.0, 0.5, 0.5 + 1e-12, 0.2], [1.0, 0.5, 0.7, 0.1], [1.0, np.nan, 2.0, 0.1]])
    floor = np.array([[1e-9, 1e-11, 1e-9, 1e-9], [1e-9, 0.15, 10.0, 1e-9], [1e-9, 1e-9, 1e-9, 1e-9]])
    # 1e-12 rise within the floor 1e-11; 0.2 rise above min(0.15, 10); NaN is no rise
    assert list(np.asarray(D.flow.loss_increased(jnp.asarray(loss), jnp.asarray(floor)))) == [False, True, False]


@pytest.mark.slow
def test_a_loss_that_rises_is_not_reported_as_success():
    """rtol = atol = 1e-1 on a d = 4 target: the loss of the solve goes down and back up (or
    overflows at a save point) and was reported as success."""
    target = D.Target.geometric(4, 2, 1.5)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(4), 4, 2, 1e-2)
    ts = jnp.linspace(0.0, 60.0, 11)
    loose = D.gradient_flow(target, W0, ts, rtol=1e-1, atol=1e-1, event_points=16)
    status = np.asarray(loose.status)
    assert (status != Status.SUCCESS).all(), status
    assert set(status) <= {Status.NONFINITE, Status.LOSS_INCREASED}
    assert Status.LOSS_INCREASED in status
    assert dict(loose.failed())[int(np.argmax(status == Status.LOSS_INCREASED))] == "loss increased"
    for b in np.flatnonzero(status == Status.LOSS_INCREASED):
        L, F = np.asarray(loose.loss[b]), np.asarray(loose.loss_floor[b])
        assert (np.diff(L) > np.minimum(F[1:], F[:-1])).any()
    # the same flow at ordinary tolerances (with and without regularization) never trips it
    for tol in (1e-4, 1e-6, 1e-8, 1e-10):
        for lam in (0.0, 0.02):
            res = D.gradient_flow(target, W0, ts, rtol=tol, atol=tol, lam=lam, event_points=16)
            assert res.failed() == [], (tol, lam, res.failed())
            floor = np.minimum(res.loss_floor[:, 1:], res.loss_floor[:, :-1])
            assert (np.diff(np.asarray(res.loss)) <= 0.2 * floor).all()
    # frozen=True integrates paper Eq. (1), not a gradient flow of L: its loss may rise
    frozen = D.gradient_flow(target, W0[0], jnp.linspace(0.0, 20.0, 5), frozen=True, event_points=16)
    assert int(frozen.status) == Status.SUCCESS and (np.diff(np.asarray(frozen.loss)) > 0).any()


@pytest.mark.slow
def test_figure1_setting_reports_a_rising_loss_only_at_loose_tolerances():
    """Figure 1 with 301 save points: at 1e-6 and 1e-10 no seed is flagged, at 1e-2 the loss rises
    (by up to hundreds of times the smaller floor) and is flagged."""
    target = D.Target.geometric(10, 5, 1.2)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(5), 10, 50, 1e-15)
    ts = jnp.linspace(0.0, 300.0, 301)
    for tol in (1e-6, 1e-10):
        assert D.gradient_flow(target, W0, ts, rtol=tol, atol=tol).failed() == [], tol
    loose = D.gradient_flow(target, W0, ts, rtol=1e-2, atol=1e-2)
    assert Status.LOSS_INCREASED in np.asarray(loose.status)


# ---------------------------------------------------------------------------- memory


def test_a_call_that_cannot_fit_is_refused_before_compiling():
    """m = 100,000 at d = 10 compiled for 20 s and then died in XLA (RESOURCE_EXHAUSTED, 162 GB)."""
    target = D.Target.geometric(10, 5, 1.2)
    W0 = np.asarray(D.sample_sphere(jax.random.PRNGKey(0), 10, 100_000, 1e-15))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"needs an estimated [\d.]+ GiB .* but only [\d.]+ [GM]iB is available: "
                                         r"use a smaller m"):
        D.gradient_flow(target, W0, np.linspace(0.0, 300.0, 601))
    with pytest.raises(ValueError, match=r"Algorithm 2 with 2 seed\(s\) of m = 40000 .* use a smaller m"):
        D.modified_gradient_flow(D.Target.geometric(100, 5, 1.2), jax.random.key(0), m=40_000, delta0=1e-20,
                                 delta1=1e-10, lam=0.01, gamma=0.5, eps=0.01, seeds=2)
    with pytest.raises(ValueError, match=r"use fewer seeds .* per call or fewer save points"):
        D.gradient_flow(target, np.ones((20_000, 10, 50)), np.linspace(0.0, 300.0, 10_001))
    # a huge seed count is refused before a list of seeds is built
    with pytest.raises(ValueError, match="fewer seeds per call"):
        D.modified_gradient_flow(target, jax.random.key(0), m=50, delta0=1e-20, delta1=1e-10, lam=0.01,
                                 gamma=0.5, eps=0.01, seeds=2**32)
    assert time.perf_counter() - start < 10.0


@pytest.mark.slow
def test_ordinary_calls_fit_and_a_tight_memory_splits_the_batch(monkeypatch):
    """The Figure 1 call is not refused; with too little memory for all seeds at once the batch is
    solved in smaller chunks, with the same result per seed."""
    fig1 = D.flow.flow_plan(5, 10, 50, 5, 601, 512, None, 8)
    assert fig1.chunk == 5 and fig1.total < 2**31
    target = D.Target.geometric(6, 3, 1.5)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(3), range(6), 6, 10, 1e-6)
    kw = dict(rtol=1e-9, atol=1e-9, event_points=16)
    whole = D.gradient_flow(target, W0, [20.0, 60.0], **kw)
    one = D.flow.flow_plan(6, 6, 10, 3, 2, 16, None, 8)
    two = D.memory.flow_memory(seeds=6, d=6, m=10, r=3, save_points=2, event_points=16, chunk=2)
    assert one.chunk == 6 and two.total < one.total
    monkeypatch.setattr(D.memory, "available_memory", lambda device=None: two.total)
    assert D.flow.flow_plan(6, 6, 10, 3, 2, 16, None, 8).chunk == 2
    split = D.gradient_flow(target, W0, [20.0, 60.0], **kw)
    for field in ("W", "loss", "discovery_time", "status"):
        np.testing.assert_allclose(getattr(split, field), getattr(whole, field), rtol=1e-12, atol=1e-300)
    monkeypatch.setattr(D.memory, "available_memory", lambda device=None: two.total // 4)
    with pytest.raises(ValueError, match="is available"):
        D.gradient_flow(target, W0, [20.0, 60.0], **kw)


@pytest.mark.slow
@pytest.mark.parametrize("precise", [None, False])
def test_loss_series_in_blocks_is_bit_identical(precise, monkeypatch):
    """The loss series is evaluated a block of saved states at a time (memory); the block size
    changes no bit of any result (double-double and float loss)."""
    target = D.Target.geometric(6, 3, 1.5)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(3), 6, 10, 1e-6)
    ts = jnp.linspace(0.0, 100.0, 7)
    whole = D.gradient_flow(target, W0, ts, precise_loss=precise, event_points=16)
    monkeypatch.setattr(D.memory, "SERIES_BLOCK_BYTES", 1)  # one saved state per block
    assert D.flow.flow_plan(3, 6, 10, 3, 7, 16, precise, 8).block == 1
    blocks = D.gradient_flow(target, W0, ts, precise_loss=precise, event_points=16)
    for field in ("W", "loss", "loss_floor", "residual"):
        np.testing.assert_array_equal(getattr(blocks, field), getattr(whole, field))


@pytest.mark.slow
@pytest.mark.parametrize("case", [(1, 4, 256, 11, 512, None), (4, 10, 700, 2, 2, False), (16, 4, 32, 301, 16, None)])
def test_memory_estimate_bounds_xla_count(case):
    """The estimate against XLA's own count of the compiled call (memory_analysis): an upper bound,
    within a factor of 8."""
    from deflation.flow import _as_initial_state as initial, _flow, flow_plan
    from deflation.integrate import EventConfig, SolverConfig

    B, d, m, K, P, precise = case
    target = D.Target.geometric(d, 2, 1.5)
    y0, _ = initial(D.sample_sphere_batch(jax.random.PRNGKey(0), range(B), d, m, 1e-3), target)
    plan = flow_plan(B, d, m, 2, K, P, precise, 8)
    compiled = _flow.lower(target, y0, jnp.linspace(0.0, 10.0, K), jnp.asarray(0.0), jnp.asarray(0.0),
                           SolverConfig.adaptive(1e-8, 1e-8), EventConfig(points=P), False, precise, False, plan.chunk,
                           plan.block, D.models.Normalized()).compile()
    ma = compiled.compiled.memory_analysis()
    xla = ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes
    assert xla <= plan.total <= 8 * xla, (xla, plan)


# ---------------------------------------------------------------------------- the rest of their kind


def test_a_target_built_inside_jit_is_checked_where_it_is_used():
    """A Target built from traced values is not checked when built; one holding NaN reached the
    solver and came back as 'max_steps reached' with a NaN loss."""
    U = jnp.eye(4)[:, :2]
    W0 = D.sample_sphere(jax.random.PRNGKey(0), 4, 3, 1e-3)
    bad = jax.jit(lambda a: D.Target(a, U))(jnp.array([jnp.nan, 0.4]))
    with pytest.raises(ValueError, match=r"target is not a valid Target: a must be finite"):
        D.gradient_flow(bad, W0, [1.0])
    with pytest.raises(ValueError, match="a must be >= 0"):
        D.loss(W0, jax.jit(lambda a: D.Target(a, U))(jnp.array([-0.5, 0.4])))
    with pytest.raises(ValueError, match="unit columns"):
        D.velocity(W0, jax.jit(lambda u: D.Target(jnp.array([0.6, 0.4]), u))(2.0 * U))


def test_sizes_that_once_allocated_d_by_d_or_r_weights_are_cheap():
    t = D.Target.basis([0.6, 0.4], 10**6)  # np.eye(d) was 8 TB
    assert t.U.shape == (10**6, 2) and float(t.U[1, 1]) == 1.0 and float(t.U[:, 0].sum()) == 1.0
    with pytest.raises(ValueError, match="d must be >= r = 1000000000000"):
        D.Target.geometric(10, 10**12)  # np.arange(r) was 8 TB


def test_a_step_budget_beyond_int32_is_refused():
    """max_steps = 2^31 wrapped around in the int32 step counter: every trajectory stopped at step 0
    with 'max_steps reached'."""
    target = D.Target.geometric(4, 2, 1.5)
    W0 = D.sample_sphere(jax.random.PRNGKey(0), 4, 3, 1e-3)
    with pytest.raises(ValueError, match=r"max_steps must be an integer >= 1 and <= 2147483647"):
        D.gradient_flow(target, W0, [1.0], max_steps=2**31)
    with pytest.raises(ValueError, match="max_steps"):
        D.SolverConfig.adaptive(max_steps=2**31)
    with pytest.raises(ValueError, match="max_steps"):
        D.modified_gradient_flow(target, jax.random.key(0), m=3, delta0=1e-6, delta1=1e-4, lam=0.05, gamma=0.5,
                                 eps=0.1, max_steps=10**30)


def test_seed_indices_that_would_wrap_or_truncate_are_refused():
    """Seed indices are folded in as uint32: 2^32 gave seed 0's key, -1 seed 2^32 - 1's, 1.5 seed 1's."""
    key = jax.random.PRNGKey(0)
    for seeds, err in ((np.array([2**32]), ValueError), (np.array([-1]), ValueError), ([1.5], TypeError),
                       ([2**70], ValueError), ([True], TypeError)):
        with pytest.raises(err, match="seeds"):
            D.seed_keys(key, seeds)
    with pytest.raises(ValueError, match="seeds"):
        D.sample_sphere_batch(key, np.array([0, 2**32]), 4, 3, 1.0)
    target = D.Target.geometric(4, 2, 1.5)
    kw = dict(m=3, delta0=1e-6, delta1=1e-4, lam=0.05, gamma=0.5, eps=0.1)
    with pytest.raises(ValueError, match=r"seeds\[1\] must be an integer >= 0 and <= 4294967295"):
        D.modified_gradient_flow(target, jax.random.key(0), seeds=[0, 2**32], **kw)
    with pytest.raises(ValueError, match="seeds"):
        D.modified_gradient_flow(target, jax.random.key(0), seeds=2**32 + 1, **kw)


@pytest.mark.slow
def test_save_times_are_checked_in_the_dtype_of_the_flow():
    """A float32 flow rounds ts to float32: distinct float64 times that round together, or times
    beyond float32's range, crashed inside the solver."""
    target32 = D.Target(np.array([0.6, 0.4], np.float32), np.eye(4, 2, dtype=np.float32))
    W0 = np.asarray(D.sample_sphere(jax.random.PRNGKey(0), 4, 3, 1e-3), np.float32)
    with pytest.raises(ValueError, match="strictly increasing in float32"):
        D.gradient_flow(target32, W0, [1.0, 1.0 + 1e-9])
    with pytest.raises(ValueError, match="finite in float32"):
        D.gradient_flow(target32, W0, [1.0, 1e39])
    res = D.gradient_flow(target32, W0, [1.0, 10.0], rtol=1e-5, atol=1e-5, event_points=16)
    assert res.W.dtype == jnp.float32 and int(res.status) == Status.SUCCESS


@pytest.mark.slow
def test_subnormal_thresholds_are_taken_exactly():
    """log(delta) of a subnormal delta was -inf inside XLA (subnormal operands flush to zero):
    Algorithm 2 from delta0 = 1e-310 stopped at once with infinite log-norms, and Definition 1
    against delta1 = 1e-310 saw every column above it. While the norms are tiny the flow in
    log-norms does not depend on the scale, so scaling the state and delta1 together changes no
    event time: a subnormal delta1 against a normal one."""
    target = D.Target.geometric(4, 2, 1.5)
    ubar = np.asarray(D.sample_sphere(jax.random.PRNGKey(1), 4, 6, 1.0))
    ts = jnp.array([400.0])
    normal = D.gradient_flow(target, (np.full(6, np.log(1e-200)), ubar), ts, delta1=1e-190, event_points=64)
    tiny = D.gradient_flow(target, (np.full(6, np.log(1e-320)), ubar), ts, delta1=1e-310, event_points=64)
    disc = np.asarray(normal.discovery_time)
    assert np.isfinite(disc).all()
    np.testing.assert_allclose(tiny.discovery_time, disc, rtol=1e-5)  # the solver tolerance: steps differ
    np.testing.assert_array_equal(tiny.member, normal.member)
    res = D.modified_gradient_flow(target, jax.random.key(0), m=4, delta0=1e-310, delta1=1e-4, lam=0.05, gamma=0.5,
                                   eps=0.1, max_epochs=2, event_points=9)
    assert int(res.status) == Status.SUCCESS and int(res.epochs) == 2
    assert np.isfinite(np.asarray(res.log_norm)).all()


# ---------------------------------------------------------------------------- the command line

FIGURE1_BAD = [
    # (arguments, the flag the one-line message must name)
    (["--seeds", "0"], "--seeds"), (["--seeds", "100000000"], "--seeds"), (["--key", str(2**64)], "--key"),
    (["--d", "1"], "--d"), (["--d", "0"], "--d"), (["--r", "0"], "--r"), (["--r", "11"], "--r"),
    (["--ratio", "0.5"], "--ratio"), (["--ratio", "nan"], "--ratio"), (["--ratio", "inf"], "--ratio"),
    (["--m", "0"], "--m"), (["--m", "-3"], "--m"), (["--m", "10000000"], "--m"),
    (["--order", "1"], "--order"), (["--order", str(10**18)], "--order"), (["--model", "cp"], "--model"),
    (["--init", "0"], "--init"), (["--init=-1e-15"], "--init"), (["--init", "nan"], "--init"),
    (["--init", "inf"], "--init"), (["--init", "1e300"], "--init"),
    (["--horizon", "0"], "--horizon"), (["--horizon", "-5"], "--horizon"), (["--horizon", "nan"], "--horizon"),
    (["--horizon", "inf"], "--horizon"), (["--horizon", "1e-310"], "--horizon"),
    (["--points", "1"], "--points"), (["--points", "0"], "--points"), (["--points", "1000000000"], "--points"),
    (["--lam", "-1"], "--lam"), (["--lam", "nan"], "--lam"), (["--lam", "inf"], "--lam"),
    (["--rtol", "0"], "--rtol"), (["--rtol=-1e-8"], "--rtol"), (["--rtol", "nan"], "--rtol"),
    (["--rtol", "10"], "--rtol"),
    (["--atol", "0"], "--atol"), (["--atol", "inf"], "--atol"),
    (["--delta1", "0"], "--delta1"), (["--delta1", "nan"], "--delta1"), (["--delta1", "-1"], "--delta1"),
    (["--alpha", "0"], "--alpha"), (["--alpha", "1"], "--alpha"), (["--alpha", "nan"], "--alpha"),
]

ALGORITHM2_BAD = [
    (["--d", "1"], "--d"), (["--d", "100000"], "--m"), (["--a", "nan,0.5"], "--a"), (["--a=-1,0.5"], "--a"),
    (["--a", "0,0"], "--a"), (["--a", ",".join(["0.1"] * 9)], "--a"), (["--a", "0.5,x"], "--a"),
    (["--ratio", "0.5"], "--ratio"), (["--ratio", "inf"], "--ratio"), (["--r", "0"], "--r"), (["--r", "9"], "--r"),
    (["--eps", "0"], "--eps"), (["--eps", "nan"], "--eps"), (["--eps", "inf"], "--eps"), (["--eps", "1e-300"], "--eps"),
    (["--m", "0"], "--m"), (["--m", "1"], "--m"), (["--m", "100000"], "--m"),
    (["--lam", "0"], "--lam"), (["--lam", "-1"], "--lam"), (["--lam", "nan"], "--lam"), (["--lam", "1e300"], "--lam"),
    (["--alpha", "0"], "--alpha"), (["--alpha", "1"], "--alpha"), (["--delta1", "0"], "--delta1"),
    (["--delta1", "1e300"], "--delta1"), (["--delta0", "1"], "--delta0"), (["--delta0", "nan"], "--delta0"),
    (["--gamma", "0"], "--gamma"), (["--gamma", "1.5"], "--gamma"), (["--c1", "0"], "--c1"), (["--c1", "inf"], "--c1"),
    (["--c2", "-1"], "--c2"), (["--c3", "-1"], "--c3"), (["--c3", "nan"], "--c3"), (["--c-rho", "1"], "--c-rho"),
    (["--max-epochs", "0"], "--max-epochs"), (["--max-epochs", "1000000000"], "--max-epochs"),
    (["--seeds", "0"], "--seeds"), (["--seeds", str(10**12)], "--seeds"), (["--seeds", "100000000"], "--seeds"),
    (["--key", str(2**64)], "--key"), (["--chunk", "0"], "--chunk"), (["--rtol", "0"], "--rtol"),
    (["--rtol", "5"], "--rtol"), (["--atol", "inf"], "--atol"), (["--event-points", "2"], "--event-points"),
    (["--event-points", "1000000000"], "--event-points"),
]


def _one_line_error(capsys, argv, flag):
    from deflation.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (argv, code, captured.err)
    assert len(lines) == 1 and "Traceback" not in captured.err, (argv, captured.err)
    assert re.search(rf"{re.escape(flag)}(?![\w-])", lines[0]), (argv, lines[0])
    # no library name without its flag: ``ts``, ``W0``, ``scale``, ``seeds[`` ...
    assert not re.search(r"(?<![\w.-])(ts|t1|W0|scale|c_rho|max_epochs|grid_points)(?![\w-])", lines[0]), lines[0]
    return lines[0]


def test_figure1_every_bad_flag_value_is_one_line_naming_the_flag(capsys, tmp_path):
    start = time.perf_counter()
    for args, flag in FIGURE1_BAD:
        _one_line_error(capsys, ["figure1", "--out", str(tmp_path / "f1")] + args, flag)
    # a wrong type is argparse's: its usage, then one line naming the flag, exit code 2
    from deflation.cli import main

    for flag, kind in (("--seeds", "int"), ("--d", "int"), ("--init", "float"), ("--horizon", "float")):
        with pytest.raises(SystemExit) as exit_:
            main(["figure1", flag, "x"])
        assert exit_.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.endswith(f"argument {flag}: invalid {kind} value: 'x'"), last
    assert time.perf_counter() - start < 20  # refused before anything is compiled
    assert not (tmp_path / "f1" / "figure1.npz").exists()


def test_algorithm2_every_bad_flag_value_is_one_line_naming_the_flag(capsys, tmp_path):
    start = time.perf_counter()
    for args, flag in ALGORITHM2_BAD:
        _one_line_error(capsys, ["algorithm2", "--out", str(tmp_path / "a2")] + args, flag)
    assert time.perf_counter() - start < 20
    assert not (tmp_path / "a2" / "algorithm2.npz").exists()


@pytest.mark.parametrize("command", ["figure1", "algorithm2"])
def test_an_unusable_out_is_one_line_naming_out(command, capsys, tmp_path, monkeypatch):
    """--out that is a file, under a file, or not writable: one line naming --out, before any
    computation (a traceback from mkdir or savefig before)."""
    afile = tmp_path / "file"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        line = _one_line_error(capsys, [command, "--out", str(out)], "--out")
        assert str(out) in line
    for out in ("", "a\x00b"):  # empty, and a NUL byte (ValueError from os)
        _one_line_error(capsys, [command, "--out", out], "--out")
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    line = _one_line_error(capsys, [command, "--out", str(tmp_path / "ro")], "--out")
    assert "cannot write" in line and "Permission denied" in line


@pytest.mark.slow
def test_outputs_are_written_atomically(capsys, tmp_path, monkeypatch):
    """A writer that fails half-way leaves the previous complete file in place, and the command
    says so in one line (before: a torn file and a raw OSError)."""
    from deflation.cli import main

    out = tmp_path / "f1"
    argv = ["figure1", "--seeds", "1", "--d", "4", "--r", "2", "--m", "3", "--horizon", "5", "--points", "3",
            "--rtol", "1e-6", "--atol", "1e-6", "--out", str(out)]
    assert main(argv) == 0
    before = (out / "figure1.npz").read_bytes()
    capsys.readouterr()

    def torn(path, **arrays):
        with open(path, "wb") as fh:
            fh.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", torn)
    line = _one_line_error(capsys, argv, "--out")
    assert "figure1.npz" in line and "No space left" in line
    assert (out / "figure1.npz").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["figure1.json", "figure1.npz", "figure1.png"]  # no leftovers


@pytest.mark.slow
@pytest.mark.parametrize("command", ["figure1", "algorithm2"])
def test_concurrent_runs_on_one_out_leave_complete_files(command, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "shared" / "deep"
    args = {"figure1": ["--seeds", "1", "--d", "4", "--r", "2", "--m", "3", "--horizon", "5", "--points", "3"],
            "algorithm2": ["--d", "3", "--ratio", "2", "--eps", "5e-2", "--max-epochs", "2", "--event-points", "5"]}
    procs = [subprocess.Popen([sys.executable, "-m", "deflation.cli", command, *args[command],
                               "--key", str(k), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(4)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    for _stdout, stderr, code in results:
        assert code == 0 and "Traceback" not in stderr, stderr
    data = np.load(out / f"{command}.npz")
    assert len(data.files) > 5 and all(data[name].size >= 0 for name in data.files)
    params = json.loads((out / f"{command}.json").read_text())
    assert isinstance(params, dict)
    assert (out / f"{command}.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{command}.{ext}" for ext in ("json", "npz", "png"))
