"""Algorithm 2 (modified gradient flow), Theorem 1 parameters, Definitions 1-2, Proposition 1 monitors.

Sizes are small so that the default suite stays fast; the three compiled programs (d = 8
unbatched, d = 6 unbatched, d = 6 batch of 8) are each built once (module fixtures).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deflation
from deflation import algorithm as alg
from deflation.dense import dense_model
from deflation.init import unit_columns
from deflation.partition import partition, partition_thresholds


def spread_target(d: int) -> deflation.Target:
    """Orthogonal target (U = I) with weights spread over a factor of ten, summing to 1."""
    a = np.geomspace(1.0, 0.1, d)
    return deflation.Target.basis(a / a.sum(), d)


EXPLICIT = dict(m=128, delta0=1e-10, delta1=1e-5, lam=2e-3, gamma=0.5, eps=1e-2, alpha=0.1)
T1_EPOCHS = 2


@pytest.fixture(scope="module")
def explicit_run():
    target = spread_target(8)
    res = deflation.modified_gradient_flow(target, jax.random.key(0), **EXPLICIT, max_epochs=6, event_points=33)
    return target, jax.tree_util.tree_map(np.asarray, res)


@pytest.fixture(scope="module")
def theorem_setup():
    target = spread_target(6)
    params = deflation.theorem1_parameters(d=6, eps=1e-2)
    kwargs = dict(params.as_kwargs(), max_epochs=T1_EPOCHS, event_points=33, precise_loss=False)
    return target, params, kwargs


# ---------------------------------------------------------------------------- Theorem 1 parameters


@pytest.mark.smoke
def test_theorem1_parameters_follow_the_scalings():
    d, eps = 6, 1e-2
    p = deflation.theorem1_parameters(d=d, eps=eps)
    lam = min(math.log(d) / d, eps / math.sqrt(d))
    alpha = min(lam / d**1.5, lam**2, eps**2 / d**4)
    m = 2 * d * d
    delta1 = alpha**1.5 / math.sqrt(m)
    delta0 = delta1 * alpha / math.sqrt(math.log(d))
    assert p.m == m and p.gamma == 0.5
    for got, want in [(p.lam, lam), (p.alpha, alpha), (p.delta1, delta1), (p.delta0, delta0)]:
        assert got == pytest.approx(want, rel=1e-12)
    assert p.delta0 < 1e-18  # the "astronomically small" regime
    # constants scale their terms; a given lam propagates to alpha, delta1, delta0
    q = deflation.theorem1_parameters(d=d, eps=eps, c_delta0=3.0, m=10)
    assert q.delta0 == pytest.approx(3.0 * q.delta1 * q.alpha / math.sqrt(math.log(d)), rel=1e-12)
    assert q.delta1 == pytest.approx(alpha**1.5 / math.sqrt(10), rel=1e-12)
    r = deflation.theorem1_parameters(d=d, eps=eps, lam=1e-3)
    assert r.lam == 1e-3 and r.alpha == pytest.approx(min(1e-3 / d**1.5, 1e-6, eps**2 / d**4), rel=1e-12)
    # d = 10: delta0 far below 1e-30 once eps is small
    assert deflation.theorem1_parameters(d=10, eps=1e-4).delta0 < 1e-30


@pytest.mark.parametrize("kw, match", [
    (dict(d=1, eps=1e-2), "d must be"),
    (dict(d=6, eps=0.0), "eps"),
    (dict(d=6, eps=1e-2, gamma=1.0), "gamma"),
    (dict(d=6, eps=1e-2, c_lam_eps=-1.0), "c_lam_eps"),
    (dict(d=6, eps=1e-300), "underflows"),
])
def test_theorem1_parameters_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        deflation.theorem1_parameters(**kw)


# ---------------------------------------------------------------------------- bad input, before tracing


@pytest.mark.parametrize("change, match", [
    (dict(gamma=0.0), "gamma"), (dict(gamma=1.0), "gamma"), (dict(gamma=-0.5), "gamma"),
    (dict(delta1=1e-10), "delta1 must be > delta0"), (dict(delta1=1e-12), "delta1 must be > delta0"),
    (dict(lam=0.0), "lam"), (dict(lam=-1e-3), "lam"),
    (dict(eps=0.0), "eps"), (dict(eps=-1.0), "eps"),
    (dict(m=7), "m must be >= r"),
    (dict(max_epochs=0), "max_epochs"),
    (dict(alpha=1.5), "alpha"),
    (dict(delta0=float("nan")), "delta0"),
    (dict(seeds=0), "seeds"),
    (dict(lam=1e6), "lam \\* delta1"),
    (dict(d=10), "d must be the target's dimension target.d = 8"),
])
def test_bad_input_raises_before_tracing(monkeypatch, change, match):
    def must_not_run(*args, **kwargs):
        raise AssertionError("traced before validating")

    monkeypatch.setattr(alg, "_run", must_not_run)
    kwargs = dict(EXPLICIT, **change)
    with pytest.raises(ValueError, match=match):
        deflation.modified_gradient_flow(spread_target(8), jax.random.key(0), **kwargs)


def test_bad_types(monkeypatch):
    monkeypatch.setattr(alg, "_run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("traced")))
    with pytest.raises(TypeError, match="key"):
        deflation.modified_gradient_flow(spread_target(8), 0, **EXPLICIT)
    with pytest.raises(TypeError, match="target"):
        deflation.modified_gradient_flow(np.eye(8), jax.random.key(0), **EXPLICIT)
    with pytest.raises(TypeError, match="max_epochs"):
        deflation.modified_gradient_flow(spread_target(8), jax.random.key(0), **EXPLICIT, max_epochs=2.5)


def test_theorem1_parameters_for_another_dimension_are_refused(monkeypatch):
    monkeypatch.setattr(alg, "_run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("traced")))
    p = deflation.theorem1_parameters(d=8, eps=1e-2)
    with pytest.raises(ValueError, match=r"target.d = 10 .*got d = 8"):
        deflation.modified_gradient_flow(deflation.Target.geometric(d=10, r=8), jax.random.key(0), **p.as_kwargs())


# ---------------------------------------------------------------------------- re-initialization


@pytest.mark.slow
def test_reinitialize_touches_only_small_columns_and_draws_on_the_delta0_sphere():
    d, m = 5, 400
    delta0, delta1 = 1e-40, 1e-20
    key = jax.random.key(3)
    ubar = unit_columns(jax.random.key(1), d, m)
    rho = jnp.linspace(math.log(1e-30), math.log(1e-10), m)  # about half below delta1
    member = jnp.where(jnp.arange(m) % 3 == 0, jnp.arange(m) % d, -1).astype(jnp.int32)
    rho2, ubar2, member2, redrawn = jax.jit(alg.reinitialize)(key, rho, ubar, member, delta0, delta1)
    rho, ubar, rho2, ubar2, member2, redrawn = map(np.asarray, (rho, ubar, rho2, ubar2, member2, redrawn))
    below = np.exp(rho) < delta1
    assert 0 < below.sum() < m
    np.testing.assert_array_equal(redrawn, below)
    # untouched columns: bit for bit
    np.testing.assert_array_equal(rho2[~below], rho[~below])
    np.testing.assert_array_equal(ubar2[:, ~below], ubar[:, ~below])
    np.testing.assert_array_equal(member2[~below], np.asarray(member)[~below])
    # re-drawn: norm exactly delta0 (in log-norm coordinates), unit directions, out of every S_i
    np.testing.assert_allclose(rho2[below], math.log(delta0), rtol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(ubar2[:, below], axis=0), 1.0, rtol=1e-13)
    assert (member2[below] == -1).all()
    W2 = np.asarray(deflation.from_lognorm(jnp.asarray(rho2), jnp.asarray(ubar2)))
    np.testing.assert_allclose(np.linalg.norm(W2[:, below], axis=0), delta0, rtol=1e-12)
    # fresh and uniform: new directions are unrelated to the old, second moment I/d
    assert np.abs(np.sum(ubar2[:, below] * ubar[:, below], axis=0)).max() < 1.0 - 1e-6
    many = np.asarray(jax.jit(alg.reinitialize)(key, jnp.full(20000, -100.0), unit_columns(key, 3, 20000),
                                                jnp.full(20000, -1, jnp.int32), delta0, delta1)[1])
    np.testing.assert_allclose(many @ many.T / 20000, np.eye(3) / 3, atol=0.02)
    np.testing.assert_allclose(many.mean(axis=1), 0.0, atol=0.02)


# ---------------------------------------------------------------------------- Definition 2


def _partition_reference(C2, eligible, Gamma, c_rho):
    """Definition 2 by direct loops over columns and directions (NumPy); ``Gamma -+ rho`` written
    as ``Gamma (1 -+ c_rho)`` so that ``Gamma = inf`` (a zero weight) needs no special case."""
    lo, hi = Gamma * (1 - c_rho), Gamma * (1 + c_rho)
    r, m = C2.shape
    good = np.zeros((r, m), bool)
    pot = np.zeros((r, m), bool)
    bad = np.zeros(m, bool)
    for k in range(m):
        if not eligible[k]:
            continue
        for i in range(r):
            pot[i, k] = C2[i, k] >= lo[i]
            good[i, k] = C2[i, k] >= hi[i] and all(
                C2[j, k] <= lo[j] for j in range(r) if j != i)
        bad[k] = any(pot[i, k] and pot[j, k] for i in range(r) for j in range(r) if i != j)
    return good, pot, bad


def test_partition_matches_definition_2():
    d, m = 6, 300
    a = np.array([0.4, 0.3, 0.2, 0.1, 0.0])  # a zero weight: Gamma = inf, never potential
    target = deflation.Target.basis(a, d)
    ubar = unit_columns(jax.random.key(5), d, m)
    eligible = np.arange(m) % 4 != 0
    discovered = np.array([False, True, False, False, False])
    lam, t1p, c_rho = 1e-2, 6.0, 0.1
    Gamma, rho = partition_thresholds(jnp.asarray(a), lam, t1p, jnp.asarray(discovered), c_rho)
    want_Gamma = np.where(discovered, 1 / (8 * lam * t1p),
                          np.divide(1.0, 8 * a * t1p, where=a > 0, out=np.full(5, np.inf)))
    np.testing.assert_allclose(np.asarray(Gamma), want_Gamma, rtol=1e-14)
    part = partition(ubar, jnp.asarray(eligible), target, Gamma, rho)
    C2 = (np.asarray(ubar)[: len(a)]) ** 2  # U = I[:, :r]
    good, pot, bad = _partition_reference(C2, eligible, np.asarray(Gamma), c_rho)
    np.testing.assert_array_equal(np.asarray(part.good), good)
    np.testing.assert_array_equal(np.asarray(part.potential), pot)
    np.testing.assert_array_equal(np.asarray(part.bad), bad)
    assert good.any() and pot.any() and bad.any()  # the test exercises every set
    assert not pot[4].any()


# ---------------------------------------------------------------------------- the algorithm


@pytest.mark.slow
def test_explicit_run_converges_and_follows_the_deflation_order(explicit_run):
    target, res = explicit_run
    rec, _a, r = res.record, np.asarray(target.a), target.r
    lam, delta1, alpha, eps, m = (EXPLICIT[k] for k in ("lam", "delta1", "alpha", "eps", "m"))
    assert res.status == 0 and bool(res.converged)
    assert res.residual_norm <= eps
    E = int(res.epochs)
    assert 1 <= E < 6 and rec.active[:E].all() and not rec.active[E:].any()
    # independent route: the dense tensor of the final W
    dense = np.asarray(dense_model(res.W, 4)) - np.asarray(target.dense())
    assert np.linalg.norm(dense) == pytest.approx(float(res.residual_norm), rel=1e-6)
    # regularized equilibrium: every fitted direction has residual (T* - T)(e_i^4) = lam / 2
    np.testing.assert_allclose(rec.trace_residual[E - 1, -1], lam / 2, rtol=1e-3)
    # discovered in non-increasing order of a_i (ties within an epoch allowed)
    de = res.discovery_epoch
    assert (de >= 0).all() and (np.diff(de) >= 0).all()
    # Proposition 1 (c): once fitted, fitted at every later time (checked on the save grid)
    for i in range(r):
        s_fit = int(res.fit_epoch[i])
        assert s_fit >= 0
        assert rec.fitted[s_fit:E, i].all()
        assert (rec.gap_max[s_fit + 1:E, i] <= 2 * lam).all()
    # Proposition 1 (c) lower bound and (a)
    act = rec.active
    s_idx = np.arange(rec.active.shape[0])[:, None]
    assert (rec.gap_min[act] >= lam / 6 - s_idx[act] * m * delta1**2).all()
    assert (rec.misalignment_max[act] <= alpha).all()
    assert (rec.misalignment_avg_max[act] <= alpha**2 + 4 * s_idx[act] * m * delta1**2).all()
    # Proposition 1 (d): nothing outside every S_i exceeds delta1, on the grid and at the end
    assert (rec.log_norm_outside_max[act] <= math.log(delta1)).all()
    outside = res.member < 0
    assert (np.linalg.norm(res.W[:, outside], axis=0) <= delta1).all()
    # S_i membership agrees with the final W: members have norm >= delta1 and correlation >= 1 - alpha
    for k in np.flatnonzero(~outside):
        w = res.W[:, k]
        assert np.linalg.norm(w) >= delta1 and (w[res.member[k]] / np.linalg.norm(w)) ** 2 >= 1 - alpha
    ahat = np.array([np.sum(res.W[:, res.member == i] ** 2) for i in range(r)])
    np.testing.assert_allclose(rec.ahat[E - 1], ahat, rtol=1e-12)
    # epochs after convergence did no work and changed nothing
    assert (rec.num_steps[E:] == 0).all() and (rec.t1[E:] == 0).all() and (rec.t2[E:] == 0).all()
    assert (rec.residual_norm_phase2[E:] == res.residual_norm).all() and (rec.beta[E:] == rec.beta[E]).all()
    assert (rec.t_start[E:] == rec.t_start[E - 1] + rec.t1[E - 1] + rec.t2[E - 1]).all()
    # beta shrinks by (1 - gamma) per epoch, the phase lengths follow the formulas
    np.testing.assert_allclose(rec.beta[1:E + 1] / rec.beta[:E], 0.5, rtol=1e-14)
    np.testing.assert_allclose(rec.t1[:E], 8 / (rec.beta[:E] * math.log(8)), rtol=1e-14)
    np.testing.assert_allclose(rec.t2[:E], (math.log(1 / delta1) + math.log(1 / lam)) / rec.beta[:E], rtol=1e-14)
    assert rec.beta[0] == pytest.approx(float(target.norm()), rel=1e-12)  # |T(0,0) - T*| with T(0,0) ~ 1e-20


@pytest.mark.slow
def test_theorem1_run_completes_without_nan(theorem_setup):
    target, params, kwargs = theorem_setup
    res = deflation.modified_gradient_flow(target, jax.random.key(11), **kwargs)
    res = jax.tree_util.tree_map(np.asarray, res)
    assert res.status == 0
    for name, x in vars(res.record).items():
        assert not np.isnan(np.asarray(x, dtype=float)).any(), name
    for x in (res.log_norm, res.ubar, res.residual_norm):
        assert np.isfinite(x).all()
    # started at delta0 ~ 1e-19: Phase 1 of epoch 0 leaves T at that scale, the re-draw then
    # takes the columns still below delta1 ~ 1e-12, and small columns stay exactly represented
    assert math.log(params.delta0) < -40
    rec = res.record
    assert rec.active[0] and rec.num_redrawn[0] > 0
    assert rec.residual_norm_phase1[0] == pytest.approx(float(target.norm()), rel=1e-9)
    small = res.log_norm < math.log(params.delta1)
    assert small.any()
    np.testing.assert_allclose(np.linalg.norm(res.W[:, small], axis=0), np.exp(res.log_norm[small]), rtol=1e-12)


@pytest.mark.slow
def test_same_key_same_bits_and_batch_independence(theorem_setup):
    target, params, kwargs = theorem_setup
    base = jax.random.key(2021)
    batch = deflation.modified_gradient_flow(target, base, seeds=8, **kwargs)
    assert batch.batched and batch.residual_norm.shape == (8,)
    for i in (5,):
        alone = deflation.modified_gradient_flow(target, jax.random.fold_in(base, i), **kwargs)
        again = deflation.modified_gradient_flow(target, jax.random.fold_in(base, i), **kwargs)
        leaves = lambda r: jax.tree_util.tree_leaves((r.record, r.log_norm, r.ubar, r.member, r.residual_norm,  # noqa: E731
                                                       r.discovery_epoch, r.converged))
        for x, y in zip(leaves(alone), leaves(again)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # same key: same bits
        mine = jax.tree_util.tree_map(lambda x: x[i], (batch.record, batch.log_norm, batch.ubar, batch.member,
                                                       batch.residual_norm, batch.discovery_epoch, batch.converged))
        for x, y in zip(leaves(alone), jax.tree_util.tree_leaves(mine)):
            x, y = np.asarray(x), np.asarray(y)
            if x.dtype.kind == "f":
                np.testing.assert_allclose(x, y, rtol=1e-12, atol=0)
            else:
                np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------- command line


def test_cli_bad_input_is_one_line_and_exit_code_2(capsys):
    from deflation.cli import main

    assert main(["algorithm2", "--gamma", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "gamma" in err and "(0.0, 1.0)" in err and "Traceback" not in err
    assert main(["algorithm2", "--a", "0.5,0.5", "--ratio", "2"]) == 2


@pytest.mark.slow
def test_cli_writes_record_and_png(tmp_path, capsys):
    from deflation.cli import main

    out = tmp_path / "run"
    assert main(["algorithm2", "--d", "4", "--ratio", "2", "--eps", "3e-2", "--max-epochs", "4", "--seeds", "3",
                 "--chunk", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "per-epoch table" in text and "seed 2:" in text
    data = np.load(out / "algorithm2.npz")
    assert data["record_beta"].shape == (3, 4) and data["W"].shape == (3, 4, 32)
    assert (out / "algorithm2.png").stat().st_size > 10_000
    # seed 1 of the chunked batch is seed 1 alone
    target = deflation.Target.geometric(4, 4, 2.0)
    params = deflation.theorem1_parameters(4, 3e-2)
    alone = deflation.modified_gradient_flow(target, jax.random.fold_in(jax.random.key(0), 1), **params.as_kwargs(),
                                             max_epochs=4)
    np.testing.assert_allclose(data["log_norm"][1], np.asarray(alone.log_norm), rtol=1e-12)


@pytest.mark.slow
def test_plot_algorithm2_colours_markers_labels_and_legends(explicit_run):
    from matplotlib.colors import to_rgb

    from deflation.plots import DISCOVERY_MARKER, FIT_MARKER, plot_algorithm2

    target, res = explicit_run
    rec, r, E = res.record, target.r, int(res.epochs)
    fig = plot_algorithm2(res, target)
    top, left, right = fig.axes[:3]
    # one colour per component, far enough apart to be told apart, and none of them grey
    colours = {ln.get_label(): to_rgb(ln.get_color()) for ln in top.get_lines() if ln.get_label().startswith("$u_")}
    assert len(colours) == r
    rgb = np.array(list(colours.values()))
    dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + 9 * np.eye(r)
    assert dist.min() > 0.25
    assert (rgb.max(axis=1) - rgb.min(axis=1)).min() > 0.1  # saturated: not a grey of the reference lines
    # a marker per discovery and per fit, in the top and the bottom-right panel
    n_disc, n_fit = np.isfinite(rec.discovery_time[:E]).sum(), np.isfinite(rec.fit_time[:E]).sum()
    assert n_disc == r and n_fit >= r
    for ax in (top, right):
        marks = [ln for ln in ax.get_lines() if ln.get_linestyle() in ("None", "none", "")]
        assert sum(len(ln.get_xdata()) for ln in marks if ln.get_marker() == DISCOVERY_MARKER) == n_disc
        assert sum(len(ln.get_xdata()) for ln in marks if ln.get_marker() == FIT_MARKER) == n_fit
    # every panel says what its axes are, and no legend covers a panel's data area
    fig.draw_without_rendering()
    for ax in (top, left, right):
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "discovery" in " ".join(texts) or ax is left
        for other in (top, left, right):
            assert not ax.get_legend().get_window_extent().overlaps(other.get_window_extent()), ax.get_title()
