"""The compiled per-chunk computation of a study: a batch of seed indices -> per-seed results.

One ``jax.jit`` of a ``jax.shard_map`` over a 1-D device mesh (axis ``"seed"``): every device runs
its own slice of the chunk, each seed with its own adaptive steps, without collectives. The chunk
size is fixed per study, so a study compiles once per :func:`~deflation.montecarlo.kernel.static_key` (the shapes, the
solver, the experiment) and reuses the program for every chunk and every grid point that shares it; the
other parameters are passed as values (:func:`~deflation.montecarlo.kernel.traced_params`).

What each experiment records is declared once, in :data:`~deflation.montecarlo.kernel.VARIABLES` (and
:data:`~deflation.montecarlo.kernel.SERIES` for the optional time series): the store, the dataset and the summaries all
read it from there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from ..algorithm import Algorithm2Params, run_algorithm2
from ..contract import log_positive, residual_norm_sq, residual_on
from ..dynamics import from_lognorm, normalize
from ..gd import descend, event_grid
from ..init import equiangular_columns, orthonormal_columns, seed_keys, unit_columns
from ..integrate import EventConfig, SolverConfig, solve, solver_by_name
from ..models import MODELS
from ..target import Target
from .study import Study, weights


@dataclass(frozen=True)
class Var:
    """One recorded quantity: its dimensions after ``(grid..., seed)``, its type, the value a seed
    that was not computed holds, and what it means."""

    dims: tuple[str, ...]
    dtype: str  # "bool", "int8", "int32" or "float" (the study's dtype)
    fill: object
    doc: str


_COMPONENT = ("component",)
_STATUS = Var((), "int8", -1, "solver status: 0 success, 1 max_steps reached, 2 non-finite state, 3 solver failed "
                              "(-1: not computed); see deflation.integrate.STATUS_NAMES")
_STEPS = Var((), "int32", -1, "solver steps")

#: Per experiment: the variables of its dataset, by name.
VARIABLES: dict[str, dict[str, Var]] = {
    "flow": {
        "discovered": Var(_COMPONENT, "bool", False, "component discovered by the horizon (Definition 1)"),
        "discovery_time": Var(_COMPONENT, "float", np.nan, "first time a column joins S_i (inf: not by the horizon)"),
        "fit_time": Var(_COMPONENT, "float", np.nan, "first time component i is fitted (inf: not by the horizon)"),
        "members": Var(_COMPONENT, "int32", -1, "columns in S_i at the horizon"),
        "status": _STATUS,
        "num_steps": _STEPS,
        "loss": Var((), "float", np.nan, "loss L(W) at the horizon"),
    },
    "phase1": {
        "discovered": Var(_COMPONENT, "bool", False, "component discovered by the horizon (Definition 1), under "
                                                     "the decoupled Phase 1 dynamics (paper Eq. 1)"),
        "discovery_time": Var(_COMPONENT, "float", np.nan, "first time a column joins S_i (inf: not by the horizon)"),
        "members": Var(_COMPONENT, "int32", -1, "columns in S_i at the horizon"),
        "status": _STATUS,
        "num_steps": _STEPS,
        "coupling_max": Var((), "float", np.nan, "upper bound on max_t sum_j |w_j|^2 >= |T|_F"),
        "coupling": Var((), "float", np.nan, "upper bound on int_0^H p sum_j |w_j|^2 dt: the integrated drift the "
                                             "full flow adds to each column's (log-norm, direction)"),
    },
    "gd": {
        "discovered": Var(_COMPONENT, "bool", False, "component discovered by the horizon (Definition 1)"),
        "discovery_time": Var(_COMPONENT, "float", np.nan, "first time (lr x iterations) a column joins S_i (inf: not "
                                                           "by the horizon)"),
        "fit_time": Var(_COMPONENT, "float", np.nan, "first time (lr x iterations) component i is fitted (inf: not by "
                                                     "the horizon)"),
        "members": Var(_COMPONENT, "int32", -1, "columns in S_i at the horizon"),
        "status": Var((), "int8", -1, "0 success, 2 non-finite iterate, 4 the loss increased between grid points (-1: "
                                      "not computed); see deflation.integrate.STATUS_NAMES"),
        "loss": Var((), "float", np.nan, "loss L(W) at the last iterate"),
    },
    "algorithm2": {
        "converged": Var((), "bool", False, "|T - T*|_F <= eps within max_epochs"),
        "epochs": Var((), "int32", -1, "epochs that ran"),
        "residual_norm": Var((), "float", np.nan, "final |T - T*|_F"),
        "residual_norm_epoch": Var(("epoch",), "float", np.nan, "|T - T*|_F at the end of each epoch (an epoch that "
                                                                "did not run repeats the state's)"),
        "discovered": Var(_COMPONENT, "bool", False, "S_i became non-empty in some epoch (Definition 1)"),
        "discovery_epoch": Var(_COMPONENT, "int32", -2, "epoch in which S_i first became non-empty (-1: never; -2: "
                                                        "not computed)"),
        "fit_epoch": Var(_COMPONENT, "int32", -2, "first epoch at whose end component i was fitted (-1: never; -2: "
                                                  "not computed)"),
        "status": _STATUS,
        "num_steps": Var((), "int32", -1, "solver steps over all epochs"),
    },
}

#: The optional time series (flow and phase1), on the study's ``time`` coordinate.
SERIES = {
    "loss_t": Var(("time",), "float", np.nan, "loss L(W(t)) (NaN past this grid point's horizon)"),
    "residual_t": Var(("time", "component"), "float", np.nan, "residual (T* - T)(u_i^p) at time t"),
    "norms_t": Var(("time", "rank"), "float", np.nan, "the largest column norms |w_j(t)|, in decreasing order"),
}


def variables(study: Study) -> dict[str, Var]:
    """The variables a study records (its experiment's, and the time series if asked for)."""
    out = dict(VARIABLES[study.experiment])
    if study.series is not None:
        out.update(SERIES)
    return out


#: Parameters passed to the compiled function as values (a sweep over any of them reuses one
#: compilation); everything in :func:`~deflation.montecarlo.kernel.static_key` changes the program.
TRACED = ("delta0", "delta1", "alpha", "lam", "horizon", "rtol", "atol", "fit_fraction", "eps", "gamma", "c1", "c2",
          "c3", "c_rho", "lr")


def series_times(study: Study) -> np.ndarray | None:
    """The ``time`` coordinate of a study's time series: ``linspace(0, largest horizon, points)``."""
    if study.series is None:
        return None
    horizon = max(p["horizon"] for p in study.points())
    return np.linspace(0.0, horizon, study.series_spec["points"])


def traced_params(study: Study, point: dict) -> dict:
    """The values of a grid point the compiled function takes: the :data:`~deflation.montecarlo.kernel.TRACED` scalars,
    the weights ``a`` and (unless they are drawn per seed) the components ``U``."""
    dtype = np.dtype(point.get("dtype", "float64"))
    out = {k: np.asarray(point[k], dtype) for k in TRACED if k in point}
    a = weights(point)
    out["a"] = np.asarray(a, dtype)
    t = point["target"]
    if t["kind"] == "basis":
        r = a.shape[0]
        out["U"] = np.zeros((point["d"], r), dtype)  # I[:, :r] without the d x d identity (d may be large)
        out["U"][np.arange(r), np.arange(r)] = 1
    elif t["kind"] == "angle":
        out["U"] = np.asarray(equiangular_columns(point["d"], a.shape[0], np.cos(np.radians(t["angle"]))), dtype)
    elif t["kind"] == "file":
        with np.load(t["file"]) as data:
            out["U"] = np.asarray(data["U"], dtype)
    times = series_times(study)
    if times is not None:
        out["series_ts"] = np.asarray(times, dtype)
    return out


@dataclass(frozen=True)
class Static:
    """What a compiled chunk function depends on besides its traced values."""

    experiment: str
    d: int
    m: int
    r: int
    order: int
    random_target: bool
    key: int
    dtype: str
    solver: str
    max_steps: int
    event_points: int
    max_epochs: int
    grid_points: int
    series_points: int
    series_norms: int
    model: str = "normalized"
    gd_stride: int = 0  # gd: iterations between event grid points
    momentum: float = 0.0  # gd: heavy-ball momentum (0: plain steps)


def static_key(study: Study, point: dict) -> Static:
    """The :class:`~deflation.montecarlo.kernel.Static` of a grid point: grid points with the same one share a compiled
    program."""
    series = study.series_spec or {"points": 0, "norms": 0}
    stride, points = 0, point.get("event_points", 0)
    if study.experiment == "gd":  # the number of iterations is part of the program
        stride, points = event_grid(point["horizon"], point["lr"], point["event_points"])
    return Static(experiment=study.experiment, d=point["d"], m=point["m"], r=study.r, order=point["order"],
                  random_target=point["target"]["kind"] == "random", key=study.key, dtype=point.get("dtype", "float64"),
                  solver=point.get("solver", ""), max_steps=point.get("max_steps", 0), event_points=points,
                  max_epochs=point.get("max_epochs", 0),
                  grid_points=point["event_points"] if study.experiment == "algorithm2" else 0,
                  series_points=series["points"], series_norms=series["norms"], model=point.get("model", "normalized"),
                  gd_stride=stride, momentum=point.get("momentum", 0.0))


# ---------------------------------------------------------------------------- pieces


def initial_state(s: Static, seed_idx, delta0):
    """Seed ``k``'s ``(rho, ubar)``: ``rho = log(delta0)``, ``ubar = unit_columns(fold_in(PRNGKey(key), k), d, m)``
    (the same draw as :func:`deflation.sample_sphere_batch` with that key and scale 1)."""
    dtype = jnp.dtype(s.dtype)
    keys = seed_keys(jax.random.PRNGKey(s.key), seed_idx)
    ubar = jax.vmap(lambda k: unit_columns(k, s.d, s.m, dtype))(keys)
    rho = jnp.full(ubar.shape[:1] + ubar.shape[2:], 1.0, dtype) * log_positive(delta0)
    return rho, ubar


#: ``fold_in`` tag of the per-seed target draw (the initialization uses the seed's key itself).
TARGET_STREAM = 1


def study_target(s: Static, seed_idx, p) -> Target:
    """The target of a chunk: one for all seeds, or (``random``) a Haar-random orthonormal ``U`` per
    seed drawn from ``fold_in(seed k's key, TARGET_STREAM)``."""
    if not s.random_target:
        return Target(p["a"], p["U"], s.order)
    keys = seed_keys(jax.random.PRNGKey(s.key), seed_idx)
    U = jax.vmap(lambda k: orthonormal_columns(jax.random.fold_in(k, TARGET_STREAM), s.d, s.r, p["a"].dtype))(keys)
    return Target(jnp.broadcast_to(p["a"], (U.shape[0], s.r)), U, s.order)


def _configs(s: Static, p):
    solver = SolverConfig.adaptive(p["rtol"], p["atol"], solver_by_name(s.solver), max_steps=s.max_steps)
    events = EventConfig(delta1=p["delta1"], alpha=p["alpha"], fit_fraction=p["fit_fraction"], points=s.event_points)
    return solver, events


def _members(member, r: int):
    """Columns in each ``S_i`` per seed, (B, r)."""
    return (member[:, :, None] == jnp.arange(r)).sum(axis=1).astype(jnp.int32)


def _per_seed(target: Target, fn, *args):
    """``fn(target of the seed, *args of the seed)`` over the seeds."""
    axis = 0 if target.batched else None
    return jax.vmap(fn, in_axes=(axis,) + (0,) * len(args))(target, *args)


def _loss(model, tg, rho, ubar, lam):
    """The loss of ``(rho, ubar)`` under a symmetric ``model`` (``T = sum_j omega_j ubar_j^p``)."""
    omega = model.weights(rho, tg.order)
    sq, _ = residual_norm_sq(normalize(ubar), omega, tg, None)
    norms_sq = omega if model.norm_power(tg.order) == 2 else jnp.exp(2.0 * rho)  # |w_j|^2
    return 0.5 * sq + 0.5 * lam * norms_sq.sum(-1)


def _series(s: Static, target: Target, rho, ubar, times, horizon, lam):
    """The time series at the save points ``times`` (``rho`` (B, K, m)), one time point at a time
    (bounded memory), NaN past the horizon."""

    model = MODELS[s.model]

    def at(k):
        r_k, u_k = rho[:, k], ubar[:, k]
        loss = _per_seed(target, lambda tg, rh, ub: _loss(model, tg, rh, ub, lam), r_k, u_k)
        res = _per_seed(target, lambda tg, rh, ub: residual_on(normalize(ub), model.weights(rh, tg.order), tg,
                                                               precise=True), r_k, u_k)
        norms = -jnp.sort(-r_k, axis=-1)[:, : s.series_norms]
        return loss, res, jnp.exp(norms)

    loss, res, norms = jax.lax.map(at, jnp.arange(rho.shape[1]))
    past = (times > horizon)[None, :]
    nan = lambda x: jnp.where(past.reshape(past.shape + (1,) * (x.ndim - 2)), jnp.nan, x)  # noqa: E731
    return dict(loss_t=nan(jnp.moveaxis(loss, 0, 1)), residual_t=nan(jnp.moveaxis(res, 0, 1)),
                norms_t=nan(jnp.moveaxis(norms, 0, 1)))


# ---------------------------------------------------------------------------- experiments


def _flow(s: Static, seed_idx, p):
    """Gradient flow of the study's model to the horizon for a local batch of seeds."""
    model = MODELS[s.model]
    target = study_target(s, seed_idx, p)
    y0 = initial_state(s, seed_idx, p["delta0"])
    solver, events = _configs(s, p)
    times = jnp.minimum(p["series_ts"], p["horizon"]) if s.series_points else p["horizon"][None]
    sol = solve(target, y0, t1=p["horizon"], save_ts=times, solver=solver, lam=p["lam"], events=events, model=model)
    tr = sol.tracked
    out = dict(
        discovered=jnp.isfinite(tr.discovery_time), discovery_time=tr.discovery_time, fit_time=tr.fit_time,
        members=_members(tr.member, s.r), status=sol.status.astype(jnp.int8), num_steps=sol.num_steps.astype(jnp.int32),
        loss=_per_seed(target, lambda tg, rh, ub: _loss(model, tg, rh, ub, p["lam"]), sol.rho[:, -1], sol.ubar[:, -1]),
    )
    if s.series_points:
        out.update(_series(s, target, sol.rho, sol.ubar, p["series_ts"], p["horizon"], p["lam"]))
    return out


#: Save points of the phase1 coupling bound (besides the event grid).
COUPLING_POINTS = 33


def _phase1(s: Static, seed_idx, p):
    """Phase 1 fast path: the tensor-power dynamics (paper Eq. 1, ``R`` frozen at ``T*``): the
    columns decouple, and a vector-field evaluation costs ``4 r m d`` flops instead of
    ``4 m^2 d + 4 r m d`` (no model Gram matrix).

    Also returns a checked bound on how far the full flow's vector field can be from the frozen
    one. With ``S(t) = sum_j |w_j(t)|^2 >= |T(t)|_F``, the two differ by at most ``p S(t)`` in each
    column's ``(rho, u)`` (``|T(u^p)| <= S``, ``|(I - uu^T) T(u^{p-1}, I)| <= S``). ``S`` is saved on a
    grid of spacing ``h``; between grid points ``d rho/dt >= -c`` with ``c = lam`` for even ``p``
    (``T*(u^p) >= 0``) and ``c = lam + 2 sum_i a_i`` for odd ``p``, so ``S(t) <= S(t_(k+1)) e^(2 c h)``
    on ``[t_k, t_(k+1)]``. ``coupling_max`` bounds ``max_t S(t)`` and ``coupling`` bounds
    ``int_0^H p S(t) dt``: both are upper bounds, not estimates.
    """
    dtype = jnp.dtype(s.dtype)
    target = study_target(s, seed_idx, p)
    y0 = initial_state(s, seed_idx, p["delta0"])
    solver, events = _configs(s, p)
    coupling_ts = jnp.linspace(jnp.zeros((), dtype), p["horizon"], COUPLING_POINTS, dtype=dtype)[1:]
    times = coupling_ts
    if s.series_points:
        times = jnp.concatenate([coupling_ts, jnp.minimum(p["series_ts"], p["horizon"])])
    order = jnp.argsort(times)
    sol = solve(target, y0, t1=p["horizon"], save_ts=times[order], solver=solver, lam=p["lam"], events=events,
                frozen=True)
    inverse = jnp.argsort(order)
    rho, ubar = sol.rho[:, inverse], sol.ubar[:, inverse]
    n = COUPLING_POINTS - 1
    h = p["horizon"] / n
    c = p["lam"] + (2.0 * jnp.sum(p["a"]) if s.order % 2 else 0.0)
    S = jnp.exp(2.0 * rho[:, :n]).sum(axis=-1) * jnp.exp(2.0 * c * h)  # (B, n) upper bounds per interval
    S0 = jnp.exp(2.0 * y0[0]).sum(axis=-1)
    disc = sol.tracked.discovery_time
    out = dict(
        discovered=jnp.isfinite(disc), discovery_time=disc, members=_members(sol.tracked.member, s.r),
        status=sol.status.astype(jnp.int8), num_steps=sol.num_steps.astype(jnp.int32),
        coupling_max=jnp.maximum(S.max(axis=-1), S0), coupling=s.order * h * S.sum(axis=-1),
    )
    if s.series_points:
        out.update(_series(s, target, rho[:, n:], ubar[:, n:], p["series_ts"], p["horizon"], p["lam"]))
    return out


def _algorithm2(s: Static, seed_idx, p):
    """Algorithm 2 per seed; seed ``k`` runs as ``modified_gradient_flow(target, jax.random.key(key),
    seeds=[k], ...)`` would."""
    target = study_target(s, seed_idx, p)
    keys = seed_keys(jax.random.key(s.key), seed_idx)
    params = Algorithm2Params(**{k: p[k] for k in ("lam", "delta0", "delta1", "alpha", "gamma", "eps", "c1", "c2",
                                                    "c3", "c_rho")})
    solver = SolverConfig.adaptive(p["rtol"], p["atol"], solver_by_name(s.solver), max_steps=s.max_steps)
    out = run_algorithm2(target, keys, params, m=s.m, grid_points=s.grid_points, max_epochs=s.max_epochs,
                         solver=solver)
    rec = out["record"]
    return dict(
        converged=out["converged"], epochs=out["epochs"].astype(jnp.int32), residual_norm=out["residual_norm"],
        residual_norm_epoch=rec.residual_norm_phase2, discovered=out["discovery_epoch"] >= 0,
        discovery_epoch=out["discovery_epoch"].astype(jnp.int32), fit_epoch=out["fit_epoch"].astype(jnp.int32),
        status=out["status"].astype(jnp.int8), num_steps=rec.num_steps.sum(axis=1).astype(jnp.int32),
    )


def _gd(s: Static, seed_idx, p):
    """Gradient descent (:func:`deflation.gradient_descent`) from the same initialization as the
    flow's seed ``k``, for the grid point's ``horizon / lr`` iterations."""
    model = MODELS[s.model]
    target = study_target(s, seed_idx, p)
    W0 = from_lognorm(*initial_state(s, seed_idx, p["delta0"]))
    out = descend(target, W0, p["lr"], p["lam"], p["delta1"], p["alpha"], p["fit_fraction"], model=model,
                  momentum=s.momentum or None, stride=s.gd_stride, points=s.event_points)
    return dict(discovered=jnp.isfinite(out["discovery_time"]), discovery_time=out["discovery_time"],
                fit_time=out["fit_time"], members=_members(out["member"], s.r), status=out["status"].astype(jnp.int8),
                loss=out["loss"][:, -1])


EXPERIMENT_FUNCTIONS = {"flow": _flow, "phase1": _phase1, "algorithm2": _algorithm2, "gd": _gd}


def compile_chunk(static: Static, mesh: Mesh):
    """A jitted ``fn(seed_idx (C,) uint32 sharded over mesh axis "seed", traced_params)
    -> dict of (C, ...) arrays``, shared by every grid point with the same
    :class:`~deflation.montecarlo.kernel.Static`."""
    return _build(static, mesh)


@functools.lru_cache(maxsize=4)
def _build(static: Static, mesh: Mesh):
    """The compiled chunk function of one :class:`~deflation.montecarlo.kernel.Static` (a study runs its grid points
    grouped by it, so a few are kept)."""
    local = EXPERIMENT_FUNCTIONS[static.experiment]
    fn = jax.shard_map(lambda idx, p: local(static, idx, p), mesh=mesh, in_specs=(P("seed"), P()),
                       out_specs=P("seed"), check_vma=False)
    return jax.jit(fn)
