"""Gradient flow on ``L(W) = 1/2 |T - T*|^2 + lam/2 |W|^2``, integrated by diffrax in log-norm
coordinates, one compiled call for a whole batch of initializations (each with its own steps)."""

from __future__ import annotations

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from . import _validate as check, memory
from .contract import precise_by_default, precise_for_tolerance, split_norms
from .dynamics import check_W, to_lognorm, working_dtype
from .integrate import EventConfig, SolverConfig, failures, seed_chunk, solve
from .models import AbstractModel, as_model
from .status import Status
from .target import Target, as_target


class FlowResult(eqx.Module):
    """What :func:`gradient_flow` returns. A leading batch axis ``B`` is present when ``W0`` was
    a batch; ``K = len(ts)``.

    Attributes:
        ts: save times (K,).
        W: the state at every save time, (B, K, d, m); for a model of several factor matrices
            (the asymmetric one) a tuple of them, one (B, K, d, m) per mode.
        log_norm: ``log |w_j|`` at every save time, (B, K, m) (exact even where ``W`` underflows);
            a tuple of them, one per mode, for a model of several factor matrices.
        loss: ``L(W)`` at the save times, (B, K), accurate far below ``1e-16 |T*|^2`` (see ``loss_floor``).
        loss_floor: accuracy floor of ``loss`` (B, K): a value below it is not resolved. The larger
            of the rounding bound of the loss formula and the integration floor
            ``1/2 (10 (p + 2) tol sum_j |w_j|^2)^2``, ``tol = max(rtol, atol, eps)`` (the step-size
            controller's tolerances; the dtype's ``eps`` for constant steps): the loss of a state
            whose directions and log-norms carry errors of size ``tol`` (checked against a
            high-accuracy solve in the tests).
        residual: ``(T* - T)(u_i^p)`` for each ground truth ``i``, (B, K, r).
        discovery_time: first time a column reaches norm ``delta1`` with ``wbar_i^2 >= 1 - alpha^2``
            (Definition 1), (B, r); ``inf`` if not within the horizon. Read on the model's slots
            (:meth:`deflation.models.AbstractModel.definition`): at order ``p >= 3`` its columns
            (the asymmetric model's rank-one terms), at order 2 the spectrum (``"spectral"``: the
            eigenpairs of ``W W^T``, the singular pairs of ``W_1 W_2^T``, largest first).
        fit_time: first time ``i`` is fitted (``a_i - ahat_i <= 2 lam``; with ``lam = 0`` the
            residual on ``u_i`` drops to ``fit_fraction * a_i``, see :mod:`deflation.definition1`), (B, r).
        member: for each column (slot: at order 2 the ``k``-th largest eigen- or singular pair), the
            ground truth ``i`` whose ``S_i`` it joined (Definition 1), or -1, (B, m).
        join_time: for each column (slot), when it joined that ``S_i`` (inf: it did not), (B, m).
        num_steps, num_accepted_steps, num_rejected_steps: solver statistics, (B,).
        status: a :class:`deflation.Status` code per trajectory: 0 success, 1 max_steps reached,
            2 non-finite state (also: ``W`` or the loss at a save point overflowed), 3 other solver
            failure, 4 the loss increased (see :func:`loss_increased`; never with ``frozen=True``,
            whose dynamics is not a gradient flow of ``L``), (B,).
    """

    ts: Float[Array, " K"]
    W: Float[Array, "*B K d m"] | tuple[Float[Array, "*B K d m"], ...]
    log_norm: Float[Array, "*B K m"] | tuple[Float[Array, "*B K m"], ...]
    loss: Float[Array, "*B K"]
    loss_floor: Float[Array, "*B K"]
    residual: Float[Array, "*B K r"]
    discovery_time: Float[Array, "*B r"]
    fit_time: Float[Array, "*B r"]
    member: Int[Array, "*B m"]
    join_time: Float[Array, "*B m"]
    num_steps: Int[Array, "*B"]
    num_accepted_steps: Int[Array, "*B"]
    num_rejected_steps: Int[Array, "*B"]
    status: Int[Array, "*B"]

    @property
    def batched(self) -> bool:
        return self.status.ndim == 1

    def failed(self) -> list[tuple[int, str]]:
        """``[(batch index, reason), ...]`` for every trajectory whose status is not success."""
        return failures(self.status)


def loss_increased(loss: Float[Array, "*B K"], floor: Float[Array, "*B K"]) -> Bool[Array, "*B"]:
    """Whether the loss of a trajectory rises between consecutive save points by more than its
    accuracy floor and the rounding of the two values: ``loss[k+1] - loss[k] > max(min(floor[k],
    floor[k+1]), eps max(|loss[k]|, |loss[k+1]|))`` for some ``k`` (``eps`` of the loss's dtype).

    The loss of a gradient flow never increases, so such a rise means the solve is not accurate
    (a tolerance too loose for the problem: at ``rtol = atol = 1e-1`` a d = 4 flow went
    0.2521 -> 0.1287 -> 0.2521). Why the smaller of the two floors (``FlowResult.loss_floor``):

    - near convergence the loss sinks into its floor and is noise there; both floors are then
      about equal (they scale with ``sum_j |w_j|^2``, which barely changes) and the noise stays
      below them (the floor has a factor 10 of safety on the state error);
    - elsewhere the loss is resolved far better than the floor between neighbouring save points
      (the floor bounds the accumulated error of each state, which changes slowly from one save
      point to the next), while a loose solve makes a jump of order the loss itself;
    - the larger floor would hide exactly the failures to catch: a state that blows up has a
      floor as large as its loss.

    Measured (the tests and ``tests/test_robustness.py``): correct runs at tolerances 1e-4 to
    1e-10 (Figure 1 with 301 save points, lam = 0 and 0.01; d = 4 from initial norms 1e-3 to 3)
    rise by at most 0.15 of the smaller floor, while at ``rtol = atol = 1e-1`` the rises exceed it
    many times over. Figure 1 at ``rtol = atol = 1e-3`` is flagged too: its loss does rise, by
    3e-4. A NaN loss is not a rise (a non-finite loss is flagged on its own).

    Why the rounding term: the floor bounds the error of the computed loss, but each value is then
    rounded to its dtype, by up to half a unit in the last place (ulp) of the value itself, so two
    values of one constant loss may differ by an ulp. Far above its floor that ulp is the larger:
    with fewer columns than components (Figure 1 with m = 3, r = 5) the loss stays on a plateau at
    0.0457, where one ulp is 6.9e-18 and the floor 5.9e-18, and a flat trajectory at rtol = 1e-10
    read as a rise. ``eps |loss|`` is at least one ulp of the larger value, and far below any rise
    a loose solve makes (of the order of the loss itself).
    """
    rise = loss[..., 1:] - loss[..., :-1]
    eps = jnp.finfo(jnp.result_type(loss)).eps
    rounding = eps * jnp.maximum(jnp.abs(loss[..., 1:]), jnp.abs(loss[..., :-1]))
    return (rise > jnp.maximum(jnp.minimum(floor[..., 1:], floor[..., :-1]), rounding)).any(axis=-1)


@eqx.filter_jit
def _flow(target, y0, ts, t0, lam, solver: SolverConfig, events: EventConfig, frozen, precise, progress, chunk: int,
          block: int, model):
    """One compiled call: :func:`deflation.integrate.solve` and the loss and residual time series,
    ``chunk`` seeds at a time, the series ``block`` saved states at a time (both chosen by
    :func:`deflation.memory.flow_plan`; neither changes a seed's result)."""
    tol = solver.tolerance()

    def series(rho, ubar):
        """Per saved state: ``W``, the loss, its accuracy floor and the residual on every u_i."""
        return model.series((rho, ubar), target, lam, precise, tol)

    B = jax.tree_util.tree_leaves(y0)[0].shape[0]
    K = ts.shape[0]
    chunk = min(chunk, B)
    block = min(block, chunk * K)
    # The saved states are the largest arrays of a call (616 MB for 512 Figure 1 seeds with 301
    # save points): they are written once and then turned into W in place, in the arrays that are
    # returned. Every chunk of seeds solves into its rows of one (B, K, ...) buffer (no per-chunk
    # buffer stacked afterwards: two more passes over it), and the series, which normalizes the
    # directions anyway, overwrites each saved direction with its W. A chunk or block at the end
    # starts early enough to fit (it overlaps the one before, and the chunk writes the same values
    # again), so nothing is padded or copied. (A state of several factor matrices, the asymmetric
    # model's, is a tree of such buffers, one per factor.)
    saved = jax.tree_util.tree_map(lambda x: jnp.full((B, K) + x.shape[1:], jnp.inf, x.dtype), y0)
    rows = lambda x: x.reshape((B * K,) + x.shape[2:])  # noqa: E731  (seed and save point as one axis)
    tree_map = jax.tree_util.tree_map

    def run(saved, i):
        start = jnp.minimum(i * chunk, B - chunk)
        y = jax.tree_util.tree_map(lambda x: jax.lax.dynamic_slice_in_dim(x, start, chunk), y0)
        sol = solve(target, y, t1=ts[-1], save_ts=ts, t0=t0, lam=lam, solver=solver, events=events, frozen=frozen,
                    progress=progress, save_into=(saved, start), model=model)
        n = chunk * K  # this chunk's states, from state start * K of the buffers in row order

        def series_block(j, carry):
            W, out = carry
            at = jnp.minimum(j * block, n - block)  # the last block may overlap the one before
            rho = tree_map(lambda r: jax.lax.dynamic_slice_in_dim(rows(r), start * K + at, block), sol.rho)
            # directions, or W if done
            x = tree_map(lambda w: jax.lax.dynamic_slice_in_dim(w, start * K + at, block), W)
            W_new, vals = jax.vmap(series)(rho, x)
            if n % block:  # an overlap's states are W already: kept as they are
                new = (at + jnp.arange(block)) >= j * block
                keep = lambda v, o: jnp.where(new.reshape((block,) + (1,) * (v.ndim - 1)), v, o)  # noqa: E731
            else:
                keep = lambda v, o: v  # noqa: E731
            W = tree_map(lambda w, wn, o: jax.lax.dynamic_update_slice_in_dim(w, keep(wn, o), start * K + at, 0),
                         W, W_new, x)
            out = {k: jax.lax.dynamic_update_slice_in_dim(
                out[k], keep(v, jax.lax.dynamic_slice_in_dim(out[k], at, block)), at, 0) for k, v in vals.items()}
            return W, out

        first = lambda x: x[0, :1]  # noqa: E731
        shapes = jax.eval_shape(jax.vmap(series), tree_map(first, sol.rho), tree_map(first, sol.ubar))[1]
        out = {k: jnp.zeros((n,) + v.shape[1:], v.dtype) for k, v in shapes.items()}
        W, out = jax.lax.fori_loop(0, -(-n // block), series_block, (tree_map(rows, sol.ubar), out))
        saved = (sol.rho, tree_map(lambda w, u: w.reshape(u.shape), W, sol.ubar))
        out = {k: v.reshape((chunk, K) + v.shape[1:]) for k, v in out.items()}
        # a successful solve whose saved states or losses overflowed (a loose tolerance's dense
        # output between far-apart steps), or whose loss rose, is not a success
        ok = sol.status == Status.SUCCESS
        # (a finite loss implies a finite W: it needs omega = exp(2 rho) < inf, hence exp(rho) < inf,
        # and finite directions; so W itself, the largest array, is not read again)
        finite = jnp.isfinite(out["loss"]).all(axis=1)
        status = jnp.where(ok & ~finite, Status.NONFINITE, sol.status)
        if not frozen:  # the tensor-power dynamics is not a gradient flow of L
            rose = loss_increased(out["loss"], out["loss_floor"])
            status = jnp.where((status == Status.SUCCESS) & rose, Status.LOSS_INCREASED, status)
        out.update(discovery_time=sol.tracked.discovery_time, fit_time=sol.tracked.fit_time,
                   member=sol.tracked.member, join_time=sol.tracked.join_time, status=status.astype(jnp.int32),
                   num_steps=sol.num_steps,
                   num_accepted_steps=sol.num_accepted_steps, num_rejected_steps=sol.num_rejected_steps)
        return saved, out

    nb = -(-B // chunk)
    saved, per_chunk = jax.lax.scan(run, saved, jnp.arange(nb))
    # the per-chunk outputs (small) in seed order: the last chunk's first rows repeat the chunk before
    overlap = nb * chunk - B
    out = jax.tree_util.tree_map(
        lambda x: jnp.concatenate([x[:-1].reshape((-1,) + x.shape[2:]), x[-1, overlap:]]), per_chunk)
    out.update(log_norm=saved[0], W=saved[1])
    return out


def flow_model(model: Any, target: Target) -> AbstractModel:
    """The model ``model`` names (or is), for :func:`gradient_flow`: every model of
    :mod:`deflation.models` at every order ``p >= 2`` (Definition 1 on columns or rank-one terms
    at ``p >= 3``, on the spectrum at ``p = 2``: :meth:`deflation.models.AbstractModel.definition`).

    Raises:
        ValueError / TypeError: an unknown model (:func:`deflation.models.as_model`).
    """
    return as_model(model)


def flow_plan(B: int, d: int, m: int, r: int, K: int, P: int, precise: bool | None, itemsize: int,
              names: dict[str, str] | None = None) -> memory.MemoryEstimate:
    """How :func:`gradient_flow` runs ``B`` seeds of ``m`` columns in ``d`` dimensions with ``K``
    save points and ``P`` event points: the memory estimate (:func:`deflation.memory.flow_memory`)
    with the most seeds per chunk (at most :func:`deflation.integrate.seed_chunk`) that fit in the
    memory available.

    Raises:
        ValueError: even one seed at a time does not fit; the message gives the estimate, the
            memory available and what to change, with the argument names in ``names`` (keys
            ``seeds``, ``m``, ``save_points``, ``event_points``; default the library's).
    """
    names = names or dict(seeds="seeds (the batch of W0)", m="m", save_points="save points (ts)",
                          event_points="event_points", precise="the float loss (precise_loss=False)")
    available = memory.available_memory()
    estimate = memory.fit_chunk(
        lambda c: memory.flow_memory(seeds=B, d=d, m=m, r=r, save_points=K, event_points=P, precise=precise,
                                     itemsize=itemsize, chunk=c), seed_chunk(B), available)
    memory.require_fits(estimate, available, f"a gradient flow of {B} seed(s) with m = {m} columns in d = {d} "
                        f"dimensions and {K} save points", memory.suggest(estimate, names))
    return estimate


# one compiled program each (cached across processes), rather than some forty operations
# dispatched one by one: in a new process those cost about a second of compilation on every start
_to_lognorm, _split_norms = jax.jit(to_lognorm), jax.jit(split_norms)


def _as_initial_state(W0, target: Target):
    """``(rho, ubar)`` batch (B, m), (B, d, m) from ``W0`` given as an array or as ``(rho, ubar)``, in
    :func:`deflation.dynamics.working_dtype`.

    Norms are taken without underflow (:func:`deflation.contract.column_norms`): every non-zero
    column works, however small its entries; only a column that is exactly zero is refused.
    """
    if isinstance(W0, tuple):
        if len(W0) != 2:
            raise ValueError("W0 given as a tuple must be (rho, ubar): log-norms (.., m) and directions (.., d, m)")
        ubar = check_W("W0[1] (ubar)", W0[1], target, batch=True)
        rho = jnp.asarray(W0[0])
        dtype = working_dtype("W0[0] (rho)", jnp.result_type(rho.dtype, ubar.dtype), target)
        rho, ubar = rho.astype(dtype), ubar.astype(dtype)
        if rho.shape != ubar.shape[:-2] + ubar.shape[-1:]:
            raise ValueError(f"W0[0] (rho) must have shape {ubar.shape[:-2] + ubar.shape[-1:]}, got {rho.shape}")
        if check.is_concrete(rho):
            check.finite_array("W0[0] (rho)", np.asarray(rho))
        if check.is_concrete(ubar):
            _refuse_zero_columns("W0[1] (ubar)", np.asarray(ubar))
        batched = ubar.ndim == 3
        state = (rho, _split_norms(ubar)[1])  # unit directions, whatever the scale of ubar
    else:
        W0 = check_W("W0", W0, target, batch=True)
        if check.is_concrete(W0):
            _refuse_zero_columns("W0", np.asarray(W0))
        batched = W0.ndim == 3
        state = _to_lognorm(W0)
    dtype = state[1].dtype
    state = (state[0].astype(dtype), state[1])
    if not batched:
        state = jax.tree_util.tree_map(lambda x: x[None], state)
    return state, batched


def _as_initial_factors(W0, target: Target, model: AbstractModel):
    """``((rho_1, ..., rho_p), (ubar_1, ..., ubar_p))`` batches (B, m), (B, d, m) from a tuple ``W0``
    of factor matrices (d, m) or (B, d, m) (a model whose state has several factors: the
    asymmetric one), each column's norm taken without underflow."""
    factors = model.check_state("W0", W0, target, batch=True)
    for k, Wk in enumerate(factors):
        if check.is_concrete(Wk):
            _refuse_zero_columns(f"W0[{k}]", np.asarray(Wk))
    batched = factors[0].ndim == 3
    pairs = [_to_lognorm(Wk) for Wk in factors]
    state = (tuple(r.astype(u.dtype) for r, u in pairs), tuple(u for _, u in pairs))
    if not batched:
        state = jax.tree_util.tree_map(lambda x: x[None], state)
    return state, batched


def _check_times(ts: np.ndarray, t0, where: str) -> None:
    """``ValueError`` unless ``ts`` is strictly increasing, starts at or after ``t0`` and ends after it."""
    if ts.size > 1 and not (np.diff(ts) > 0).all():
        i = int(np.argmax(np.diff(ts) <= 0))
        raise ValueError(f"ts must be strictly increasing{where}, got ts[{i}] = {float(ts[i])!r} >= "
                         f"ts[{i + 1}] = {float(ts[i + 1])!r}")
    if ts[0] < t0:
        raise ValueError(f"ts must not start before t0 = {float(t0)!r}{where}, got ts[0] = {float(ts[0])!r}")
    if ts[-1] <= t0:
        raise ValueError(f"ts[-1] must be after t0 = {float(t0)!r}{where} (the solve ends there), "
                         f"got {float(ts[-1])!r}")


def _refuse_zero_columns(name: str, W: np.ndarray) -> None:
    """``ValueError`` naming the first column of ``W`` (.., d, m) whose entries are all exactly 0."""
    zero = (W == 0).all(axis=-2)
    if zero.any():
        idx = tuple(int(i) for i in np.argwhere(zero)[0])
        raise ValueError(f"{name} must have non-zero columns (the flow keeps w = 0 at 0), got a zero column at {idx}")


def gradient_flow(
    target: Target,
    W0: Any,
    ts: Any,
    *,
    lam: float = 0.0,
    t0: float = 0.0,
    solver: Any = None,
    stepsize_controller: Any = None,
    rtol: float = SolverConfig.DEFAULT_RTOL,
    atol: float = SolverConfig.DEFAULT_ATOL,
    dt0: float | None = None,
    max_steps: int = SolverConfig.DEFAULT_MAX_STEPS,
    progress: bool = False,
    delta1: float = 1e-3,
    alpha: float = 0.1,
    fit_fraction: float = 0.1,
    event_points: int = 512,
    precise_loss: bool | None = None,
    frozen: bool = False,
    model: Any = "normalized",
) -> FlowResult:
    """Integrate the gradient flow ``dW/dt = -grad L(W)`` from ``W0`` at ``t0`` and save at ``ts``.

    The ODE is solved in log-norm coordinates (``w = exp(rho) ubar``, see
    :mod:`deflation.dynamics`), so initial scales from 1e-15 to 1e-100 and below integrate with
    full relative accuracy; the log-norms of ``W0`` are taken without underflow, so any non-zero
    column works, down to entries of 5e-324. ``W0`` is (d, m) or a batch (B, d, m) (or a pair
    ``(rho, ubar)`` of log-norms and directions for norms that no float can hold); a batch runs in
    one compiled call (:func:`deflation.stepping.solve_batch`: explicit Runge-Kutta methods;
    ``vmap(diffeqsolve)`` for implicit ones), each trajectory with its own adaptive steps, so its
    result does not depend on the batch. Its peak memory is estimated before anything is compiled
    (:func:`flow_plan`): a batch too large for the memory available is solved in smaller chunks of
    seeds, and a call that cannot fit even one seed at a time is refused.

    Args:
        target: the ground truth ``T*``.
        W0: initial columns of ``W``, of any real dtype (the asymmetric model: a tuple of ``p``
            factor matrices, a single array is a ``ValueError``). The flow runs in one dtype, that of ``W0`` and
            the target promoted together (:func:`deflation.dynamics.working_dtype`): a float32 or
            float16 ``W0`` with a float64 target (every built-in constructor) runs in float64,
            float32 ``W0`` and target in float32; a float16 computation is refused (``TypeError``).
        ts: save times, strictly increasing, ``>= t0``; the solve ends at ``ts[-1]``.
        lam: regularization ``lam/2 |W|_F^2`` (paper Section 4), ``>= 0``.
        t0: initial time.
        solver: any diffrax solver; default ``diffrax.Tsit5()`` (adaptive explicit Runge-Kutta).
        stepsize_controller: any diffrax controller; default ``PIDController(rtol, atol)``.
            A ``ConstantStepSize`` needs ``dt0``.
        rtol, atol: tolerances of the default controller (> 0).
        dt0: initial step (None: chosen by the controller).
        max_steps: step budget per trajectory (at most 2^31 - 1); a trajectory that exhausts it
            gets status 1 (:attr:`deflation.Status.MAX_STEPS`).
        progress: show a tqdm progress bar (diffrax's progress meter).
        delta1, alpha: Definition 1 thresholds for "discovered" (norm ``delta1``, ``wbar_i^2 >= 1 - alpha^2``).
        fit_fraction: for ``lam = 0`` a component is fitted when its residual is ``<= fit_fraction * a_i``.
        event_points: size of the uniform grid on which events are bracketed (>= 2). The event
            quantities are evaluated once per solver step and interpolated onto the grid, so a
            finer grid costs almost nothing.
        precise_loss: the loss and the residuals in double-double arithmetic (accurate far below
            1e-16 of ``|T*|^2``) rather than the float Gram route. Default: only where it makes a
            difference, when the tolerance is small enough that the loss floor the integration
            sets falls below the float route's rounding (:func:`deflation.contract.precise_for_tolerance`;
            Figure 1: precise at ``rtol = 1e-10``, float at ``1e-6``), and the size is moderate.
        frozen: integrate the tensor-power dynamics (paper Eq. 1, ``R`` frozen at ``T*``) instead.
        model: the factorization model, a name or a :mod:`deflation.models` value: ``"normalized"``
            (the paper's ``T = sum_j w_j^{(x)p} / |w_j|^{p-2}``, the default), ``"plain"``
            (``T = sum_j w_j^{(x)p}``, whose escape from a small ``delta0`` takes a time
            ``~ delta0^{-(p-2)}``: practical from ``delta0 ~ 1e-3``) or ``"asymmetric"``
            (``T = sum_j w_j^(1) (x) ... (x) w_j^(p)``: ``W0`` is then a tuple of ``p`` factor
            matrices (d, m), or batches (B, d, m), and ``W`` and ``log_norm`` are tuples of one
            array per mode; as slow to escape as the plain model at ``p >= 3``). Definition 1 and
            the loss are the model's: on its columns (rank-one terms) at order ``p >= 3``, on the
            spectrum of ``W W^T`` (``W_1 W_2^T``) at order 2 (:class:`deflation.models.SymmetricModel`,
            :class:`deflation.models.Asymmetric`).

    Returns:
        a :class:`FlowResult`; a trajectory whose solve failed, whose saved state overflowed or
        whose loss rose (:func:`loss_increased`) has a status of its own, listed by ``failed()``.

    Raises:
        ValueError / TypeError: on bad input, before anything is traced; ``ValueError`` also when
            the call cannot fit in memory (the message gives the estimate, the memory available
            and what to change).
    """
    target = as_target(target)
    model = flow_model(model, target)
    if model.factor_count(target.order) > 1:
        y0, batched = _as_initial_factors(W0, target, model)
    else:
        y0, batched = _as_initial_state(W0, target)
    lam = check.nonnegative("lam", lam)
    t0 = check.finite("t0", t0)
    dtype = jax.tree_util.tree_leaves(y0)[0].dtype
    ts_np = check.array("ts", ts, 1).astype(np.float64)
    if ts_np.size < 1:
        raise ValueError("ts must hold at least one save time, got an empty array")
    check.finite_array("ts", ts_np)
    _check_times(ts_np, t0, "")
    if dtype != np.float64:  # the solve runs in the state's dtype: the times must survive the rounding
        in_dtype = f" in {np.dtype(dtype).name}, the dtype of the flow"
        with np.errstate(over="ignore"):
            ts_c, t0_c = ts_np.astype(dtype), np.asarray(t0, dtype)
        if not (np.isfinite(ts_c).all() and np.isfinite(t0_c)):
            raise ValueError(f"ts and t0 must be finite{in_dtype}, got ts = [{float(ts_np[0])!r}, ..., "
                             f"{float(ts_np[-1])!r}], t0 = {t0!r}")
        _check_times(ts_c, t0_c, in_dtype)
    rtol = check.positive("rtol", rtol)
    atol = check.positive("atol", atol)
    if dt0 is not None:
        dt0 = check.positive("dt0", dt0)
    max_steps = check.integer("max_steps", max_steps, 1, check.MAX_STEPS_LIMIT)
    events = EventConfig(delta1=delta1, alpha=alpha, fit_fraction=fit_fraction, points=event_points)
    if solver is None:
        solver = diffrax.Tsit5()
    elif not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"solver must be a diffrax solver (e.g. diffrax.Dopri5()), got {type(solver).__name__}")
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=jnp.asarray(rtol), atol=jnp.asarray(atol))
    elif not isinstance(stepsize_controller, diffrax.AbstractStepSizeController):
        raise TypeError(f"stepsize_controller must be a diffrax step-size controller, "
                        f"got {type(stepsize_controller).__name__}")
    if isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
        raise ValueError("dt0 must be given (> 0) with a ConstantStepSize controller")
    config = SolverConfig(solver=solver, controller=stepsize_controller, dt0=dt0, max_steps=max_steps)
    B, m = jax.tree_util.tree_leaves(y0)[0].shape
    if precise_loss is None:
        tol = float(config.tolerance())
        precise_loss = (precise_for_tolerance(target.a, target.U, target.order, tol, target.d, m) if tol > 0
                        else precise_by_default(target.d, m, target.r))
    # a state of p factor matrices is sized as one of p d rows
    plan = flow_plan(B, target.d * model.factor_count(target.order), m, target.r, ts_np.size, events.points,
                     precise_loss, np.dtype(dtype).itemsize)
    out = _flow(target, y0, jnp.asarray(ts_np, dtype), jnp.asarray(t0, dtype), jnp.asarray(lam, dtype), config,
                events, frozen, precise_loss, progress, plan.chunk, plan.block, model)
    if not batched:
        out = jax.tree_util.tree_map(lambda v: v[0], out)
    return FlowResult(ts=jnp.asarray(ts_np, dtype), **out)
