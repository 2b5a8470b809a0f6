"""Solver comparison: which diffrax solver and tolerance to use for the gradient flow.

Usage: python benchmarks/solvers.py [--quick] [--only figure1,hard,optax,raw] [--record] [--help]

For two settings (the paper's Figure 1, and a harder one: d = 32, m = 256, weights spread over a
factor of 100) and a high-accuracy reference (Dopri8 at rtol = atol = 1e-12), every solver is run
through :func:`deflation.gradient_flow` over a range of tolerances (adaptive) or step sizes (Euler,
fixed), and we report:

- the relative error in ``W`` at several times (``max_seeds |W - W_ref|_F / |W_ref|_F``),
- the largest error in a component's fit time,
- the number of vector-field evaluations of seed 0 (counted by a callback in a separate,
  untimed run; event and saving evaluations excluded),
- the wall time of the batched call (best of repeats, compiled).

Also: discrete gradient descent through optax (sgd, momentum, Adam) with fit times in units of
learning rate x iterations (``optax.sgd`` checked against Euler with ``dt = lr``), and raw-``W``
coordinates against log-norm coordinates at the same tolerance (direction error of the small
columns while large ones exist). Writes ``solvers[_quick].json`` and a work-precision PNG.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import deflation  # noqa: F401  (float64)

from _common import add_output_arguments, best_time, device_info, output_path, tag, write_json

#: Step budget per trajectory (a run that exhausts it is reported as failed, not waited for).
MAX_STEPS = 200_000


def settings(quick: bool) -> dict:
    """The two problems: target, initial scale, horizon and the times at which ``W`` is compared."""
    import deflation as D

    r_hard = 6
    a = 100.0 ** (-np.arange(r_hard) / (r_hard - 1))
    hard = D.Target.basis(a / a.sum(), 32)
    return {
        "figure1": dict(target=D.Target.geometric(10, 5), m=50, scale=1e-15, ts=[50.0, 100.0, 200.0, 300.0],
                        seeds=2 if quick else 4),
        "hard": dict(target=hard, m=256, scale=1e-10,
                     ts=[500.0, 1000.0, 2000.0, 4000.0] if not quick else [250.0, 500.0, 1000.0],
                     seeds=1 if quick else 2),
    }


def solver_grid(quick: bool, setting: str) -> list[tuple[str, str, float]]:
    """``(solver name, 'adaptive' | 'fixed', tol or dt)`` to run (quick: one tolerance per solver,
    three for Tsit5, no implicit solver)."""
    adaptive = ["Heun", "Midpoint", "Ralston", "Bosh3", "Tsit5", "Dopri5", "Dopri8"]
    if quick and setting == "hard":  # second-order methods need 10^4+ steps here: left to the full run
        return [(s, "adaptive", 1e-6) for s in ("Bosh3", "Tsit5", "Dopri5", "Dopri8")] + [
            ("Tsit5", "adaptive", 1e-4), ("Euler", "fixed", 0.3)]
    if quick:
        grid = [(s, "adaptive", 1e-6) for s in adaptive] + [("Tsit5", "adaptive", 1e-4), ("Tsit5", "adaptive", 1e-8)]
        grid += [("Euler", "fixed", 0.1 if setting == "figure1" else 0.3)]
    else:
        tols = [1e-3, 1e-4, 1e-6, 1e-8, 1e-10]
        low = ("Heun", "Midpoint", "Ralston")  # second order: 1e-10 would take millions of steps
        grid = [(s, "adaptive", tol) for s in adaptive for tol in tols if not (s in low and tol < 1e-8)]
        grid += [("Euler", "fixed", dt) for dt in ([0.3, 0.1, 0.03, 0.01] if setting == "figure1" else [1.0, 0.3, 0.1])]
    if setting == "figure1" and not quick:  # implicit: dense Jacobian of the (d+1) m state, only at Figure 1's size;
        # its compilation alone takes minutes on 2 cores, so --quick leaves it out
        grid += [("Kvaerno5", "adaptive", tol) for tol in [1e-4, 1e-6]]
    return grid


def _solver(name: str):
    import diffrax

    return getattr(diffrax, name)()  # implicit ones: Newton (VeryChord) at the controller's tolerances


def _controller(kind: str, tol: float):
    import diffrax

    if kind == "fixed":
        return diffrax.ConstantStepSize(), tol
    tol = jnp.asarray(tol)  # traced: one compilation for all tolerances of a solver
    return diffrax.PIDController(rtol=tol, atol=tol), None


def count_evaluations(target, W0, t1, name: str, kind: str, tol: float, cache: dict) -> tuple[int, int]:
    """``(vector-field evaluations, steps)`` of one trajectory, counted by a host callback in a
    separate untimed run (one compilation per solver and kind; ``cache`` holds them for one setting)."""
    import diffrax

    from deflation.dynamics import lognorm_vector_field, to_lognorm

    count = np.zeros((), np.int64)

    def bump(_):
        count[...] += 1

    key = (name, kind, None if kind == "adaptive" else tol)
    if key not in cache:
        def vf(t, y, args):
            jax.debug.callback(bump, t)
            return lognorm_vector_field(y, target, 0.0)

        def solve(y, tol):
            ctrl = diffrax.ConstantStepSize() if kind == "fixed" else diffrax.PIDController(rtol=tol, atol=tol)
            dt0 = tol_static if kind == "fixed" else None
            return diffrax.diffeqsolve(diffrax.ODETerm(vf), _solver(name), 0.0, t1, dt0, y, stepsize_controller=ctrl,
                                       max_steps=MAX_STEPS, throw=False).stats["num_steps"]

        tol_static = tol
        cache[key] = (jax.jit(solve), count)
    fn, count = cache[key]
    count[...] = 0
    steps = int(jax.block_until_ready(fn(to_lognorm(W0), jnp.asarray(tol))))
    jax.effects_barrier()
    return int(count), steps


def _errors(res, ref) -> dict:
    W, Wr = np.asarray(res.W), np.asarray(ref.W)
    num = np.sqrt(((W - Wr) ** 2).sum(axis=(-2, -1)))
    den = np.sqrt((Wr**2).sum(axis=(-2, -1)))
    w_err = (num / den).max(axis=0)  # (K,)
    fr, fref = np.asarray(res.fit_time), np.asarray(ref.fit_time)
    both = np.isfinite(fr) & np.isfinite(fref)
    return {
        "W_error_rel": w_err.tolist(),
        "fit_time_error": float(np.abs(fr[both] - fref[both]).max()) if both.any() else float("nan"),
        "fit_time_mismatch": int((np.isfinite(fr) != np.isfinite(fref)).sum()),
        "failed": len(res.failed()),
    }


def run_setting(name: str, cfg: dict, quick: bool, repeats: int, progress: bool = True, keep=None) -> dict:
    import diffrax

    import deflation as D

    tg, ts = cfg["target"], cfg["ts"]
    d, m = tg.d, cfg["m"]
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), jnp.arange(cfg["seeds"]), d, m, cfg["scale"])
    t = time.perf_counter()
    ref = D.gradient_flow(tg, W0, ts, solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-12, max_steps=MAX_STEPS)
    jax.block_until_ready(ref.W)
    out = {
        "d": d, "m": m, "r": tg.r, "a": np.asarray(tg.a).tolist(), "scale": cfg["scale"], "ts": ts,
        "seeds": cfg["seeds"],
        "reference": {"solver": "Dopri8", "rtol": 1e-12, "atol": 1e-12, "wall_s": time.perf_counter() - t,
                      "fit_time": np.asarray(ref.fit_time).tolist(), "num_steps": np.asarray(ref.num_steps).tolist(),
                      "failed": ref.failed()},
        "runs": [],
    }
    grid = [row for row in solver_grid(quick, name) if keep is None or row[0] in keep]
    per_step, count_all = {}, not quick
    if progress:
        from tqdm import tqdm

        grid = tqdm(grid, desc=f"solvers/{name}", file=sys.stderr)
    counters: dict = {}  # compiled evaluation counters of this setting
    for sname, kind, tol in grid:
        ctrl, dt0 = _controller(kind, tol)
        fn = lambda: D.gradient_flow(tg, W0, ts, solver=_solver(sname), stepsize_controller=ctrl, dt0=dt0,  # noqa: E731
                                     max_steps=MAX_STEPS)
        t = time.perf_counter()
        res = jax.block_until_ready(fn())
        first = time.perf_counter() - t
        wall = min(best_time(lambda: fn().W, 1) for _ in range(max(1, repeats)))  # compiled calls only
        row = {"solver": sname, "kind": kind, "tol" if kind == "adaptive" else "dt": tol, "wall_s": wall,
               "first_call_s": first, "num_steps_mean": float(np.mean(res.num_steps)),
               "num_rejected_mean": float(np.mean(res.num_rejected_steps))}
        if count_all or sname not in per_step or sname.startswith("Kvaerno"):
            nfev, steps = count_evaluations(tg, W0[0], ts[-1], sname, kind, tol, counters)
            per_step[sname] = nfev / max(steps, 1)
            row.update(nfev_seed0=nfev, nfev_counted=True)
        else:  # explicit RK: a fixed number of evaluations per step (measured on this solver's first run)
            row.update(nfev_seed0=int(round(per_step[sname] * float(res.num_steps[0]))), nfev_counted=False)
        row.update(_errors(res, ref))
        out["runs"].append(row)
    return out


def optax_comparison(quick: bool) -> dict:
    """Discrete GD (sgd, momentum, Adam) on the Figure 1 setting: fit times in units of lr x iterations."""
    import diffrax
    import optax

    import deflation as D
    from deflation.baselines import descent_fit_iterations, discrete_gradient_descent, solve_raw

    tg, t1 = D.Target.geometric(10, 5), 300.0
    W0 = D.sample_sphere(jax.random.PRNGKey(0), 10, 50, 1e-15)
    flow = D.gradient_flow(tg, W0, [t1], rtol=1e-10, atol=1e-10)
    out = {"flow_fit_time": np.asarray(flow.fit_time).tolist(), "runs": []}
    lrs = [1.0, 0.1] if quick else [3.0, 1.0, 0.3, 0.1, 0.03]
    opts = {"sgd": lambda lr: optax.sgd(lr), "momentum_0.9": lambda lr: optax.sgd(lr, momentum=0.9),
            "adam": lambda lr: optax.adam(lr)}
    for oname, make in opts.items():
        for lr in lrs if oname != "adam" else ([1e-2, 1e-3] if quick else [1e-1, 1e-2, 1e-3, 1e-4]):
            steps = int(round(t1 / lr)) if oname != "adam" else (3000 if quick else 30000)
            every = max(1, steps // 3000)
            steps -= steps % every
            t = time.perf_counter()
            gd = discrete_gradient_descent(tg, W0, make(lr), steps, record_every=every)
            fit_it = descent_fit_iterations(gd, tg)
            row = {"optimizer": oname, "lr": lr, "steps": steps, "wall_s": time.perf_counter() - t,
                   "fit_iterations": fit_it.tolist(), "fit_time_lr_x_iterations": (lr * fit_it).tolist(),
                   "fit_time_relative_error": ((lr * fit_it - np.asarray(flow.fit_time))
                                               / np.asarray(flow.fit_time)).tolist(),
                   "resolution": lr * every}
            if oname == "sgd":  # optax.sgd is Euler with dt = lr
                n = min(steps, 200)
                g2 = discrete_gradient_descent(tg, W0, optax.sgd(lr), n, record_every=n)
                e = solve_raw(tg, W0, n * lr, solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(),
                              dt0=lr)
                row["sgd_vs_euler_max_rel_diff"] = float(np.abs(np.asarray(g2.W[-1]) - np.asarray(e.ys[0])).max()
                                                         / np.abs(np.asarray(e.ys[0])).max())
            out["runs"].append(row)
    return out


def raw_vs_lognorm(quick: bool) -> dict:
    """Direction accuracy of the small columns while large ones exist, raw W vs log-norm coordinates."""
    import diffrax

    import deflation as D
    from deflation.baselines import solve_raw

    tg = D.Target.geometric(10, 5)
    seeds = 2 if quick else 4
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), jnp.arange(seeds), 10, 50, 1e-15)
    ts = [60.0, 100.0, 150.0]  # component 1 fitted, the smaller ones still small
    ref = D.gradient_flow(tg, W0, ts, solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-12)
    Wr = np.asarray(ref.W)
    out = {"ts": ts, "runs": []}
    for tol in ([1e-6] if quick else [1e-4, 1e-6, 1e-8, 1e-10]):
        ctrl = diffrax.PIDController(rtol=tol, atol=tol)
        ln = np.asarray(D.gradient_flow(tg, W0, ts, rtol=tol, atol=tol).W)
        raw = jax.vmap(lambda W: solve_raw(tg, W, ts[-1], solver=diffrax.Tsit5(), stepsize_controller=ctrl,
                                           saveat=diffrax.SaveAt(ts=jnp.asarray(ts))).ys)(W0)
        raw = np.asarray(raw)
        for coords, W in (("lognorm", ln), ("raw", raw)):
            norms_ref = np.linalg.norm(Wr, axis=-2)
            small = norms_ref < 1e-3  # (B, K, m)
            dirs = W / np.linalg.norm(W, axis=-2, keepdims=True)
            dirs_ref = Wr / norms_ref[..., None, :]
            derr = np.linalg.norm(dirs - dirs_ref, axis=-2)
            nerr = np.abs(np.log(np.linalg.norm(W, axis=-2) / norms_ref))
            out["runs"].append({
                "coordinates": coords, "tol": tol,
                "small_columns": int(small.sum()),
                "small_direction_error_max": [float(derr[:, k][small[:, k]].max()) if small[:, k].any() else None
                                              for k in range(len(ts))],
                "small_log_norm_error_max": [float(nerr[:, k][small[:, k]].max()) if small[:, k].any() else None
                                             for k in range(len(ts))],
                "large_direction_error_max": [float(derr[:, k][~small[:, k]].max()) if (~small[:, k]).any() else None
                                              for k in range(len(ts))],
            })
    return out


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in ("figure1", "hard") if k in results]
    panels = len(names) + ("raw_vs_lognorm" in results)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    axes = axes[0]
    for ax, name in zip(axes, names):
        runs = results[name]["runs"]
        for s in sorted({r["solver"] for r in runs}):
            rows = sorted([r for r in runs if r["solver"] == s], key=lambda r: r["wall_s"])
            ax.loglog([r["wall_s"] for r in rows], [max(r["W_error_rel"][-1], 1e-17) for r in rows], "o-", label=s)
        ax.set_xlabel("wall time of the batched call [s]")
        ax.set_ylabel(f"relative error in W at t = {results[name]['ts'][-1]:g}")
        ax.set_title(f"{name}: d={results[name]['d']}, m={results[name]['m']}, {results[name]['seeds']} seeds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if "raw_vs_lognorm" in results:
        ax = axes[-1]
        rv = results["raw_vs_lognorm"]
        for coords, style in (("lognorm", "o-"), ("raw", "s--")):
            rows = [r for r in rv["runs"] if r["coordinates"] == coords]
            ax.loglog([r["tol"] for r in rows],
                      [max([e for e in r["small_direction_error_max"] if e is not None] + [1e-17]) for r in rows],
                      style, label=f"{coords}: small columns' direction")
        ax.set_xlabel("rtol = atol (Tsit5)")
        ax.set_ylabel(f"max direction error over t in {rv['ts']}")
        ax.set_title("raw W vs log-norm coordinates (Figure 1)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="few solvers/tolerances, small horizon (5 minutes or more on 2 cores: about 20 "
                   "compilations)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls after the compiling one (best taken; default 1 quick, 2 full)")
    p.add_argument("--only", type=str, default=None, help="comma list of: figure1, hard, optax, raw")
    p.add_argument("--solvers", type=str, default=None,
                   help="comma list of solver names to keep from the grid (e.g. Tsit5)")
    add_output_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    q = args.quick
    repeats = args.repeats or (1 if q else 2)
    only = set((args.only or ("figure1,optax,raw" if q else "figure1,hard,optax,raw")).split(","))
    out_path = output_path(f"solvers{'_quick' if q else ''}_{tag()}.json", args.record, args.out)
    results = {"device": device_info(), "quick": q}
    if args.only and out_path.exists():
        import json

        results = json.loads(out_path.read_text()) | results
    cfgs = settings(q)
    t_all = time.perf_counter()
    for name in ("figure1", "hard"):
        if name in only:
            keep = None if args.solvers is None else set(args.solvers.split(","))
            results[name] = run_setting(name, cfgs[name], q, repeats, not args.no_progress, keep)
            write_json(out_path, results)
            print(table(name, results[name]), flush=True)
    if "optax" in only:
        results["optax"] = optax_comparison(q)
        write_json(out_path, results)
        for r in results["optax"]["runs"]:
            print(f"  {r['optimizer']:13s} lr={r['lr']:<7g} "
                  f"fit time (lr x it) {np.round(r['fit_time_lr_x_iterations'], 1)}"
                  f" vs flow {np.round(results['optax']['flow_fit_time'], 1)}"
                  + (f"; sgd-vs-Euler {r['sgd_vs_euler_max_rel_diff']:.1e}"
                     if "sgd_vs_euler_max_rel_diff" in r else ""))
    if "raw" in only:
        results["raw_vs_lognorm"] = raw_vs_lognorm(q)
        write_json(out_path, results)
        for r in results["raw_vs_lognorm"]["runs"]:
            print(f"  {r['coordinates']:8s} tol={r['tol']:<6g} "
                  f"small-column direction error {r['small_direction_error_max']}")
    results["wall_s"] = time.perf_counter() - t_all
    write_json(out_path, results)
    png = plot(results, out_path.with_suffix(".png"))
    print(f"[solvers] wrote {out_path} and {png} in {results['wall_s']:.0f} s")
    return 0


def table(name: str, res: dict) -> str:
    lines = [f"[solvers] {name}: d={res['d']} m={res['m']} seeds={res['seeds']} (reference Dopri8 1e-12: "
             f"{res['reference']['wall_s']:.1f} s)",
             f"  {'solver':9s} {'tol/dt':>7s} {'W err (last t)':>14s} {'fit err':>9s} {'nfev':>8s} {'steps':>8s} "
             f"{'wall s':>8s}"]
    for r in res["runs"]:
        lines.append(f"  {r['solver']:9s} {r.get('tol', r.get('dt')):7.0e} {r['W_error_rel'][-1]:14.2e} "
                     f"{r['fit_time_error']:9.2e} {r['nfev_seed0']:8d} {r['num_steps_mean']:8.0f} {r['wall_s']:8.3f}"
                     + (f"  failed={r['failed']}" if r["failed"] else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
