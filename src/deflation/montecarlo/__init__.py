"""Monte Carlo studies of discovery probability: batched, sharded over devices and processes,
written chunk by chunk to a resumable Zarr dataset (needs the ``montecarlo`` extra: xarray, zarr).

    from deflation.montecarlo import Study, run_study
    study = Study(a=[0.3, 0.25, 0.2, 0.15, 0.1], d=10, m=50, horizon=80, seeds=4096)
    ds = run_study(study, "study.zarr", chunk=512)      # xarray.Dataset (seed, component)
    print(format_table(summarize(ds)))
"""

from .distributed import CoordinatorUnreachable, initialize as initialize_distributed
from .run import DEFAULT_CHUNK, run_study, select_devices
from .store import StoreMismatch, load
from .study import SOLVERS, SWEEPABLE, Study
from ..plots import plot_study as plot
from .summary import format_table, summarize, wilson_interval

__all__ = [
    "DEFAULT_CHUNK",
    "SOLVERS",
    "SWEEPABLE",
    "CoordinatorUnreachable",
    "StoreMismatch",
    "Study",
    "format_table",
    "initialize_distributed",
    "load",
    "plot",
    "run_study",
    "select_devices",
    "summarize",
    "wilson_interval",
]
