"""``deflation montecarlo``: a Monte Carlo study of discovery probability from command-line flags (a
shorthand for a ``flow`` or ``phase1`` study of ``deflation study``), and ``deflation montecarlo
summarize STORE`` for the table and figures of an existing one."""

from __future__ import annotations

import numpy as np

from ..integrate import SOLVERS, SolverConfig
from ._options import add_aliases, add_options, deprecated, param_flags
from ._study_run import add_execution_options, execute, summarize_store

#: Flags that take a comma-separated list (several lists make a grid), and the parameter each sets.
_LIST_FLAGS = {"d": ("d", int), "m": ("m", int), "order": ("order", int), "delta0": ("delta0", float),
               "delta1": ("delta1", float), "alpha": ("alpha", float), "lam": ("lam", float),
               "horizon": ("horizon", float)}

#: Where a study goes when ``--out`` is not given (``out/`` is ignored by git).
DEFAULT_OUT = "out/montecarlo.zarr"


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


def target_table(a: str | None, ratio: str | None, r: int | None) -> dict:
    """The study's ``[target]`` table (``U = I[:, :r]``) of ``--a A1,A2,...`` (weights used as
    given) or ``--ratio RATIO --r R`` (Figure 1's weights a_i / a_(i+1) = RATIO summing to 1; a
    comma-separated list of ratios sweeps it). ``--a geometric:R:RATIO`` is the deprecated
    spelling of ``--ratio RATIO --r R``."""
    if a is not None and a.startswith("geometric:"):
        if ratio is not None or r is not None:
            raise ValueError("give either --a or --ratio/--r, not both")
        table = parse_target(a)
        deprecated("deflation montecarlo", f"--a {a}", f"--ratio {table['ratio']:g} --r {table['r']}")
        return table
    if a is not None:
        if ratio is not None or r is not None:
            raise ValueError("give either --a or --ratio/--r, not both")
        return parse_target(a)
    if ratio is None or r is None:
        raise ValueError("--a (the weights) or --ratio with --r is required to run a study "
                         "(see deflation montecarlo --help)")
    if r < 1:
        raise ValueError(f"--r must be a positive integer, got {r}")
    values = _number_list("ratio", ratio, float)
    return dict(kind="basis", ratio=values[0] if len(values) == 1 else values, r=r)


def parse_target(text: str) -> dict:
    """``--a``: ``"0.3,0.25,0.2"`` or the deprecated ``"geometric:R:RATIO"`` (Figure 1:
    ``geometric:5:1.2``, normalized to sum 1), as a study's ``[target]`` table (``U = I[:, :r]``)."""
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
        return dict(kind="basis", ratio=ratio, r=r)
    return dict(kind="basis", a=_number_list("a", text, float))


STUDY_OPTIONS = [
    ("--a", str, None, "ground-truth weights a_i, comma-separated (used as given), e.g. 0.3,0.25,0.2,0.15,0.1; "
                       "U = I[:, :r]"),
    ("--ratio", str, None, "instead of --a: weights a_i / a_(i+1) = RATIO summing to 1, with --r (Figure 1: "
                           "--ratio 1.2 --r 5; a list sweeps it)"),
    ("--r", int, None, "number of ground-truth components with --ratio"),
    ("--d", str, None, "dimension (a comma-separated list sweeps it)"),
    ("--m", str, None, "number of columns of W (list to sweep)"),
    ("--order", str, "4", "tensor order p >= 2 (2: the matrix case; list to sweep)"),
    ("--model", str, "normalized", "factorization model: normalized (the paper's), plain or asymmetric (one factor "
                                   "matrix per mode); a comma-separated list sweeps it on the same seeds"),
    ("--delta0", str, "1e-15", "initial norm of every column"),
    ("--delta1", str, "1e-3", "discovery norm (Definition 1)"),
    ("--alpha", str, "0.1", "discovery correlation slack (Definition 1)"),
    ("--lam", str, "0", "regularization lam"),
    ("--horizon", str, None, "time horizon: discovery is checked from t = 0 to this time (list to sweep)"),
    ("--seeds", int, None, "number of random initializations"),
    ("--key", int, 0, "base PRNG key; seed k uses fold_in(key, k)"),
]
SOLVER_OPTIONS = [
    ("--solver", str, "tsit5", f"diffrax solver: {', '.join(SOLVERS)}"),
    ("--rtol", float, SolverConfig.DEFAULT_RTOL, "relative tolerance"),
    ("--atol", float, SolverConfig.DEFAULT_ATOL, "absolute tolerance"),
    ("--max-steps", int, SolverConfig.DEFAULT_MAX_STEPS, "step budget per trajectory"),
    ("--dtype", str, "float64", "float64 or float32"),
    ("--event-points", int, 512, "grid on which discovery and fit events are located"),
]

#: The study's parameter each flag sets (``params.rtol``, ``seeds``): an error about one of them
#: (:attr:`deflation.ParamError.param`) is printed after its flag (:func:`deflation.cli.main`).
PARAM_FLAGS = {**{f"params.{name}": f"--{flag}" for flag, (name, _) in _LIST_FLAGS.items()},
               **param_flags(SOLVER_OPTIONS, "params."),
               **param_flags([option for option in STUDY_OPTIONS if option[0] == "--model"], "params."),
               **param_flags([option for option in STUDY_OPTIONS if option[0] in ("--seeds", "--key")])}


def register(sub):
    p = sub.add_parser(
        "montecarlo",
        help="Monte Carlo study of discovery probability from flags (resumable Zarr dataset)",
        description="Run (or resume) a Monte Carlo study: per seed and ground-truth component, whether and when it "
        "is discovered (Definition 1) within the time horizon. The weights are --a A1,A2,... or --ratio RATIO "
        "with --r R. Any of --d --m --order --delta0 --delta1 --alpha --lam --horizon (and --ratio) may be a "
        "comma-separated list to sweep it (several lists make a grid). Rerunning the same "
        "command resumes. A shorthand for 'deflation study run' (which reads the study from a TOML file and offers "
        "more targets and experiments). 'deflation montecarlo summarize STORE' prints the table and redraws the "
        "figures of an existing study.",
    )
    study = p.add_argument_group("study")
    add_options(study, STUDY_OPTIONS)
    add_aliases(p, {"--time": "--horizon"}, STUDY_OPTIONS)
    study.add_argument(
        "--mode", default="full", choices=["full", "decoupled"],
        help="full gradient flow (experiment flow), or the decoupled Phase 1 tensor-power dynamics "
             "(experiment phase1: fast, coupling checked) (default full)")
    add_options(p.add_argument_group("solver"), SOLVER_OPTIONS)
    execution = p.add_argument_group("execution")
    add_options(execution, [("--out", str, DEFAULT_OUT, "Zarr store to create or resume; its table and figures "
                                                        "are written next to it")])
    add_execution_options(execution)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    sm = actions.add_parser("summarize", help="table and figures of an existing study store")
    sm.add_argument("store", help="the study's Zarr store")
    add_options(sm, [("--png", str, None, "main figure path (default: STORE.png next to the store)"),
                     ("--csv", str, None, "table path (default: STORE.csv)")])
    p.set_defaults(func=run, action=None)


def build_study(args):
    """The :class:`~deflation.montecarlo.Study` of the command-line arguments (validated)."""
    from deflation.montecarlo import Study

    for flag in ("d", "m", "horizon", "seeds", "out"):
        if getattr(args, flag) is None:
            raise ValueError(f"--{flag} is required to run a study (see deflation montecarlo --help)")
    target = target_table(args.a, args.ratio, args.r)
    params = {}
    for flag, (name, kind) in _LIST_FLAGS.items():
        values = _number_list(flag, getattr(args, flag), kind)
        params[name] = values[0] if len(values) == 1 else values
    models = [name.strip() for name in str(args.model).split(",")]
    params["model"] = models[0] if len(models) == 1 else models
    params.update(solver=args.solver, rtol=args.rtol, atol=args.atol, max_steps=args.max_steps, dtype=args.dtype,
                  event_points=args.event_points)
    experiment = "flow" if args.mode == "full" else "phase1"
    try:
        return Study(experiment, args.seeds, target, params, key=args.key)
    except (ValueError, TypeError) as err:  # name the flags the user typed
        if getattr(err, "param", None) in PARAM_FLAGS:
            raise  # about one flag's parameter: printed as it is, after the flag
        text = str(err)  # otherwise the message's parameter names are replaced by the flags
        for flag, (name, _) in _LIST_FLAGS.items():
            text = text.replace(f"params.{name}", f"--{flag}")
        for name in ("solver", "rtol", "atol", "dtype"):
            text = text.replace(f"params.{name}", f"--{name}")
        text = text.replace("params.max_steps", "--max-steps").replace("params.event_points", "--event-points")
        ratio, r = ("--a's RATIO", "--a's R") if args.a is not None else ("--ratio", "--r")
        text = text.replace("target.a", "--a").replace("target.ratio", ratio).replace("target.r", r)
        text = text.replace("seeds must", "--seeds must").replace("key must", "--key must")
        raise type(err)(text) from None


def run(args) -> int:
    if args.action == "summarize":
        return summarize_store(args.store, args.csv, args.png)
    study = build_study(args)  # every check on the study happens here, before JAX starts
    return execute(study, args.out, args, "montecarlo")
