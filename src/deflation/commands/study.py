"""``deflation study``: run, plan, summarize and verify Monte Carlo studies declared in TOML files
(see :mod:`deflation.montecarlo.study` for the format)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_options, deprecated
from ._study_run import WORKER_OPTIONS, add_execution_options, execute, summarize_store


def register(sub) -> None:
    p = sub.add_parser(
        "study",
        help="Monte Carlo studies declared in a TOML file: run, plan, summarize, verify, status, init, submit",
        description="Monte Carlo studies declared in a TOML file (experiment flow, phase1 or algorithm2; target "
        "basis, random, angle or file; any list of parameter values sweeps it, several make a grid). "
        "'run' computes (or resumes) a study into a Zarr store, 'plan' prints its size without computing anything "
        "(with --calibrate: also the memory of a chunk and an estimated time, from compiling and timing one small "
        "chunk of each program), 'summarize' prints and draws an existing store, 'verify' checks its integrity; "
        "'init', 'status' and 'submit' serve independent workers on one store (--worker K --workers N; 'submit' "
        "sends them as a Slurm job array through submitit).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run (or resume) a study")
    run.add_argument("file", help="the study file (TOML)")
    add_options(run, [("--out", str, None, "the Zarr store to create or resume; its table and figures are written "
                                          "next to it (default out/STEM.zarr for a study file STEM.toml)")])
    add_execution_options(run.add_argument_group("execution"))
    add_options(run.add_argument_group("independent workers (one store, no coordinator)"), WORKER_OPTIONS)
    run.set_defaults(func=_run)
    init = actions.add_parser("init", help="create a study's empty store (before independent workers start)")
    init.add_argument("file", help="the study file (TOML)")
    add_options(init, [("--out", str, None, "the Zarr store to create (e.g. study.zarr); required"),
                       ("--chunk", int, None, "seeds per chunk (default: the study's, else 512)")])
    init.set_defaults(func=_init)
    status = actions.add_parser("status", help="chunks done / claimed / missing / damaged of a store, per worker, "
                                               "and the time left")
    status.add_argument("store", help="the study's Zarr store")
    add_options(status, [("--claim-timeout", float, 600.0, "seconds after which a claim not refreshed is stale"),
                         ("--no-verify", bool, None, "count chunks by their digests without reading them back")])
    status.set_defaults(func=_status)
    submit = actions.add_parser("submit", help="run a study as a job array of independent workers (submitit: "
                                               "Slurm, or local processes)")
    submit.add_argument("file", help="the study file (TOML)")
    add_options(submit, SUBMIT_OPTIONS)
    submit.set_defaults(func=_submit)
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


#: What each worker of a submitted array job asks the cluster for (no default: the cluster's).
RESOURCES = {
    "--partition": (str, "Slurm partition"),
    "--gpus-per-task": (int, "GPUs per worker"),
    "--cpus-per-task": (int, "CPU cores per worker"),
    "--time-limit": (int, "time limit per worker, minutes (default: 240 on Slurm; a worker stopped by it loses only "
                          "its unfinished chunk)"),
    "--mem-gb": (float, "memory per worker, GB"),
    "--account": (str, "Slurm account"),
    "--qos": (str, "Slurm QOS"),
}

SUBMIT_OPTIONS = [
    ("--out", str, None, "the Zarr store (created now if missing); required"),
    ("--workers", int, None, "number of workers (array jobs); required"),
    ("--cluster", str, None, "slurm, local or debug (default: Slurm when sbatch is found, else local processes)"),
    *((flag, kind, None, doc) for flag, (kind, doc) in RESOURCES.items()),
    ("--parallel", int, None, "at most this many workers at once (default: all)"),
    ("--chunk", int, None, "seeds per chunk of a new store (default: the study's, else 512)"),
    ("--claim-timeout", float, 600.0, "seconds after which a dead worker's chunk is taken over"),
    ("--logs", str, None, "folder of the jobs' logs (default: OUT.logs next to the store)"),
    ("--wait", bool, None, "wait for the jobs to end (always with --cluster local)"),
]


def _load(file: str):
    from deflation.montecarlo import Study

    return Study.from_toml(file)


def _run(args) -> int:
    study = _load(args.file)  # every check on the study happens here, before JAX starts
    out = args.out if args.out is not None else str(Path("out") / f"{Path(args.file).stem}.zarr")
    return execute(study, out, args, "study run")


def _out_required(out) -> str:
    if out is None or not str(out).strip():
        raise ValueError("--out is required (the Zarr store, e.g. --out study.zarr)")
    return out


def _init(args) -> int:
    from deflation.montecarlo import init_study

    study = _load(args.file)
    out = _out_required(args.out)
    if args.chunk is not None and args.chunk < 1:
        raise ValueError(f"--chunk must be a positive integer, got {args.chunk}")
    init_study(study, out, chunk=args.chunk)
    print(f"{out}: ready for workers (deflation study run {args.file} --out {out} --worker K --workers N)")
    return 0


def _status(args) -> int:
    """Exit status 0 when every chunk is done, 1 otherwise."""
    from deflation.montecarlo import workers

    if not Path(args.store).exists():
        raise ValueError(f"store {args.store!r} does not exist")
    if not args.claim_timeout > 0:
        raise ValueError(f"--claim-timeout must be > 0 seconds, got {args.claim_timeout}")
    found = workers.status(args.store, timeout=args.claim_timeout, verify=not args.no_verify)
    print(found.describe(args.store))
    return 0 if found.remaining == 0 else 1


def _submit(args) -> int:
    from deflation.montecarlo import cluster

    _load(args.file)  # the study is checked before anything is submitted
    out = _out_required(args.out)
    if args.workers is None or args.workers < 1:
        raise ValueError(f"--workers must be a positive integer (the number of array jobs), got {args.workers}")
    for flag, value in (("--gpus-per-task", args.gpus_per_task), ("--cpus-per-task", args.cpus_per_task),
                        ("--time-limit", args.time_limit), ("--parallel", args.parallel), ("--chunk", args.chunk)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    if not args.claim_timeout > 0:
        raise ValueError(f"--claim-timeout must be > 0 seconds, got {args.claim_timeout}")
    logs = Path(args.logs) if args.logs else Path(out).with_name(Path(out).name + ".logs")
    executor = cluster.executor_for(args.cluster, logs, workers=args.workers, partition=args.partition,
                                    gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task,
                                    time_min=args.time_limit, mem_gb=args.mem_gb, account=args.account, qos=args.qos,
                                    parallel=args.parallel)
    jobs = cluster.submit(args.file, out, args.workers, executor, chunk=args.chunk, claim_timeout=args.claim_timeout)
    print(f"submitted {len(jobs)} worker(s) ({executor.cluster}): job {jobs[0].job_id.split('_')[0]}; logs in {logs}")
    print(f"follow them with: deflation study status {out}")
    if args.wait or executor.cluster in ("local", "debug"):
        failed = 0
        for k, job in enumerate(jobs):
            try:
                job.result()
            except Exception as err:  # noqa: BLE001 - a worker's failure, reported with its index
                failed += 1
                lines = [line.strip() for line in str(err).splitlines() if line.strip()]
                print(f"worker {k} failed: {type(err).__name__}: {(lines or [''])[-1][:300]} (log: {logs})")
        from deflation.montecarlo import workers

        found = workers.status(out, timeout=args.claim_timeout)
        print(found.describe(out))
        return 0 if found.remaining == 0 and not failed else 1
    return 0


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
    from deflation.montecarlo import store

    if not Path(args.store).exists():
        raise ValueError(f"store {args.store!r} does not exist")
    root, study, chunk = store.open_readonly(args.store)
    found = store.verify(root, study, chunk)
    total = found.done.size
    print(f"{args.store}: {int(found.done.sum())} of {total} chunks intact, {int(found.missing.sum())} missing, "
          f"{len(found.problems)} damaged")
    for line in found.problems:
        print(f"  damaged: {line}")
    return 0 if found.complete else 1
