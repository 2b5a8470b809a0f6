"""The batched stepping loop against diffrax's own ``diffeqsolve``, seed by seed."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deflation as D
from deflation import stepping
from deflation.dynamics import lognorm_vector_field, to_lognorm


def _problem(B=4, d=6, m=8):
    tg = D.Target.geometric(d, 3, ratio=1.5)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(1), jnp.arange(B), d, m, 1e-6)
    term = diffrax.ODETerm(lambda t, y, args: lognorm_vector_field(y, tg, 0.0))
    return tg, term, jax.vmap(to_lognorm)(W0)


def _slow(*values):
    """``pytest.param`` of each value, marked slow: the same unrolled-tableau code as the default
    suite's cases (Tsit5, Heun, ...), each one more compilation."""
    return [pytest.param(v, marks=pytest.mark.slow) for v in values]


@pytest.mark.parametrize("solver", [diffrax.Tsit5(), diffrax.Heun(), *_slow(diffrax.Dopri5(), diffrax.Bosh3())],
                         ids=lambda s: type(s).__name__)
@pytest.mark.slow
def test_erk_step_equals_diffrax_step(solver):
    """The unrolled explicit Runge-Kutta step: same y1, error estimate and dense output as diffrax's."""
    tg, term, y = _problem(1)
    y = jax.tree_util.tree_map(lambda x: x[0], y)
    t0, t1 = 0.3, 0.8
    state = solver.init(term, t0, t1, y, None)
    y1, err, dense, _, _ = solver.step(term, t0, t1, y, None, state, False)
    tab = stepping._explicit_tableau(solver)
    f0 = term.vf(t0, y, None)
    z1, zerr, fs, f1 = stepping.erk_step(tab, lambda t, s: term.vf(t, s, None), t0, t1, y, f0)
    zdense = stepping.erk_dense(t1 - t0, y, z1, fs)
    for a, b in zip(jax.tree_util.tree_leaves((y1, err)), jax.tree_util.tree_leaves((z1, zerr))):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-15)
    for t in (0.3, 0.41, 0.77, 0.8):
        a = solver.interpolation_cls(t0=t0, t1=t1, **dense).evaluate(t)
        b = solver.interpolation_cls(t0=t0, t1=t1, **zdense).evaluate(t)
        for x, z in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(np.asarray(z), np.asarray(x), rtol=1e-12, atol=1e-15)
    if tab.fsal:  # f at the step end is the last stage
        for x, z in zip(jax.tree_util.tree_leaves(term.vf(t1, z1, None)), jax.tree_util.tree_leaves(f1)):
            np.testing.assert_allclose(np.asarray(z), np.asarray(x), rtol=1e-12, atol=1e-15)


class HalfErrorTsit5(diffrax.Tsit5):
    """A Runge-Kutta subclass that overrides ``step`` (here: it halves the error estimate, so it
    takes other steps than Tsit5): the loop must run its ``step``, not the unrolled tableau."""

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, err, dense, state, result = super().step(terms, t0, t1, y0, args, solver_state, made_jump)
        return y1, jax.tree_util.tree_map(lambda e: 0.5 * e, err), dense, state, result


def _pid(tol=1e-7):
    return diffrax.PIDController(rtol=tol, atol=tol)


CASES = {
    "Euler": (diffrax.Euler(), diffrax.ConstantStepSize()),
    "Heun": (diffrax.Heun(), _pid()),
    "Midpoint": (diffrax.Midpoint(), _pid()),
    "Ralston": (diffrax.Ralston(), _pid()),
    "Bosh3": (diffrax.Bosh3(), _pid()),
    "Tsit5": (diffrax.Tsit5(), _pid()),
    "Dopri5": (diffrax.Dopri5(), _pid()),
    "Dopri8": (diffrax.Dopri8(), _pid()),
    # step_ts are stepped to; at jump_ts the field is re-evaluated after the jump (made_jump)
    "Tsit5-clip": (diffrax.Tsit5(), diffrax.ClipStepSizeController(_pid(), step_ts=[0.5, 2.25], jump_ts=[1.3, 6.1])),
    "Heun-clip": (diffrax.Heun(), diffrax.ClipStepSizeController(_pid(), jump_ts=[1.3])),
    "overridden-step": (HalfErrorTsit5(), _pid()),
}
#: under -m slow: the default suite keeps Euler (constant steps), Heun (second order), Tsit5 (the
#: default, FSAL), Tsit5 with step and jump times, and an overridden step
SLOW_CASES = ("Midpoint", "Ralston", "Bosh3", "Dopri5", "Dopri8", "Heun-clip")


@pytest.mark.parametrize("name", [*(n for n in CASES if n not in SLOW_CASES), *_slow(*SLOW_CASES)])
@pytest.mark.slow
def test_batch_loop_equals_diffeqsolve_per_seed(name):
    """Every seed: same accepted/rejected steps and the same saved states as diffrax.diffeqsolve,
    for every solver and controller the loop takes. ``dt0`` is given: with ``dt0=None``
    diffeqsolve's initial-step heuristic runs on its wrapped term."""
    solver, controller = CASES[name]
    tg, term, y0 = _problem(3)
    ts = jnp.array([0.0, 0.7, 3.0, 10.0])
    assert stepping.supports(solver, controller)
    sol = stepping.solve_batch(term, solver, controller, jnp.asarray(0.0), ts[-1], y0, dt0=0.02,
                               max_steps=10_000, save_ts=ts)
    assert (np.asarray(sol.result) == stepping.OK).all()
    for b in range(3):
        yb = jax.tree_util.tree_map(lambda x: x[b], y0)
        ref = diffrax.diffeqsolve(term, solver, 0.0, 10.0, 0.02, yb, saveat=diffrax.SaveAt(ts=ts),
                                  stepsize_controller=controller, max_steps=10_000)
        assert int(sol.num_accepted_steps[b]) == int(ref.stats["num_accepted_steps"])
        assert int(sol.num_rejected_steps[b]) == int(ref.stats["num_rejected_steps"])
        for got, want in zip(jax.tree_util.tree_leaves(sol.ys), jax.tree_util.tree_leaves(ref.ys)):
            np.testing.assert_allclose(np.asarray(got[b]), np.asarray(want), rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_overridden_step_and_jumps_change_the_steps():
    """The two special cases above are not vacuous: the overriding subclass and the jump times
    each change the step sequence against plain Tsit5."""
    tg, term, y0 = _problem(1)
    counts = {}
    for name in ("Tsit5", "Tsit5-clip", "overridden-step"):
        solver, controller = CASES[name]
        sol = stepping.solve_batch(term, solver, controller, jnp.asarray(0.0), 10.0, y0, dt0=0.02, max_steps=10_000,
                                   save_ts=jnp.array([10.0]))
        counts[name] = (int(sol.num_accepted_steps[0]), int(sol.num_rejected_steps[0]))
    assert counts["Tsit5-clip"] != counts["Tsit5"] and counts["overridden-step"] != counts["Tsit5"]


def test_unsupported_solvers_are_refused_with_a_reason():
    """Implicit solvers need diffrax's own loop: solve_batch refuses them by name, and
    deflation.solve then runs vmap(diffeqsolve) (tests/test_flow.py::test_implicit_solver)."""
    tg, term, y0 = _problem(1)
    reason = stepping.unsupported(diffrax.Kvaerno5())
    assert reason is not None and "Kvaerno5" in reason
    with pytest.raises(ValueError, match="Kvaerno5"):
        stepping.solve_batch(term, diffrax.Kvaerno5(), _pid(), jnp.asarray(0.0), 1.0, y0, dt0=None, max_steps=10,
                             save_ts=jnp.array([1.0]))
    assert stepping._explicit_tableau(HalfErrorTsit5()) is None  # run through its own step
    assert stepping._explicit_tableau(diffrax.Tsit5()) is not None


def test_installed_diffrax_is_a_tested_release():
    """The loop uses diffrax internals; pyproject.toml pins the releases it was checked against."""
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    pinned = [Requirement(r).specifier for r in requires("deflation") if Requirement(r).name == "diffrax"]
    assert pinned == [SpecifierSet(stepping.DIFFRAX_TESTED)], pinned
    assert version("diffrax") in SpecifierSet(stepping.DIFFRAX_TESTED)


@pytest.mark.slow
def test_max_steps_is_per_seed():
    """A seed that runs out of steps is flagged; the others finish and keep their results."""
    tg, term, y0 = _problem(3)
    # seed 1 starts 1e6 times larger: it leaves the saddle early and needs more steps
    y0 = (y0[0].at[1].add(np.log(1e6)), y0[1])
    controller = diffrax.PIDController(rtol=1e-8, atol=1e-8)
    ts = jnp.array([15.0])
    free = stepping.solve_batch(term, diffrax.Tsit5(), controller, jnp.asarray(0.0), ts[-1], y0, dt0=None,
                                max_steps=100_000, save_ts=ts)
    steps = np.asarray(free.num_steps)
    cap = int(steps.max()) - 1
    capped = stepping.solve_batch(term, diffrax.Tsit5(), controller, jnp.asarray(0.0), ts[-1], y0, dt0=None,
                                  max_steps=cap, save_ts=ts)
    result = np.asarray(capped.result)
    worst = int(steps.argmax())
    assert result[worst] == stepping.MAX_STEPS
    others = [b for b in range(3) if steps[b] <= cap]
    assert others and (result[others] == stepping.OK).all()
    for got, want in zip(jax.tree_util.tree_leaves(capped.ys), jax.tree_util.tree_leaves(free.ys)):
        np.testing.assert_array_equal(np.asarray(got)[others], np.asarray(want)[others])
        assert np.isinf(np.asarray(got)[worst]).all()  # never reached: not a made-up value


@pytest.mark.slow
def test_save_into_writes_only_its_rows_and_ends_where_each_seed_stopped():
    """``save_into``: the batch's saved states go to rows ``row..row+B-1`` of the given buffers,
    equal to a fresh solve's; every other row keeps what it held. ``y_final`` is the state at t1."""
    tg, term, y0 = _problem(3)
    ts = jnp.array([0.0, 0.7, 3.0, 10.0])
    kw = dict(dt0=0.02, max_steps=10_000, save_ts=ts)
    fresh = stepping.solve_batch(term, diffrax.Tsit5(), _pid(), jnp.asarray(0.0), ts[-1], y0, **kw)
    marker = jax.tree_util.tree_map(lambda x: jnp.full((7,) + x.shape[1:], -5.0), fresh.ys)
    into = stepping.solve_batch(term, diffrax.Tsit5(), _pid(), jnp.asarray(0.0), ts[-1], y0, save_into=(marker, 2),
                                **kw)
    for got, want in zip(jax.tree_util.tree_leaves(into.ys), jax.tree_util.tree_leaves(fresh.ys)):
        got = np.asarray(got)
        assert got.shape[0] == 7
        np.testing.assert_array_equal(got[2:5], np.asarray(want))
        assert (got[:2] == -5.0).all() and (got[5:] == -5.0).all()
    for end, last in zip(jax.tree_util.tree_leaves(fresh.y_final), jax.tree_util.tree_leaves(fresh.ys)):
        np.testing.assert_allclose(np.asarray(end), np.asarray(last)[:, -1], rtol=1e-13, atol=1e-15)


@pytest.mark.slow
def test_progress_bar_reaches_the_end(capfd):
    tg = D.Target.geometric(6, 3, ratio=1.5)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(3), jnp.arange(3), 6, 10, 1e-6)
    res = D.gradient_flow(tg, W0, [30.0], progress=True)
    jax.effects_barrier()
    assert (np.asarray(res.status) == 0).all()
    assert "100.00%" in capfd.readouterr().err


def test_overflowing_trial_step_is_rejected_and_recovers():
    """y' = -y^5 from y0 = 10 with a first step of 1: the trial stages overflow to inf. The step
    must be rejected and shrunk (diffrax 0.7's own loop, for comparison, stays at y0 until
    max_steps: its PID error norm becomes NaN). Found on a Figure 1 seed that got stuck."""
    term = diffrax.ODETerm(lambda t, y, args: -(y**5))
    controller = diffrax.PIDController(rtol=1e-8, atol=1e-8)
    y0 = jnp.array([10.0, 1.0])
    sol = stepping.solve_batch(term, diffrax.Tsit5(), controller, jnp.asarray(0.0), jnp.asarray(1.0), y0,
                               dt0=1.0, max_steps=2000, save_ts=jnp.array([1.0]))
    assert (np.asarray(sol.result) == stepping.OK).all()
    assert (np.asarray(sol.num_steps) < 200).all()
    exact = (np.asarray(y0) ** -4 + 4.0) ** -0.25
    np.testing.assert_allclose(np.asarray(sol.ys[:, 0]), exact, rtol=1e-6)


@pytest.mark.parametrize("solver", [diffrax.Tsit5(), diffrax.Dopri8(), diffrax.Heun(),
                                    *_slow(diffrax.Dopri5(), diffrax.Bosh3(), diffrax.Ralston(), diffrax.Midpoint())],
                         ids=lambda s: type(s).__name__)
@pytest.mark.slow
def test_dense_output_as_weights_matches_diffrax(solver):
    """The saving loop's dense output (weights on (y0, y1, k) applied as one combination) is
    diffrax's own interpolation of the same step, at the ends and inside it."""
    from deflation.stepping import _explicit_tableau, combine_dense, erk_dense, erk_step, interpolation_weights

    tableau = _explicit_tableau(solver)
    vf = lambda t, y: (-0.5 * y[0] ** 3 + jnp.sin(t) * y[1][0], jnp.cos(3 * t) * y[0] * y[1])  # noqa: E731
    y0 = (jnp.array([1.0, 0.5, -0.7]), jnp.array([[0.2, -1.3, 0.4], [2.0, 0.1, -0.6]]))
    t0, t1 = 0.3, 0.9
    y1, _, fs, _ = erk_step(tableau, vf, t0, t1, y0, vf(t0, y0))
    dense = erk_dense(t1 - t0, y0, y1, fs)
    ts = jnp.array([0.3, 0.41, 0.6, 0.77, 0.9])
    want = jax.vmap(lambda t: solver.interpolation_cls(t0=t0, t1=t1, **dense).evaluate(t))(ts)
    got = combine_dense(interpolation_weights(solver.interpolation_cls, t0, t1, ts, len(fs)), t1 - t0, y0, y1, fs)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-13, atol=1e-14)


def _queue_problem(N=10, d=5, m=6):
    """Trajectories of different lengths and work: per-trajectory ``t1``, save grid, scale and
    ``lam`` (the term's per-trajectory args), with events (the log-norms and their rate)."""
    tg = D.Target.geometric(d, 3, ratio=1.5)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(7), jnp.arange(N), d, m, 1e-6)
    y0 = jax.vmap(to_lognorm)(W0)
    y0 = (y0[0] + jnp.linspace(0.0, 6.0, N)[:, None], y0[1])  # later seeds start larger: more steps early
    lam = jnp.linspace(0.0, 0.02, N)
    term = diffrax.ODETerm(lambda t, y, a: lognorm_vector_field(y, tg, a))
    t1 = jnp.linspace(2.0, 14.0, N)[::-1]
    save_ts = jax.vmap(lambda e: jnp.linspace(0.0, e, 5))(t1)
    event_ts = jax.vmap(lambda e: jnp.linspace(0.0, e, 9))(t1)

    def event_fn(t, y, dydt, args):
        return dict(rho=y[0], rate=dydt[0], t=t + 0 * args)

    def event_fill(x, h, s0, s1):
        return jax.tree_util.tree_map(lambda a, b: (1 - x) * a + x * b, s0, s1)

    return term, y0, lam, t1, dict(save_ts=save_ts, event_ts=event_ts, event_fn=event_fn, event_fill=event_fill,
                                   event_args=jnp.arange(N, dtype=jnp.float64))


@pytest.mark.parametrize("name", ["Tsit5", *_slow("Heun", "Euler", "Tsit5-clip", "overridden-step")])
def test_lanes_give_every_trajectory_bit_identical_results(name):
    """A work queue (3 lanes, refilled as trajectories end, over 10 trajectories of different
    lengths, one of them stopped by ``max_steps``) gives every trajectory exactly the results of
    one batch of all 10 at once: saved states, events, final state, step counts, result codes."""
    solver, controller = CASES[name]
    term, y0, lam, t1, kw = _queue_problem()
    dt0 = 0.01 if name == "Euler" else None  # None: the controller's first-step heuristic runs at each start
    run = lambda lanes, max_steps: stepping.solve_batch(  # noqa: E731
        term, solver, controller, jnp.asarray(0.0), t1, y0, dt0=dt0, max_steps=max_steps, term_args=lam,
        lanes=lanes, **kw)
    free = run(None, 100_000)
    cap = int(np.sort(np.asarray(free.num_steps))[-2])  # the longest trajectory runs out of steps
    whole, queued = run(None, cap), run(3, cap)
    assert (np.asarray(whole.result) == stepping.MAX_STEPS).sum() == 1
    assert len(set(np.asarray(whole.num_steps).tolist())) > 3  # lengths differ: lanes are refilled out of order
    for got, want in zip(jax.tree_util.tree_leaves(queued), jax.tree_util.tree_leaves(whole)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.slow  # (10 s cold) the default suite keeps the identity test above
def test_lanes_write_into_given_rows():
    """With ``save_into``, a work queue writes its trajectories' rows as one batch does."""
    solver, controller = CASES["Tsit5"]
    term, y0, lam, t1, kw = _queue_problem(N=5)
    marker = jax.tree_util.tree_map(lambda x: jnp.full((8, 5) + x.shape[1:], -5.0), y0)
    run = lambda lanes: stepping.solve_batch(  # noqa: E731
        term, solver, controller, jnp.asarray(0.0), t1, y0, dt0=None, max_steps=10_000, term_args=lam,
        save_into=(marker, 2), lanes=lanes, **kw)
    for got, want in zip(jax.tree_util.tree_leaves(run(2)), jax.tree_util.tree_leaves(run(None))):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_lanes_must_be_a_positive_integer():
    """Refused before anything is traced."""
    solver, controller = CASES["Tsit5"]
    term, y0, lam, t1, kw = _queue_problem(N=5)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="lanes must be a positive integer or None, got -?[01]"):
            stepping.solve_batch(term, solver, controller, jnp.asarray(0.0), t1, y0, dt0=None, max_steps=10,
                                 term_args=lam, lanes=bad, **kw)
