"""Throughput benchmark: the speed targets, each a ratio measured in one run.

Usage: python benchmarks/throughput.py [--quick] [--only flow,dense,...] [--record] [--help]

1. ``flow``: batched :func:`deflation.gradient_flow` on the Figure 1 setting (d=10, r=5, m=50,
   scale 1e-15, t=300, rtol=atol=1e-6) against a SciPy ``solve_ivp`` RK45 loop over seeds with a
   NumPy Gram-matrix right-hand side; seeds per second.
2. ``flops``: the batched log-norm vector field against one 1024^3 float64 matrix product
   (flops = 4 m^2 d + 4 r m d per seed and evaluation), at (512, 10, 50) and (8, 128, 1024);
   also the batched Gram product ``X^T X`` alone (the kernel's ceiling on this device).
3. ``dense``: one vector-field evaluation at d=20, m=100 against the dense-tensor NumPy gradient
   (and PyTorch autograd on the dense tensor when torch is installed).
4. ``memory``: a many-seed Figure 1 study in chunks (run in a child process so that its peak
   resident memory is its own).
5. ``float32``: speed-up and accuracy loss of single precision on the Figure 1 setting.
6. ``vmap``: one save point against ``jax.vmap(diffrax.diffeqsolve)`` (Tsit5, PID, same tolerance,
   no events) on the same setting: what a JAX user writes first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import deflation  # noqa: F401  (float64)

from _common import (
    add_output_arguments,
    best_time,
    device_info,
    host_cpu,
    matmul_rate,
    output_path,
    peak_rss_bytes,
    tag,
    write_json,
)

FIG1 = dict(d=10, r=5, m=50, scale=1e-15, t1=300.0, tol=1e-6)


def _fig1(dtype=jnp.float64):
    import deflation as D

    tg = D.Target.geometric(FIG1["d"], FIG1["r"])
    if dtype != jnp.float64:
        tg = D.Target(tg.a.astype(dtype), tg.U.astype(dtype), tg.order)
    return tg


def _fig1_W0(seeds, dtype=jnp.float64, offset=0):
    import deflation as D

    return D.sample_sphere_batch(
        jax.random.PRNGKey(0), jnp.arange(offset, offset + seeds), FIG1["d"], FIG1["m"], FIG1["scale"], dtype=dtype
    )


def bench_flow(seeds: int, scipy_seeds: int, repeats: int, points: int = 301) -> dict:
    """Targets 1 and 2: batched gradient_flow on the Figure 1 setting with one save point and with
    ``points`` save points (W, loss, residuals and events at each, as the README's snippet), against
    SciPy RK45 loops over seeds (NumPy Gram-matrix right-hand side): one with the end state only,
    one with ``t_eval`` at the same points and the loss computed there in NumPy; seeds/s, same
    tolerances, interleaved repeats (best of each). First calls (compilation included) reported."""
    import deflation as D
    from deflation.baselines import scipy_flow, scipy_flow_series

    tg, tol, t1 = _fig1(), FIG1["tol"], FIG1["t1"]
    W0 = _fig1_W0(seeds)
    series_ts = np.linspace(0.0, t1, points)
    out = {"seeds": seeds, "scipy_seeds": scipy_seeds, "points": points, "setting": FIG1}
    runs = {
        "one_save": lambda: D.gradient_flow(tg, W0, [t1], rtol=tol, atol=tol),
        "series": lambda: D.gradient_flow(tg, W0, series_ts, rtol=tol, atol=tol),
    }
    for name, fn in runs.items():
        t = time.perf_counter()
        res = jax.block_until_ready(fn())
        out[f"{name}_first_call_s"] = time.perf_counter() - t
        out[f"{name}_steps_mean"] = float(np.mean(res.num_steps))
        out[f"{name}_failed"] = res.failed()
    scipy_W0 = np.asarray(W0[:scipy_seeds])
    times = {k: [] for k in ("one_save", "series", "scipy_end", "scipy_series")}
    for _ in range(repeats):  # interleaved, best of each: the machine's speed drifts
        for name, fn in runs.items():
            times[name].append(best_time(lambda: fn().W, 1))
        t = time.perf_counter()
        W_scipy, nfev = scipy_flow(tg, scipy_W0, t1, rtol=tol, atol=tol)
        times["scipy_end"].append(time.perf_counter() - t)
        t = time.perf_counter()
        scipy_loss, _ = scipy_flow_series(tg, scipy_W0, series_ts, rtol=tol, atol=tol)
        times["scipy_series"].append(time.perf_counter() - t)
    for k, v in times.items():
        n = seeds if k in runs else scipy_seeds
        out[f"{k}_s"] = min(v)
        out[f"{k}_seeds_per_s"] = n / min(v)
    ref = D.gradient_flow(tg, W0[:scipy_seeds], series_ts, rtol=1e-12, atol=1e-12,
                          solver=__import__("diffrax").Dopri8())
    ours = runs["series"]()
    scale = np.abs(np.asarray(ref.W[:, -1])).max()
    shown = np.asarray(ours.loss[:scipy_seeds]) > np.asarray(ours.loss_floor[:scipy_seeds])
    rel = np.abs(np.asarray(ours.loss[:scipy_seeds]) - np.asarray(ref.loss)) / np.asarray(ref.loss)
    out.update(
        scipy_nfev_mean=float(nfev.mean()), ours_nfev_mean_estimate=6 * out["one_save_steps_mean"],
        ours_error_vs_dopri8=float(np.abs(np.asarray(ours.W[:, -1])[:scipy_seeds] - np.asarray(ref.W[:, -1])).max()
                                   / scale),
        scipy_error_vs_dopri8=float(np.abs(W_scipy - np.asarray(ref.W[:, -1])).max() / scale),
        series_loss_rel_error_above_floor=float(rel[shown].max()),
        scipy_series_loss_rel_error=float(np.abs(scipy_loss - np.asarray(ref.loss))[np.asarray(ref.loss) > 1e-9].max()),
    )
    out["ratio"] = out["one_save_seeds_per_s"] / out["scipy_end_seeds_per_s"]  # target 2 (>= 30)
    out["ratio_series"] = out["series_seeds_per_s"] / out["scipy_series_seeds_per_s"]  # target 1 (>= 20)
    out["series_over_one_save"] = out["series_seeds_per_s"] / out["one_save_seeds_per_s"]  # target 1 (>= 0.8)
    # the ceiling: per-seed cost of one RHS evaluation, batched JAX vs NumPy (same formula)
    out["ceiling"] = _rhs_ceiling(tg, W0, repeats)
    # bound on the ratio with zero solver overhead and no events: SciPy's time per seed over
    # (our evaluations per seed x the batched vector field's time per seed-evaluation)
    out["ceiling"]["solve_ratio_bound"] = (out["scipy_end_s"] / scipy_seeds) / (
        out["ours_nfev_mean_estimate"] * out["ceiling"]["jax_batched_vf_per_seed_s"])
    return out


def bench_vmap(seeds: int, repeats: int) -> dict:
    """What a JAX user writes first, against :func:`deflation.gradient_flow` with one save point:
    ``jax.vmap`` of ``diffrax.diffeqsolve`` (Tsit5, PID controller, the same tolerance, the same
    final save; no events, where ours locates Definition 1's) on the log-norm field written out in
    a few lines, on the Figure 1 setting. Seeds/s, interleaved repeats, best of each; the final
    losses and residuals of the two are compared."""
    import diffrax

    import deflation as D

    tg, tol, t1 = _fig1(), FIG1["tol"], FIG1["t1"]
    W0 = _fig1_W0(seeds)
    a, U, p = tg.a, tg.U, tg.order

    def field(t, y, args):  # d rho/dt = 2 R(u^p), du/dt = p (I - u u^T) R(u^{p-1}, I), lam = 0
        rho, u = y
        u = u / jnp.linalg.norm(u, axis=0)
        C, G, w = U.T @ u, u.T @ u, jnp.exp(2.0 * rho)
        Rvec = U @ (a[:, None] * C ** (p - 1)) - u @ (w[:, None] * G ** (p - 1))
        Rp = jnp.sum(u * Rvec, axis=0)
        return 2.0 * Rp, p * (Rvec - Rp * u)

    def one(rho, u):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Tsit5(), 0.0, t1, None, (rho, u),
                                  stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol),
                                  saveat=diffrax.SaveAt(t1=True), max_steps=100_000)
        return jax.tree_util.tree_map(lambda x: x[0], sol.ys), sol.stats["num_steps"]  # the save at t1

    y0 = jax.vmap(D.to_lognorm)(W0)
    plain = jax.jit(jax.vmap(one))
    runs = {"ours": lambda: D.gradient_flow(tg, W0, [t1], rtol=tol, atol=tol).W,
            "vmap_diffeqsolve": lambda: plain(*y0)[0]}
    out = {"seeds": seeds, "setting": FIG1}
    for name, fn in runs.items():
        t = time.perf_counter()
        jax.block_until_ready(fn())
        out[f"{name}_first_call_s"] = time.perf_counter() - t
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(best_time(fn, 1))
    for name, v in times.items():
        out[f"{name}_s"] = min(v)
        out[f"{name}_seeds_per_s"] = seeds / min(v)
    (rho, u), steps = plain(*y0)
    ours = D.gradient_flow(tg, W0, [t1], rtol=tol, atol=tol)
    W_plain = D.from_lognorm(rho, u)
    out["vmap_steps_mean"] = float(np.mean(steps))
    out["ours_steps_mean"] = float(np.mean(ours.num_steps))
    # W itself is not comparable: which of the 50 columns grows first is decided at 1e-15 by errors
    # of the size of the tolerance; the tensor T(W) is (its loss and residuals)
    loss_plain = np.asarray(jax.vmap(lambda W: D.loss(W, tg))(W_plain))
    res_plain = np.asarray(jax.vmap(lambda W: D.residual(W, tg, tg.U))(W_plain))
    out["max_loss_difference"] = float(np.abs(loss_plain - np.asarray(ours.loss[:, -1])).max())
    out["max_residual_difference"] = float(np.abs(res_plain - np.asarray(ours.residual[:, -1])).max())
    out["ratio"] = out["ours_seeds_per_s"] / out["vmap_diffeqsolve_seeds_per_s"]  # target: >= 5
    return out


def _rhs_ceiling(tg, W0, repeats):
    """Per-seed time of one vector-field evaluation, batched JAX vs the NumPy RHS: with the same
    number of evaluations per seed, their ratio bounds the speed-up of the whole solve."""
    from deflation.baselines import numpy_lognorm_rhs
    from deflation.dynamics import lognorm_vector_field, to_lognorm

    B, d, m = W0.shape
    y = jax.vmap(to_lognorm)(W0)
    vf = jax.jit(jax.vmap(lambda s: lognorm_vector_field(s, tg, 0.0)))
    vf(y)
    f = numpy_lognorm_rhs(np.asarray(tg.a), np.asarray(tg.U), tg.order, m)
    y0 = np.concatenate([np.asarray(y[0][0]), np.asarray(y[1][0]).ravel()])
    t_jax = best_time(lambda: vf(y), 10 * repeats) / B
    t_np = best_time(lambda: f(0.0, y0), 200 * repeats)
    return {"jax_batched_vf_per_seed_s": t_jax, "numpy_rhs_per_seed_s": t_np, "ratio": t_np / t_jax}


def _minor_faults(fn) -> int:
    """Minor page faults of this process during one call of ``fn`` (fresh memory the OS zeroes)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(fn())
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _chained(f, n: int):
    """``n`` dependent evaluations of ``f`` inside one compiled loop, as a solver calls it."""
    step = lambda i, c: jax.tree_util.tree_map(lambda u, v: u + 1e-12 * v, c, f(c))  # noqa: E731
    return jax.jit(lambda s: jax.lax.fori_loop(0, n, step, s))


def _vf_case(B, d, m, r, repeats, rate):
    import deflation as D
    from deflation import contract
    from deflation.contract import matmul
    from deflation.dynamics import lognorm_vector_field, to_lognorm

    tg = D.Target.geometric(d, r)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), jnp.arange(B), d, m, 1e-3)
    y = jax.vmap(to_lognorm)(W0)
    batched = jax.vmap(lambda s: lognorm_vector_field(s, tg, 0.0))
    vf = jax.jit(batched)
    n_loop = 10
    in_loop = _chained(batched, n_loop)
    gram = jax.jit(jax.vmap(lambda u: matmul(u.T, u)))  # the batched Gram product alone
    gram_dot = jax.jit(jax.vmap(lambda u: u.T @ u))  # XLA's batched dot, for comparison
    single = jax.jit(lambda u: u.T @ u)  # one seed's Gram product alone: the GEMM of this shape
    jax.block_until_ready((vf(y), in_loop(y), gram(y[1]), gram_dot(y[1]), single(y[1][0])))
    flops = B * (4 * m * m * d + 4 * r * m * d)
    t_vf = best_time(lambda: vf(y), repeats, 0.5)
    t_loop = best_time(lambda: in_loop(y), repeats, 0.5) / n_loop
    t_gram = best_time(lambda: gram(y[1]), repeats, 0.5)
    t_dot = best_time(lambda: gram_dot(y[1]), repeats, 0.5)
    t_single = best_time(lambda: single(y[1][0]), 5 * repeats, 0.5)
    extra = {}
    if contract.sequential(d, m):  # the same field with every seed in one batched computation
        saved, contract.SEQUENTIAL_MIN_FLOPS = contract.SEQUENTIAL_MIN_FLOPS, float("inf")
        try:
            # a new function, not `batched`: jit's trace cache would return its seed-by-seed form
            at_once = jax.jit(jax.vmap(lambda s: lognorm_vector_field(s, tg, 0.0)))
            jax.block_until_ready(at_once(y))
        finally:
            contract.SEQUENTIAL_MIN_FLOPS = saved
        t_once = best_time(lambda: at_once(y), repeats, 0.5)
        extra = {"vf_all_seeds_at_once_s": t_once, "vf_all_seeds_at_once_fraction_of_matmul": flops / t_once / rate,
                 "vf_all_seeds_at_once_minor_page_faults_per_call": _minor_faults(lambda: at_once(y))}
    return extra | {
        "B": B, "d": d, "m": m, "r": r, "vf_s": t_vf, "vf_flops_per_s": flops / t_vf,
        "vf_fraction_of_matmul": flops / t_vf / rate,
        "vf_in_loop_s": t_loop, "vf_in_loop_fraction_of_matmul": flops / t_loop / rate,
        "vf_minor_page_faults_per_call": _minor_faults(lambda: vf(y)),
        "gram_xla_batched_dot_minor_page_faults_per_call": _minor_faults(lambda: gram_dot(y[1])),
        "gram_only_flops_per_s": 2 * B * m * m * d / t_gram,
        "gram_only_fraction_of_matmul": 2 * B * m * m * d / t_gram / rate,
        "gram_xla_batched_dot_flops_per_s": 2 * B * m * m * d / t_dot,
        "gram_single_seed_flops_per_s": 2 * m * m * d / t_single,
    }


def bench_flops(repeats: int, large: tuple[int, int, int]) -> dict:
    """Target 2: batched vector field flop rate as a fraction of a 1024^3 float64 matmul."""
    rates, cases = [], {"small": [], "large": []}
    for _ in range(repeats):  # interleave the reference and the cases; best of each
        rates.append(matmul_rate(1024, np.float64, 3))
        cases["small"].append(_vf_case(512, 10, 50, 5, 5, rates[-1]))
        cases["large"].append(_vf_case(large[0], large[1], large[2], 5, 3, rates[-1]))
    rate = max(rates)
    out = {"matmul_1024_flops_per_s": rate, "matmul_samples": rates}
    for k, v in cases.items():
        best = min(v, key=lambda c: c["vf_s"])
        best_loop = min(c["vf_in_loop_s"] for c in v)
        bestg = max(c["gram_only_flops_per_s"] for c in v)
        bestd = max(c["gram_xla_batched_dot_flops_per_s"] for c in v)
        bests = max(c["gram_single_seed_flops_per_s"] for c in v)
        best = dict(best, vf_fraction_of_matmul=best["vf_flops_per_s"] / rate, vf_in_loop_s=best_loop,
                    vf_in_loop_fraction_of_matmul=best["vf_flops_per_s"] * best["vf_s"] / best_loop / rate,
                    gram_only_flops_per_s=bestg, gram_only_fraction_of_matmul=bestg / rate,
                    gram_xla_batched_dot_flops_per_s=bestd, gram_xla_batched_dot_fraction_of_matmul=bestd / rate,
                    gram_single_seed_flops_per_s=bests, gram_single_seed_fraction_of_matmul=bests / rate)
        out[k] = best
    return out


def bench_dense(repeats: int, d: int = 20, m: int = 100, r: int = 5) -> dict:
    """Target 3: one vector-field evaluation vs the dense-tensor NumPy gradient at (d, m)."""
    import deflation as D
    from deflation.baselines import numpy_dense_gradient, numpy_lognorm_rhs
    from deflation.dynamics import lognorm_vector_field, to_lognorm

    tg = D.Target.geometric(d, r)
    W = D.sample_sphere(jax.random.PRNGKey(0), d, m, 0.1)
    y = to_lognorm(W)
    vf = jax.jit(lambda s: lognorm_vector_field(s, tg, 0.0))
    vel = jax.jit(lambda W: D.velocity(W, tg))
    jax.block_until_ready((vf(y), vel(W)))
    Wn, a, U = np.asarray(W), np.asarray(tg.a), np.asarray(tg.U)
    f = numpy_lognorm_rhs(a, U, 4, m)
    y0 = np.concatenate([np.asarray(y[0]), np.asarray(y[1]).ravel()])
    n_loop = 100  # as the solver uses it: chained evaluations inside one compiled loop
    chained = _chained(lambda s: lognorm_vector_field(s, tg, 0.0), n_loop)
    jax.block_until_ready(chained(y))
    timed = {
        "vf_s": (lambda: vf(y), 50, 1),
        "velocity_s": (lambda: vel(W), 50, 1),
        "vf_in_loop_s": (lambda: chained(y), 5, n_loop),
        "numpy_dense_gradient_s": (lambda: numpy_dense_gradient(Wn, a, U, 4), 1, 1),
        "numpy_gram_rhs_s": (lambda: f(0.0, y0), 50, 1),
    }
    out = {"d": d, "m": m, "r": r} | {k: float("inf") for k in timed}
    for _ in range(3 * repeats):  # interleaved rounds, best of each: the machine's speed drifts
        for k, (fn, n, per) in timed.items():
            out[k] = min(out[k], best_time(fn, n, 0.1) / per)
    out["ratio"] = out["numpy_dense_gradient_s"] / out["vf_s"]
    out["ratio_velocity"] = out["numpy_dense_gradient_s"] / out["velocity_s"]
    out["ratio_in_loop"] = out["numpy_dense_gradient_s"] / out["vf_in_loop_s"]
    out["ratio_numpy_gram"] = out["numpy_gram_rhs_s"] / out["vf_s"]
    try:
        import torch
    except ImportError:
        out["torch"] = "not installed"
    else:
        Wt = torch.tensor(Wn, dtype=torch.float64, requires_grad=True)
        Ut, at = torch.tensor(U), torch.tensor(a)
        Ts = torch.einsum("i,ai,bi,ci,ei->abce", at, Ut, Ut, Ut, Ut)

        def torch_grad():
            om = (Wt * Wt).sum(0)
            Wb = Wt / om.sqrt()
            T = torch.einsum("j,aj,bj,cj,ej->abce", om, Wb, Wb, Wb, Wb)
            loss = 0.5 * ((T - Ts) ** 2).sum()
            (g,) = torch.autograd.grad(loss, Wt)
            return g

        t = min(_timeit(torch_grad) for _ in range(3 * repeats))
        out["torch_dense_autograd_s"] = t
        out["ratio_torch"] = t / out["vf_s"]
    return out


def _timeit(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_memory(seeds: int, chunk: int, progress: bool = True) -> dict:
    """Target 4 (runs in this process; call through :func:`_memory_child` for a clean peak)."""
    import deflation as D

    tg, tol, t1 = _fig1(), FIG1["tol"], FIG1["t1"]
    fit = np.empty((seeds, FIG1["r"]))
    failed = []
    rss_after_first = None
    t = time.perf_counter()
    chunks = range(0, seeds, chunk)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="memory study", unit="chunk", file=sys.stderr)
    for start in chunks:
        n = min(chunk, seeds - start)
        W0 = _fig1_W0(chunk, offset=start)  # fixed chunk shape: one compilation; extra seeds discarded
        res = D.gradient_flow(tg, W0, [t1], rtol=tol, atol=tol)
        fit[start : start + n] = np.asarray(res.fit_time)[:n]
        failed += [(start + i, why) for i, why in res.failed() if i < n]
        if rss_after_first is None:
            rss_after_first = peak_rss_bytes()
    wall = time.perf_counter() - t
    return {
        "seeds": seeds, "chunk": chunk, "wall_s": wall, "seeds_per_s": seeds / wall,
        "peak_rss_bytes": peak_rss_bytes(), "peak_rss_after_first_chunk_bytes": rss_after_first,
        "peak_rss_GiB": peak_rss_bytes() / 2**30, "failed": failed[:20], "num_failed": len(failed),
        "fit_time_median": np.median(fit, axis=0).tolist(), "fit_time_all_finite": bool(np.isfinite(fit).all()),
    }


def _memory_child(seeds: int, chunk: int, out_path: Path) -> dict:
    """Run :func:`bench_memory` in a fresh Python process so that ``ru_maxrss`` is the study's own."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--only", "memory-child",
           "--memory-seeds", str(seeds), "--chunk", str(chunk), "--out", str(out_path)]
    subprocess.run(cmd, check=True)

    return json.loads(Path(out_path).read_text())


COMPILE_CHILD = r"""
import json, sys, time
t = time.perf_counter()
from deflation import compilation_cache
compilation_cache.enable(sys.argv[1])
import jax, numpy as np
import deflation as D
imported = time.perf_counter() - t
tg = D.Target.geometric(10, 5, 1.2)                  # deflation figure1's defaults
W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(5), 10, 50, 1e-15)
ts = np.linspace(0.0, 300.0, 601)
out = {"import_s": imported}
for name in ("first_call_s", "second_call_s"):
    t = time.perf_counter()
    jax.block_until_ready(D.gradient_flow(tg, W0, ts, rtol=1e-10, atol=1e-10).loss)
    out[name] = time.perf_counter() - t
print(json.dumps(out))
"""


KERNELS_CHILD = r"""
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
import deflation as D
from deflation import contract
route, seeds, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if route == "plain":   # XLA's own dot and reduction under vmap: no outer-product sums, no unrolled sums
    contract.UNROLL_MAX = 0
tg = D.Target.geometric(10, 5)
W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), jnp.arange(seeds), 10, 50, 1e-15)
y = jax.vmap(D.to_lognorm)(W0)
from deflation.dynamics import lognorm_vector_field
vf = jax.jit(jax.vmap(lambda s: lognorm_vector_field(s, tg, 0.0)))
jax.block_until_ready(vf(y))
def best(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter(); jax.block_until_ready(fn()); out.append(time.perf_counter() - t)
    return min(out)
run = lambda: D.gradient_flow(tg, W0, [300.0], rtol=1e-6, atol=1e-6).W
run()
print(json.dumps({"route": route, "solve_s": best(run, repeats), "vf_s": best(lambda: vf(y), 20 * repeats),
                  "steps": float(np.mean(D.gradient_flow(tg, W0, [300.0], rtol=1e-6, atol=1e-6).num_steps))}))
"""


def bench_kernels(seeds: int, repeats: int) -> dict:
    """The CPU kernels (``contract.matmul``'s and the target's outer-product sums, ``sum_rows``'
    unrolled sums: every product or sum ``contract`` writes out when its contraction is at most
    ``UNROLL_MAX``) against XLA's own batched dot and reduction (``UNROLL_MAX = 0``), on the
    instruction sets this CPU has: native code generation and ``--xla_cpu_max_isa=AVX2``. Each
    configuration runs in a fresh process (the flags and the route are fixed at start), twice,
    alternating the routes; best seeds/s of the one-save solve (Figure 1 setting) and the batched
    vector field's time per call."""
    isas = {"native": os.environ.get("XLA_FLAGS", ""),
            "avx2": (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_max_isa=AVX2").strip()}
    if host_cpu()["cpu_isa"] != "avx512f":  # AVX2 or older: native is already the AVX2 row
        isas.pop("avx2")
    out: dict = {"seeds": seeds, "setting": FIG1, "isas": {}}
    for isa, flags in isas.items():
        env = dict(os.environ, XLA_FLAGS=flags)
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        rows: dict = {"custom": [], "plain": []}
        for _ in range(2):
            for route in rows:
                done = subprocess.run([sys.executable, "-c", KERNELS_CHILD, route, str(seeds), str(repeats)],
                                      env=env, check=True, capture_output=True, text=True)
                rows[route].append(json.loads(done.stdout.strip().splitlines()[-1]))
        res = {route: {"seeds_per_s": seeds / min(r["solve_s"] for r in runs),
                       "vf_us": 1e6 * min(r["vf_s"] for r in runs), "steps": runs[0]["steps"]}
               for route, runs in rows.items()}
        res["speedup"] = res["custom"]["seeds_per_s"] / res["plain"]["seeds_per_s"]
        res["vf_speedup"] = res["plain"]["vf_us"] / res["custom"]["vf_us"]
        res["xla_flags"] = flags
        out["isas"][isa] = res
    return out


def bench_compile() -> dict:
    """Target 3: compilation in a new process, without and with the persistent compilation cache.

    A child process runs ``deflation figure1``'s solve twice; the first call's excess over the
    second is its compilation (or, with a warm cache, the loading of the compiled program). Then
    ``deflation figure1`` itself is run three times in new processes: with the cache turned off,
    and twice with a fresh cache (cold, then warm)."""
    import os
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        for label in ("cold_cache", "warm_cache"):
            run = subprocess.run([sys.executable, "-c", COMPILE_CHILD, cache], capture_output=True, text=True,
                                 check=True)
            r = json.loads(run.stdout.strip().splitlines()[-1])
            r["compile_s"] = r["first_call_s"] - r["second_call_s"]
            out[label] = r
        cli_cache = os.path.join(tmp, "cli-cache")
        for label, flag in (("cli_no_cache", "off"), ("cli_cold_cache", cli_cache), ("cli_warm_cache", cli_cache)):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "deflation.cli", "--cache-dir", flag, "figure1", "--out",
                            os.path.join(tmp, label)], capture_output=True, text=True, check=True)
            out[f"{label}_wall_s"] = time.perf_counter() - t
    return out


def bench_float32(seeds: int, repeats: int) -> dict:
    """Target 5: float32 against float64 on the Figure 1 setting (speed and accuracy)."""
    import diffrax

    import deflation as D

    t1 = FIG1["t1"]
    ts = [50.0, 100.0, 200.0, t1]
    out = {"seeds": seeds}
    tg64, W64 = _fig1(), _fig1_W0(seeds)
    tg32, W32 = _fig1(jnp.float32), W64.astype(jnp.float32)
    ref = D.gradient_flow(tg64, W64, ts, rtol=1e-12, atol=1e-12, solver=diffrax.Dopri8())
    scale = float(np.abs(np.asarray(ref.W)).max())
    for tol in (1e-4, 1e-6):
        r64 = lambda: D.gradient_flow(tg64, W64, ts, rtol=tol, atol=tol)  # noqa: E731
        r32 = lambda: D.gradient_flow(tg32, W32, ts, rtol=tol, atol=tol)  # noqa: E731
        a64, a32 = jax.block_until_ready((r64(), r32()))
        t64 = min(best_time(lambda: r64().W, 1) for _ in range(repeats))
        t32 = min(best_time(lambda: r32().W, 1) for _ in range(repeats))

        def errs(res):
            fit_err = np.abs(np.asarray(res.fit_time, np.float64) - np.asarray(ref.fit_time))
            return {
                "W_error_rel": float(np.abs(np.asarray(res.W, np.float64) - np.asarray(ref.W)).max() / scale),
                "fit_time_error_max": float(np.nanmax(np.where(np.isfinite(fit_err), fit_err, np.nan))),
                "fit_time_mismatch_inf": int((np.isfinite(np.asarray(res.fit_time))
                                              != np.isfinite(np.asarray(ref.fit_time))).sum()),
                "failed": len(res.failed()),
            }

        out[f"tol_{tol:g}"] = {"float64_s": t64, "float32_s": t32, "speedup": t64 / t32,
                               "float64": errs(a64), "float32": errs(a32)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


def add_arguments(p):
    p.add_argument("--quick", action="store_true", help="small sizes (a couple of minutes on 2 cores)")
    p.add_argument("--seeds", type=int, default=None,
                   help="batch size of the flow benchmark (default 512; e.g. 65536 on a GPU)")
    p.add_argument("--scipy-seeds", type=int, default=None, help="seeds in the SciPy loop (timed per seed; default 16)")
    p.add_argument("--memory-seeds", type=int, default=None, help="seeds in the memory study (default 100000)")
    p.add_argument("--chunk", type=int, default=None, help="chunk size of the memory study (default 1024)")
    p.add_argument("--large", type=str, default="8,128,1024", help="B,d,m of the large vector-field case")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (best taken)")
    p.add_argument("--only", type=str, default=None,
                   help="comma list of: flow, vmap, kernels, flops, dense, memory, float32, compile")
    add_output_arguments(p)


def run(args) -> int:
    q = args.quick
    seeds = args.seeds or (64 if q else 512)
    scipy_seeds = args.scipy_seeds or (4 if q else 16)
    memory_seeds = args.memory_seeds or (2048 if q else 100_000)
    chunk = args.chunk or (512 if q else 1024)
    repeats = args.repeats or (2 if q else 3)
    large = tuple(int(x) for x in args.large.split(","))
    only = set((args.only or "flow,vmap,kernels,flops,dense,memory,float32,compile").split(","))
    if "memory-child" in only:
        write_json(args.out, bench_memory(memory_seeds, chunk))
        return 0
    out_path = output_path(f"throughput{'_quick' if q else ''}_{tag()}.json", args.record, args.out)
    results = {"device": device_info(), "quick": q}
    if out_path.exists() and args.only:

        results = json.loads(out_path.read_text()) | results
    steps = [("dense", lambda: bench_dense(repeats)), ("flops", lambda: bench_flops(repeats, large)),
             ("flow", lambda: bench_flow(seeds, scipy_seeds, repeats)),
             ("vmap", lambda: bench_vmap(seeds, repeats)),
             ("kernels", lambda: bench_kernels(seeds, repeats)),
             ("float32", lambda: bench_float32(min(seeds, 64), repeats)),
             ("compile", bench_compile),
             ("memory", lambda: _memory_child(memory_seeds, chunk, out_path.with_suffix(".memory.json")))]
    for name, fn in steps:
        if name not in only:
            continue
        print(f"[throughput] {name} ...", flush=True)
        t = time.perf_counter()
        results[name] = fn()
        results[name]["bench_wall_s"] = time.perf_counter() - t
        write_json(out_path, results)
        print(summary_line(name, results[name]), flush=True)
    print(f"[throughput] wrote {out_path}")
    return 0


def summary_line(name: str, r: dict) -> str:
    if name == "kernels":
        return "\n".join(
            f"  {isa}: custom CPU kernels {v['custom']['seeds_per_s']:.1f} seeds/s vs XLA's dot and reduction "
            f"{v['plain']['seeds_per_s']:.1f} -> {v['speedup']:.2f}x (vector field {v['custom']['vf_us']:.0f} vs "
            f"{v['plain']['vf_us']:.0f} us per call -> {v['vf_speedup']:.2f}x)" for isa, v in r["isas"].items())
    if name == "vmap":
        return (f"  one save: {r['ours_seeds_per_s']:.1f} seeds/s vs jax.vmap(diffrax.diffeqsolve) "
                f"{r['vmap_diffeqsolve_seeds_per_s']:.1f} -> {r['ratio']:.2f}x (steps {r['ours_steps_mean']:.0f} vs "
                f"{r['vmap_steps_mean']:.0f}; final losses differ by {r['max_loss_difference']:.1e}, residuals by "
                f"{r['max_residual_difference']:.1e})")
    if name == "flow":
        return (f"  one save: {r['one_save_seeds_per_s']:.1f} seeds/s vs SciPy {r['scipy_end_seeds_per_s']:.2f} -> "
                f"{r['ratio']:.1f}x (bound {r['ceiling'].get('solve_ratio_bound', float('nan')):.1f}x); "
                f"{r['points']} saves: {r['series_seeds_per_s']:.1f} seeds/s "
                f"({r['series_over_one_save']:.2f} of one save) "
                f"vs SciPy t_eval + NumPy loss {r['scipy_series_seeds_per_s']:.2f} -> {r['ratio_series']:.1f}x; "
                f"first calls {r['one_save_first_call_s']:.1f} s / {r['series_first_call_s']:.1f} s")
    if name == "flops":
        return (f"  target 2: matmul {r['matmul_1024_flops_per_s'] / 1e9:.1f} GF/s; small VF "
                f"{r['small']['vf_fraction_of_matmul']:.0%} "
                f"(Gram alone {r['small']['gram_only_fraction_of_matmul']:.0%}, "
                f"as XLA's batched dot {r['small']['gram_xla_batched_dot_fraction_of_matmul']:.0%}), "
                f"large VF {r['large']['vf_fraction_of_matmul']:.0%} (one seed's Gram GEMM alone "
                f"{r['large']['gram_single_seed_fraction_of_matmul']:.0%})")
    if name == "dense":
        return (f"  target 3: VF {r['vf_s'] * 1e6:.1f} us per call "
                f"({r['vf_in_loop_s'] * 1e6:.1f} us per evaluation inside a "
                f"compiled loop -> {r['ratio_in_loop']:.0f}x) "
                f"vs dense NumPy {r['numpy_dense_gradient_s'] * 1e3:.2f} ms "
                f"-> {r['ratio']:.0f}x (NumPy Gram RHS {r['ratio_numpy_gram']:.1f}x)")
    if name == "memory":
        return (f"  target 4: {r['seeds']} seeds in chunks of {r['chunk']}: peak RSS {r['peak_rss_GiB']:.2f} GiB, "
                f"{r['seeds_per_s']:.1f} seeds/s, {r['num_failed']} failed")
    if name == "compile":
        return (f"  target 3: figure1's solve compiles in {r['cold_cache']['compile_s']:.1f} s in a new process; "
                f"with a "
                f"warm cache {r['warm_cache']['compile_s']:.1f} s; deflation figure1 wall: no cache "
                f"{r['cli_no_cache_wall_s']:.1f} s, cold {r['cli_cold_cache_wall_s']:.1f} s, "
                f"warm {r['cli_warm_cache_wall_s']:.1f} s")
    if name == "float32":
        parts = [f"tol {k[4:]}: {v['speedup']:.2f}x, "
                 f"W err {v['float64']['W_error_rel']:.1e} -> {v['float32']['W_error_rel']:.1e}, "
                 f"fit err {v['float64']['fit_time_error_max']:.1e} -> {v['float32']['fit_time_error_max']:.1e}"
                 for k, v in r.items() if k.startswith("tol_")]
        return "  target 5: " + "; ".join(parts)
    return ""


if __name__ == "__main__":
    sys.exit(main())
