"""Definition 1 (deflation.definition1): crossings, membership, discovery and fit times, on synthetic
grids with known answers and on one trajectory through both routes that use it (gradient_flow and
Algorithm 2)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deflation
from deflation.definition1 import Observation, observe, track
from deflation.dense import dense_model
from deflation.init import unit_columns
from deflation.monitors import proposition1


@pytest.mark.slow
def test_track_phase_locates_crossings_and_membership():
    """Synthetic phase with known trajectories: rho_k(t) = log(delta0) + c_k t, 1 - wbar^2 known."""
    delta0, delta1, alpha, lam = 1e-8, 1e-4, 0.1, 1e-3
    a = jnp.array([0.5, 0.3])
    t = jnp.linspace(0.0, 10.0, 21)
    L = math.log(delta1 / delta0)
    c = jnp.array([L / 3.3, L / 6.7, L / 20.0, -0.5])  # cols 0, 1 cross at 3.3, 6.7; col 2 never; col 3 shrinks
    rho = math.log(delta0) + t[:, None] * c[None, :]
    rho = rho.at[:, 3].set(math.log(2 * delta1) - 0.5 * t)  # starts above delta1, crosses down at log(2)/0.5
    # column 0 well aligned with direction 1 when it crosses; column 1 poorly aligned (bad crossing);
    # column 3 aligned with direction 0 when it crosses downward
    mis = jnp.stack([0.5 * jnp.exp(-2 * t), 0.5 + 0 * t, 0.7 + 0 * t, 1e-4 + 0 * t], axis=1)  # 1 - wbar^2
    dmis = jnp.stack([-jnp.exp(-2 * t), 0 * t, 0 * t, 0 * t], axis=1)
    ref = jnp.broadcast_to(jnp.array([1.0, 0.0, 1.0, 0.0]), rho.shape)
    drho = jnp.broadcast_to(jnp.array([c[0], c[1], c[2], -0.5]), rho.shape)
    zeros_r = jnp.zeros((t.shape[0], 2))
    obs = Observation(rho=rho, drho=drho, mis=mis, dmis=dmis, ref=ref.astype(jnp.int32), residual=zeros_r,
                      dresidual=zeros_r, residual_norm=0 * t, dresidual_norm=0 * t)

    def track_phase(t, obs, member, a, lam, delta1, alpha):
        tr = track(t, obs, member, a, lam, delta1, alpha, 0.1)
        return dict(vars(tr), ahat=tr.ahat[-1], **proposition1(obs, tr, a))

    member = jnp.array([-1, -1, -1, -1], jnp.int32)
    out = jax.jit(track_phase)(t, obs, member, a, lam, delta1, alpha)
    out = jax.tree_util.tree_map(np.asarray, out)
    np.testing.assert_array_equal(out["member"], [1, -1, -1, 0])
    np.testing.assert_allclose(out["join_time"][[0, 3]], [3.3, 2 * math.log(2)], rtol=1e-9)
    assert np.isinf(out["join_time"][[1, 2]]).all()
    assert out["bad_crossings"] == 1
    np.testing.assert_array_equal(out["joined"], [1, 1])
    np.testing.assert_allclose(out["discovery_time"], [2 * math.log(2), 3.3], rtol=1e-9)
    omega_end = np.exp(2 * np.asarray(rho[-1]))
    np.testing.assert_allclose(out["ahat"], [omega_end[3], omega_end[0]], rtol=1e-12)
    # monitors: (a) correlations of members after they joined; (d) largest norm outside: column 1 at t = 10
    assert out["misalignment_max"][1] == pytest.approx(float(mis[7, 0]), rel=1e-12)  # first grid point after 3.3
    assert out["misalignment_avg_max"][1] == pytest.approx(float(mis[7, 0]), rel=1e-12)  # one member
    assert out["log_norm_outside_max"] == pytest.approx(float(rho[-1, 1]), rel=1e-12)
    np.testing.assert_allclose(out["gap_max"], np.asarray(a), rtol=1e-6)
    # a member at the start stays one; the column that crossed badly can still join later only if it qualifies
    out2 = jax.tree_util.tree_map(np.asarray, jax.jit(track_phase)(t, obs, jnp.array([0, -1, -1, -1], jnp.int32),
                                                                     a, lam, delta1, alpha))
    assert out2["member"][0] == 0 and np.isinf(out2["discovery_time"][0])


@pytest.mark.slow
def test_observer_misalignment_resolves_tiny_alpha_and_its_derivative():
    from deflation.dynamics import lognorm_vector_field

    d, m = 5, 4
    target = deflation.Target.basis(jnp.array([0.5, 0.3, 0.2]), d)
    ubar = unit_columns(jax.random.key(2), d, m)
    ubar = ubar.at[:, 0].set(jnp.array([1.0, 1e-10, 0.0, 0.0, 0.0]))  # 1 - wbar_0^2 = 1e-20
    rho = jnp.array([-3.0, -2.0, -30.0, -1.5])
    member = jnp.array([-1, 2, -1, -1], jnp.int32)
    lam = 1e-3
    f = lognorm_vector_field((rho, ubar), target, lam)
    obs = jax.jit(lambda y, f: vars(observe(target, y, f, member, norm=True)))((rho, ubar), f)
    assert float(obs["mis"][0]) == pytest.approx(1e-20, rel=1e-6)  # 1 - corr^2 would round to 0
    C = np.asarray(target.U.T @ ubar)
    ref = np.where(np.asarray(member) >= 0, np.asarray(member), np.argmax(C**2, axis=0))
    np.testing.assert_array_equal(np.asarray(obs["ref"]).astype(int), ref)
    np.testing.assert_allclose(np.asarray(obs["mis"][1:]), 1 - C[ref, np.arange(m)][1:] ** 2, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(obs["drho"]), np.asarray(f[0]), rtol=1e-14)
    # d(mis)/dt by a central difference along the vector field
    h = 1e-6
    obs_at = jax.jit(lambda y: observe(target, y, lognorm_vector_field(y, target, lam), member).mis)
    plus = obs_at((rho + h * f[0], ubar + h * f[1]))
    minus = obs_at((rho - h * f[0], ubar - h * f[1]))
    np.testing.assert_allclose(np.asarray(obs["dmis"][1:]), np.asarray((plus - minus)[1:] / (2 * h)), rtol=1e-6)
    # residual per direction against the dense tensors
    W = np.asarray(deflation.from_lognorm(rho, ubar))
    R = np.asarray(target.dense()) - np.asarray(dense_model(W, 4))
    want = [np.einsum("ijkl,i,j,k,l->", R, *(np.eye(d)[i],) * 4) for i in range(3)]
    np.testing.assert_allclose(np.asarray(obs["residual"]), want, rtol=1e-10)
    assert float(obs["residual_norm"]) == pytest.approx(np.linalg.norm(R), rel=1e-10)


@pytest.mark.slow  # an Algorithm 2 program and a flow program compiled for this comparison alone
def test_gradient_flow_and_algorithm2_record_the_same_discovery_times():
    """Algorithm 2's first Phase 1 is a gradient flow of length t1 from its own initial draw:
    deflation.gradient_flow from that same draw, with the same lam, delta1, alpha, tolerances and
    grid, must report the same discovery times (both go through definition1.track)."""
    a = np.array([0.5, 0.3, 0.2])
    target = deflation.Target.basis(a, 5)
    kw = dict(m=40, delta0=1e-8, delta1=1e-4, lam=2e-3, gamma=0.5, eps=1e-2, alpha=0.1)
    K = 65
    key = jax.random.key(7)
    res = deflation.modified_gradient_flow(target, key, **kw, c1=4.5, max_epochs=1, event_points=K, rtol=1e-9,
                                           atol=1e-9)
    t1 = float(res.record.t1[0])
    # the same initial draw: key split once, directions from the second key (algorithm._run_batch)
    _, k0 = jax.random.split(key)
    W0 = (jnp.full((kw["m"],), math.log(kw["delta0"])), unit_columns(k0, 5, kw["m"]))
    flow = deflation.gradient_flow(target, W0, [t1], lam=kw["lam"], delta1=kw["delta1"], alpha=kw["alpha"],
                                   rtol=1e-9, atol=1e-9, event_points=K)
    in_phase1 = np.asarray(res.record.discovery_time[0]) <= t1
    assert in_phase1.sum() >= 2  # the comparison is not vacuous
    np.testing.assert_allclose(np.asarray(flow.discovery_time)[in_phase1],
                               np.asarray(res.record.discovery_time[0])[in_phase1], rtol=1e-12)
    assert np.isinf(np.asarray(flow.discovery_time)[~in_phase1]).all()


@pytest.mark.slow
def test_a_later_qualifying_crossing_counts_and_a_member_keeps_its_direction():
    """Definition 1 allows any crossing of |w| = delta1 after the latest re-draw: a column that
    first crosses upward misaligned, falls back below delta1 and crosses again aligned joins at
    its second crossing; the first one counts as a bad crossing."""
    delta1, alpha = 1e-4, 0.1
    t = jnp.linspace(0.0, 10.0, 201)
    L = math.log(delta1)
    rho = (L + jnp.sin(t * math.pi / 4) * 2.0)[:, None]  # crosses up at 0, down at 4, up at 8
    rho = rho - 0.5  # so that the first crossing is inside the grid (t ~ 0.33)
    drho = (jnp.cos(t * math.pi / 4) * 2.0 * math.pi / 4)[:, None]
    mis = jnp.where(t < 6.0, 0.5, 1e-4)[:, None]  # aligned only after t = 6
    obs = Observation(rho=rho, drho=drho, mis=mis, dmis=0 * mis, ref=jnp.zeros_like(rho, jnp.int32),
                      residual=jnp.zeros((201, 1)), dresidual=jnp.zeros((201, 1)), residual_norm=0 * t,
                      dresidual_norm=0 * t)
    tr = jax.tree_util.tree_map(np.asarray, track(t, obs, jnp.array([-1]), jnp.array([1.0]), 0.0, delta1, alpha, 0.1))
    g = lambda s: L + 2.0 * math.sin(s * math.pi / 4) - 0.5 - L  # noqa: E731
    second_up = 8.0 + 4.0 / math.pi * math.asin(0.25)  # sin = 1/4 on the way up after t = 8
    assert abs(g(second_up)) < 1e-12
    assert tr.member[0] == 0 and tr.join_time[0] == pytest.approx(second_up, rel=1e-6)
    assert tr.bad_crossings == 1
    assert tr.discovery_time[0] == pytest.approx(second_up, rel=1e-6)


@pytest.mark.slow
def test_initialization_above_delta1_joins_when_aligned():
    """gradient_flow from a large initialization (norm above delta1 from the start): the norm
    condition counts as met from t0, so a component is discovered when a column becomes aligned
    with it, and the flow reports finite discovery times before the fit times."""
    target = deflation.Target.geometric(6, 3, 1.5)
    W0 = deflation.sample_sphere(jax.random.PRNGKey(4), 6, 12, 0.05)  # far above delta1 = 1e-3
    res = deflation.gradient_flow(target, W0, jnp.linspace(0.0, 200.0, 401))
    disc, fit = np.asarray(res.discovery_time), np.asarray(res.fit_time)
    assert np.isfinite(disc).all() and np.isfinite(fit).all() and (disc < fit).all()
    # at its discovery time, the joining column is aligned (1 - wbar^2 <= alpha^2) and above delta1
    W = np.asarray(res.W)
    ts = np.asarray(res.ts)
    for i in range(3):
        j = int(np.flatnonzero(np.asarray(res.member) == i)[
            np.argmin(np.asarray(res.join_time)[np.asarray(res.member) == i])])
        k = int(np.searchsorted(ts, disc[i]))  # first save point after the discovery
        w = W[k, :, j]
        assert np.linalg.norm(w) >= 1e-3 and 1 - (w[i] / np.linalg.norm(w)) ** 2 <= 0.1**2 * 1.5
        if k >= 2:
            w0 = W[k - 2, :, j]
            assert 1 - (w0[i] / np.linalg.norm(w0)) ** 2 > 0.1**2  # not aligned two save points before
