"""``gradient_flow`` for the models beyond the paper's case: the symmetric models at order 2 and the
asymmetric CP model at orders 2..5, each against an independent route (a dense ``d^p`` loss
differentiated by ``jax.grad`` and integrated by diffrax's Dopri8 at a tight tolerance; the
closed form of the matrix case's exponential phase; the spectrum of ``W W^T`` / ``W_1 W_2^T``
computed densely by NumPy at the saved points for Definition 1)."""

import subprocess
import sys

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deflation as D
from deflation import models

from dense import dense_rank_one_sum, dense_Tstar, random_unit_columns


def dense_loss_fn(model, target, lam):
    """The loss ``1/2 |T(W) - T*|^2 + lam/2 |W|^2`` from dense ``d^p`` arrays."""
    if model == "asymmetric":
        Tstar = dense_rank_one_sum(target.a, models.asymmetric.target_factors(target))

        def T(W):
            return dense_rank_one_sum(jnp.ones(W[0].shape[1]), W)
    else:
        assert target.order == 2  # T = W W^T for both symmetric models
        Tstar = dense_Tstar(target.a, target.U, 2)

        def T(W):
            return W @ W.T

    def loss(W):
        R = T(W) - Tstar
        return 0.5 * jnp.sum(R * R) + 0.5 * lam * sum(jnp.sum(w * w) for w in jax.tree_util.tree_leaves(W))

    return loss


def reference(model, target, W0, ts, lam):
    """Dopri8 at 1e-12 on ``-jax.grad`` of the dense loss: the states at ``ts`` and their losses."""
    loss = dense_loss_fn(model, target, lam)
    grad = jax.grad(loss)
    term = diffrax.ODETerm(lambda t, W, _: jax.tree_util.tree_map(lambda g: -g, grad(W)))
    sol = diffrax.diffeqsolve(term, diffrax.Dopri8(), float(ts[0]), float(ts[-1]), 1e-3, W0,
                              saveat=diffrax.SaveAt(ts=ts), max_steps=200_000,
                              stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12))
    return sol.ys, jax.vmap(loss)(sol.ys)


def term_discoveries(ts, factors, U, alpha, delta1):
    """Definition 1 on the rank-one terms of a dense trajectory (K, d, m) per mode: the first
    upward crossing of the geometric-mean size ``delta1`` at which the term is aligned
    (``prod_k <wbar^(k), u_i^(k)>^2 >= 1 - alpha^2``), located linearly in the log-size between
    save points; one time per component (inf: none)."""
    factors = [np.asarray(F) for F in factors]
    norms = [np.linalg.norm(F, axis=1) for F in factors]  # (K, m) each
    log_size = sum(np.log(n) for n in norms) / len(factors)
    cos2 = np.prod([np.einsum("kdm,di->kim", F / n[:, None, :], Uk) ** 2 for F, n, Uk in zip(factors, norms, U)],
                   axis=0)  # (K, r, m)
    want = np.full(U[0].shape[1], np.inf)
    g = log_size - np.log(delta1)
    for j in range(g.shape[1]):
        for k in np.flatnonzero((g[:-1, j] < 0) & (g[1:, j] >= 0)):
            x = g[k, j] / (g[k, j] - g[k + 1, j])
            t = ts[k] + x * (ts[k + 1] - ts[k])
            c = (1 - x) * cos2[k, :, j] + x * cos2[k + 1, :, j]
            i = int(np.argmax(c))
            if c[i] >= 1 - alpha**2:
                want[i] = min(want[i], t)
                break
    return want


def spectral_discoveries(ts, T_of, U, V, alpha, delta1):
    """Definition 1 on the spectrum of dense ``d x d`` matrices ``T_of(k)`` (NumPy's SVD, which for
    ``W W^T`` is its eigen-decomposition): the first time a singular value ``s`` reaches
    ``delta1^2`` while its pair is aligned with ``(u_i, v_i)`` (``<x, u_i>^2 <y, v_i>^2 >= 1 -
    alpha^2``), located linearly in ``log s`` between save points; one time per component."""
    want = np.full(U.shape[1], np.inf)
    prev = None
    for k in range(len(ts)):
        X, s, Yt = np.linalg.svd(np.asarray(T_of(k)))
        cos2 = (U.T @ X) ** 2 * (V.T @ Yt.T) ** 2  # (r, d): pair l against component i
        for i in range(U.shape[1]):
            if np.isfinite(want[i]):
                continue
            ok = (s >= delta1**2) & (cos2[i] >= 1 - alpha**2)
            if ok.any():
                j = int(np.argmax(ok))
                if prev is None or prev[j] >= delta1**2:
                    want[i] = ts[k]
                else:  # the crossing, linear in log s
                    g0, g1 = np.log(prev[j] / delta1**2), np.log(s[j] / delta1**2)
                    want[i] = ts[k - 1] + g0 / (g0 - g1) * (ts[k] - ts[k - 1])
        prev = s
    return want


def asymmetric_target(rng, a, d, p):
    return D.Target.asymmetric(a, [random_unit_columns(rng, d, len(a)) for _ in range(p)])


# ---------------------------------------------------------------------------- against dense autodiff


@pytest.mark.parametrize(("model", "lam"), [("normalized", 0.0), ("plain", 0.05), ("asymmetric", 0.0),
                                            ("asymmetric", 0.05)])
def test_order_2_flow_matches_dense_autodiff(model, lam):
    """At order 2 (``W W^T``, ``W_1 W_2^T``): the states and the loss of ``gradient_flow`` against
    Dopri8 at 1e-12 on ``jax.grad`` of the dense loss."""
    rng = np.random.default_rng(7)
    d, m = 4, 3
    a = np.array([0.8, 0.3])
    if model == "asymmetric":
        target = asymmetric_target(rng, a, d, 2)
        W0 = tuple(jnp.asarray(0.3 * rng.standard_normal((d, m))) for _ in range(2))
    else:
        target = D.Target(a, random_unit_columns(rng, d, 2), 2)
        W0 = jnp.asarray(0.3 * rng.standard_normal((d, m)))
    ts = jnp.linspace(0.0, 15.0, 151)
    res = D.gradient_flow(target, W0, ts, model=model, lam=lam, rtol=1e-10, atol=1e-10)
    assert int(res.status) == 0
    ref, ref_loss = reference(model, target, W0, ts, lam)
    for got, want in zip(jax.tree_util.tree_leaves(res.W), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(got, want, atol=1e-7)
    np.testing.assert_allclose(res.loss, ref_loss, rtol=1e-6, atol=1e-12)
    assert float(res.loss[-1]) < 0.5 * float(res.loss[0])  # it learned something: the check can fail


def _asymmetric_flow_against_dense(p):
    """The asymmetric model at order ``p >= 3``: states, loss and Definition 1 on its rank-one
    terms against Dopri8 on the dense loss."""
    rng = np.random.default_rng(11 + p)
    d, m = 3, 4
    target = D.Target.asymmetric(np.array([1.0, 0.6]), [np.linalg.qr(rng.standard_normal((d, 2)))[0]
                                                        for _ in range(p)])
    # a start small enough that the terms grow one by one, large enough for an escape time
    # ~ delta0^-(p-2) within the horizon
    delta0 = {3: 0.05, 4: 0.3, 5: 0.4}[p]
    W0 = tuple(jnp.asarray(delta0 * random_unit_columns(rng, d, m)) for _ in range(p))
    ts = jnp.linspace(0.0, 100.0, 2001)
    delta1, alpha = 0.9, 0.5
    res = D.gradient_flow(target, W0, ts, model="asymmetric", rtol=1e-10, atol=1e-10, delta1=delta1, alpha=alpha)
    assert int(res.status) == 0
    assert len(res.W) == p and len(res.log_norm) == p
    ref, ref_loss = reference("asymmetric", target, W0, ts, 0.0)
    for got, want in zip(res.W, ref):
        np.testing.assert_allclose(got, want, atol=1e-7)
    np.testing.assert_allclose(res.loss, ref_loss, rtol=1e-6, atol=1e-12)
    want = term_discoveries(np.asarray(ts), ref, [np.asarray(F) for F in target.factors], alpha, delta1)
    assert np.isfinite(want).any()
    assert np.array_equal(np.isfinite(res.discovery_time), np.isfinite(want))
    found = np.isfinite(want)
    np.testing.assert_allclose(res.discovery_time[found], want[found], atol=2 * float(ts[1] - ts[0]))


def test_asymmetric_flow_at_order_3_matches_dense_autodiff():
    _asymmetric_flow_against_dense(3)


@pytest.mark.slow
@pytest.mark.parametrize("p", (4, 5))
def test_asymmetric_flow_at_orders_4_and_5_matches_dense_autodiff(p):
    _asymmetric_flow_against_dense(p)


# ---------------------------------------------------------------------------- spectral Definition 1


def test_order_2_symmetric_discoveries_are_the_spectrum_and_the_closed_form():
    """Normalized model at order 2 from ``delta0 = 1e-10``: the discovery times are the times at
    which an eigenvalue of ``W W^T`` (NumPy, at the saved points) reaches ``delta1^2`` with its
    eigenvector aligned; the first is the exponential phase's closed form ``log(delta1 /
    |u_1^T W0|) / (2 a_1)`` (``u_1^T W`` grows like ``e^{2 a_1 t}`` while ``W`` is small), and
    both are ``log(delta1 / delta0) / (2 a)`` to leading order."""
    d, m, delta0, delta1, alpha = 6, 6, 1e-10, 1e-3, 0.1
    a = np.array([0.6, 0.25])
    target = D.Target.basis(a, d, order=2)
    W0 = jax.vmap(lambda k: D.sample_sphere(k, d, m, delta0))(jax.random.split(jax.random.PRNGKey(5), 3))
    ts = jnp.linspace(0.0, 60.0, 1201)
    res = D.gradient_flow(target, W0, ts, rtol=1e-10, atol=1e-10, delta1=delta1, alpha=alpha)
    assert (np.asarray(res.status) == 0).all()
    U = np.asarray(target.U)
    for b in range(W0.shape[0]):
        W = np.asarray(res.W[b])
        want = spectral_discoveries(np.asarray(ts), lambda k: W[k] @ W[k].T, U, U, alpha, delta1)
        assert np.isfinite(want).all()
        np.testing.assert_allclose(res.discovery_time[b], want, atol=0.01)
        closed = np.log(delta1 / np.linalg.norm(U[:, 0] @ np.asarray(W0[b]))) / (2 * a[0])
        np.testing.assert_allclose(res.discovery_time[b, 0], closed, rtol=1e-4)
    np.testing.assert_allclose(res.discovery_time, np.log(delta1 / delta0) / (2 * a) * np.ones((3, 1)), rtol=0.2)
    assert (np.asarray(res.member)[:, :2] == [0, 1]).all()  # the two largest eigenpairs, in order
    # the plain model has the same T = W W^T at order 2: the same trajectory
    plain = D.gradient_flow(target, W0, ts[:101], rtol=1e-10, atol=1e-10, model="plain")
    np.testing.assert_allclose(plain.W, res.W[:, :101], rtol=1e-7, atol=1e-20)  # another step sequence


def test_order_2_asymmetric_discoveries_are_the_singular_pairs_and_the_closed_form():
    """Asymmetric model at order 2 (``W_1 W_2^T``) from ``delta0 = 1e-10`` per factor: the
    discovery times are where a singular value of ``W_1 W_2^T`` (NumPy) reaches ``delta1^2`` with
    its pair aligned, the first at ``log(2 delta1 / |u^T W_1(0) + v^T W_2(0)|) / a_1`` (the rows
    ``u^T W_1``, ``v^T W_2`` obey ``r_1' = a r_2``, ``r_2' = a r_1``: their sum grows like ``e^{a t}``,
    the singular value like ``|r_1 + r_2|^2 / 4``)."""
    rng = np.random.default_rng(3)
    d, m, delta0, delta1, alpha = 5, 4, 1e-10, 1e-3, 0.1
    a = np.array([0.6, 0.25])
    factors = [np.linalg.qr(rng.standard_normal((d, 2)))[0] for _ in range(2)]
    target = D.Target.asymmetric(a, factors)
    keys = jax.random.split(jax.random.PRNGKey(8), 2)
    W0 = tuple(jnp.stack([models.Asymmetric().init(k, d, m, delta0, 2)[mode] for k in keys]) for mode in range(2))
    ts = jnp.linspace(0.0, 120.0, 1201)
    res = D.gradient_flow(target, W0, ts, model="asymmetric", rtol=1e-10, atol=1e-10, delta1=delta1, alpha=alpha)
    assert (np.asarray(res.status) == 0).all()
    U, V = factors
    for b in range(2):
        W1, W2 = np.asarray(res.W[0][b]), np.asarray(res.W[1][b])
        want = spectral_discoveries(np.asarray(ts), lambda k: W1[k] @ W2[k].T, U, V, alpha, delta1)
        assert np.isfinite(want).all()
        np.testing.assert_allclose(res.discovery_time[b], want, atol=0.02)
        c = U[:, 0] @ np.asarray(W0[0][b]) + V[:, 0] @ np.asarray(W0[1][b])
        closed = np.log(2 * delta1 / np.linalg.norm(c)) / a[0]
        np.testing.assert_allclose(res.discovery_time[b, 0], closed, rtol=1e-4)
    np.testing.assert_allclose(res.discovery_time, np.log(delta1 / delta0) / a * np.ones((2, 1)), rtol=0.2)
    # and the loss reaches the deflation levels the model reads from its target
    levels = models.Asymmetric().deflation_levels(target)
    np.testing.assert_allclose(levels[0], 0.5 * np.sum(np.asarray(dense_rank_one_sum(a, factors)) ** 2), rtol=1e-12)
    plateau = np.asarray(res.loss)[:, np.searchsorted(np.asarray(ts), 0.5 * (res.fit_time[0, 0] +
                                                                              res.discovery_time[0, 1]))]
    np.testing.assert_allclose(plateau, levels[1], rtol=1e-2)


def test_asymmetric_deflation_levels_are_the_dense_residuals():
    rng = np.random.default_rng(4)
    a = np.array([0.5, 0.9, 0.2])
    target = asymmetric_target(rng, a, 3, 3)
    factors = [np.asarray(F) for F in target.factors]
    levels = models.Asymmetric().deflation_levels(target)
    order = np.argsort(-a)
    want = []
    for k in range(4):
        keep = order[k:]
        want.append(0.5 * np.sum(np.asarray(dense_rank_one_sum(a[keep], [F[:, keep] for F in factors])) ** 2))
    np.testing.assert_allclose(levels, want, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------- bad input


def test_asymmetric_initial_state_is_checked_before_tracing():
    target = D.Target.asymmetric([0.6, 0.4], [np.eye(3)[:, :2]] * 3)
    ts = [1.0]
    with pytest.raises(ValueError, match=r"W0 must be a tuple of 3 factor matrices .* got a single array of shape "
                                         r"\(3, 2\)"):
        D.gradient_flow(target, jnp.ones((3, 2)), ts, model="asymmetric")
    with pytest.raises(ValueError, match=r"W0 must be a tuple of 3 factor matrices .* got a tuple of length 2"):
        D.gradient_flow(target, (jnp.ones((3, 2)), jnp.ones((3, 2))), ts, model="asymmetric")
    with pytest.raises(ValueError, match="W0's factor matrices must have one number of columns m"):
        D.gradient_flow(target, (jnp.ones((3, 2)), jnp.ones((3, 2)), jnp.ones((3, 3))), ts, model="asymmetric")
    with pytest.raises(ValueError, match="W0's factor matrices must have one batch shape"):
        D.gradient_flow(target, (jnp.ones((3, 2)), jnp.ones((3, 2)), jnp.ones((2, 3, 2))), ts, model="asymmetric")
    with pytest.raises(ValueError, match=r"W0\[1\] has 4 rows"):
        D.gradient_flow(target, (jnp.ones((3, 2)), jnp.ones((4, 2)), jnp.ones((3, 2))), ts, model="asymmetric")
    with pytest.raises(ValueError, match=r"W0\[2\] must have non-zero columns"):
        D.gradient_flow(target, (jnp.ones((3, 2)), jnp.ones((3, 2)), jnp.zeros((3, 2))), ts, model="asymmetric")
    with pytest.raises(TypeError, match="W0 must be a tuple of 3 factor matrices"):
        D.gradient_flow(target, "W", ts, model="asymmetric")


# ---------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("model", ["normalized", "asymmetric"])
def test_figure1_command_at_order_2(model, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "deflation.cli", "figure1", "--model", model, "--order", "2", "--seeds", "2", "--d", "4",
         "--r", "2", "--m", "4", "--init", "1e-8", "--horizon", "120", "--points", "121", "--rtol", "1e-8",
         "--atol", "1e-8", "--out", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    slot = "a singular pair of W_1 W_2^T" if model == "asymmetric" else "an eigenpair of W W^T"
    assert f"discovered: {slot} reaches size delta1=0.001" in out.stdout
    assert "fitted in order u_1, ..., u_2: 2/2 seeds" in out.stdout
    data = np.load(tmp_path / "figure1.npz")
    assert np.isfinite(data["discovery_time"]).all() and data["loss"].shape == (2, 121)
    assert (tmp_path / "figure1.png").stat().st_size > 10_000
