"""``deflation algorithm2``: run the paper's Algorithm 2 and print / save what it did.

Parameters not given on the command line follow Theorem 1's scalings
(:func:`deflation.theorem1_parameters`). Writes, in ``--out``:

- ``algorithm2.npz``: every per-epoch record array (``record_<name>``, seed axis first when
  ``--seeds > 1``) and the per-run results (``converged``, ``epochs``, ``discovery_epoch``,
  ``fit_epoch``, ``residual``, ``log_norm``, ``ubar``, ``W``, ``member``, ``status``), plus the
  target (``a``, ``U``);
- ``algorithm2.json``: the parameters and a per-seed summary;
- ``algorithm2.png``: the residual per direction across epochs (see
  :func:`deflation.plots.plot_algorithm2`) for the first seed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from ..integrate import SolverConfig
from ._options import (
    add_aliases,
    add_options,
    at_least,
    check_options,
    deprecated,
    flag_names,
    fraction,
    nonnegative,
    param_flags,
    positive,
    prng_seed,
    ratio,
    seed_count,
)
from ._output import prepare_dir, write_atomic

ALGORITHM_OPTIONS = [
    ("--eps", float, 1e-2, "target accuracy |T - T*|_F <= eps", positive),
    ("--m", int, None, "number of columns of W (default 2 d^2)", at_least(1)),
    ("--lam", float, None, "regularization (default min(log d / d, eps / sqrt d))", positive),
    ("--alpha", float, None, "Definition 1 closeness (default min(lam/d^1.5, lam^2, eps^2/d^4))", fraction),
    ("--delta1", float, None, "re-initialization threshold (default alpha^1.5 / sqrt m)", positive),
    ("--delta0", float, None, "initialization scale (default delta1 alpha / sqrt(log d))", positive),
    ("--gamma", float, 0.5, "beta <- beta (1 - gamma) per epoch", fraction),
    ("--c1", float, 1.0, "t1 = c1 d / (beta log d)", positive),
    ("--c2", float, 1.0, "t2 = c2 (log 1/delta1 + log 1/lam) / beta", positive),
    ("--c3", float, 0.0, "adds Lemma 4's c3 log(d/alpha) / beta to t1", nonnegative),
    ("--c-rho", float, 0.1, "Definition 2's c_rho", fraction),
    ("--max-epochs", int, 30, "at most this many epochs", at_least(1)),
]
RUN_OPTIONS = [
    ("--seeds", int, 1, "independent runs; seed k uses fold_in(key, k)", seed_count),
    ("--key", int, 0, "base PRNG key; seed k uses fold_in(key, k)", prng_seed),
    ("--chunk", int, 8, "seeds per compiled call", at_least(1)),
    ("--rtol", float, SolverConfig.DEFAULT_RTOL, "solver relative tolerance", fraction),
    ("--atol", float, SolverConfig.DEFAULT_ATOL, "solver absolute tolerance", fraction),
    ("--event-points", int, 65, "grid (per phase) on which discovery and fit events are located", at_least(3)),
    ("--out", str, "algorithm2-out", "output directory"),
    ("--no-plot", bool, None, "do not write the PNG"),
]
TARGET_OPTIONS = [
    ("--d", int, 8, "dimension", at_least(2)),
    ("--ratio", float, None, "weights a_i / a_(i+1) = RATIO summing to 1 (default 1.2, as in Figure 1)", ratio),
    ("--r", int, None, "number of ground-truth components with --ratio (default d)", at_least(1)),
]

#: Old spellings of flags (deprecated; they print a notice) -> the flag to use.
ALIASES = {"--seed": "--key", "--grid-points": "--event-points", "--geometric": "--ratio"}

#: Library parameters -> the flags they come from (for errors raised by the library).
NAMES = {"eps": "--eps", "m": "--m", "lam": "--lam", "alpha": "--alpha", "delta1": "--delta1", "delta0": "--delta0",
         "gamma": "--gamma", "c1": "--c1", "c2": "--c2", "c3": "--c3", "c_rho": "--c-rho", "max_epochs": "--max-epochs",
         "seeds": "--seeds", "rtol": "--rtol", "atol": "--atol", "grid_points": "--event-points",
         "event_points": "--event-points", "d": "--d", "target.d": "--d", "r": "--r", "a": "--a", "ratio": "--ratio",
         "target.a": "--a"}

#: The parameter each flag sets (its option's name, and the library's names above): an error about
#: one of them (:attr:`deflation.ParamError.param`) names the flag (:func:`deflation.cli.main`).
PARAM_FLAGS = {**param_flags(TARGET_OPTIONS + ALGORITHM_OPTIONS + RUN_OPTIONS), **NAMES}


def register(sub):
    p = sub.add_parser(
        "algorithm2",
        help="run Algorithm 2 (modified gradient flow) and record the paper's diagnostics",
        description="Run the paper's Algorithm 2 on an orthogonal target T* = sum_i a_i e_i^(x)4 and print "
        "a per-epoch table. Parameters not given follow Theorem 1's scalings (deflation.theorem1_parameters). "
        "The target's weights are --a A1,A2,... (used as given) or --ratio RATIO with --r R (Figure 1's "
        "geometric weights, summing to 1). "
        "A bad value of a flag is refused with one line naming it (exit code 2); a run that a solver failure "
        "halted is reported with its index (exit code 1).",
    )
    g = p.add_argument_group("target")
    g.add_argument("--d", type=int, default=8, help="dimension (default 8)")
    g.add_argument("--a", nargs="+", metavar="A1,A2,...",
                   help="weights a_i of T*, comma-separated (used as given), e.g. 0.5,0.3,0.2")
    add_options(g, TARGET_OPTIONS[1:])
    add_options(p.add_argument_group("Algorithm 2 (default: Theorem 1 scalings)"), ALGORITHM_OPTIONS)
    add_options(p.add_argument_group("run"), RUN_OPTIONS)
    add_aliases(p, ALIASES, TARGET_OPTIONS + ALGORITHM_OPTIONS + RUN_OPTIONS)
    p.set_defaults(func=run)


def check_args(args) -> None:
    """Every flag on its own, then together; ``ValueError`` naming the flags."""
    check_options(args, TARGET_OPTIONS + ALGORITHM_OPTIONS + RUN_OPTIONS)
    if args.a is not None:
        args.a = _weights(args.a)
        if args.ratio is not None or args.r is not None:
            raise ValueError("give either --a or --ratio/--r, not both")
        a = np.asarray(args.a, dtype=np.float64)
        bad = ~np.isfinite(a) | (a < 0)
        if bad.any():
            raise ValueError(f"--a must be finite numbers >= 0, got {args.a[int(np.argmax(bad))]!r}")
        if not a.sum() > 0:
            raise ValueError("--a must hold a positive weight (T* = 0 needs no algorithm)")
        if a.size > args.d:
            raise ValueError(f"--a holds {a.size} weights, more than --d = {args.d}")
    elif args.r is not None and args.r > args.d:
        raise ValueError(f"--r must be <= --d = {args.d}, got --r {args.r}")


def _weights(tokens: list[str]) -> list[float]:
    """``--a``'s weights: one comma-separated list (space-separated values: deprecated)."""
    if len(tokens) > 1:
        deprecated("deflation algorithm2", "--a with space-separated weights", f"--a {','.join(tokens)}")
    parts = [p.strip() for t in tokens for p in str(t).split(",")]
    try:
        if any(p == "" for p in parts):
            raise ValueError
        return [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--a must be a comma-separated list of numbers, got {','.join(tokens)!r}") from None


def _check_results_fit(args, r: int, params) -> None:
    """The results of all ``--seeds`` (their records and states, kept until they are saved) must
    fit in memory; ``ValueError`` naming the flags otherwise."""
    from .. import memory

    est = memory.algorithm2_memory(seeds=args.seeds, d=args.d, m=params.m, r=r, grid_points=args.event_points,
                                   max_epochs=args.max_epochs, chunk=1)
    need = est.parts["record"] + est.parts["states"]
    available = memory.available_memory()
    if available is not None and need > available:
        raise ValueError(f"the results of --seeds {args.seeds} runs take an estimated {memory.gib(need)}, more than "
                         f"the {memory.gib(available)} available: use fewer --seeds (or fewer --max-epochs, "
                         f"--event-points, a smaller --m)")


def _target(args):
    from ..target import Target

    if args.a is not None:
        return Target.basis(np.asarray(args.a, dtype=np.float64), args.d)
    r = args.d if args.r is None else args.r
    return Target.geometric(args.d, r, 1.2 if args.ratio is None else args.ratio)


def _run_seeds(target, key, kwargs, seeds: int, chunk: int):
    """Run ``seeds`` seeds in chunks of ``chunk`` (padded with the last seed: one compilation)."""
    import jax

    from ..algorithm import Algorithm2Result, modified_gradient_flow

    if seeds == 1:
        return modified_gradient_flow(target, jax.random.fold_in(key, 0), **kwargs)
    from tqdm.auto import tqdm

    chunk = min(chunk, seeds)
    n_chunks = math.ceil(seeds / chunk)
    parts = []
    for c in tqdm(range(n_chunks), desc="seed chunks", disable=n_chunks == 1):
        idx = [min(k, seeds - 1) for k in range(c * chunk, (c + 1) * chunk)]
        parts.append(modified_gradient_flow(target, key, seeds=idx, **kwargs).take(min(chunk, seeds - c * chunk)))
    return Algorithm2Result.concatenate(parts, seeds=list(range(seeds)))


def _save(result, target, out, extra: dict) -> None:
    """``algorithm2.npz`` and ``algorithm2.json`` in ``out``, each written atomically."""
    arrays = {f"record_{k}": v for k, v in result.record.arrays().items()}
    arrays.update(result.run_arrays())
    arrays["a"], arrays["U"] = np.asarray(target.a), np.asarray(target.U)
    write_atomic("--out", out / "algorithm2.npz", lambda tmp: np.savez_compressed(tmp, **arrays))
    text = json.dumps(extra, indent=2)
    write_atomic("--out", out / "algorithm2.json", lambda tmp: Path(tmp).write_text(text))


def run(args) -> int:
    check_args(args)
    out = prepare_dir("--out", args.out)  # before any computation: a bad --out fails at once

    import jax

    from ..algorithm import algorithm2_plan
    from ..theorem import theorem1_parameters

    with flag_names(NAMES):
        params = theorem1_parameters(args.d, args.eps, m=args.m, gamma=args.gamma, lam=args.lam, alpha=args.alpha,
                                     delta1=args.delta1, delta0=args.delta0)
        r = len(args.a) if args.a is not None else (args.d if args.r is None else args.r)
        if params.m < r:
            raise ValueError(f"--m must be >= the number of components r = {r}, got --m {params.m}")
        chunk = min(args.chunk, args.seeds)
        # refused at once if a chunk cannot fit, before the target (d x r) or anything else is built
        algorithm2_plan(chunk, args.d, params.m, r, args.event_points, args.max_epochs, None,
                        names=dict(seeds="seeds", fewer_seeds="a smaller --chunk", m="--m",
                                   event_points="--event-points", max_epochs="--max-epochs"))
        _check_results_fit(args, r, params)
        target = _target(args)
    kwargs = dict(params.as_kwargs(), c1=args.c1, c2=args.c2, c3=args.c3, c_rho=args.c_rho, max_epochs=args.max_epochs,
                  rtol=args.rtol, atol=args.atol, event_points=args.event_points)
    print(f"Algorithm 2 on d = {target.d}, r = {target.r}, a = {np.array2string(np.asarray(target.a), precision=4)}")
    print(f"  m = {params.m}, lam = {params.lam:.4g}, alpha = {params.alpha:.4g}, delta1 = {params.delta1:.4g}, "
          f"delta0 = {params.delta0:.4g}, gamma = {params.gamma:g}, eps = {params.eps:g}, c1 = {args.c1:g}, "
          f"c2 = {args.c2:g}, c3 = {args.c3:g}, max_epochs = {args.max_epochs}, seeds = {args.seeds}")
    key = jax.random.key(args.key)
    start = time.perf_counter()
    with flag_names(NAMES):
        result = _run_seeds(target, key, kwargs, args.seeds, args.chunk)
    jax.block_until_ready(result.residual_norm)
    elapsed = time.perf_counter() - start
    print(f"(compiled and ran in {elapsed:.1f} s)\n")
    print("per-epoch table (seed 0; components are 0-based indices into a; bad(D2) = Definition 2 bad columns):")
    print(result.epoch_table(0))
    print("\nper component (seed 0; times measured from the start of the epoch named; "
          "L = log 1/delta1 + log 1/lam):")
    print(result.component_table(target, 0))

    conv = np.atleast_1d(np.asarray(result.converged))
    epochs = np.atleast_1d(np.asarray(result.epochs))
    resid = np.atleast_1d(np.asarray(result.residual_norm))
    disc = np.asarray(result.discovery_epoch).reshape(len(conv), -1)
    print()
    for k in range(len(conv)):
        word = "converged" if conv[k] else "NOT converged"
        print(f"seed {k}: {word} after {epochs[k]} epochs, |T - T*|_F = {resid[k]:.4g} (eps = {params.eps:g}); "
              f"discovery epochs {disc[k].tolist()}")
    failed = result.failed()
    for idx, why in failed:
        print(f"seed {idx}: solver failure ({why}); the run halted there, with its state from the start of that "
              f"phase (try tighter --rtol/--atol, or smaller --c1/--c2 if a phase outlasts the step budget)")
    if not conv.all():
        print(f"{int((~conv).sum())} of {len(conv)} runs did not reach |T - T*|_F <= eps within "
              f"--max-epochs {args.max_epochs}")

    extra = dict(
        d=target.d, r=target.r, a=np.asarray(target.a).tolist(), eps=params.eps, m=params.m, lam=params.lam,
        alpha=params.alpha, delta1=params.delta1, delta0=params.delta0, gamma=params.gamma, c1=args.c1, c2=args.c2,
        c3=args.c3, c_rho=args.c_rho, max_epochs=args.max_epochs, key=args.key, seeds=args.seeds,
        converged=conv.tolist(), epochs=epochs.tolist(), residual=resid.tolist(), discovery_epoch=disc.tolist(),
        status=np.atleast_1d(np.asarray(result.status)).tolist(), seconds=elapsed,
    )
    _save(result, target, out, extra)
    print(f"\nwrote {out / 'algorithm2.npz'} and algorithm2.json", end="")
    if not args.no_plot:
        from ..plots import plot_algorithm2

        png = out / "algorithm2.png"
        write_atomic("--out", png, lambda tmp: plot_algorithm2(result, target, tmp, seed=0))
        print(f", {png}", end="")
    print()
    return 1 if failed else 0
