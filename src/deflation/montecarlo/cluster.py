"""Submitting a study's independent workers as a job array, through ``submitit``.

:func:`submit` sends ``workers`` jobs (one Slurm job array, or local processes with submitit's
local executor); job ``K`` runs :func:`run_worker`, that is ``run_study(..., worker=K,
workers=N)`` on the study file (see :mod:`deflation.montecarlo.workers`). The equivalent plain
``sbatch --array`` script is in the documentation (``docs/cluster.md``).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from .workers import DEFAULT_CLAIM_TIMEOUT, check_worker

#: A worker's time limit on Slurm when none is given (minutes); local processes get a week.
DEFAULT_TIME_MIN = 240


def import_submitit():
    """``submitit``, imported without its logging set-up closing other libraries' handlers.

    On import, submitit calls ``logging.config.dictConfig``, which closes every logging handler
    of the process; absl's handler (imported with optax) then closes the stream it was created
    with, which is ``sys.stderr`` as it was at that time (in a notebook or a test runner, a
    replaced stream, still in use). Here submitit is imported with ``SUBMITIT_LOG_LEVEL=NOCONFIG``
    (unless the user set that variable) and its ``submitit`` logger gets the two handlers it would
    have configured (info to stdout, warnings to stderr), so its messages stay the same.
    Raises ``ValueError`` with the install line when submitit is missing."""
    if "submitit" in sys.modules:
        return sys.modules["submitit"]
    own = "SUBMITIT_LOG_LEVEL" not in os.environ
    if own:
        os.environ["SUBMITIT_LOG_LEVEL"] = "NOCONFIG"
    try:
        import submitit
    except ImportError as err:
        raise ValueError("deflation study submit needs submitit: pip install submitit (or pip install "
                         "'deflation[cluster]')") from err
    finally:
        if own:
            del os.environ["SUBMITIT_LOG_LEVEL"]
    if own:
        logger = logging.getLogger("submitit")
        fmt = logging.Formatter("%(name)s %(levelname)s (%(asctime)s) - %(message)s")
        out, warn = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
        out.setLevel(logging.DEBUG)
        warn.setLevel(logging.WARNING)
        for handler in (warn, out):
            handler.setFormatter(fmt)
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return submitit


def run_worker(study_file: str, out: str, worker: int, workers: int, chunk: int | None = None,
               claim_timeout: float = DEFAULT_CLAIM_TIMEOUT) -> dict:
    """One worker of a job array: compute its share of ``study_file``'s study into ``out`` (and any
    chunk left by others). Returns ``{"worker", "complete"}``."""
    from .run import run_study
    from .study import Study

    study = Study.from_toml(study_file)
    ds = run_study(study, out, chunk=chunk, progress=False, worker=worker, workers=workers,
                   claim_timeout=claim_timeout)
    return dict(worker=worker, complete=bool(ds.attrs.get("complete")))


def executor_for(cluster: str | None, logs, *, workers: int, partition: str | None = None,
                 gpus_per_task: int | None = None, cpus_per_task: int | None = None, time_min: int | None = None,
                 mem_gb: float | None = None, account: str | None = None, qos: str | None = None,
                 parallel: int | None = None):
    """A submitit executor: ``cluster`` ``"slurm"``, ``"local"``, ``"debug"`` or None (Slurm when
    ``sbatch`` is found, else local processes), with the job array's resources (``time_min``:
    each worker's time limit, default :data:`DEFAULT_TIME_MIN` on Slurm, a week locally)."""
    submitit = import_submitit()
    if cluster not in (None, "slurm", "local", "debug"):
        raise ValueError(f"cluster must be 'slurm', 'local' or 'debug', got {cluster!r}")
    cluster = cluster or ("slurm" if shutil.which("sbatch") else "local")
    if cluster != "slurm" and (partition or account or qos):
        raise ValueError(f"--partition/--account/--qos need Slurm, but the cluster is {cluster!r} (no sbatch found); "
                         "run this on a Slurm login node (or drop them for local processes)")
    executor = submitit.AutoExecutor(folder=str(logs), cluster=cluster)
    params = dict(name="deflation-study", tasks_per_node=1, nodes=1)
    # submitit's own default is 5 minutes, which would stop every worker early
    params["timeout_min"] = int(time_min) if time_min is not None else (
        DEFAULT_TIME_MIN if cluster == "slurm" else 7 * 24 * 60)
    if cpus_per_task is not None:
        params["cpus_per_task"] = int(cpus_per_task)
    if gpus_per_task is not None:
        params["gpus_per_node"] = int(gpus_per_task)
    if mem_gb is not None:
        params["mem_gb"] = float(mem_gb)
    slurm = dict(slurm_partition=partition, slurm_account=account, slurm_qos=qos,
                 slurm_array_parallelism=int(parallel or workers))
    if executor.cluster == "slurm":
        params.update({k: v for k, v in slurm.items() if v is not None})
    executor.update_parameters(**params)
    return executor


def submit(study_file, out, workers: int, executor, *, chunk: int | None = None,
           claim_timeout: float = DEFAULT_CLAIM_TIMEOUT) -> list:
    """Submit ``workers`` jobs of :func:`run_worker` on ``executor`` (a submitit executor) as one job
    array; returns the submitit jobs. The study file is read (and checked) here first, and the store
    created, so that a bad study fails now, not in every job."""
    from .run import init_study
    from .study import Study

    _, workers = check_worker(0, workers)
    study_file, out = str(Path(study_file).resolve()), str(Path(out).resolve())
    init_study(Study.from_toml(study_file), out, chunk=chunk)
    n = workers
    return executor.map_array(run_worker, [study_file] * n, [out] * n, list(range(n)), [n] * n, [chunk] * n,
                              [claim_timeout] * n)
