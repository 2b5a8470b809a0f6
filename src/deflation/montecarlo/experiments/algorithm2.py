"""Experiment ``algorithm2``: the paper's Algorithm 2 per seed (epochs of Phase 1 and Phase 2 with
re-initialization of small columns), run until ``|T - T*|_F <= eps`` or ``max_epochs``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ... import memory
from ...algorithm import Algorithm2Params, run_algorithm2
from ...init import seed_keys
from ...integrate import SolverConfig, seed_chunk, solver_by_name
from ..kernel import Static, study_target
from ..params import Param, int_at_least, nonnegative, positive, unit_interval
from ..records import COMPONENT, DISCOVERED, STATUS, Var
from .base import Experiment

#: Algorithm 2's default ``event_points`` (per phase).
EVENT_POINTS = 65

#: Algorithm 2's parameters the kernel passes to :class:`deflation.algorithm.Algorithm2Params`.
_TRACED = ("lam", "delta0", "delta1", "alpha", "gamma", "eps", "c1", "c2", "c3", "c_rho")


def run(s: Static, seed_idx, p):
    """Algorithm 2 per seed; seed ``k`` runs as ``modified_gradient_flow(target, jax.random.key(key),
    seeds=[k], ...)`` would."""
    target = study_target(s, seed_idx, p)
    keys = seed_keys(jax.random.key(s.key), seed_idx)
    params = Algorithm2Params(**{k: p[k] for k in _TRACED})
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


def check_point(point: dict, r: int, at: str) -> None:
    """Algorithm 2's conditions on a grid point (Theorem 1's setting): ``event_points >= 3``,
    ``d >= 2``, ``m >= r``, ``lam > 0`` and ``lam delta1 < 1``."""
    d, m = point["d"], point["m"]
    if point["event_points"] < 3:
        raise ValueError(f"params.event_points must be >= 3 for algorithm2 (points per phase), got "
                         f"{point['event_points']!r} ({at})")
    if d < 2:
        raise ValueError(f"params.d must be >= 2 for algorithm2 (Phase 1's length has log d), got {d} ({at})")
    if m < r:
        raise ValueError(f"params.m = {m} must be >= r = {r} for algorithm2 ({at})")
    if not point["lam"] > 0:
        raise ValueError(f"params.lam must be > 0 for algorithm2 (Phase 2's length has log 1/lam), got "
                         f"{point['lam']!r} ({at})")
    if not point["lam"] * point["delta1"] < 1:
        raise ValueError(f"params.lam * params.delta1 must be < 1 for algorithm2, got lam = {point['lam']!r}, "
                         f"delta1 = {point['delta1']!r} ({at})")


def static(point: dict) -> dict:
    """The event grid per phase is part of the program."""
    return {"grid_points": point["event_points"]}


def dims(points: list[dict]) -> dict[str, int]:
    """``epoch``: the most epochs any grid point allows."""
    return {"epoch": max(p["max_epochs"] for p in points)}


def chunk_memory(point: dict, r: int, seeds: int, series_points: int, backend: str):
    """:func:`deflation.memory.algorithm2_memory` of a chunk."""
    return memory.algorithm2_memory(seeds=seeds, d=point["d"], m=point["m"], r=r, grid_points=point["event_points"],
                                    max_epochs=point["max_epochs"],
                                    itemsize=np.dtype(point.get("dtype", "float64")).itemsize,
                                    chunk=seed_chunk(seeds), backend=backend)


_ALG2 = ("algorithm2",)

EXPERIMENT = Experiment(
    name="algorithm2",
    doc="the paper's Algorithm 2 per seed",
    run=run,
    variables={
        "converged": Var((), "bool", False, "|T - T*|_F <= eps within max_epochs"),
        "epochs": Var((), "int32", -1, "epochs that ran"),
        "residual_norm": Var((), "float", np.nan, "final |T - T*|_F"),
        "residual_norm_epoch": Var(("epoch",), "float", np.nan, "|T - T*|_F at the end of each epoch (an epoch that "
                                                                "did not run repeats the state's)"),
        "discovered": Var(DISCOVERED.dims, "bool", False, "S_i became non-empty in some epoch (Definition 1)"),
        "discovery_epoch": Var(COMPONENT, "int32", -2, "epoch in which S_i first became non-empty (-1: never; -2: "
                                                       "not computed)"),
        "fit_epoch": Var(COMPONENT, "int32", -2, "first epoch at whose end component i was fitted (-1: never; -2: "
                                                 "not computed)"),
        "status": STATUS,
        "num_steps": Var((), "int32", -1, "solver steps over all epochs"),
    },
    required=("d", "eps"),
    memory=chunk_memory,
    params={
        "gamma": Param(unit_interval, _ALG2, 0.5, "beta <- beta (1 - gamma) per epoch"),
        "c1": Param(positive, _ALG2, 1.0, "Phase 1 length t1 = c1 d / (beta log d) (+ c3 log(d/alpha) / beta)"),
        "c2": Param(positive, _ALG2, 1.0, "Phase 2 length t2 = c2 (log 1/delta1 + log 1/lam) / beta"),
        "c3": Param(nonnegative, _ALG2, 0.0, "Lemma 4's third term in Phase 1's length"),
        "c_rho": Param(unit_interval, _ALG2, 0.1, "Definition 2's c_rho"),
        "max_epochs": Param(int_at_least(1), _ALG2, 30, "at most this many epochs", static=True),
    },
    defaults={"event_points": EVENT_POINTS},
    timed=False,
    continuous=False,
    models=("normalized",),
    min_order=3,  # the paper's Algorithm 2 and Theorem 1 are for tensors, p >= 3
    check_point=check_point,
    static=static,
    dims=dims,
    shrinks="params.event_points",
)
