"""A batched stepping loop: many independent trajectories, each with its own adaptive steps,
in one ``lax.while_loop`` over the whole batch, with diffrax's tableaus, step-size controllers and
dense interpolation.

Why not ``jax.vmap(diffrax.diffeqsolve)`` (measurements in ``benchmarks/README.md``):

- under ``vmap`` a ``while_loop`` with a per-seed predicate turns every write of its carry into a
  select over the *whole* carry, and the carry holds the save buffers. Here a save is a scatter of
  the written rows only, and the event quantities are evaluated once per step (at its end, from
  the step's own ``y1`` and ``f(y1)``) and interpolated onto the event grid, so the grid size
  costs almost nothing;
- diffrax runs the Runge-Kutta stages in a loop over a stacked stage buffer (a copy of it per
  stage); :func:`erk_step` unrolls them into straight-line code.

Every trajectory takes exactly the steps it would take alone (its own controller state, its own
accept/reject); one that is done is masked out. The loop mirrors ``diffrax.diffeqsolve``'s: the
controller is wrapped for forward time (``controller.wrap``), steps are clipped to the end within
100 ULPs, a step whose error is NaN is rejected, ``made_jump`` is passed on (so a
``ClipStepSizeController``'s ``jump_ts`` re-evaluate the vector field after the jump), and each
trajectory's steps are checked against ``diffeqsolve`` step for step in the tests, for every
solver and controller :func:`supports` accepts. One difference: with ``dt0=None`` the controller's
initial-step heuristic runs on the unwrapped term.

It relies on diffrax internals (``ButcherTableau``, ``AbstractStepSizeController.adapt_step_size``,
``RESULTS``): :data:`DIFFRAX_TESTED` names the diffrax releases it was checked against, and the
package requires one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int, PyTree

from .status import Status

#: The diffrax releases this loop was checked against (``pyproject.toml`` pins the same range).
DIFFRAX_TESTED = ">=0.7.0,<0.8"

#: Save points handled per trajectory in one vectorized pass of the saving loop.
SAVE_BLOCK = 4

#: Per-trajectory result codes (``BatchSolution.result``): those of :class:`deflation.Status`.
OK, MAX_STEPS, FAILED = Status.SUCCESS, Status.MAX_STEPS, Status.SOLVER_FAILED

#: With ``lanes`` (a work queue, see :func:`solve_batch`), finished lanes are refilled in groups of
#: ``lanes // REFILL_GROUP`` (at least one): a group's start (the controller's first step size, the
#: field and the events at ``t0``) is one small batched evaluation, and a lane waits for at most
#: that many others to finish before it takes its next trajectory.
REFILL_GROUP = 16


class BatchSolution(eqx.Module):
    """What :func:`solve_batch` returns (leading axis ``B`` = trajectory).

    Attributes:
        ys: the state at each save time, ``(B, K, ...)`` (``inf`` where never
            reached), or the ``save_into`` buffers with this batch's rows written.
        events: ``event_fn``'s output at each event time, ``(B, Ke, ...)`` (``inf``, or -1 for
            integers, where never reached), or None.
        y_final: the state at which each trajectory stopped (at ``t1``, or its last accepted step).
        num_steps, num_accepted_steps, num_rejected_steps: ``(B,)``.
        result: ``(B,)``: 0 success, 1 ``max_steps`` reached, 3 solver or controller failure.
    """

    ys: PyTree
    events: PyTree
    y_final: PyTree
    num_steps: Int[Array, " B"]
    num_accepted_steps: Int[Array, " B"]
    num_rejected_steps: Int[Array, " B"]
    result: Int[Array, " B"]


def _where(mask, new, old):
    """Per-trajectory select on pytrees whose leaves have a leading batch axis."""

    def sel(a, b):
        a, b = jnp.asarray(a), jnp.asarray(b)
        m = jnp.reshape(mask, mask.shape + (1,) * (max(a.ndim, b.ndim) - 1))
        return jnp.where(m, a, b)

    return jax.tree_util.tree_map(sel, new, old)


def unsupported(solver, controller=None) -> str | None:
    """Why :func:`solve_batch` cannot take this solver (and controller), or None if it can.

    Taken: explicit Runge-Kutta methods (``diffrax.AbstractERK``: Heun, Midpoint, Ralston, Bosh3,
    Tsit5, Dopri5, Dopri8, ...) and Euler, with any step-size controller of diffrax
    (``PIDController``, ``ConstantStepSize``, ``ClipStepSizeController``, ...). Implicit solvers
    need diffrax's own loop set-up (root-finder tolerances from the controller); callers use
    ``vmap(diffeqsolve)`` for them and for anything else refused here.
    """
    if not isinstance(solver, (diffrax.AbstractERK, diffrax.Euler)):
        return (f"{type(solver).__name__} is not an explicit Runge-Kutta method or Euler (implicit and "
                "stochastic solvers need diffrax's own loop)")
    if controller is not None and not isinstance(controller, diffrax.AbstractStepSizeController):
        return f"{type(controller).__name__} is not a diffrax step-size controller"
    return None


def supports(solver, controller=None) -> bool:
    """Whether :func:`solve_batch` takes this solver and controller (see :func:`unsupported`)."""
    return unsupported(solver, controller) is None


def _explicit_tableau(solver) -> diffrax.ButcherTableau | None:
    """The Butcher tableau of an explicit Runge-Kutta solver whose step is diffrax's own (Tsit5,
    Dopri5, Dopri8, Bosh3, Heun, ...), else None: a subclass that overrides ``step`` or ``init``
    is run through its own ``step``."""
    tableau = getattr(solver, "tableau", None)
    if not (isinstance(solver, diffrax.AbstractERK) and isinstance(tableau, diffrax.ButcherTableau)):
        return None
    cls = type(solver)
    base = diffrax.AbstractRungeKutta
    if cls.step is not base.step or cls.init is not base.init or cls.func is not base.func:
        return None
    return tableau


def _can_jump(controller) -> bool:
    """Whether the controller can make jumps (``jump_ts``), after which FSAL must not be reused."""
    while controller is not None:
        if getattr(controller, "jump_ts", None) is not None:
            return True
        controller = getattr(controller, "controller", None)
    return False


def _combine(y0, dt, coefficients, fs):
    """``y0 + dt * sum_j c_j f_j`` (``y0`` may be None: just the sum), skipping zero coefficients."""

    def leaf(y, *f):
        acc = None
        for c, fj in zip(coefficients, f):
            if c != 0:
                acc = float(c) * fj if acc is None else acc + float(c) * fj
        acc = jnp.zeros_like(f[0]) if acc is None else acc
        return dt * acc if y is None else y + dt * acc

    if y0 is None:
        return jax.tree_util.tree_map(lambda *f: leaf(None, *f), *fs)
    return jax.tree_util.tree_map(leaf, y0, *fs)


def erk_step(tableau: diffrax.ButcherTableau, vf, t0, t1, y0, f0):
    """One explicit Runge-Kutta step with the stages unrolled (straight-line code that XLA fuses;
    diffrax runs the stages in a loop over a stacked buffer, which costs a copy of the buffer per
    stage). Returns ``(y1, y_error, fs, f1)``: ``fs`` the stage derivatives (see :func:`erk_dense`),
    ``f1 = f(t1, y1)`` for FSAL tableaus, else None."""
    dt = t1 - t0
    fs = [f0]
    yi = y0
    for a_row, ci in zip(tableau.a_lower, tableau.c):
        yi = _combine(y0, dt, a_row, fs)
        fs.append(vf(t0 + ci * dt, yi))
    y1 = yi if tableau.ssal else _combine(y0, dt, tableau.b_sol, fs)
    y_error = _combine(None, dt, tableau.b_error, fs)
    return y1, y_error, tuple(fs), (fs[-1] if tableau.fsal else None)


def erk_dense(dt, y0, y1, fs):
    """diffrax's dense information of a Runge-Kutta step: ``dict(y0, y1, k)``, ``k_j = dt f_j`` stacked."""
    return dict(y0=y0, y1=y1, k=jax.tree_util.tree_map(lambda *f: dt * jnp.stack(f), *fs))


def interpolation_weights(interpolation_cls, t0, t1, t, stages: int):
    """The weights ``(w_y0, w_y1, w_k1, ..., w_kS)`` (``(..., S + 2)`` for each time in ``t``) with
    which ``interpolation_cls(t0=t0, t1=t1, y0=y0, y1=y1, k=k).evaluate(t)`` combines its inputs:
    every dense output of diffrax's Runge-Kutta methods is linear in ``(y0, y1, k)``, so it is
    evaluated once on scalar unit inputs and then applied to the state as one fused combination
    (:func:`combine_dense`), without stacking the stages."""
    basis = jnp.eye(stages + 2, dtype=jnp.result_type(t0))

    def at(tt):
        return jax.vmap(lambda e: interpolation_cls(t0=t0, t1=t1, y0=e[0], y1=e[1], k=e[2:]).evaluate(tt))(basis)

    return jax.vmap(at)(jnp.reshape(t, (-1,))).reshape(jnp.shape(t) + (stages + 2,))


def combine_dense(weights, dt, y0, y1, fs):
    """``w_y0 y0 + w_y1 y1 + sum_j w_kj (dt f_j)`` for weights ``(P, S + 2)`` from
    :func:`interpolation_weights`: the dense output at ``P`` times, ``(P, ...)`` per leaf."""

    def leaf(a, b, *f):
        w = weights.reshape(weights.shape + (1,) * a.ndim)
        acc = w[:, 0] * a + w[:, 1] * b
        for j, fj in enumerate(f):
            acc = acc + (w[:, j + 2] * dt) * fj
        return acc

    return jax.tree_util.tree_map(leaf, y0, y1, *fs)


def stages_per_step(solver) -> int:
    """Vector-field evaluations per step of ``solver`` in this loop (FSAL tableaus reuse the last
    stage; Euler takes one)."""
    tableau = getattr(solver, "tableau", None)
    if isinstance(tableau, diffrax.ButcherTableau):
        stages = len(tableau.c) + 1
        return stages - 1 if tableau.fsal else stages
    return 1


def _unreached(dtype):
    """Fill value of a buffer entry that was never written: inf for floats, -1 for integers."""
    if jnp.issubdtype(dtype, jnp.floating):
        return jnp.inf
    if jnp.issubdtype(dtype, jnp.bool_):
        return False
    return -1


def _alloc(fn, y_example, K: int, B: int):
    """Buffers ``(B, K, ...)`` for the outputs of ``fn`` on one trajectory, filled as unreached."""
    shapes = jax.eval_shape(fn, y_example)
    return jax.tree_util.tree_map(lambda s: jnp.full((B, K) + s.shape, _unreached(s.dtype), s.dtype), shapes)


def _per_trajectory(ts, B: int):
    """A grid ``(K,)`` shared by all trajectories or ``(B, K)`` per trajectory, as ``(B, K)``."""
    ts = jnp.asarray(ts)
    return jnp.broadcast_to(ts, (B,) + ts.shape[-1:])


def solve_batch(
    term: diffrax.AbstractTerm,
    solver: diffrax.AbstractSolver,
    controller: diffrax.AbstractStepSizeController,
    t0: ArrayLike,
    t1: ArrayLike,
    y0: PyTree,
    *,
    dt0: float | None,
    max_steps: int,
    save_ts: Float[Array, "*B K"],
    event_ts: Float[Array, "*B Ke"] | None = None,
    event_fn: Callable[[Any, PyTree, PyTree, Any], PyTree] | None = None,
    event_fill: Callable[[Any, Any, PyTree, PyTree], PyTree] | None = None,
    event_args: PyTree = None,
    term_args: PyTree = None,
    save_into: tuple[PyTree, Any] | None = None,
    lanes: int | None = None,
    progress_meter: diffrax.AbstractProgressMeter = diffrax.NoProgressMeter(),  # noqa: B008  (immutable, as diffrax's own)
) -> BatchSolution:
    """Integrate ``dy/dt = term(t, y)`` from ``t0`` to ``t1`` for every trajectory of the batch
    ``y0`` (leaves with a leading axis ``B``), each with its own adaptive steps.

    ``t1`` is one end time or one per trajectory ``(B,)`` (a trajectory with ``t1 = t0`` takes no
    step). The state is saved at ``save_ts`` (``(K,)`` shared or ``(B, K)`` per trajectory,
    increasing, within ``[t0, t1]``) by the solver's dense interpolation, as
    ``diffrax.SaveAt(ts=save_ts)`` does; points at ``t0`` get ``y0``.

    Events: if ``event_fn`` is given, ``s = event_fn(t, y, dydt, args)`` (``args``: this
    trajectory's slice of ``event_args``) is evaluated at ``t0`` and at the end of every accepted
    step (``y1`` and ``f(y1)`` for FSAL tableaus, otherwise the dense output and its time
    derivative; no extra vector-field evaluation). ``event_fill(x, h, s_start, s_end)`` then fills
    the event grid points ``event_ts`` (shaped like ``save_ts``) inside the step: ``x`` in
    ``(0, 1]`` is their position and ``h`` the step length (e.g. a cubic Hermite interpolation of a
    quantity from its values and derivatives at the two ends). The event work is one small
    evaluation per step, whatever the grid size.

    ``term_args``: each trajectory's ``args`` of the term (a pytree with leading axis ``B``, e.g. a
    target per seed), or None for ``args = None`` everywhere.

    ``save_into``: ``(buffers, row)``: write the saved points into rows ``row, ..., row + B - 1``
    of ``buffers`` (leaves ``(N, K, ...)``, ``N >= B``, shaped as the state) rather
    than into fresh buffers, and return the whole buffers as ``ys``: a caller that solves a large
    batch in chunks keeps one output array, written in place, instead of stacking a copy of each
    chunk's. Points never reached keep what the buffers held (fill them with ``inf`` first).

    ``lanes``: integrate at most this many trajectories at a time, as a work queue: when a
    trajectory ends, its lane takes the next one not yet started (in groups, see
    :data:`REFILL_GROUP`), so that a batch does not wait for its slowest trajectory at every chunk
    boundary. Every trajectory still takes exactly its own steps: the results are bit-identical to
    a solve without lanes (tested). None, or at least ``B``: all at once.

    Raises:
        ValueError: the solver or controller is not one :func:`supports` takes.
    """
    reason = unsupported(solver, controller)
    if reason is not None:
        raise ValueError(f"solve_batch cannot run this solver: {reason}")
    N = jax.tree_util.tree_leaves(y0)[0].shape[0]  # trajectories
    if lanes is not None and (isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1):
        raise ValueError(f"lanes must be a positive integer or None, got {lanes!r}")
    L = N if lanes is None or lanes >= N else int(lanes)  # trajectories integrated at a time
    queue = L < N
    dtype = jnp.result_type(t0)
    t0 = jnp.asarray(t0, dtype)
    t1 = jnp.broadcast_to(jnp.asarray(t1, dtype), (N,))
    # a step ending within ~100 ULPs of t1 is stretched to t1 (as in diffrax's loop)
    t1_floor = t1 - 100 * (jnp.nextafter(t1, jnp.asarray(jnp.inf, dtype)) - t1)
    controller = controller.wrap(1)  # forward time, as diffeqsolve wraps it for direction = +1
    error_order = solver.error_order(term)
    y_one = jax.tree_util.tree_map(lambda x: x[0], y0)
    save_ts = _per_trajectory(save_ts, N)
    if event_fn is not None:
        event_ts = _per_trajectory(event_ts, N)
        if event_args is None:
            event_args = jnp.zeros((N,))

    if term_args is None:
        term_args = jnp.zeros((N,))  # one dummy per trajectory; the term gets args = None
        args_of = lambda a: None  # noqa: E731
    else:
        args_of = lambda a: a  # noqa: E731

    def init_one(y, t_end, a):
        tnext, cstate = controller.init(term, t0, t_end, y, dt0, args_of(a), solver.func, error_order)
        tnext = jnp.minimum(tnext, t_end)
        return tnext, cstate, solver.init(term, t0, tnext, y, args_of(a))

    tableau = _explicit_tableau(solver) if isinstance(term, diffrax.ODETerm) else None
    can_jump = _can_jump(controller)
    vf = lambda t, y, a: term.vf(t, y, args_of(a))  # noqa: E731
    needs_f = (tableau is not None and tableau.fsal) or event_fn is not None

    def interpolate(tprev, tnext, dense, t):
        return solver.interpolation_cls(t0=tprev, t1=tnext, **dense).evaluate(t)

    row0 = jnp.zeros((), jnp.int32) if save_into is None else jnp.asarray(save_into[1], jnp.int32)
    # each trajectory's inputs; a lane reads those of the trajectory it integrates
    inputs = dict(t1=t1, t1_floor=t1_floor, term=term_args, save_ts=save_ts)
    if event_fn is not None:
        inputs.update(event_ts=event_ts, event_args=event_args)

    def write_start(buf, ts, value, rows):
        """Points at ``t0`` (or before) get the value at ``t0``; returns ``(buf, next index)``.

        They are a prefix of each sorted grid, usually of one point (none for a grid that starts
        later; the whole grid for a phase of length 0): written one index at a time, so that the
        cost is that of the prefix, not of a pass over the whole buffer. ``rows`` ``(R, 1)``: the
        buffer rows (out of range: not written)."""
        n = (ts <= t0).sum(axis=1, dtype=jnp.int32)  # (R,)

        def body(state):
            b, k = state
            idx = jnp.where(k < n, k, ts.shape[1])  # out of range: dropped
            return jax.tree_util.tree_map(lambda x, v: x.at[rows[:, 0], idx].set(v, mode="drop"), b, value), k + 1

        buf, _ = jax.lax.while_loop(lambda s: (s[1] < n).any(), body, (buf, jnp.zeros((), jnp.int32)))
        return buf, n

    observe, fill = event_fn, event_fill  # (bound here: the closures below see them set)

    # every trajectory's start, computed at once before the loop (a lane that takes a trajectory
    # takes its start as computed here, so a trajectory's results do not depend on when it starts)
    tnext, cstate, sstate = jax.vmap(init_one)(y0, t1, term_args)
    f_start = jax.vmap(lambda y, a: vf(t0, y, a))(y0, term_args) if needs_f else None
    if tableau is not None:  # own unrolled step; solver state = f at the step start (FSAL) or None
        sstate = f_start if tableau.fsal else None
    every = jnp.arange(N, dtype=jnp.int32)
    buffers, indices = {}, {}
    empty = _alloc(lambda y: y, y_one, save_ts.shape[1], N) if save_into is None else save_into[0]
    buffers["ys"], indices["ys"] = write_start(empty, save_ts, y0, row0 + every[:, None])
    if observe is not None:
        assert event_ts is not None and fill is not None  # they go with the event function
        args_one = jax.tree_util.tree_map(lambda x: x[0], event_args)
        one = lambda y: observe(t0, y, y, args_one)  # noqa: E731
        ends = jax.vmap(lambda y, f, a: observe(t0, y, f, a))(y0, f_start, event_args)
        empty = _alloc(lambda y: fill(t0, t0, one(y), one(y)), y_one, event_ts.shape[1], N)
        buffers["events"], indices["events"] = write_start(empty, event_ts, ends, every[:, None])
    else:
        ends = None
    starts = dict(tnext=tnext, y=y0, sstate=sstate, cstate=cstate, indices=indices, event_start=ends)

    def begin(ids):
        """Lane states for the trajectories ``ids`` (None: all), at their start."""
        lane = starts if ids is None else jax.tree_util.tree_map(lambda x: x[ids], starts)
        R = N if ids is None else ids.shape[0]
        zeros = jnp.zeros(R, jnp.int32)
        return dict(lane, tprev=jnp.full(R, t0), made_jump=jnp.zeros(R, bool), num_steps=zeros, accepted=zeros,
                    rejected=zeros, result=zeros)

    gather = lambda tree, ids: jax.tree_util.tree_map(lambda x: x[ids], tree)  # noqa: E731
    first = jnp.arange(L, dtype=jnp.int32)
    carry = dict(begin(first if queue else None), buffers=buffers, meter=progress_meter.init())
    if queue:  # the trajectory of each lane, the next one to start, each lane's inputs, the results
        zeros = jnp.zeros(N, jnp.int32)
        carry.update(who=first, next=jnp.asarray(L, jnp.int32), inp=gather(inputs, first),
                     out=dict(y=y0, num_steps=zeros, accepted=zeros, rejected=zeros, result=zeros))

    def lane_inputs(c):
        return c["inp"] if queue else inputs

    def lane_rows(c):
        """The rows of the save buffers and of the event buffers that the lanes write, ``(L, 1)``."""
        who = c["who"] if queue else first
        return row0 + who[:, None], who[:, None]

    def active(c):
        return (c["tprev"] < lane_inputs(c)["t1"]) & (c["result"] == OK) & (c["num_steps"] < max_steps)

    def save(keep, tprev, tnext, dense, buf, idx, ts, fn, rows):
        """Write ``fn`` at every ``ts`` point in ``(tprev, tnext]`` of the accepted steps, up to
        ``SAVE_BLOCK`` points per trajectory and pass (one pass covers almost every step)."""
        K = ts.shape[1]
        P = min(SAVE_BLOCK, K)

        def at(k):  # ts[b, k[b, ...]] with k clipped into range
            k = jnp.minimum(k, K - 1)
            return jnp.take_along_axis(ts, k.reshape(L, -1), axis=1).reshape(k.shape)

        def pending(i):
            return keep & (i < K) & (at(i) <= tnext)

        def body(s):
            buf, i = s
            k = i[:, None] + jnp.arange(P)  # (L, P)
            t = at(k)
            ok = keep[:, None] & (k < K) & (t <= tnext[:, None])
            vals = jax.vmap(lambda a, b, dn, tt: jax.vmap(lambda x: fn(a, b, dn, x))(tt))(tprev, tnext, dense, t)
            k = jnp.where(ok, k, K)  # out of range: dropped
            buf = jax.tree_util.tree_map(lambda b, v: b.at[rows, k].set(v, mode="drop"), buf, vals)
            return buf, i + ok.sum(axis=1, dtype=i.dtype)

        return jax.lax.while_loop(lambda s: pending(s[1]).any(), body, (buf, idx))

    def summary_at(tprev, tnext, dense, t, args):
        y, dy = jax.jvp(lambda s: interpolate(tprev, tnext, dense, s), (t,), (jnp.ones_like(t),))
        return observe(t, y, dy, args)

    def save_event(ends, tprev, tnext, t):
        h = tnext - tprev
        return fill((t - tprev) / h, h, *ends)

    def step(c):
        on = active(c)
        inp = lane_inputs(c)
        rows, erows = lane_rows(c)

        def one(tprev, tnext, y, sstate, cstate, made_jump, t_end, t_end_floor, a):
            f = lambda t, yy: vf(t, yy, a)  # noqa: E731
            if tableau is not None:
                if not tableau.fsal:
                    f0 = f(tprev, y)
                elif can_jump:  # after a jump the field may differ from the last stage: re-evaluate
                    f0 = jax.lax.cond(made_jump, lambda: f(tprev, y), lambda: sstate)
                else:
                    f0 = sstate
                y1, y_error, dense, sstate1 = erk_step(tableau, f, tprev, tnext, y, f0)  # dense: the stages
                sresult = diffrax.RESULTS.successful
            else:
                y1, y_error, dense, sstate1, sresult = solver.step(term, tprev, tnext, y, args_of(a), sstate, made_jump)
            # A trial step that overflows (a huge step through a region where the field blows
            # up) must be rejected and shrunk, not poison the controller: diffrax's PIDController
            # maps a NaN candidate to y0 but turns an infinite one into a NaN error norm (inf/inf),
            # and then every later step size is NaN. Such a step gets error inf and candidate y0.
            finite = jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves((y1, y_error))]))
            y_error = jax.tree_util.tree_map(lambda e: jnp.where(finite, e, jnp.inf), y_error)
            y1_seen = jax.tree_util.tree_map(lambda a, b: jnp.where(finite, b, a), y, y1)
            keep, tp, tn, jump, cstate1, cresult = controller.adapt_step_size(
                tprev, tnext, y, y1_seen, args_of(a), y_error, error_order, cstate
            )
            keep = jnp.asarray(keep, bool)
            tp = jnp.minimum(tp, t_end)
            tn = jnp.where(tn > t_end_floor, jnp.where(keep, t_end, tp + 0.5 * (t_end - tp)), tn)
            ok = diffrax.RESULTS.successful
            failed = (keep & ~(sresult == ok)) | ~(cresult == ok)
            return y1, dense, sstate1, keep, tp, tn, cstate1, jnp.asarray(jump, bool), failed

        y1, dense, sstate1, keep, tp, tn, cstate1, jump, failed = jax.vmap(one)(
            c["tprev"], c["tnext"], c["y"], c["sstate"], c["cstate"], c["made_jump"], inp["t1"], inp["t1_floor"],
            inp["term"],
        )
        keep = keep & on
        buffers, indices = dict(c["buffers"]), dict(c["indices"])

        def dense_info():  # diffrax's dense output (built only where needed)
            if tableau is None:
                return dense
            return jax.vmap(erk_dense)(c["tnext"] - c["tprev"], c["y"], y1, dense)

        if tableau is not None:  # the dense output as weights on (y0, y1, stages): no stacking
            stages = len(dense)

            def state_at(tp, tn, dn, t):
                w = interpolation_weights(solver.interpolation_cls, tp, tn, t[None], stages)
                return jax.tree_util.tree_map(lambda x: x[0], combine_dense(w, tn - tp, *dn))

            save_dense = (c["y"], y1, dense)
        else:
            state_at, save_dense = interpolate, None

        lane_ts = inp["save_ts"]
        K = lane_ts.shape[1]
        nxt = jnp.take_along_axis(lane_ts, jnp.minimum(indices["ys"], K - 1)[:, None], axis=1)[:, 0]
        any_save = (keep & (indices["ys"] < K) & (nxt <= c["tnext"])).any()
        buffers["ys"], indices["ys"] = jax.lax.cond(
            any_save,
            lambda: save(keep, c["tprev"], c["tnext"], dense_info() if save_dense is None else save_dense,
                         buffers["ys"], indices["ys"], lane_ts, state_at, rows),
            lambda: (buffers["ys"], indices["ys"]),
        )
        event_start = c["event_start"]
        if observe is not None:
            if tableau is not None and tableau.fsal:  # y and f at the step end are known exactly
                end = jax.vmap(observe)(c["tnext"], y1, sstate1, inp["event_args"])
            else:
                end = jax.vmap(lambda a, b, dn, ar: summary_at(a, b, dn, b, ar))(
                    c["tprev"], c["tnext"], dense_info(), inp["event_args"])
            buffers["events"], indices["events"] = save(
                keep, c["tprev"], c["tnext"], (event_start, end), buffers["events"], indices["events"],
                inp["event_ts"], lambda a, b, e, t: save_event(e, a, b, t), erows,
            )
            event_start = _where(keep, end, event_start)
        tprev = jnp.where(on, tp, c["tprev"])
        new = dict(
            c,
            tprev=tprev,
            tnext=jnp.where(on, tn, c["tnext"]),
            y=_where(keep, y1, c["y"]),
            sstate=_where(keep, sstate1, c["sstate"]),
            cstate=_where(on, cstate1, c["cstate"]),
            made_jump=jnp.where(keep, jump, c["made_jump"]),
            num_steps=c["num_steps"] + on,
            accepted=c["accepted"] + keep,
            rejected=c["rejected"] + (on & ~keep),
            result=jnp.where(on & failed, FAILED, c["result"]),
            buffers=buffers,
            indices=indices,
            event_start=event_start,
        )
        t_end = inp["t1"]
        span = jnp.where(t_end > t0, t_end - t0, 1.0)
        if queue:  # finished trajectories plus the running ones' fractions
            running = active(new)
            frac = jnp.where(running, (tprev - t0) / span, 0.0).sum()
            progress = (new["next"] - running.sum() + frac) / N
        else:
            progress = jnp.min(jnp.where((new["result"] == OK) & (t_end > t0), (tprev - t0) / span, 1.0))
        new["meter"] = progress_meter.step(c["meter"], jnp.clip(progress, 0.0, 1.0))
        return new

    def final_result(c):
        return jnp.where((c["result"] == OK) & (c["tprev"] < lane_inputs(c)["t1"]), MAX_STEPS, c["result"])

    def write_out(c, lanes_at, who):
        """The results of lanes ``lanes_at`` written to their trajectories ``who`` (out of range: not)."""
        done = dict(y=c["y"], num_steps=c["num_steps"], accepted=c["accepted"], rejected=c["rejected"],
                    result=final_result(c))
        return jax.tree_util.tree_map(lambda o, v: o.at[who].set(v[lanes_at], mode="drop"), c["out"], done)

    group = max(1, L // REFILL_GROUP)

    def wants_refill(c):
        running = active(c).sum()
        return (c["next"] < N) & ((L - running >= group) | (running == 0))

    def refill(c):
        """The first ``group`` finished lanes take the next trajectories of the queue: their
        results are written out, and they take the new trajectories' starts."""
        sel = jnp.nonzero(~active(c), size=group, fill_value=L)[0]
        ids = c["next"] + jnp.arange(group, dtype=jnp.int32)
        valid = (sel < L) & (ids < N)
        sel_in = jnp.minimum(sel, L - 1)
        out = write_out(c, sel_in, jnp.where(valid, c["who"][sel_in], N))
        ids_in = jnp.minimum(ids, N - 1)
        dest = jnp.where(valid, sel, L)  # out of range: not written
        put = lambda old, new: jax.tree_util.tree_map(lambda o, n: o.at[dest].set(n, mode="drop"), old, new)  # noqa: E731
        new = dict(c, out=out, inp=put(c["inp"], gather(inputs, ids_in)), who=c["who"].at[dest].set(ids, mode="drop"),
                   next=c["next"] + valid.sum(dtype=jnp.int32))
        new.update({k: put(c[k], v) for k, v in begin(ids_in).items()})
        return new

    if queue:
        body = lambda c: step(jax.lax.while_loop(wants_refill, refill, c))  # noqa: E731
        c = jax.lax.while_loop(lambda c: active(c).any() | (c["next"] < N), body, carry)
    else:
        c = jax.lax.while_loop(lambda c: active(c).any(), step, carry)
    progress_meter.close(c["meter"])
    if queue:
        out = write_out(c, jnp.arange(L), c["who"])
        y_final, num_steps, accepted, rejected, result = (
            out[k] for k in ("y", "num_steps", "accepted", "rejected", "result"))
    else:
        y_final, num_steps, accepted, rejected = c["y"], c["num_steps"], c["accepted"], c["rejected"]
        result = final_result(c)
    return BatchSolution(
        ys=c["buffers"]["ys"], events=c["buffers"].get("events"), y_final=y_final, num_steps=num_steps,
        num_accepted_steps=accepted, num_rejected_steps=rejected, result=result,
    )
