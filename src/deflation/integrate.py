"""The batched solve of the log-norm gradient flow: one public, keyword-only entry point.

:func:`solve` integrates a batch of initializations in log-norm coordinates (see
:mod:`deflation.dynamics`), each with its own adaptive steps, and locates Definition 1's events on
a grid (:mod:`deflation.definition1`). It is pure and traceable: :func:`deflation.gradient_flow`,
:func:`deflation.modified_gradient_flow` and the Monte Carlo kernels all call it inside their own
``jit``. Its settings are two small modules:

- :class:`SolverConfig`: the diffrax solver, its step-size controller, the first step and the step
  budget (``SolverConfig.adaptive(rtol, atol)`` for the usual PID controller);
- :class:`EventConfig`: Definition 1's ``delta1`` and ``alpha``, the fit fraction used when
  ``lam = 0``, and the number of event grid points.

Explicit Runge-Kutta methods run in :func:`deflation.stepping.solve_batch` (one loop over the
whole batch); anything else (implicit solvers) runs as ``vmap(diffrax.diffeqsolve)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from . import _validate as check, stepping
from .contract import log_positive
from .definition1 import Observation, Tracked, fill, observe, track
from .dynamics import DEFAULT_MODEL, lognorm_vector_field
from .models import as_model
from .status import Status, describe
from .target import Target

#: diffrax solvers available by name (explicit and adaptive: they carry an error estimate).
SOLVERS = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8, "bosh3": diffrax.Bosh3,
           "heun": diffrax.Heun, "midpoint": diffrax.Midpoint, "ralston": diffrax.Ralston}

#: Seeds whose events :func:`deflation.definition1.track` locates at once (in a loop over the
#: chunk) on each backend named here; other backends take the whole chunk at once.
TRACK_BATCH = {"cpu": 4}

#: Seeds per batched solve on each backend named here; other backends solve the whole batch at once.
#: See :func:`seed_chunk`.
SEED_CHUNK = {"cpu": 128}


def failures(status) -> list[tuple[int, str]]:
    """``[(batch index, reason), ...]`` for every entry of ``status`` that is not success (the
    reason: :attr:`deflation.Status.description`)."""
    status = np.atleast_1d(np.asarray(status))
    return [(int(i), describe(s)) for i, s in enumerate(status) if s != Status.SUCCESS]


def solver_by_name(name: str) -> diffrax.AbstractSolver:
    """A diffrax solver from its name in :data:`SOLVERS` (``ValueError`` naming the choices)."""
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {name!r}")
    return SOLVERS[name]()


class SolverConfig(eqx.Module):
    """How to integrate: a diffrax solver, its step-size controller, the first step and the step
    budget per trajectory.

    The defaults of the solver settings are defined here, once: :attr:`DEFAULT_RTOL`,
    :attr:`DEFAULT_ATOL` (the tolerances of :meth:`adaptive`'s PID controller) and
    :attr:`DEFAULT_MAX_STEPS`; :func:`deflation.gradient_flow`,
    :func:`deflation.modified_gradient_flow`, the studies' parameters and the command line read them
    from here. The settings are checked at construction (the step budget, the first step, and the
    tolerances of a PID controller when they are concrete numbers).

    Attributes:
        solver: any diffrax solver (explicit Runge-Kutta methods and Euler run in the batched loop,
            others through ``vmap(diffeqsolve)``).
        controller: a diffrax step-size controller (a ``ConstantStepSize`` needs ``dt0``).
        dt0: first step (None: chosen by the controller).
        max_steps: step budget per trajectory, in ``[1, 2^31 - 1]`` (steps are counted in int32:
            a larger budget wrapped around and stopped every trajectory at once); a trajectory
            that exhausts it gets :attr:`deflation.Status.MAX_STEPS`.
    """

    #: Default relative tolerance of the PID step-size controller.
    DEFAULT_RTOL: ClassVar[float] = 1e-8
    #: Default absolute tolerance of the PID step-size controller.
    DEFAULT_ATOL: ClassVar[float] = 1e-8
    #: Default step budget per trajectory (per phase for Algorithm 2).
    DEFAULT_MAX_STEPS: ClassVar[int] = 100_000

    solver: diffrax.AbstractSolver
    controller: diffrax.AbstractStepSizeController
    dt0: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=DEFAULT_MAX_STEPS)

    def __check_init__(self):
        check.integer("max_steps", self.max_steps, 1, check.MAX_STEPS_LIMIT)  # steps are counted in int32
        if self.dt0 is not None:
            check.positive("dt0", self.dt0)
        controller: Any = self.controller
        for name in ("rtol", "atol"):  # a PID controller's tolerances, where they are numbers (not traced)
            value = getattr(controller, name, None)
            if value is not None and np.ndim(value) == 0 and check.is_concrete(value):
                check.nonnegative(f"controller.{name}", value)

    @classmethod
    def adaptive(cls, rtol: Any = DEFAULT_RTOL, atol: Any = DEFAULT_ATOL, solver: diffrax.AbstractSolver | None = None,
                 *, dt0: float | None = None, max_steps: int = DEFAULT_MAX_STEPS) -> SolverConfig:
        """``solver`` (default Tsit5) with ``diffrax.PIDController(rtol, atol)`` (each ``> 0``); the
        tolerances are kept as arrays, so changing them does not recompile."""
        if check.is_concrete((rtol, atol)):
            rtol, atol = check.positive("rtol", rtol), check.positive("atol", atol)
        controller = diffrax.PIDController(rtol=jnp.asarray(rtol), atol=jnp.asarray(atol))
        return cls(solver=diffrax.Tsit5() if solver is None else solver, controller=controller, dt0=dt0,
                   max_steps=max_steps)

    def tolerance(self) -> Float[Array, ""]:
        """``max(rtol, atol)`` of the controller (0 when it has none, e.g. constant steps)."""
        controller: Any = self.controller
        while controller is not None and not hasattr(controller, "rtol"):
            controller = getattr(controller, "controller", None)
        if controller is None:
            return jnp.zeros(())
        return jnp.maximum(jnp.max(jnp.asarray(controller.rtol)), jnp.max(jnp.asarray(controller.atol)))


class EventConfig(eqx.Module):
    """Where Definition 1's events are looked for (see :mod:`deflation.definition1`).

    Attributes:
        delta1: the norm at which a column is tested (> 0).
        alpha: the alignment slack: joins ``S_i`` when ``wbar_i^2 >= 1 - alpha^2`` (in (0, 1)).
        fit_fraction: with ``lam = 0`` a component is fitted once its residual is
            ``<= fit_fraction * a_i`` (in (0, 1)).
        points: size of the uniform event grid (>= 2); the quantities are evaluated once per
            solver step and interpolated onto it, so a finer grid costs almost nothing.
        norm: also record ``|T - T*|_F`` on the grid (one more Gram product per step).
    """

    delta1: Float[Array, ""]
    alpha: Float[Array, ""]
    fit_fraction: Float[Array, ""]
    points: int = eqx.field(static=True, default=512)
    norm: bool = eqx.field(static=True, default=False)

    def __init__(self, delta1: Any = 1e-3, alpha: Any = 0.1, fit_fraction: Any = 0.1, points: int = 512,
                 norm: bool = False):
        if check.is_concrete((delta1, alpha, fit_fraction)):
            delta1 = check.positive("delta1", delta1)
            alpha = check.in_open_interval("alpha", alpha, 0.0, 1.0)
            fit_fraction = check.in_open_interval("fit_fraction", fit_fraction, 0.0, 1.0)
        self.delta1 = jnp.asarray(delta1)
        self.alpha = jnp.asarray(alpha)
        self.fit_fraction = jnp.asarray(fit_fraction)
        self.points = check.integer("event_points", points, 2)
        self.norm = bool(norm)


class Solution(eqx.Module):
    """What :func:`solve` returns; every leaf has a leading batch axis ``B``.

    Attributes:
        rho, ubar: log-norms ``(B, K, m)`` and unit directions ``(B, K, d, m)`` at the save times
            (with :func:`solve`'s ``save_into``: the whole buffers given).
        observations: Definition 1's quantities on the event grid (:class:`Observation`,
            ``(B, Ke, ...)``), or None without events.
        tracked: membership, discovery and fit times (:class:`Tracked`), or None.
        event_ts: the event grid ``(B, Ke)``, or None.
        status: :class:`deflation.Status` codes: ``SUCCESS``, ``MAX_STEPS``, ``NONFINITE`` or
            ``SOLVER_FAILED``, (B,).
        num_steps, num_accepted_steps, num_rejected_steps: solver statistics, (B,).
    """

    # N = B, or the rows of the save_into buffers; one per factor matrix (a tuple) for the asymmetric model
    rho: Float[Array, "N K m"] | tuple[Float[Array, "N K m"], ...]
    ubar: Float[Array, "N K d m"] | tuple[Float[Array, "N K d m"], ...]
    observations: Observation | None
    tracked: Tracked | None
    event_ts: Float[Array, "B Ke"] | None
    status: Int[Array, " B"]
    num_steps: Int[Array, " B"]
    num_accepted_steps: Int[Array, " B"]
    num_rejected_steps: Int[Array, " B"]


def seed_chunk(B: int) -> int:
    """How many seeds one batched solve integrates at a time (its lanes).

    On CPU the loop's working set (the Gram matrices of every seed in flight) must stay in cache,
    so at most :data:`SEED_CHUNK` seeds are integrated at once (``benchmarks/README.md``); a larger
    batch goes through those lanes as a work queue (:func:`deflation.stepping.solve_batch`). On
    accelerators the whole batch is integrated at once. This changes nothing per seed: every
    seed's solve is its own (own steps, own controller).
    """
    return int(SEED_CHUNK.get(jax.default_backend(), 2**62))


def _status(result, y_start, y_end, f_start):
    """One trajectory's status from the solver's result code and the finiteness of its states."""
    finite = lambda tree: jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(tree)]))  # noqa: E731
    nonfinite = ~finite(y_end) | ~finite(f_start) | ~finite(y_start)
    status = jnp.where(result == stepping.OK, Status.SUCCESS,
                       jnp.where(result == stepping.MAX_STEPS, Status.MAX_STEPS, Status.SOLVER_FAILED))
    return jnp.where(nonfinite & (status != Status.MAX_STEPS), Status.NONFINITE, status).astype(jnp.int32)


def _from_diffrax(result):
    """diffrax's result code as :mod:`deflation.stepping`'s."""
    ok, maxed = diffrax.RESULTS.successful, diffrax.RESULTS.max_steps_reached
    return jnp.where(result == ok, stepping.OK, jnp.where(result == maxed, stepping.MAX_STEPS, stepping.FAILED))


def solve(
    target: Target,
    y0: (tuple[Float[Array, "B m"], Float[Array, "B d m"]]
         | tuple[tuple[Float[Array, "B m"], ...], tuple[Float[Array, "B d m"], ...]]),
    *,
    t1: Float[Array, "*B"],
    solver: SolverConfig,
    save_ts: Float[Array, "*B K"] | None = None,
    t0: Any = 0.0,
    lam: Any = 0.0,
    events: EventConfig | None = None,
    member: Int[Array, "B m"] | None = None,
    from_above: bool = True,
    frozen: bool = False,
    progress: bool = False,
    chunk: int | None = None,
    save_into: tuple[Any, Any] | None = None,
    model: Any = None,
) -> Solution:
    """Integrate the gradient flow (or, ``frozen=True``, the tensor-power dynamics of paper
    Eq. 1) in log-norm coordinates for a batch of initial states, and locate Definition 1's events.

    Pure and traceable (no input checks: the public wrappers check). ``lam``, ``t0``, ``t1`` and
    the settings' numbers may be traced.

    Args:
        target: the ground truth, one for the batch, or one per seed (a batched :class:`Target`,
            ``a`` (B, r), ``U`` (B, d, r); e.g. a random orthonormal ``U`` per seed).
        y0: ``(rho (B, m), ubar (B, d, m))``: log-norms and unit directions (for a model of ``p``
            factor matrices, the asymmetric one, ``((rho_1, ..., rho_p), (ubar_1, ..., ubar_p))``).
        t1: end time, one for all or one per trajectory ``(B,)`` (``t1 = t0``: no step).
        solver: the :class:`SolverConfig`.
        save_ts: save times ``(K,)`` or ``(B, K)`` within ``[t0, t1]``; default ``t1`` only.
        t0: start time.
        lam: regularization ``lam/2 |W|^2``.
        events: the :class:`EventConfig`, or None for no events. The event grid is
            ``linspace(t0, t1, events.points)`` per trajectory.
        member: ``S_i`` membership at ``t0`` ``(B, m)`` (Algorithm 2 carries it across phases);
            default: every column outside every ``S_i``.
        from_above: columns that start at or above ``delta1`` count as having met the norm
            condition at ``t0`` (a trajectory's real start; see :mod:`deflation.definition1`).
            Algorithm 2's phases pass False.
        frozen: the tensor-power dynamics (``R`` frozen at ``T*``) instead of the gradient flow.
        progress: a tqdm progress bar (diffrax's progress meter).
        chunk: seeds integrated at a time (default :func:`seed_chunk`). The loop of
            :mod:`deflation.stepping` runs them as a work queue of that many lanes (a lane whose
            seed ends takes the next one, so no chunk waits for its slowest seed); diffrax's own
            loop (implicit solvers) is mapped over chunks, the last one padded with copies of the
            last seed. Either way, every seed's result is the same.
        save_into: ``((rho, ubar), row)``: write the saved log-norms and directions into rows
            ``row, ..., row + B - 1`` of these buffers (``(N, K, m)`` and ``(N, K, d, m)``, filled
            with ``inf`` beforehand) and return them whole as ``rho`` and ``ubar``: a caller that
            solves a large batch chunk by chunk writes one output array in place (see
            :func:`deflation.stepping.solve_batch`). The batch is then solved at once (``chunk``
            is not used).
        model: a model of :mod:`deflation.models` (``None``: the paper's normalized model): its
            log-norm field is integrated, and Definition 1 reads its slots
            (:meth:`deflation.models.AbstractModel.event_terms`) and weights.

    Returns:
        a :class:`Solution`.
    """
    rho0, ubar0 = y0
    B, m = jax.tree_util.tree_leaves(rho0)[0].shape  # a tree of log-norms for a state of several factors
    dtype = jax.tree_util.tree_leaves(rho0)[0].dtype
    t0 = jnp.asarray(t0, dtype)
    t1 = jnp.broadcast_to(jnp.asarray(t1, dtype), (B,))
    save_ts = (t1[:, None] if save_ts is None
               else jnp.broadcast_to(jnp.asarray(save_ts, dtype), (B,) + jnp.shape(save_ts)[-1:]))
    member = jnp.full((B, m), -1, jnp.int32) if member is None else jnp.asarray(member, jnp.int32)
    if events is not None:
        event_ts = jax.vmap(lambda end: jnp.linspace(t0, end, events.points, dtype=dtype))(t1)
    else:
        event_ts = None
    batch = dict(y=(rho0, ubar0), t1=t1, save_ts=save_ts, member=member, event_ts=event_ts,
                 target=target if target.batched else None)
    run = lambda b, lanes=None: _solve_chunk(target if b["target"] is None else b["target"], b, t0, lam,  # noqa: E731
                                             solver, events, from_above, frozen, progress, save_into, model, lanes)
    if save_into is not None:
        return run(batch)
    lanes = seed_chunk(B) if chunk is None else int(chunk)
    if stepping.supports(solver.solver, solver.controller):  # a work queue: no lane waits for a chunk's slowest seed
        return run(batch, lanes)
    return map_chunks(run, batch, lanes)


def map_chunks(fn, batch, chunk: int):
    """``fn(batch)`` computed ``chunk`` seeds at a time (``lax.map`` over chunks; the last one padded
    with copies of the last seed, which are dropped): same result per seed, less memory at once."""
    B = jax.tree_util.tree_leaves(batch)[0].shape[0]
    if chunk >= B:
        return fn(batch)
    nb = -(-B // chunk)
    pad = nb * chunk - B
    stacked = jax.tree_util.tree_map(
        lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]).reshape((nb, chunk) + x.shape[1:]), batch)
    out = jax.lax.map(fn, stacked)
    return jax.tree_util.tree_map(lambda x: x.reshape((nb * chunk,) + x.shape[2:])[:B], out)


def _solve_chunk(target, batch, t0, lam, config: SolverConfig, events, from_above, frozen, progress,
                 save_into, model, lanes=None) -> Solution:
    """:func:`solve` for one chunk of seeds (a dict of batched inputs). A batched target (one per
    seed) travels as the term's per-trajectory ``args``; a single one is a constant of the field."""
    per_seed = target.batched
    if per_seed:
        term = diffrax.ODETerm(lambda t, y, args: lognorm_vector_field(y, args, lam, frozen, model))
        targets = target
    else:
        term = diffrax.ODETerm(lambda t, y, args: lognorm_vector_field(y, target, lam, frozen, model))
        targets = None
    seed_target = lambda tg: tg if per_seed else target  # noqa: E731  (inside a vmap over seeds)
    meter = diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter()
    y0, t1, save_ts, member, event_ts = (batch[k] for k in ("y", "t1", "save_ts", "member", "event_ts"))
    norm = events is not None and events.norm
    if events is not None:
        event_fn = lambda t, y, dydt, args: observe(seed_target(args[1]), y, dydt, args[0], norm=norm,
                                                                model=model)  # noqa: E731
    else:
        event_fn = None
    dummy = jnp.zeros(member.shape[:1])

    if stepping.supports(config.solver, config.controller):
        sol = stepping.solve_batch(
            term, config.solver, config.controller, t0, t1, y0, dt0=config.dt0, max_steps=config.max_steps,
            save_ts=save_ts, event_ts=event_ts, event_fn=event_fn, event_fill=fill if events is not None else None,
            event_args=(member, targets if per_seed else dummy), term_args=targets, save_into=save_into,
            lanes=lanes, progress_meter=meter,
        )
        ys, obs, result, last = sol.ys, sol.events, sol.result, sol.y_final
        stats = (sol.num_steps, sol.num_accepted_steps, sol.num_rejected_steps)
    else:  # implicit solvers: diffrax's own loop, vmapped (events from the exact field)
        def one(y, t_end, ts, mem, ets, tg):
            args = tg if per_seed else None
            subs = [diffrax.SubSaveAt(ts=ts)]
            if events is not None:
                subs.append(diffrax.SubSaveAt(
                    ts=ets, fn=lambda t, yy, a: event_fn(t, yy, term.vf(t, yy, a), (mem, tg))))
            sol = diffrax.diffeqsolve(
                term, config.solver, t0, t_end, config.dt0, y, args=args, saveat=diffrax.SaveAt(subs=subs),
                stepsize_controller=config.controller, max_steps=config.max_steps, throw=False, progress_meter=meter,
            )
            st = sol.stats
            return (sol.ys[0], sol.ys[1] if events is not None else None, _from_diffrax(sol.result),
                    (st["num_steps"], st["num_accepted_steps"], st["num_rejected_steps"]))

        ets = event_ts if event_ts is not None else save_ts
        ys, obs, result, stats = jax.vmap(one)(y0, t1, save_ts, member, ets, targets if per_seed else dummy)
        last = jax.tree_util.tree_map(lambda x: x[:, -1], ys)  # the last save point: t1
        if save_into is not None:
            ys = jax.tree_util.tree_map(lambda buf, y: jax.lax.dynamic_update_slice_in_dim(buf, y, save_into[1], 0),
                                        save_into[0], ys)
    B = member.shape[0]
    field_model = as_model(DEFAULT_MODEL if model is None else model)

    def post(y, last, res, ob, mem, ets, tg):
        tg = seed_target(tg)
        f0 = lognorm_vector_field(y, tg, lam, frozen, model)
        status = _status(res, y, last, f0)
        if events is None:
            return status, None
        above = (field_model.column_log_sizes(y, tg.order) >= log_positive(events.delta1)) if from_above else None
        tr = track(ets, ob, mem, tg.a, lam, events.delta1, events.alpha, events.fit_fraction, above, model=model,
                   order=tg.order)
        return status, tr

    # a few seeds at a time rather than the whole chunk at once: each of track's intermediates is
    # an event grid per seed, and for a whole chunk these are fresh arrays of tens of MB whose
    # page faults cost more than the arithmetic (same result per seed, 1.8x faster on CPU)
    inputs = (y0, last, result, obs, member, event_ts if event_ts is not None else save_ts,
              targets if per_seed else dummy)
    most = TRACK_BATCH.get(jax.default_backend())
    # a divisor of the chunk, so that the loop body is traced and compiled once (no remainder)
    batch = None if most is None or B <= most else max(k for k in range(1, most + 1) if B % k == 0)
    if batch is None:
        status, tracked = jax.vmap(post)(*inputs)
    else:
        status, tracked = jax.lax.map(lambda x: post(*x), inputs, batch_size=batch)
    num_steps, accepted, rejected = stats
    return Solution(rho=ys[0], ubar=ys[1], observations=obs, tracked=tracked, event_ts=event_ts, status=status,
                    num_steps=num_steps, num_accepted_steps=accepted, num_rejected_steps=rejected)
