"""What an experiment declares (:class:`Experiment`): one value per experiment module.

The study, the compiled program, the store, the memory checks, the summaries and the plots read an
experiment's declaration and never test which experiment it is: a new experiment is a new module
of :mod:`deflation.montecarlo.experiments` with one :class:`Experiment`, registered in
:data:`deflation.montecarlo.experiments.EXPERIMENTS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..params import Param
from ..records import Var


def _no_check(point: dict, r: int, at: str) -> None:
    return None


def _no_static(point: dict) -> dict:
    return {}


def _no_dims(points: list[dict]) -> dict[str, int]:
    return {}


@dataclass(frozen=True)
class Experiment:
    """An experiment of a study.

    Args:
        name: its name in a study file (``experiment = "..."``).
        doc: one line saying what it runs.
        run: the kernel, ``run(static, seed_idx, p) -> {variable: (B, ...) array}`` for a local
            batch of seeds (``static``: :class:`deflation.montecarlo.kernel.Static`; ``p``: the
            traced values of :func:`deflation.montecarlo.program.traced_params`), returning exactly
            the keys of ``variables`` (and the time series, where it records them).
        variables: what it records, by name (:class:`deflation.montecarlo.records.Var`): at
            least ``discovered`` and ``status``, and its events as the flow's names where they mean
            the same: ``discovery_time`` (and ``fit_time``) when ``timed``, otherwise
            ``discovery_epoch``, ``fit_epoch``, ``converged`` and ``epochs``; the summaries, the
            discovery-order tables and the figures read these.
        required: the ``[params]`` keys a study of it must give.
        memory: ``memory(point, r, seeds, series_points, backend)``: the estimated peak memory
            (:class:`deflation.memory.MemoryEstimate`) of a chunk of ``seeds`` seeds on one device.
        params: its own ``[params]`` keys (the common ones are the study's).
        defaults: its defaults of common parameters where they differ (``event_points``, ...).
        solved: an ODE solver integrates it (``rtol``, ``atol``, ``solver``, ``max_steps`` apply).
        timed: it runs to a time ``horizon`` and records event times; otherwise its events are
            counted in epochs (``discovery_epoch``, ``fit_epoch``) and it records ``converged``.
        continuous: it can record the ``[series]`` time series.
        models: the models it runs (None: every model a study may name).
        min_order: the lowest tensor order it runs (2: the matrix case too).
        check_point: ``check_point(point, r, at)`` raises a ``ValueError`` (ending with ``at``) for
            a grid point it cannot run.
        static: ``static(point)``: fields of :class:`~deflation.montecarlo.kernel.Static` it sets
            from a grid point (what changes its compiled program besides the common ones).
        dims: ``dims(points)``: the sizes of dimensions of its own (``epoch``, ...).
        shrinks: the study-file key to lower when even one seed does not fit in memory.
    """

    name: str
    doc: str
    run: Callable[..., dict]
    variables: Mapping[str, Var]
    required: tuple[str, ...]
    memory: Callable[..., Any]
    params: Mapping[str, Param] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    solved: bool = True
    timed: bool = True
    continuous: bool = True
    models: tuple[str, ...] | None = None
    min_order: int = 2
    check_point: Callable[[dict, int, str], None] = _no_check
    static: Callable[[dict], dict] = _no_static
    dims: Callable[[list[dict]], dict[str, int]] = _no_dims
    shrinks: str = "series.points"

    def applies(self, experiments: tuple[str, ...] | str) -> bool:
        """Whether a parameter declared for ``experiments`` (names, or a selector of
        :data:`deflation.montecarlo.params.SELECTORS`) applies to this experiment."""
        if isinstance(experiments, str):
            return {"all": True, "solved": self.solved, "timed": self.timed, "continuous": self.continuous}[experiments]
        return self.name in experiments
