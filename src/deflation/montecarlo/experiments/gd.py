"""Experiment ``gd``: discrete gradient descent (optax ``sgd``, optional heavy-ball momentum) on the
study's model, with Definition 1's events in time units ``lr x iterations``: a study sweeping
``lr`` shows where discrete steps stop following the flow."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ...dynamics import from_lognorm
from ...gd import descend, event_grid
from ...models import MODELS, SYMMETRIC_MODELS
from ..kernel import Static, initial_state, members, study_target
from ..params import Param, momentum, positive
from ..records import DISCOVERED, MEMBERS, Var
from . import flow
from .base import Experiment


def run(s: Static, seed_idx, p):
    """Gradient descent (:func:`deflation.gradient_descent`) from the same initialization as the
    flow's seed ``k``, for the grid point's ``horizon / lr`` iterations."""
    model = MODELS[s.model]
    target = study_target(s, seed_idx, p)
    W0 = from_lognorm(*initial_state(s, seed_idx, p["delta0"]))
    out = descend(target, W0, p["lr"], p["lam"], p["delta1"], p["alpha"], p["fit_fraction"], model=model,
                  momentum=s.momentum or None, stride=s.gd_stride, points=s.event_points)
    return dict(discovered=jnp.isfinite(out["discovery_time"]), discovery_time=out["discovery_time"],
                fit_time=out["fit_time"], members=members(out["member"], s.r), status=out["status"].astype(jnp.int8),
                loss=out["loss"][:, -1])


def check_point(point: dict, r: int, at: str) -> None:
    """``horizon / lr`` iterations on an event grid that divides them (``deflation.gd.event_grid``)."""
    try:
        event_grid(point["horizon"], point["lr"], point["event_points"])
    except ValueError as err:
        raise ValueError(f"params.horizon and params.lr: {err} ({at})") from None


def static(point: dict) -> dict:
    """The number of iterations (and so the grid's stride) and the momentum are part of the program."""
    stride, points = event_grid(point["horizon"], point["lr"], point["event_points"])
    return {"gd_stride": stride, "event_points": points, "momentum": point.get("momentum", 0.0)}


_GD = ("gd",)

EXPERIMENT = Experiment(
    name="gd",
    doc="gradient descent (optax sgd) of the model, in time units lr x iterations",
    run=run,
    required=("d", "m", "horizon", "lr"),
    memory=flow.chunk_memory,
    params={
        "lr": Param(positive, _GD, None, "gd: the learning rate; the run takes horizon / lr iterations"),
        "momentum": Param(momentum, _GD, 0.0, "gd: heavy-ball momentum in [0, 1) (optax.sgd's; 0: plain steps)",
                          static=True),
    },
    variables={
        "discovered": DISCOVERED,
        "discovery_time": Var(DISCOVERED.dims, "float", np.nan, "first time (lr x iterations) a column joins S_i "
                                                                "(inf: not by the horizon)"),
        "fit_time": Var(DISCOVERED.dims, "float", np.nan, "first time (lr x iterations) component i is fitted (inf: "
                                                          "not by the horizon)"),
        "members": MEMBERS,
        "status": Var((), "int8", -1, "0 success, 2 non-finite iterate, 4 the loss increased between grid points (-1: "
                                      "not computed); see deflation.Status"),
        "loss": Var((), "float", np.nan, "loss L(W) at the last iterate"),
    },
    solved=False,
    continuous=False,
    models=SYMMETRIC_MODELS,  # it descends one W
    check_point=check_point,
    static=static,
)
