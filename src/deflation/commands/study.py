"""``deflation study``: run, plan, summarize and verify Monte Carlo studies declared in TOML files
(see :mod:`deflation.montecarlo.study` for the format)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_options, deprecated
from ._study_run import add_execution_options, execute, summarize_store


def register(sub) -> None:
    p = sub.add_parser(
        "study",
        help="Monte Carlo studies declared in a TOML file: run, plan, summarize, verify",
        description="Monte Carlo studies declared in a TOML file (experiment flow, phase1 or algorithm2; target "
        "basis, random, angle or file; any list of parameter values sweeps it, several make a grid). "
        "'run' computes (or resumes) a study into a Zarr store, 'plan' prints its size without computing anything "
        "(with --calibrate: also the memory of a chunk and an estimated time, from compiling and timing one small "
        "chunk of each program), 'summarize' prints and draws an existing store, 'verify' checks its integrity.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run (or resume) a study")
    run.add_argument("file", help="the study file (TOML)")
    add_options(run, [("--out", str, None, "the Zarr store to create or resume; its table and figures are written "
                                          "next to it (default out/STEM.zarr for a study file STEM.toml)")])
    add_execution_options(run.add_argument_group("execution"))
    run.set_defaults(func=_run)
    plan = actions.add_parser("plan", help="size of a study (nothing computed); with --calibrate also its memory "
                                           "and estimated time")
    plan.add_argument("file", help="the study file (TOML)")
    add_options(plan, [("--chunk", int, None, "seeds per chunk (default: the study's, else 512)"),
                       ("--devices", int, None, "use the first N devices (default: all)"),
                       ("--calibrate", bool, None, "compile each distinct program of the study and time one small "
                                                   "chunk of it: the memory of a chunk and an estimated time "
                                                   "(takes about one compilation per program)")])
    plan.add_argument("--no-calibration", action="store_true", help=argparse.SUPPRESS)  # deprecated: the default
    plan.set_defaults(func=_plan)
    summary = actions.add_parser("summarize", help="table and figures of an existing study store")
    summary.add_argument("store", help="the study's Zarr store")
    add_options(summary, [("--png", str, None, "main figure path (default: STORE.png next to the store)"),
                          ("--csv", str, None, "table path (default: STORE.csv)")])
    summary.set_defaults(func=lambda args: summarize_store(args.store, args.csv, args.png))
    verify = actions.add_parser("verify", help="check every chunk of a study store against its digest")
    verify.add_argument("store", help="the study's Zarr store")
    verify.set_defaults(func=_verify)


def _load(file: str):
    from deflation.montecarlo import Study

    return Study.from_toml(file)


def _run(args) -> int:
    study = _load(args.file)  # every check on the study happens here, before JAX starts
    out = args.out if args.out is not None else str(Path("out") / f"{Path(args.file).stem}.zarr")
    return execute(study, out, args, "study run")


def _plan(args) -> int:
    from deflation.montecarlo import plan_study

    study = _load(args.file)
    for flag, value in (("--chunk", args.chunk), ("--devices", args.devices)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    if args.no_calibration:
        deprecated("deflation study plan", "--no-calibration", "nothing (a plan calibrates only with --calibrate)")
    plan = plan_study(study, chunk=args.chunk, devices=args.devices, calibrate=bool(args.calibrate))
    print(plan.describe())
    return 0


def _verify(args) -> int:
    """Exit status 0 when every chunk is present and intact, 1 otherwise."""
    from pathlib import Path

    from deflation.montecarlo import Study, store

    if not Path(args.store).exists():
        raise ValueError(f"store {args.store!r} does not exist")
    import zarr

    try:
        root = zarr.open_group(args.store, mode="r")
        study = Study.from_json(root.attrs["study"])
        chunk = int(root.attrs["chunk"])
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{args.store!r} is not a deflation study store ({type(err).__name__})") from None
    found = store.verify(root, study, chunk)
    total = found.done.size
    print(f"{args.store}: {int(found.done.sum())} of {total} chunks intact, {int(found.missing.sum())} missing, "
          f"{len(found.problems)} damaged")
    for line in found.problems:
        print(f"  damaged: {line}")
    return 0 if found.complete else 1
