"""What ``deflation study`` and ``deflation montecarlo`` share: the execution options (chunks,
devices, processes), running or resuming a study, and its summary."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ._options import add_options

EXECUTION_OPTIONS = [
    ("--chunk", int, None, "seeds per chunk (default: the study's, else 512; a resumed store keeps its own)"),
    ("--devices", int, None, "use the first N devices of each process (default: all)"),
    ("--coordinator", str, None, "HOST:PORT of process 0 of a multi-process jax.distributed job (not needed "
                                 "inside srun -n N or mpirun -n N: the job is detected)"),
    ("--num-processes", int, None, "processes of the job (with --coordinator)"),
    ("--process-id", int, None, "this process's index in the job (with --coordinator)"),
    ("--distributed", bool, None, "join a jax.distributed job found by JAX's cluster detection "
                                  "(JAX_COORDINATOR_ADDRESS, SLURM, ...)"),
    ("--init-timeout", float, 60.0, "seconds to wait for the coordinator"),
    ("--no-progress", bool, None, "no progress bar"),
    ("--quiet", bool, None, "do not print the summary table"),
]


#: ``study run`` only: independent workers on one store (:mod:`deflation.montecarlo.workers`).
WORKER_OPTIONS = [
    ("--worker", int, None, "this process is worker K (0 .. N-1) of --workers N independent workers"),
    ("--workers", int, None, "number of independent workers sharing the store (with --worker)"),
    ("--claim-timeout", float, 600.0, "seconds after which a worker's claim not refreshed (a dead worker) is "
                                      "taken over by another"),
]


def cluster_processes() -> int:
    """The number of processes of a multi-process job that JAX's cluster detection would join: a
    Slurm job step of several tasks (``srun -n N``: ``SLURM_STEP_NUM_TASKS``; not the batch script
    itself, nor one task of a job array) or Open MPI (``OMPI_COMM_WORLD_SIZE``); 1 if none."""
    for name in ("OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 1:
            return int(value)
    return 1


def add_execution_options(group) -> None:
    add_options(group, EXECUTION_OPTIONS)


def _positive(flag: str, value) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{flag} must be a positive integer, got {value}")


def execute(study, out: str, args, command: str) -> int:
    """Run or resume ``study`` into ``out`` with the execution options of ``args``; print the
    summary on process 0."""
    from deflation import montecarlo as mc

    _positive("--chunk", args.chunk)
    _positive("--devices", args.devices)
    worker, workers = getattr(args, "worker", None), getattr(args, "workers", None)
    independent = worker is not None or workers is not None
    if independent:
        if worker is None or workers is None:
            raise ValueError("--worker K and --workers N go together (worker K of N independent workers)")
        if workers < 1 or not 0 <= worker < workers:
            raise ValueError(f"--worker must be in 0 .. --workers - 1 with --workers >= 1, got --worker {worker} "
                             f"--workers {workers}")
        if not args.claim_timeout > 0:
            raise ValueError(f"--claim-timeout must be > 0 seconds, got {args.claim_timeout}")
        if args.coordinator or args.distributed or args.num_processes is not None or args.process_id is not None:
            raise ValueError("--worker/--workers run independent single processes: drop --coordinator, "
                             "--num-processes, --process-id and --distributed")
    if args.coordinator or args.num_processes is not None or args.process_id is not None:
        mc.initialize_distributed(args.coordinator, args.num_processes, args.process_id, timeout=args.init_timeout)
    elif args.distributed:
        mc.initialize_distributed(timeout=args.init_timeout)
    elif not independent and cluster_processes() > 1:
        if not args.no_progress:
            print(f"joining the jax.distributed job of {cluster_processes()} processes found in the environment "
                  "(Slurm / Open MPI)", file=sys.stderr)
        mc.initialize_distributed(timeout=args.init_timeout)
    extra = dict(worker=worker, workers=workers, claim_timeout=args.claim_timeout) if independent else {}
    try:
        ds = mc.run_study(study, out, chunk=args.chunk, devices=args.devices, progress=not args.no_progress, **extra)
    except KeyboardInterrupt:
        print(f"\ninterrupted: completed chunks are stored in {out}; run the same command again to resume",
              file=sys.stderr)
        return 130
    if independent and ds is not None and not ds.attrs.get("complete"):
        print(f"worker {worker} of {workers}: no chunk left for it; {out} is not complete yet (other workers are "
              f"computing, or some are gone): see deflation study status {out}, or run again to take the rest")
        return 0
    if ds is not None and not args.quiet:
        show_summary(ds, out)
    return _report_failures(ds)


def _report_failures(ds) -> int:
    """Exit status 1, with one line per grid point naming the failed seeds, when any seed's solve failed."""
    from deflation import montecarlo as mc

    lines = [] if ds is None else mc.failures(ds)
    for line in lines:
        print(f"failed seeds at {line}", file=sys.stderr)
    return 1 if lines else 0


def show_summary(ds, out, csv=None, png=None) -> None:
    """Print the summary table, the integrity line and where the files went; write them."""
    from deflation import montecarlo as mc

    paths = mc.write_summary(ds, out, csv=csv, png=png)
    print(mc.format_table(mc.summarize(ds)))
    print(mc.integrity(ds))
    print(f"dataset: {out}")
    for name, path in paths.items():
        print(f"{name + ':':<12} {path}")


def summarize_store(store: str, csv: str | None, png: str | None) -> int:
    """``summarize STORE``: the summary of an existing store (verified chunk by chunk)."""
    from deflation import montecarlo as mc

    if not Path(store).exists():
        raise ValueError(f"store {store!r} does not exist")
    ds = mc.open_study(store)
    show_summary(ds, store, csv=csv, png=png)
    return 0
