"""A recorded quantity's declaration (:class:`Var`) and the ones several experiments share.

Each experiment declares the variables its kernel returns (:attr:`Experiment.variables
<deflation.montecarlo.experiments.base.Experiment>`); the store's layout, the dataset, the fill of
seeds not computed and the summaries read them from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..status import Status, legend


@dataclass(frozen=True)
class Var:
    """One recorded quantity: its dimensions after ``(grid..., seed)``, its type, the value a seed
    that was not computed holds, and what it means."""

    dims: tuple[str, ...]
    dtype: str  # "bool", "int8", "int32" or "float" (the study's dtype)
    fill: object
    doc: str


COMPONENT = ("component",)
STATUS = Var((), "int8", -1, f"solver status: {legend(tuple(Status)[:4])} (-1: not computed); see deflation.Status")
STEPS = Var((), "int32", -1, "solver steps")
DISCOVERED = Var(COMPONENT, "bool", False, "component discovered by the horizon (Definition 1)")
DISCOVERY_TIME = Var(COMPONENT, "float", np.nan, "first time a column joins S_i (inf: not by the horizon)")
FIT_TIME = Var(COMPONENT, "float", np.nan, "first time component i is fitted (inf: not by the horizon)")
MEMBERS = Var(COMPONENT, "int32", -1, "columns in S_i at the horizon")

#: The optional time series of the continuous experiments, on the study's ``time`` coordinate.
SERIES = {
    "loss_t": Var(("time",), "float", np.nan, "loss L(W(t)) (NaN past this grid point's horizon)"),
    "residual_t": Var(("time", "component"), "float", np.nan, "residual (T* - T)(u_i^p) at time t"),
    "norms_t": Var(("time", "rank"), "float", np.nan, "the largest column norms |w_j(t)|, in decreasing order"),
}
