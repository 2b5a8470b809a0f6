"""Gradient flow on ``L(W) = 1/2 |T - T*|^2 + lam/2 |W|^2``, integrated by diffrax in log-norm
coordinates, one compiled call for a whole batch of initializations (each with its own steps)."""

from __future__ import annotations

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from . import _validate as check
from . import stepping
from .contract import evaluate, evaluate_residual_precise, matmul, residual_norm_sq, sum_rows
from .dynamics import check_W, from_lognorm, lognorm_vector_field, normalize, to_lognorm
from .events import discovery_times, fit_times, hermite_value_and_slope
from .target import Target

#: Status codes of a trajectory (``FlowResult.status``).
SUCCESS, MAX_STEPS, NONFINITE, SOLVER_FAILED = 0, 1, 2, 3
STATUS_NAMES = {SUCCESS: "success", MAX_STEPS: "max_steps reached", NONFINITE: "non-finite state", SOLVER_FAILED: "solver failed"}


class FlowResult(eqx.Module):
    """What :func:`gradient_flow` returns. A leading batch axis ``B`` is present when ``W0`` was
    a batch; ``K = len(ts)``.

    Attributes:
        ts: save times (K,).
        W: the state at every save time, (B, K, d, m).
        log_norm: ``log |w_j|`` at every save time, (B, K, m) (exact even where ``W`` underflows).
        loss: ``L(W)`` at the save times, (B, K), accurate far below 1e-16 |T*|^2 (see ``loss_floor``).
        loss_floor: accuracy floor of ``loss`` (B, K): a value below it is not resolved. The larger
            of the rounding bound of the loss formula and the integration floor
            ``1/2 (10 (p + 2) tol sum_j |w_j|^2)^2``, ``tol = max(rtol, atol)`` of the step-size
            controller: the loss of a state whose directions and log-norms carry errors of size
            ``tol`` (checked against a high-accuracy solve in the tests).
        residual: ``(T* - T)(u_i^p)`` for each ground truth ``i``, (B, K, r).
        discovery_time: first time a column reaches norm ``delta1`` with ``wbar_i^2 >= 1 - alpha^2``
            (Definition 1), (B, r); ``inf`` if not within the horizon.
        fit_time: first time ``i`` is fitted (see :func:`deflation.events.fit_times`), (B, r).
        member: for each column, the ground truth ``i`` whose ``S_i`` it joined (Definition 1), or -1, (B, m).
        num_steps, num_accepted_steps, num_rejected_steps: solver statistics, (B,).
        status: 0 success, 1 max_steps reached, 2 non-finite state, 3 other solver failure, (B,).
    """

    ts: Float[Array, " K"]
    W: Float[Array, "*B K d m"]
    log_norm: Float[Array, "*B K m"]
    loss: Float[Array, "*B K"]
    loss_floor: Float[Array, "*B K"]
    residual: Float[Array, "*B K r"]
    discovery_time: Float[Array, "*B r"]
    fit_time: Float[Array, "*B r"]
    member: Int[Array, "*B m"]
    num_steps: Int[Array, "*B"]
    num_accepted_steps: Int[Array, "*B"]
    num_rejected_steps: Int[Array, "*B"]
    status: Int[Array, "*B"]

    @property
    def batched(self) -> bool:
        return self.status.ndim == 1

    def failed(self) -> list[tuple[int, str]]:
        """``[(batch index, reason), ...]`` for every trajectory whose status is not success."""
        status = np.atleast_1d(np.asarray(self.status))
        return [(int(i), STATUS_NAMES[int(s)]) for i, s in enumerate(status) if s != SUCCESS]


def _event_summary(target: Target):
    """``fn(t, y, dydt)``: the crossing quantities of Definition 1 and the fit criterion, with
    their time derivatives (``dydt``: the vector field at ``y``, or the dense output's
    derivative), evaluated at the end of every solver step; :func:`_event_fill` carries them onto
    the event grid points inside the step."""

    truth = evaluate(target.U, target.a, target.U, target.order)

    def crossing_quantities(y):
        rho, ubar = y
        u = normalize(ubar)
        C = matmul(target.U.T, u)  # (r, m)
        # (T* - T)(u_i^p), float route: events compare it with a fraction of a_i
        res = truth - (jnp.exp(2.0 * rho)[None, :] * C**target.order).sum(axis=1)
        return res, (u, C)

    def fn(t, y, dydt):
        res, dres, (u, C) = jax.jvp(crossing_quantities, (y,), (dydt,), has_aux=True)
        # 1 - wbar_i^2 as |u - <u_i, u> u_i|^2 for every i (resolved even for the tiny alpha of
        # Theorem 1); the best-correlated i is the one where it is smallest
        mis_all = sum_rows((u[None, :, :] - C[:, None, :] * target.U.T[:, :, None]) ** 2)  # (r, m)
        best = jnp.argmin(mis_all, axis=0)
        return dict(
            log_norm=y[0],
            dlog_norm=dydt[0],
            misalignment=jnp.min(mis_all, axis=0),
            best_idx=best.astype(u.dtype),  # float: unreached grid points hold inf
            residual=res,
            dresidual=dres,
        )

    return fn


def _event_fill(x, h, s0, s1):
    """Event-grid values at ``x`` in ``[0, 1]`` of a step of length ``h`` from the summaries at
    its ends: cubic Hermite for the log-norms and residuals (value and derivative at both ends),
    linear for the misalignment, nearest end for the best-correlated index."""

    log_norm, dlog_norm = hermite_value_and_slope(x, h, s0["log_norm"], s1["log_norm"], s0["dlog_norm"], s1["dlog_norm"])
    residual, dresidual = hermite_value_and_slope(x, h, s0["residual"], s1["residual"], s0["dresidual"], s1["dresidual"])
    return dict(
        log_norm=log_norm, dlog_norm=dlog_norm, residual=residual, dresidual=dresidual,
        misalignment=(1 - x) * s0["misalignment"] + x * s1["misalignment"],
        best_idx=jnp.where(x < 0.5, s0["best_idx"], s1["best_idx"]),
    )


def solve_lognorm(
    target: Target, state, t0, t1, lam, *, solver=None, stepsize_controller=None, dt0=None,
    max_steps: int = 100_000, frozen: bool = False, saveat: diffrax.SaveAt | None = None,
) -> diffrax.Solution:
    """Pure, traceable solve of the log-norm flow for one trajectory ``state = (rho, ubar)``
    from ``t0`` to ``t1`` (both may be traced), with ``throw=False``: the building block for
    callers that run inside ``jit``/``vmap``/``lax.scan`` (Algorithm 2, Monte Carlo). No input
    checks; defaults are Tsit5 with ``PIDController(1e-8, 1e-8)``.
    """
    solver = diffrax.Tsit5() if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=1e-8, atol=1e-8)
    term = diffrax.ODETerm(lambda t, y, args: lognorm_vector_field(y, target, lam, frozen))
    return diffrax.diffeqsolve(
        term, solver, t0, t1, dt0, state, saveat=saveat or diffrax.SaveAt(t1=True),
        stepsize_controller=stepsize_controller, max_steps=max_steps, throw=False,
    )


#: Seeds per vmapped solve on each backend (others: the whole batch at once). See :func:`_seed_chunk`.
SEED_CHUNK = {"cpu": 128}


def _seed_chunk(B: int) -> int:
    """How many seeds one batched solve handles; larger batches are mapped over chunks.

    The batched loop (:mod:`deflation.stepping`) runs until its slowest seed is done, and on CPU
    its working set (the Gram matrices of every seed) must stay in cache: 512 Figure 1 seeds
    (rtol = atol = 1e-6, t = 300) measured side by side took 4.4 s in chunks of 128 or 256 and
    6.1 s as one batch. On accelerators the whole batch is solved at once. Chunking changes
    nothing per seed: every seed's solve is its own (own steps, own controller); the tests check
    it to 1e-12.
    """
    return int(SEED_CHUNK.get(jax.default_backend(), 2**62))


@eqx.filter_jit
def _solve_batch(target, y0, ts, event_ts, t0, lam, delta1, alpha, fit_fraction, tol, solver, controller, dt0, max_steps, frozen, precise, progress_meter, chunk=2**62):
    """One compiled call: batched solve (:func:`deflation.stepping.solve_batch`) + event location
    + loss for a batch (B, ...), ``chunk`` seeds at a time (see :func:`_seed_chunk`)."""
    term = diffrax.ODETerm(lambda t, y, args: lognorm_vector_field(y, target, lam, frozen))
    summary = _event_summary(target)

    def post(y, ys, ev, result):
        """Per seed: loss, residual and events from the saved states and the event grid."""
        rho, ubar = ys
        u = normalize(ubar)
        omega = jnp.exp(2.0 * rho)
        sq, floor = jax.vmap(lambda uu, om: residual_norm_sq(uu, om, target, precise))(u, omega)
        loss = 0.5 * sq + 0.5 * lam * omega.sum(-1)
        floor = jnp.maximum(floor, (10 * (target.order + 2) * tol * omega.sum(-1)) ** 2)
        residual = jax.vmap(lambda uu, om: evaluate_residual_precise(uu, om, target, target.U))(u, omega)
        discovery, crossing, member = discovery_times(
            event_ts, ev["log_norm"], ev["dlog_norm"], ev["misalignment"], jnp.where(jnp.isfinite(ev["best_idx"]), ev["best_idx"], -1).astype(jnp.int32),
            r=target.r, delta1=delta1, alpha=alpha,
        )
        fit = fit_times(
            event_ts, ev["residual"], ev["dresidual"], ev["log_norm"], ev["dlog_norm"],
            crossing, member, target.a, lam, fit_fraction,
        )
        f0 = lognorm_vector_field(y, target, lam, frozen)
        nonfinite = ~(jnp.isfinite(rho[-1]).all() & jnp.isfinite(ubar[-1]).all())
        nonfinite = nonfinite | ~(jnp.isfinite(f0[0]).all() & jnp.isfinite(f0[1]).all())
        status = jnp.where(result == stepping.OK, SUCCESS, jnp.where(result == stepping.MAX_STEPS, MAX_STEPS, SOLVER_FAILED))
        status = jnp.where(nonfinite & (status != MAX_STEPS), NONFINITE, status)
        return dict(
            W=from_lognorm(rho, ubar), log_norm=rho, loss=loss, loss_floor=0.5 * floor, residual=residual,
            discovery_time=discovery, fit_time=fit, member=member, status=status,
        )

    def solve(y):
        if stepping.supports(solver):
            sol = stepping.solve_batch(
                term, solver, controller, t0, ts[-1], y, dt0=dt0, max_steps=max_steps, save_ts=ts,
                event_ts=event_ts, event_fn=summary, event_fill=_event_fill, progress_meter=progress_meter,
            )
            ys, ev, result = sol.ys, sol.events, sol.result
            stats = dict(num_steps=sol.num_steps, num_accepted_steps=sol.num_accepted_steps,
                         num_rejected_steps=sol.num_rejected_steps)
        else:  # implicit solvers: diffrax's own loop, vmapped (events from the exact field)
            ys, ev, result, stats = jax.vmap(solve_one)(y)
        out = jax.vmap(post)(y, ys, ev, result)
        out.update(stats)
        return out

    def solve_one(y):
        saveat = diffrax.SaveAt(subs=[
            diffrax.SubSaveAt(ts=ts),
            diffrax.SubSaveAt(ts=event_ts, fn=lambda t, yy, args: summary(t, yy, term.vf(t, yy, args))),
        ])
        sol = diffrax.diffeqsolve(
            term, solver, t0, ts[-1], dt0, y, saveat=saveat, stepsize_controller=controller,
            max_steps=max_steps, throw=False, progress_meter=progress_meter,
        )
        ok, maxed = diffrax.RESULTS.successful, diffrax.RESULTS.max_steps_reached
        result = jnp.where(sol.result == ok, stepping.OK, jnp.where(sol.result == maxed, stepping.MAX_STEPS, stepping.FAILED))
        stats = {k: sol.stats[k] for k in ("num_steps", "num_accepted_steps", "num_rejected_steps")}
        return sol.ys[0], sol.ys[1], result, stats

    B = y0[0].shape[0]
    if chunk >= B:
        return solve(y0)
    # lax.map over chunks of seeds (the last one padded with copies of the last seed)
    nb = -(-B // chunk)
    pad = nb * chunk - B
    yc = jax.tree_util.tree_map(
        lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]).reshape((nb, chunk) + x.shape[1:]), y0
    )
    out = jax.lax.map(solve, yc)
    return jax.tree_util.tree_map(lambda x: x.reshape((nb * chunk,) + x.shape[2:])[:B], out)


def _tolerance(controller) -> float:
    """``max(rtol, atol)`` of an adaptive controller (0 when it has none, e.g. constant steps)."""
    try:
        return float(max(jnp.max(controller.rtol), jnp.max(controller.atol)))
    except (AttributeError, TypeError):
        return 0.0


def _as_initial_state(W0, target: Target):
    """``(rho, ubar)`` batch (B, m), (B, d, m) from ``W0`` given as an array or as ``(rho, ubar)``."""
    if isinstance(W0, tuple):
        if len(W0) != 2:
            raise ValueError("W0 given as a tuple must be (rho, ubar): log-norms (.., m) and directions (.., d, m)")
        rho, ubar = jnp.asarray(W0[0]), check_W("W0[1] (ubar)", W0[1], target, batch=True)
        if rho.shape != ubar.shape[:-2] + ubar.shape[-1:]:
            raise ValueError(f"W0[0] (rho) must have shape {ubar.shape[:-2] + ubar.shape[-1:]}, got {rho.shape}")
        if check.is_concrete(rho):
            check.finite_array("W0[0] (rho)", np.asarray(rho))
        if check.is_concrete(ubar) and (np.linalg.norm(np.asarray(ubar), axis=-2) == 0).any():
            raise ValueError("W0[1] (ubar) must have non-zero columns")
        batched = ubar.ndim == 3
        state = (rho, normalize(ubar))
    else:
        W0 = check_W("W0", W0, target, batch=True)
        if check.is_concrete(W0):
            norms = np.linalg.norm(np.asarray(W0), axis=-2)
            if (norms == 0).any():
                idx = tuple(int(i) for i in np.argwhere(norms == 0)[0])
                raise ValueError(f"W0 must have non-zero columns (the flow keeps w = 0 at 0), got a zero column at {idx}")
        batched = W0.ndim == 3
        state = to_lognorm(W0)
    if not batched:
        state = jax.tree_util.tree_map(lambda x: x[None], state)
    return state, batched


def gradient_flow(
    target: Target,
    W0: Any,
    ts: Any,
    *,
    lam: float = 0.0,
    t0: float = 0.0,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    dt0: float | None = None,
    max_steps: int = 100_000,
    progress: bool = False,
    delta1: float = 1e-3,
    alpha: float = 0.1,
    fit_fraction: float = 0.1,
    event_points: int = 512,
    precise_loss: bool | None = None,
    frozen: bool = False,
) -> FlowResult:
    """Integrate the gradient flow ``dW/dt = -grad L(W)`` from ``W0`` at ``t0`` and save at ``ts``.

    The ODE is solved in log-norm coordinates (``w = exp(rho) ubar``, see
    :mod:`deflation.dynamics`), so initial scales from 1e-15 to 1e-100 and below integrate with
    full relative accuracy. ``W0`` is (d, m) or a batch (B, d, m) (or a pair ``(rho, ubar)`` of
    log-norms and directions for scales that underflow); a batch runs in one compiled call
    (:func:`deflation.stepping.solve_batch`: explicit Runge-Kutta methods; ``vmap(diffeqsolve)``
    for implicit ones), each trajectory with its own adaptive steps, so its result does not depend
    on the batch.

    Args:
        target: the ground truth ``T*``.
        W0: initial components.
        ts: save times, strictly increasing, ``>= t0``; the solve ends at ``ts[-1]``.
        lam: regularization ``lam/2 |W|_F^2`` (paper Section 4), ``>= 0``.
        t0: initial time.
        solver: any diffrax solver; default ``diffrax.Tsit5()`` (adaptive explicit Runge-Kutta).
        stepsize_controller: any diffrax controller; default ``PIDController(rtol, atol)``.
            A ``ConstantStepSize`` needs ``dt0``.
        rtol, atol: tolerances of the default controller (> 0).
        dt0: initial step (None: chosen by the controller).
        max_steps: step budget per trajectory; a trajectory that exhausts it gets status 1.
        progress: show a tqdm progress bar (diffrax's progress meter).
        delta1, alpha: Definition 1 thresholds for "discovered" (norm ``delta1``, ``wbar_i^2 >= 1 - alpha^2``).
        fit_fraction: for ``lam = 0`` a component is fitted when its residual is ``<= fit_fraction * a_i``.
        event_points: size of the uniform grid on which events are bracketed (>= 2). The event
            quantities are evaluated once per solver step and interpolated onto the grid, so a
            finer grid costs almost nothing.
        precise_loss: double-double loss (default: when ``d m (m + r) <= 2^22``).
        frozen: integrate the tensor-power dynamics (paper Eq. 1, ``R`` frozen at ``T*``) instead.

    Returns:
        a :class:`FlowResult`.
    """
    if not isinstance(target, Target):
        raise TypeError(f"target must be a deflation.Target, got {type(target).__name__}")
    y0, batched = _as_initial_state(W0, target)
    lam = check.nonnegative("lam", lam)
    t0 = check.finite("t0", t0)
    ts_np = check.array("ts", ts, 1).astype(np.float64)
    if ts_np.size < 1:
        raise ValueError("ts must hold at least one save time, got an empty array")
    check.finite_array("ts", ts_np)
    if ts_np.size > 1 and not (np.diff(ts_np) > 0).all():
        i = int(np.argmax(np.diff(ts_np) <= 0))
        raise ValueError(f"ts must be strictly increasing, got ts[{i}] = {ts_np[i]!r} >= ts[{i + 1}] = {ts_np[i + 1]!r}")
    if ts_np[0] < t0:
        raise ValueError(f"ts must not start before t0 = {t0!r}, got ts[0] = {ts_np[0]!r}")
    if ts_np[-1] <= t0:
        raise ValueError(f"ts[-1] must be after t0 = {t0!r} (the solve ends there), got {ts_np[-1]!r}")
    rtol = check.positive("rtol", rtol)
    atol = check.positive("atol", atol)
    if dt0 is not None:
        dt0 = check.positive("dt0", dt0)
    max_steps = check.integer("max_steps", max_steps, 1)
    delta1 = check.positive("delta1", delta1)
    alpha = check.in_open_interval("alpha", alpha, 0.0, 1.0)
    fit_fraction = check.in_open_interval("fit_fraction", fit_fraction, 0.0, 1.0)
    event_points = check.integer("event_points", event_points, 2)
    if solver is None:
        solver = diffrax.Tsit5()
    elif not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"solver must be a diffrax solver (e.g. diffrax.Dopri5()), got {type(solver).__name__}")
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=jnp.asarray(rtol), atol=jnp.asarray(atol))
    elif not isinstance(stepsize_controller, diffrax.AbstractStepSizeController):
        raise TypeError(f"stepsize_controller must be a diffrax step-size controller, got {type(stepsize_controller).__name__}")
    if isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
        raise ValueError("dt0 must be given (> 0) with a ConstantStepSize controller")
    dtype = y0[0].dtype
    event_ts = jnp.linspace(t0, ts_np[-1], event_points, dtype=dtype)
    meter = diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter()
    out = _solve_batch(
        target, y0, jnp.asarray(ts_np, dtype), event_ts, jnp.asarray(t0, dtype), jnp.asarray(lam, dtype),
        jnp.asarray(delta1, dtype), jnp.asarray(alpha, dtype), jnp.asarray(fit_fraction, dtype),
        jnp.asarray(_tolerance(stepsize_controller), dtype), solver, stepsize_controller, dt0, max_steps, frozen,
        precise_loss, meter, _seed_chunk(y0[0].shape[0]),
    )
    if not batched:
        out = {k: v[0] for k, v in out.items()}
    return FlowResult(ts=jnp.asarray(ts_np, dtype), **out)
