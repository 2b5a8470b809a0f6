"""What ``deflation study`` and ``deflation montecarlo`` share: the execution options (chunks,
devices, processes), running or resuming a study, and its summary."""

from __future__ import annotations

import sys
from pathlib import Path

from ._options import add_options

EXECUTION_OPTIONS = [
    ("--chunk", int, None, "seeds per chunk (default: the study's, else 512; a resumed store keeps its own)"),
    ("--devices", int, None, "use the first N devices of each process (default: all)"),
    ("--coordinator", str, None, "HOST:PORT of process 0 of a multi-process jax.distributed job"),
    ("--num-processes", int, None, "processes of the job (with --coordinator)"),
    ("--process-id", int, None, "this process's index in the job (with --coordinator)"),
    ("--distributed", bool, None, "join a jax.distributed job found by JAX's cluster detection "
                                  "(JAX_COORDINATOR_ADDRESS, SLURM, ...)"),
    ("--init-timeout", float, 60.0, "seconds to wait for the coordinator"),
    ("--no-progress", bool, None, "no progress bar"),
    ("--quiet", bool, None, "do not print the summary table"),
]


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
    if args.coordinator or args.num_processes is not None or args.process_id is not None:
        mc.initialize_distributed(args.coordinator, args.num_processes, args.process_id, timeout=args.init_timeout)
    elif args.distributed:
        mc.initialize_distributed(timeout=args.init_timeout)
    try:
        ds = mc.run_study(study, out, chunk=args.chunk, devices=args.devices, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted: completed chunks are stored in {out}; run the same command again to resume",
              file=sys.stderr)
        return 130
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
