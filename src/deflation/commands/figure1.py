"""``deflation figure1``: the paper's Figure 1 (d = 10, five components with a_i/a_(i+1) = 1.2
summing to 1, m = 50 columns of W at initial norm 1e-15, five seeds): PNG, data (.npz) and a
table of times.

Every bad value of a flag is refused before anything is computed, with one line naming the flag
(exit code 2); a seed that does not complete is reported with its index and what to change
(exit code 1)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..models import MODELS
from ..status import Status
from ._options import (
    add_aliases,
    add_options,
    at_least,
    check_options,
    flag_names,
    fraction,
    nonnegative,
    one_of,
    param_flags,
    positive,
    prng_seed,
    ratio,
    seed_count,
)
from ._output import prepare_dir, write_atomic

#: What ``deflation figure1 --help`` says (plain text: no markup).
DESCRIPTION = ("Reproduce the paper's Figure 1 (d = 10, five ground-truth components with a_i/a_(i+1) = 1.2 "
               "summing to 1, m = 50 columns of W at initial norm 1e-15, five seeds): PNG, data (.npz) and a table "
               "of times. Every bad value of a flag is refused before anything is computed, with one line naming "
               "the flag (exit code 2); a seed that does not complete is reported with its index and what to "
               "change (exit code 1).")

OPTIONS = [
    ("--seeds", int, 5, "number of random initializations", seed_count),
    ("--out", str, "figure1-out", "output directory"),
    ("--key", int, 0, "base PRNG key; seed k uses fold_in(key, k)", prng_seed),
    ("--d", int, 10, "dimension", at_least(1)),
    ("--r", int, 5, "number of ground-truth components", at_least(1)),
    ("--ratio", float, 1.2, "a_i / a_(i+1)", ratio),
    ("--m", int, 50, "number of columns of W", at_least(1)),
    ("--order", int, 4, "tensor order p (2: the matrix case, Definition 1 read from the spectrum)",
     at_least(2, 2**31 - 1)),
    ("--model", str, "normalized", "factorization model: normalized (the paper's T = sum_j w_j^p / |w_j|^(p-2)), "
                                   "plain (T = sum_j w_j^p, which leaves --init only after a time ~ init^-(p-2) at "
                                   "order 3 or more: use e.g. --init 0.05 --delta1 0.5 --horizon 2000) or asymmetric "
                                   "(T = sum_j w_j^(1) x ... x w_j^(p), one factor matrix per mode, as slow as plain "
                                   "at order 3 or more)", one_of(tuple(MODELS))),
    ("--init", float, 1e-15, "initial norm delta0", positive),
    ("--horizon", float, 300.0, "time horizon: the flow runs from t = 0 to this time", positive),
    ("--points", int, 601, "save points", at_least(2)),
    ("--lam", float, 0.0, "regularization lambda", nonnegative),
    ("--rtol", float, 1e-10, "relative tolerance", fraction),
    ("--atol", float, 1e-10, "absolute tolerance", fraction),
    ("--delta1", float, 1e-3, "discovery norm threshold", positive),
    ("--alpha", float, 0.1, "discovery correlation: wbar_i^2 >= 1 - alpha^2", fraction),
    ("--event-points", int, 512, "grid on which discovery and fit events are located", at_least(2)),
    ("--progress", bool, None, "show the solver's progress bar"),
]

#: Old spellings of flags (deprecated; they print a notice) -> the flag to use.
ALIASES = {"--t-end": "--horizon"}

#: Library parameters -> the flags they come from (for errors raised by the library).
NAMES = {"ts": "--horizon", "t1": "--horizon", "W0": "--init", "scale": "--init", "seeds": "--seeds", "d": "--d",
         "r": "--r", "ratio": "--ratio", "m": "--m", "order": "--order", "lam": "--lam", "rtol": "--rtol",
         "atol": "--atol", "delta1": "--delta1", "alpha": "--alpha", "event_points": "--event-points",
         "save points (ts)": "--points"}

#: The parameter each flag sets (its option's name, and the library's names above): an error about
#: one of them (:attr:`deflation.ParamError.param`) names the flag (:func:`deflation.cli.main`).
PARAM_FLAGS = {**param_flags(OPTIONS), **NAMES}

#: What to change when a seed does not complete, by status (its description, as ``failed()`` gives it).
ADVICE = {Status.MAX_STEPS.description: "a shorter --horizon, a smaller --lam or looser --rtol/--atol",
          Status.NONFINITE.description: "a smaller --init or tighter --rtol/--atol",
          Status.LOSS_INCREASED.description: "tighter --rtol/--atol",
          Status.SOLVER_FAILED.description: "tighter --rtol/--atol"}


def register(sub) -> None:
    p = sub.add_parser(
        "figure1",
        help="reproduce the paper's Figure 1 (loss and residual per direction over time)",
        description=DESCRIPTION,
    )
    add_options(p, OPTIONS)
    add_aliases(p, ALIASES, OPTIONS)
    p.set_defaults(func=run)


def check_args(args) -> None:
    """Every flag on its own (:data:`OPTIONS`), then together; ``ValueError`` naming the flags."""
    check_options(args, OPTIONS)
    if args.r > args.d:
        raise ValueError(f"--r must be <= --d = {args.d} (U = I[:, :r]), got --r {args.r}")
    if not args.init < args.delta1:
        raise ValueError(f"--init must be < --delta1 = {args.delta1:g} (a component is discovered when a column grows "
                         f"from its initial norm to delta1), got --init {args.init:g}")
    # the initial loss is about (m init^2)^2 / 2: it must stay a float64
    limit = math.sqrt(1e150 / args.m)
    if args.init > limit:
        raise ValueError(f"--init must be at most {limit:.3g} for --m {args.m} (the loss, about "
                         f"(m init^2)^2 / 2, overflows float64 beyond), got {args.init!r}")
    step = args.horizon / (args.points - 1)  # save times distinct, and no subnormal time step
    if not (step >= np.finfo(np.float64).tiny and step > 2 * np.spacing(args.horizon)):
        raise ValueError(f"--horizon {args.horizon!r} is too small for --points {args.points} distinct save times")


def final_losses(loss, floor) -> str:
    """The final loss of each seed, ``"4.79e-02, 1.2e-20 (floor 3.4e-20)"``: a loss below its
    accuracy floor (not resolved, and not drawn) is printed with the floor beside it."""
    out = []
    for value, low in zip(np.asarray(loss, np.float64), np.asarray(floor, np.float64)):
        out.append(f"{value:.2e}" if value > low else f"{value:.2e} (below its accuracy floor {low:.1e})")
    return ", ".join(out)


def run(args) -> int:
    check_args(args)
    out = prepare_dir("--out", args.out)  # before any computation: a bad --out fails at once
    if args.m < args.r:  # allowed (an under-parametrized model), but it cannot fit every component
        print(f"WARNING: --m {args.m} < --r {args.r}: with fewer columns than components at most {args.m} of the "
              f"{args.r} components can be fitted (the loss cannot reach 0)")

    import jax
    import jax.numpy as jnp

    from .. import Target, gradient_flow
    from ..flow import flow_plan
    from ..init import seed_keys, unit_columns
    from ..models import as_model
    from ..plots import plot_figure1

    seeds, points = args.seeds, args.points
    with flag_names(NAMES):
        model = as_model(args.model)
        factors = model.factor_count(args.order)  # a state of p factor matrices is sized as one of p d rows
        flow_plan(seeds, args.d * factors, args.m, args.r, points, args.event_points, None, 8,
                  names=dict(seeds="--seeds", m="--m", d="--d", save_points="--points"))  # refused at once if too large
        target = Target.geometric(args.d, args.r, args.ratio, args.order)
        # each column at norm --init exactly, in log-norm coordinates (any positive --init works)
        keys = seed_keys(jax.random.PRNGKey(args.key), range(seeds))
        if factors == 1:
            ubar = jax.vmap(lambda k: unit_columns(k, args.d, args.m))(keys)
            W0 = (jnp.full((seeds, args.m), math.log(args.init)), ubar)
        else:  # one factor matrix per mode, mode k's columns drawn with fold_in(key, k), each of norm --init
            W0 = tuple(args.init * jax.vmap(lambda k: unit_columns(jax.random.fold_in(k, mode), args.d, args.m))(keys)
                       for mode in range(factors))
        ts = jnp.linspace(0.0, args.horizon, points)

        start = time.perf_counter()
        res = gradient_flow(
            target, W0, ts, model=model, lam=args.lam, rtol=args.rtol, atol=args.atol, delta1=args.delta1,
            alpha=args.alpha, event_points=args.event_points, progress=args.progress,
        )
        jax.block_until_ready(res.loss)
    elapsed = time.perf_counter() - start

    disc, fit = np.asarray(res.discovery_time), np.asarray(res.fit_time)
    a = np.asarray(target.a)
    print(f"deflation figure1: model={args.model} d={args.d} r={args.r} ratio={args.ratio} m={args.m} p={args.order} "
          f"init={args.init:g} seeds={seeds} horizon={args.horizon:g} ({elapsed:.1f} s incl. compilation)")
    by_weight = args.lam > 0 and model.fit_by_weight  # Lemma 7's rule, for the paper's model
    spectral = model.definition(args.order) == "spectral"
    slot = (("a singular pair of W_1 W_2^T" if factors > 1 else "an eigenpair of W W^T") if spectral
            else ("a rank-one term" if factors > 1 else "a column"))
    rule = (f"norm reaches delta1={args.delta1:g} with wbar_i^2 >= 1-{args.alpha:g}^2" if slot == "a column" else
            f"{slot} reaches size delta1={args.delta1:g} aligned with u_i (cos^2 >= 1-{args.alpha:g}^2)")
    print(f"discovered: {rule}; "
          + ("fitted: a_i - ahat_i <= 2 lam" if by_weight else "fitted: residual on u_i <= 0.1 a_i"))
    print(f"{'i':>3} {'a_i':>8} {'discovery time (per seed)':>40}   {'fit time (per seed)':>40}")
    for i in range(args.r):
        d_txt = " ".join(f"{x:7.2f}" for x in disc[:, i])
        f_txt = " ".join(f"{x:7.2f}" for x in fit[:, i])
        print(f"{i + 1:>3} {a[i]:8.4f} {d_txt:>40}   {f_txt:>40}")
    # all fitted, in order
    order_ok = [bool(np.all(np.isfinite(fit[s])) and np.all(np.diff(fit[s]) > 0)) for s in range(seeds)]
    print(f"fitted in order u_1, ..., u_{args.r}: {sum(order_ok)}/{seeds} seeds; "
          f"final loss: {final_losses(res.loss[:, -1], res.loss_floor[:, -1])}")
    if not np.isfinite(disc).any():
        slow = args.model in ("plain", "asymmetric") and args.order >= 3
        print(f"NOTE: no component was discovered by --horizon {args.horizon:g}"
              + (f" (the {args.model} model leaves --init {args.init:g} only after a time ~ init^-(p-2): "
                 "try e.g. --init 0.05 --delta1 0.5 "
                 "--horizon 2000)" if slow else " (try a longer --horizon)"))
    failed = res.failed()
    for b, why in failed:
        print(f"WARNING: seed {b} did not complete: {why} (try {ADVICE.get(why, 'other settings')})")

    fit_rule = r"$a_i - \hat a_i \leq 2\lambda$" if by_weight else r"residual on $u_i$ $\leq 0.1\,a_i$"
    formula = (f"w_j^{{(1)}} \\otimes \\dots \\otimes w_j^{{({args.order})}}" if factors > 1
               else f"w_j^{{\\otimes {args.order}}}")
    model_txt = "" if args.model == "normalized" else f" of the {args.model} model $T = \\sum_j {formula}$"
    title = (f"Gradient flow{model_txt} on $T^* = \\sum_i a_i e_i^{{\\otimes {args.order}}}$ (d={args.d}, r={args.r}, "
             f"$a_i/a_{{i+1}}$={args.ratio:g}), m={args.m} columns of initial norm {args.init:g}, {seeds} seeds;\n"
             f"fitted one by one in the order $u_1, \\dots, u_{{{args.r}}}$ (largest first) in {sum(order_ok)} "
             f"of {seeds} seeds")
    discovery_label = (f"discovery (Definition 1): a column reaches norm $\\delta_1$={args.delta1:g}\n"
                       f"with $\\bar w_i^2 \\geq 1 - {args.alpha:g}^2$" if slot == "a column" else
                       f"discovery (Definition 1): {slot} reaches size $\\delta_1$={args.delta1:g}\n"
                       f"aligned with $u_i$: $\\cos^2 \\geq 1 - {args.alpha:g}^2$")
    levels_label = r"deflation levels $\frac{1}{2}\sum_{j>k} a_j^2$"  # the target is orthogonal (U = I[:, :r])
    png = write_atomic("--out", out / "figure1.png", lambda tmp: plot_figure1(
        res, target, tmp, title=title, levels=model.deflation_levels(target), levels_label=levels_label,
        discovery_label=discovery_label,
        fit_label=f"fit: {fit_rule}"))
    data: dict[str, Any] = dict(ts=np.asarray(res.ts), loss=np.asarray(res.loss), loss_floor=np.asarray(res.loss_floor),
                residual=np.asarray(res.residual), log_norm=np.asarray(res.log_norm), discovery_time=disc, fit_time=fit,
                member=np.asarray(res.member), status=np.asarray(res.status), a=a, U=np.asarray(target.U))
    npz = write_atomic("--out", out / "figure1.npz", lambda tmp: np.savez_compressed(tmp, **data))
    params = json.dumps({k: v for k, v in vars(args).items() if k != "func"}, indent=2)
    js = write_atomic("--out", out / "figure1.json", lambda tmp: Path(tmp).write_text(params))
    print(f"wrote {png}, {npz} (data), {js} (parameters)")
    return 1 if failed else 0
