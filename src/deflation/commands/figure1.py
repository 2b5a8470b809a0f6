"""``deflation figure1``: the paper's Figure 1 (d = 10, five components with a_i/a_(i+1) = 1.2
summing to 1, m = 50, initial norm 1e-15, five seeds): PNG, data (.npz) and a table of times."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ._options import add_options


OPTIONS = [
    ("--seeds", int, 5, "number of random initializations"),
    ("--out", str, "figure1-out", "output directory"),
    ("--key", int, 0, "base PRNG key; seed k uses fold_in(key, k)"),
    ("--d", int, 10, "dimension"),
    ("--r", int, 5, "number of ground-truth components"),
    ("--ratio", float, 1.2, "a_i / a_(i+1)"),
    ("--m", int, 50, "number of model components"),
    ("--order", int, 4, "tensor order p"),
    ("--init", float, 1e-15, "initial norm delta0"),
    ("--t-end", float, 300.0, "time horizon"),
    ("--points", int, 601, "save points"),
    ("--lam", float, 0.0, "regularization lambda"),
    ("--rtol", float, 1e-10, "relative tolerance"),
    ("--atol", float, 1e-10, "absolute tolerance"),
    ("--delta1", float, 1e-3, "discovery norm threshold"),
    ("--alpha", float, 0.1, "discovery correlation: wbar_i^2 >= 1 - alpha^2"),
    ("--progress", bool, None, "show the solver's progress bar"),
]


def register(sub) -> None:
    p = sub.add_parser(
        "figure1",
        help="reproduce the paper's Figure 1 (loss and residual per direction over time)",
        description=__doc__,
    )
    add_options(p, OPTIONS)
    p.set_defaults(func=run)


def run(args) -> int:
    import jax
    import jax.numpy as jnp

    from .. import Target, gradient_flow, sample_sphere_batch
    from .._validate import integer
    from ..plots import plot_figure1

    seeds = integer("--seeds", args.seeds, 1)
    points = integer("--points", args.points, 2)
    target = Target.geometric(args.d, args.r, args.ratio, args.order)
    W0 = sample_sphere_batch(jax.random.PRNGKey(args.key), range(seeds), args.d, args.m, args.init)
    ts = jnp.linspace(0.0, args.t_end, points)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    res = gradient_flow(
        target, W0, ts, lam=args.lam, rtol=args.rtol, atol=args.atol, delta1=args.delta1,
        alpha=args.alpha, progress=args.progress,
    )
    jax.block_until_ready(res.loss)
    elapsed = time.perf_counter() - start

    disc, fit = np.asarray(res.discovery_time), np.asarray(res.fit_time)
    a = np.asarray(target.a)
    print(f"deflation figure1: d={args.d} r={args.r} ratio={args.ratio} m={args.m} p={args.order} "
          f"init={args.init:g} seeds={seeds} t_end={args.t_end:g} ({elapsed:.1f} s incl. compilation)")
    print(f"discovered: norm reaches delta1={args.delta1:g} with wbar_i^2 >= 1-{args.alpha:g}^2; "
          + ("fitted: a_i - ahat_i <= 2 lam" if args.lam > 0 else "fitted: residual on u_i <= 0.1 a_i"))
    print(f"{'i':>3} {'a_i':>8} {'discovery time (per seed)':>40}   {'fit time (per seed)':>40}")
    for i in range(args.r):
        d_txt = " ".join(f"{x:7.2f}" for x in disc[:, i])
        f_txt = " ".join(f"{x:7.2f}" for x in fit[:, i])
        print(f"{i + 1:>3} {a[i]:8.4f} {d_txt:>40}   {f_txt:>40}")
    order_ok = [bool(np.all(np.isfinite(fit[s])) and np.all(np.diff(fit[s]) > 0)) for s in range(seeds)]  # all fitted, in order
    print(f"fitted in order u_1, ..., u_{args.r}: {sum(order_ok)}/{seeds} seeds; "
          f"final loss: {', '.join(f'{x:.2e}' for x in np.asarray(res.loss[:, -1]))}")
    failed = res.failed()
    for b, why in failed:
        print(f"WARNING: seed {b} did not complete: {why}")

    png = out / "figure1.png"
    fit_rule = r"$a_i - \hat a_i \leq 2\lambda$" if args.lam > 0 else r"residual on $u_i$ $\leq 0.1\,a_i$"
    plot_figure1(
        res, target, png,
        title=(f"Gradient flow on $T^* = \\sum_i a_i e_i^{{\\otimes {args.order}}}$ (d={args.d}, r={args.r}, "
               f"$a_i/a_{{i+1}}$={args.ratio:g}), m={args.m} columns of initial norm {args.init:g}, {seeds} seeds;\n"
               f"fitted one by one in the order $u_1, \\dots, u_{{{args.r}}}$ (largest first) in {sum(order_ok)} "
               f"of {seeds} seeds"),
        discovery_label=(f"discovery (Definition 1): a column reaches norm $\\delta_1$={args.delta1:g}\n"
                         f"with $\\bar w_i^2 \\geq 1 - {args.alpha:g}^2$"),
        fit_label=f"fit: {fit_rule}",
    )
    np.savez_compressed(
        out / "figure1.npz", ts=np.asarray(res.ts), loss=np.asarray(res.loss), loss_floor=np.asarray(res.loss_floor),
        residual=np.asarray(res.residual), log_norm=np.asarray(res.log_norm), discovery_time=disc, fit_time=fit,
        member=np.asarray(res.member), status=np.asarray(res.status), a=a, U=np.asarray(target.U),
    )
    (out / "figure1.json").write_text(json.dumps({k: v for k, v in vars(args).items() if k != "func"}, indent=2))
    print(f"wrote {png}, {out / 'figure1.npz'} (data), {out / 'figure1.json'} (parameters)")
    return 1 if failed else 0
