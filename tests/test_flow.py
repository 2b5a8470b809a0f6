"""gradient_flow against an independent SciPy solve, the Figure 1 deflation staircase, batch
independence, tiny scales, event location, failure reporting and bad input."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import deflation as D
from deflation import Status


def numpy_velocity(W, a, U, p, lam):
    """The flow's right-hand side written independently in NumPy (raw W coordinates)."""
    n = np.linalg.norm(W, axis=0)
    Wb = W / n
    G, C = Wb.T @ Wb, U.T @ Wb
    Rvec = U @ (a[:, None] * C ** (p - 1)) - Wb @ (n[:, None] ** 2 * G ** (p - 1))
    Rp = np.sum(Wb * Rvec, axis=0)
    return n * (p * Rvec - (p - 2) * Rp * Wb) - lam * W


@pytest.mark.smoke
def test_trajectory_matches_scipy_dop853():
    rng = np.random.default_rng(0)
    d, m, p, lam = 5, 7, 4, 0.02
    target = D.Target(np.array([0.5, 0.3, 0.2]), np.linalg.qr(rng.standard_normal((d, 3)))[0], p)
    a, U = np.asarray(target.a), np.asarray(target.U)
    W0 = 0.05 * rng.standard_normal((d, m))
    ts = np.array([2.0, 10.0, 30.0, 60.0])
    ref = solve_ivp(
        lambda t, y: numpy_velocity(y.reshape(d, m), a, U, p, lam).ravel(),
        (0.0, ts[-1]), W0.ravel(), method="DOP853", rtol=1e-12, atol=1e-14, t_eval=ts,
    )
    res = D.gradient_flow(target, W0, ts, lam=lam, rtol=1e-10, atol=1e-10)
    assert int(res.status) == Status.SUCCESS
    for k in range(len(ts)):
        want = ref.y[:, k].reshape(d, m)
        err = np.linalg.norm(np.asarray(res.W[k]) - want) / np.linalg.norm(want)
        assert err < 1e-6, (ts[k], err)
    # the loss reported at the save times is the loss of the reported state
    for k in range(len(ts)):
        np.testing.assert_allclose(res.loss[k], D.loss(res.W[k], target, lam), rtol=1e-9)


@pytest.fixture(scope="module")
def figure1_run():
    target = D.Target.geometric(10, 5, 1.2)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(5), 10, 50, 1e-15)
    ts = jnp.linspace(0.0, 300.0, 61)
    return target, W0, ts, D.gradient_flow(target, W0, ts)


@pytest.mark.slow
def test_figure1_setting_deflates_in_order(figure1_run):
    target, W0, ts, res = figure1_run
    assert (np.asarray(res.status) == Status.SUCCESS).all()
    fit = np.asarray(res.fit_time)
    disc = np.asarray(res.discovery_time)
    assert np.isfinite(fit).all() and np.isfinite(disc).all()
    for s in range(5):
        assert (np.diff(fit[s]) > 0).all(), f"seed {s} fitted out of order: {fit[s]}"
        assert (np.diff(disc[s]) > 0).all(), f"seed {s} discovered out of order: {disc[s]}"
        assert (disc[s] < fit[s]).all()
    assert (np.asarray(res.loss[:, -1]) < 1e-10).all()
    # the staircase: early plateau at the initial loss, 1/2 |T*|^2
    np.testing.assert_allclose(res.loss[:, 0], 0.5 * float(target.norm()) ** 2, rtol=1e-12)
    # residual on e_i at the end is small
    assert (np.abs(np.asarray(res.residual[:, -1])) < 1e-5).all()


@pytest.mark.slow
def test_loss_above_its_floor_is_accurate(figure1_run):
    """Where the reported loss exceeds ``loss_floor`` it agrees with a rtol = atol = 1e-12 solve
    to 10%; where it is below, it is not claimed (it would be integration noise)."""
    target, W0, ts, res = figure1_run
    ref = D.gradient_flow(target, W0[:2], ts, rtol=1e-12, atol=1e-12)
    loss, floor, want = (np.asarray(x) for x in (res.loss[:2], res.loss_floor[:2], ref.loss))
    shown = loss > floor
    assert shown.mean() > 0.4 and (~shown).any()
    np.testing.assert_allclose(loss[shown], want[shown], rtol=0.1)
    assert (np.asarray(ref.loss_floor) < 1e-20).all()


@pytest.mark.slow
def test_tiny_initialization_1e100_same_order():
    target = D.Target.geometric(6, 3, 1.5)
    U0 = D.sample_sphere(jax.random.PRNGKey(1), 6, 12, 1.0)
    ts = jnp.linspace(0.0, 600.0, 7)
    big = D.gradient_flow(target, 1e-15 * U0, ts)
    tiny = D.gradient_flow(target, 1e-100 * U0, ts)
    for res in (big, tiny):
        assert int(res.status) == Status.SUCCESS
        assert np.isfinite(np.asarray(res.W)).all() and np.isfinite(np.asarray(res.loss)).all()
        assert (np.diff(np.asarray(res.fit_time)) > 0).all()
    # directions at the start are identical, so the same columns win in the same order
    np.testing.assert_array_equal(big.member, tiny.member)
    assert (np.asarray(tiny.fit_time) > np.asarray(big.fit_time)).all()  # longer plateaus
    # far below float64's smallest normal number: pass log-norms directly
    rho = jnp.full(12, -1000.0)
    deep = D.gradient_flow(target, (rho, U0), ts, frozen=False)
    assert int(deep.status) == Status.SUCCESS and np.isfinite(np.asarray(deep.log_norm)).all()


@pytest.mark.slow
def test_event_times_match_dense_reference():
    """Discovery and fit times (default grid, rtol 1e-8) against a reference: rtol 1e-12,
    states saved every 0.01 time units, crossings found by linear interpolation here."""
    target = D.Target.geometric(10, 5, 1.2)
    W0 = D.sample_sphere(jax.random.PRNGKey(4), 10, 50, 1e-15)
    delta1, alpha = 1e-3, 0.1
    fast = D.gradient_flow(target, W0, jnp.array([150.0]), delta1=delta1, alpha=alpha)
    ts = jnp.linspace(0.0, 150.0, 15001)
    ref = D.gradient_flow(target, W0, ts, rtol=1e-12, atol=1e-12, event_points=2)
    ts = np.asarray(ts)
    lognorm = np.asarray(ref.log_norm)  # (K, m)
    U = np.asarray(target.U)
    Wn = np.asarray(ref.W) / np.exp(lognorm)[:, None, :]
    disc = np.full(5, np.inf)
    for j in range(50):
        g = lognorm[:, j] - np.log(delta1)
        up = np.nonzero((g[:-1] < 0) & (g[1:] >= 0))[0]
        if up.size == 0:
            continue
        k = up[0]
        tc = ts[k] - g[k] * (ts[k + 1] - ts[k]) / (g[k + 1] - g[k])
        corr2 = (U.T @ Wn[k + 1, :, j]) ** 2
        i = int(np.argmax(corr2))
        if corr2[i] >= 1 - alpha**2:
            disc[i] = min(disc[i], tc)
    fit = np.full(5, np.inf)
    res = np.asarray(ref.residual)
    a = np.asarray(target.a)
    for i in range(5):
        g = res[:, i] - 0.1 * a[i]
        down = np.nonzero((g[:-1] > 0) & (g[1:] <= 0))[0]
        k = down[0]
        fit[i] = ts[k] - g[k] * (ts[k + 1] - ts[k]) / (g[k + 1] - g[k])
    assert np.isfinite(disc).all()
    np.testing.assert_allclose(fast.discovery_time, disc, rtol=1e-3)
    np.testing.assert_allclose(fast.fit_time, fit, rtol=1e-3)


@pytest.mark.slow
def test_fit_time_with_regularization_uses_ahat():
    """lam > 0: fitted when a_i - ahat_i <= 2 lam, ahat_i = sum of |w|^2 over S_i (Definition 1)."""
    target = D.Target.geometric(6, 3, 1.5)
    W0 = D.sample_sphere(jax.random.PRNGKey(2), 6, 16, 1e-12)
    lam = 0.01
    ts = jnp.linspace(0.0, 250.0, 5001)
    res = D.gradient_flow(target, W0, ts, lam=lam)
    omega = np.exp(2 * np.asarray(res.log_norm))
    member = np.asarray(res.member)
    a = np.asarray(target.a)
    for i in range(3):
        cols = member == i
        assert cols.any()
        # ahat from saved states (membership only matters after the columns joined, at norm delta1)
        g = a[i] - omega[:, cols].sum(axis=1) - 2 * lam
        k = np.nonzero((g[:-1] > 0) & (g[1:] <= 0))[0][0]
        want = ts[k] - g[k] * (ts[k + 1] - ts[k]) / (g[k + 1] - g[k])
        assert abs(float(res.fit_time[i]) - want) <= 1e-3 * want


@pytest.mark.slow
def test_failing_trajectories_are_flagged_with_index_and_others_intact():
    target = D.Target.geometric(4, 2, 1.5)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(3), range(3), 4, 5, 1e-3)
    W0 = W0.at[1].multiply(1e7)  # norm 1e4: a fast, stiff transient needs about twice the steps
    ts = jnp.array([5.0, 50.0])
    solo = [D.gradient_flow(target, W0[b], ts) for b in range(3)]
    steps = [int(s.num_steps) for s in solo]
    budget = (steps[1] + max(steps[0], steps[2])) // 2
    assert max(steps[0], steps[2]) < budget < steps[1]
    res = D.gradient_flow(target, W0, ts, max_steps=budget)
    assert list(np.asarray(res.status)) == [Status.SUCCESS, Status.MAX_STEPS, Status.SUCCESS]
    assert res.failed() == [(1, "max_steps reached")]
    for b in (0, 2):  # intact: as alone, up to the rounding of batched vs single matrix products
        np.testing.assert_allclose(res.W[b], solo[b].W, rtol=1e-9, atol=1e-12)
    # a trajectory whose state overflows (norm e^400: |w|^2 = inf) is flagged as non-finite
    rho, ubar = D.to_lognorm(W0)
    rho = rho.at[1].set(400.0)
    big = D.gradient_flow(
        target, (rho, ubar), ts, solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(), dt0=0.1
    )
    status = np.asarray(big.status)
    assert list(status) == [Status.SUCCESS, Status.NONFINITE, Status.SUCCESS]
    assert big.failed() == [(1, "non-finite state")]
    assert np.isfinite(np.asarray(big.W[0])).all() and np.isfinite(np.asarray(big.W[2])).all()
    adaptive = D.gradient_flow(target, (rho, ubar), ts, max_steps=500)
    assert list(np.asarray(adaptive.status) != Status.SUCCESS) == [False, True, False]


@pytest.mark.slow
def test_any_diffrax_solver_and_controller():
    target = D.Target.geometric(4, 2, 1.5)
    W0 = D.sample_sphere(jax.random.PRNGKey(5), 4, 6, 1e-2)
    ts = jnp.array([20.0, 60.0])
    ref = D.gradient_flow(target, W0, ts, rtol=1e-11, atol=1e-11)
    for solver in (diffrax.Dopri5(), diffrax.Heun()):
        res = D.gradient_flow(target, W0, ts, solver=solver, rtol=1e-7, atol=1e-7)
        assert int(res.status) == Status.SUCCESS
        np.testing.assert_allclose(res.W, ref.W, rtol=1e-3, atol=1e-5)
    res = D.gradient_flow(target, W0, ts, solver=diffrax.Midpoint(), stepsize_controller=diffrax.ConstantStepSize(),
                          dt0=0.01)
    np.testing.assert_allclose(res.W, ref.W, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_implicit_solver():
    """An implicit method (Kvaerno5, Newton on the log-norm field) gives the same trajectory;
    slow only because its compilation takes ~30 s."""
    target = D.Target.geometric(4, 2, 1.5)
    W0 = D.sample_sphere(jax.random.PRNGKey(5), 4, 6, 1e-2)
    ts = jnp.array([20.0, 60.0])
    ref = D.gradient_flow(target, W0, ts, rtol=1e-11, atol=1e-11)
    res = D.gradient_flow(target, W0, ts, solver=diffrax.Kvaerno5(), rtol=1e-7, atol=1e-7)
    assert int(res.status) == Status.SUCCESS
    np.testing.assert_allclose(res.W, ref.W, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(ts=[1.0, 1.0]), "strictly increasing"),
        (dict(ts=[2.0, 1.0]), "strictly increasing"),
        (dict(ts=[1.0, 2.0], t0=1.5), "t0"),
        (dict(ts=[]), "at least one"),
        (dict(ts=[[1.0]]), "dimensions"),
        (dict(ts=[1.0, np.inf]), "finite"),
        (dict(rtol=0.0), "rtol"),
        (dict(atol=-1e-8), "atol"),
        (dict(lam=-0.1), "lam"),
        (dict(max_steps=0), "max_steps"),
        (dict(alpha=1.5), "alpha"),
        (dict(delta1=0.0), "delta1"),
        (dict(W0=np.ones((3, 4))), "rows"),
        (dict(W0=np.zeros((4, 3))), "non-zero"),
        (dict(W0=np.full((4, 3), np.nan)), "finite"),
        (dict(solver="tsit5"), "diffrax solver"),
        (dict(stepsize_controller=diffrax.ConstantStepSize()), "dt0"),
    ],
)
def test_bad_input(kwargs, match):
    target = D.Target.basis([0.6, 0.4], 4)
    args = dict(W0=np.ones((4, 3)), ts=[1.0, 2.0])
    args.update(kwargs)
    W0, ts = args.pop("W0"), args.pop("ts")
    with pytest.raises((ValueError, TypeError), match=match):
        D.gradient_flow(target, W0, ts, **args)
