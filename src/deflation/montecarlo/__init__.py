"""Monte Carlo studies: every experiment of the paper as a declared, resumable, shardable study.

A :class:`Study` names an experiment (``flow``, ``phase1``, ``algorithm2``, ``gd``: one module
each in :mod:`deflation.montecarlo.experiments`), a target (``basis``,
``random``, ``angle``, ``file``), a grid of parameters (any list sweeps, several lists make a
Cartesian grid) and a number of seeds; :func:`run_study` computes it chunk by chunk into a Zarr
store (resumable, sharded over devices and ``jax.distributed`` processes, results independent of
the chunking and the device count); :func:`open_study` reads it back as an ``xarray.Dataset``;
:func:`summarize`, :func:`discovery_cdf` and :func:`convergence` turn it into tables, and
:func:`discovery_order`, :func:`order_distribution` and :func:`plateau_times` say in which order
the components were discovered and how long each plateau lasted. The figures are
:mod:`deflation.plots`' (:func:`write_summary` draws them from the tables and the dataset).

    from deflation.montecarlo import Study, run_study, summarize, format_table
    study = Study.from_toml("study.toml")          # or Study("flow", 64, {"kind": "basis", ...}, {...})
    ds = run_study(study, "study.zarr")            # xarray.Dataset (grid..., seed, component)
    print(format_table(summarize(ds)))
"""

from .distributed import CoordinatorUnreachable, initialize as initialize_distributed
from .order import discovery_order, order_distribution, plateau_times
from .plan import Plan, plan_study
from .resources import DEFAULT_CHUNK, select_devices
from .run import init_study, open_study, run_study
from .store import StoreBusy, StoreMismatch
from .study import EXPERIMENTS, PARAMS, SWEEPABLE, TARGET_KINDS, Study
from .summary import (
    convergence,
    discovery_cdf,
    failures,
    format_table,
    integrity,
    study_caption,
    summarize,
    wilson_interval,
    write_summary,
)

__all__ = [
    "DEFAULT_CHUNK",
    "EXPERIMENTS",
    "PARAMS",
    "SWEEPABLE",
    "TARGET_KINDS",
    "CoordinatorUnreachable",
    "Plan",
    "StoreBusy",
    "StoreMismatch",
    "Study",
    "convergence",
    "discovery_cdf",
    "discovery_order",
    "failures",
    "format_table",
    "init_study",
    "initialize_distributed",
    "integrity",
    "open_study",
    "order_distribution",
    "plan_study",
    "plateau_times",
    "run_study",
    "select_devices",
    "study_caption",
    "summarize",
    "wilson_interval",
    "write_summary",
]
