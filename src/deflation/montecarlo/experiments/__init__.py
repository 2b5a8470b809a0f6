"""The experiments a study runs, one module each, registered by name in :data:`EXPERIMENTS`.

- ``flow`` (:mod:`~deflation.montecarlo.experiments.flow`): gradient flow of the model to the horizon;
- ``phase1`` (:mod:`~deflation.montecarlo.experiments.phase1`): the decoupled Phase 1 dynamics
  (paper Eq. 1) with a bound on their distance to the full flow;
- ``algorithm2`` (:mod:`~deflation.montecarlo.experiments.algorithm2`): the paper's Algorithm 2;
- ``gd`` (:mod:`~deflation.montecarlo.experiments.gd`): gradient descent through optax.

A new experiment is a new module here declaring one
:class:`~deflation.montecarlo.experiments.base.Experiment` (its parameters, records, kernel, memory
estimate and grid-point checks), added to :data:`EXPERIMENTS`, and its tests.
"""

from __future__ import annotations

from . import algorithm2, flow, gd, phase1
from .base import Experiment

#: Every experiment by name, in the order the docs list them.
EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (flow.EXPERIMENT, phase1.EXPERIMENT, algorithm2.EXPERIMENT,
                                                          gd.EXPERIMENT)}

