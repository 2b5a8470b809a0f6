"""``deflation montecarlo``: a Monte Carlo study of discovery probability (resumable Zarr dataset),
and ``deflation montecarlo summarize STORE`` for the table and plot of an existing one."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..integrate import SOLVERS

_SWEEP_FLAGS = {"d": int, "m": int, "order": int, "delta0": float, "delta1": float, "alpha": float, "lam": float, "time": float}


def _number_list(flag: str, text: str, kind) -> list:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if any(p == "" for p in parts):
            raise ValueError
        out = [kind(p) for p in parts]
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise ValueError(f"--{flag} must be a comma-separated list of {what}, got {text!r}") from None
    return out


def parse_weights(text: str) -> list[float]:
    """``--a``: ``"0.3,0.25,0.2"`` or ``"geometric:R:RATIO"`` (Figure 1: ``geometric:5:1.2``, normalized to sum 1)."""
    if text.startswith("geometric:"):
        parts = text.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            r, ratio = int(parts[1]), float(parts[2])
        except ValueError:
            raise ValueError(f"--a geometric form is geometric:R:RATIO (e.g. geometric:5:1.2), got {text!r}") from None
        if r < 1 or not np.isfinite(ratio) or ratio < 1:
            raise ValueError(f"--a geometric:R:RATIO needs R >= 1 and a finite RATIO >= 1, got {text!r}")
        a = ratio ** -np.arange(r, dtype=np.float64)
        return (a / a.sum()).tolist()
    return _number_list("a", text, float)


def register(sub):
    p = sub.add_parser(
        "montecarlo",
        help="Monte Carlo study of discovery probability (resumable Zarr dataset)",
        description="Run (or resume) a Monte Carlo study: per seed and ground-truth component, whether and when it "
        "is discovered (Definition 1) within the time horizon. Any one of --d --m --order --delta0 --delta1 "
        "--alpha --lam --time may be a comma-separated list to sweep it. Rerunning the same command resumes. "
        "'deflation montecarlo summarize STORE' prints the table and redraws the plot of an existing study.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("study")
    g.add_argument("--a", help="ground-truth weights, e.g. 0.3,0.25,0.2,0.15,0.1, or geometric:R:RATIO (Figure 1: geometric:5:1.2)")
    g.add_argument("--d", default=None, help="dimension (list to sweep)")
    g.add_argument("--m", default=None, help="number of components (list to sweep)")
    g.add_argument("--order", default="4", help="tensor order p >= 3")
    g.add_argument("--delta0", default="1e-15", help="initial norm of every column")
    g.add_argument("--delta1", default="1e-3", help="discovery norm (Definition 1)")
    g.add_argument("--alpha", default="0.1", help="discovery correlation slack (Definition 1)")
    g.add_argument("--lam", default="0", help="regularization lam")
    g.add_argument("--time", default=None, help="time horizon")
    g.add_argument("--seeds", type=int, default=None, help="number of random initializations")
    g.add_argument("--key", type=int, default=0, help="base PRNG seed (seed k uses fold_in(PRNGKey(key), k))")
    g.add_argument("--mode", default="full", choices=["full", "decoupled"],
                   help="full gradient flow, or the decoupled Phase 1 tensor-power dynamics (fast; coupling checked)")
    s = p.add_argument_group("solver")
    s.add_argument("--solver", default="tsit5", help=f"diffrax solver: {', '.join(SOLVERS)}")
    s.add_argument("--rtol", type=float, default=1e-8)
    s.add_argument("--atol", type=float, default=1e-8)
    s.add_argument("--max-steps", type=int, default=100_000)
    s.add_argument("--dtype", default="float64", help="float64 or float32")
    s.add_argument("--event-points", type=int, default=512, help="grid on which discovery/fit events are located")
    r = p.add_argument_group("execution")
    r.add_argument("--out", help="Zarr store to create or resume (e.g. study.zarr)")
    r.add_argument("--chunk", type=int, default=None, help="seeds per chunk (default 512; a resumed store keeps its own)")
    r.add_argument("--devices", type=int, default=None, help="use the first N devices of each process (default: all)")
    r.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 of a multi-process jax.distributed job")
    r.add_argument("--num-processes", type=int, default=None)
    r.add_argument("--process-id", type=int, default=None)
    r.add_argument("--distributed", action="store_true",
                   help="join a jax.distributed job found by JAX's cluster detection (JAX_COORDINATOR_ADDRESS, SLURM, ...)")
    r.add_argument("--init-timeout", type=float, default=60.0, help="seconds to wait for the coordinator")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--quiet", action="store_true", help="do not print the summary table")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    sm = actions.add_parser("summarize", help="table and plot of an existing study store")
    sm.add_argument("store", help="the study's Zarr store")
    sm.add_argument("--png", default=None, help="plot path (default: next to the store, STORE.png)")
    sm.add_argument("--csv", default=None, help="table path (default: STORE.csv)")
    p.set_defaults(func=run, action=None)


def build_study(args):
    """The :class:`~deflation.montecarlo.Study` of the command-line arguments (validated)."""
    from deflation.montecarlo import Study

    for flag in ("a", "d", "m", "time", "seeds", "out"):
        if getattr(args, flag) is None:
            raise ValueError(f"--{flag} is required to run a study (see deflation montecarlo --help)")
    vals = {k: _number_list(k, getattr(args, k), kind) for k, kind in _SWEEP_FLAGS.items()}
    vals = {k: v[0] if len(v) == 1 else v for k, v in vals.items()}
    vals["horizon"] = vals.pop("time")
    return Study(
        a=parse_weights(args.a), seeds=args.seeds, key=args.key, solver=args.solver, rtol=args.rtol, atol=args.atol,
        max_steps=args.max_steps, dtype=args.dtype, mode=args.mode, event_points=args.event_points, **vals,
    )


def _summarize(args) -> int:
    from pathlib import Path

    from deflation.montecarlo import format_table, load, plot, summarize
    from deflation.montecarlo.summary import default_paths

    if not Path(args.store).exists():
        raise ValueError(f"store {args.store!r} does not exist")
    ds = load(args.store)
    df = summarize(ds)
    csv, png = default_paths(args.store)
    csv, png = Path(args.csv or csv), Path(args.png or png)
    df.to_csv(csv, index=False)
    plot(df, ds, png)
    done = int((ds["status"].values >= 0).sum())
    total = int(ds["status"].size)
    print(format_table(df))
    print(f"{done}/{total} seeds computed{'' if ds.attrs.get('complete') else ' (incomplete: rerun the study command to resume)'}")
    print(f"table: {csv}\nplot:  {png}")
    return 0


def run(args) -> int:
    from deflation import montecarlo as mc

    if args.action == "summarize":
        return _summarize(args)
    study = build_study(args)  # every check on the study happens here, before JAX starts
    if args.chunk is not None and args.chunk < 1:
        raise ValueError(f"--chunk must be a positive integer, got {args.chunk}")
    if args.devices is not None and args.devices < 1:
        raise ValueError(f"--devices must be a positive integer, got {args.devices}")
    if args.coordinator or args.num_processes is not None or args.process_id is not None:
        mc.initialize_distributed(args.coordinator, args.num_processes, args.process_id, timeout=args.init_timeout)
    elif args.distributed:
        mc.initialize_distributed(timeout=args.init_timeout)
    try:
        ds = mc.run_study(study, args.out, chunk=args.chunk, devices=args.devices, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted: completed chunks are stored in {args.out}; run the same command again to resume",
              file=sys.stderr)
        return 130
    if ds is not None and not args.quiet:
        from deflation.montecarlo.summary import default_paths

        csv, png = default_paths(args.out)
        print(mc.format_table(mc.summarize(ds)))
        print(f"dataset: {args.out}\ntable:   {csv}\nplot:    {png}")
    return 0
