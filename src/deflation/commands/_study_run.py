"""What ``deflation study`` and ``deflation montecarlo`` share: the execution options (chunks,
devices, processes), running or resuming a study, and its summary."""

from __future__ import annotations

import contextlib
import os
import re
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
    ("--no-progress", bool, None, "no progress bar (the status lines, such as 'resuming: k of n chunks done', "
                                  "still print)"),
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


def _path(flag: str, value) -> None:
    if value is not None and not str(value).strip():
        raise ValueError(f"{flag} must name a path, got {value!r}")


@contextlib.contextmanager
def _no_bar(hide: bool):
    """Progress bars hidden (tqdm's own switch, ``TQDM_DISABLE``) while the status lines print."""
    if not hide:
        yield
        return
    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = before


def _chunk_hint(text: str, study, chunk) -> str:
    """The store's "resume with --chunk S (or omit it)" made right when omitting ``--chunk`` would
    not give S: the study file sets another chunk (``--chunk`` overrides it)."""
    found = re.search(r"started with chunk = (\d+)", text)
    if found and "(or omit it)" in text and study.chunk is not None and study.chunk != int(found.group(1)):
        text = text.replace("(or omit it)", f"(it overrides the study file's chunk = {study.chunk})")
    return text


def execute(study, out: str, args, command: str) -> int:
    """Run or resume ``study`` into ``out`` with the execution options of ``args``; print the
    summary on process 0 (exit status 1 when a seed is flagged, see :func:`show_summary`)."""
    from deflation import montecarlo as mc

    _path("--out", out)
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
        with _no_bar(args.no_progress):
            ds = mc.run_study(study, out, chunk=args.chunk, devices=args.devices, progress=True, summary=False,
                              **extra)
    except KeyboardInterrupt:
        print(f"\ninterrupted: completed chunks are stored in {out}; run the same command again to resume",
              file=sys.stderr)
        return 130
    except mc.StoreMismatch as err:
        raise ValueError(_chunk_hint(str(err), study, args.chunk)) from None
    if independent and ds is not None and not ds.attrs.get("complete"):
        print(f"worker {worker} of {workers}: no chunk left for it; {out} is not complete yet (other workers are "
              f"computing, or some are gone): see deflation study status {out}, or run again to take the rest")
        return 0
    if ds is None:
        return 0
    if args.quiet:
        mc.write_summary(ds, out)
        status = 1 if flagged_seeds(mc.summarize(ds)) else 0
    else:
        status = show_summary(ds, out)
    return max(status, _report_failures(ds))


def _report_failures(ds) -> int:
    """Exit status 1, with one line per grid point naming the failed seeds, when any seed's solve failed."""
    from deflation import montecarlo as mc

    lines = [] if ds is None else mc.failures(ds)
    for line in lines:
        print(f"failed seeds at {line}", file=sys.stderr)
    return 1 if lines else 0


def flagged_seeds(table) -> int:
    """Seeds (over the grid points) whose Phase 1 coupling bound exceeded ``coupling_tol``: the
    ``flagged`` column of a phase1 summary (0 for the other experiments)."""
    if "flagged" not in table:
        return 0
    return int(table.loc[table["component"] == 0, "flagged"].sum())


def show_summary(ds, out, csv=None, png=None) -> int:
    """Print the summary table and the integrity line, then write the files (each atomically) and
    say where they went. Returns the exit status: 1 when a phase1 seed left the regime where Phase 1
    approximates the flow (its coupling bound exceeded ``coupling_tol``: said in one line), else 0."""
    from deflation import montecarlo as mc

    table = mc.summarize(ds)
    print(mc.format_table(table))
    print("discovered every component, in the order of decreasing weight (95% Wilson interval):")
    print(mc.format_table(mc.discovery_order(ds)))
    print(mc.integrity(ds))
    flagged = flagged_seeds(table)
    if flagged:
        print(f"WARNING: {flagged} of {int(table.loc[table['component'] == 0, 'n'].sum())} seeds exceeded their "
              "coupling bound (coupling_tol): outside the regime where Phase 1 approximates the gradient flow, their "
              "discoveries are the decoupled dynamics' only (column 'flagged'; a shorter horizon keeps them in it)",
              flush=True)
    print(f"dataset: {out}", flush=True)
    paths = mc.write_summary(ds, out, csv=csv, png=png)
    for name, path in paths.items():
        print(f"{name + ':':<12} {path}")
    return 1 if flagged else 0


def summarize_store(store: str, csv: str | None, png: str | None) -> int:
    """``summarize STORE``: the summary of an existing store (verified chunk by chunk)."""
    from deflation import montecarlo as mc

    _path("--csv", csv)
    _path("--png", png)
    if not Path(store).exists():
        raise ValueError(f"store {store!r} does not exist")
    try:
        ds = mc.open_study(store)
    except mc.StoreMismatch:
        raise
    except (ValueError, TypeError, KeyError) as err:  # its attributes are data, parsed and checked: never run
        raise ValueError(f"{store!r} is not a readable deflation study store ({type(err).__name__}: "
                         f"{str(err)[:200]})") from None
    return show_summary(ds, store, csv=csv, png=png)
