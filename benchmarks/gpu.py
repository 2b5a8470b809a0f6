"""The GPU run, prepared: one script, under 8 minutes on one GPU (sized for an NVIDIA H200).

Usage: python benchmarks/gpu.py [--tiny] [--only flow,float32,study,algorithm2] [--record] [--out DIR]

Four parts, run in this order, each written to its own JSON file as soon as it is done (an
interrupted run keeps the parts that finished):

1. ``flow`` -> ``throughput_gpu.json`` (section ``flow``): :func:`deflation.gradient_flow` on the
   Figure 1 setting (d=10, r=5, m=50, scale 1e-15, t=300, Tsit5 at rtol=atol=1e-6) at 65,536 seeds
   with one save point, and at 8,192 seeds with 301 save points (its saved states, 8,192 x 301 x 500
   floats, take 10 GB; at 65,536 seeds they would take 79 GB); seeds/s of the compiled calls (best
   of ``--repeats``), first calls (compilation included) reported; a SciPy ``solve_ivp`` RK45 loop on
   a few seeds on the host CPU, for the ratio the CPU results quote (a GPU against one CPU core).
2. ``float32`` -> ``throughput_gpu.json`` (section ``float32``): the one-save call in float32
   against float64 at 65,536 seeds, tol 1e-4 and 1e-6: speed-up, and the error in ``W`` and in the
   fit times of the first 256 seeds against a float64 Dopri8 solve at 1e-12.
3. ``study`` -> ``montecarlo_gpu.json``: a 100,000-seed Monte Carlo study of the Figure 1 flow
   (``deflation.montecarlo.run_study``, horizon 80, Tsit5 at 1e-8, as ``montecarlo.py``) in chunks
   of 20,000 seeds, after a compiling chunk on a throw-away store; seeds/s, failed seeds,
   P(discovered).
4. ``algorithm2`` -> ``algorithm2_gpu.json``: Algorithm 2 (:func:`deflation.modified_gradient_flow`)
   at d = 16 with Theorem 1's parameters (``theorem1_parameters(16, 1e-2)``: m = 512) on the
   command's default target (r = d, a_i / a_(i+1) = 1.2), 64 seeds: the first call (compilation
   included) and a second, compiled one; seeds/s, converged fraction, epochs.

``--tiny`` runs every part at a size whose running time on a CPU is negligible (the time is the
compilation of its seven programs: minutes on 2 cores; the test suite runs it so), and names the files
``*_tiny_<device>.json``. Each file records the device (name, count), the host CPU (model, vector ISA), ``XLA_FLAGS``
and the versions of jax and jaxlib. Files are named after the device the run found (``_gpu`` on a GPU, ``_cpu``
otherwise): a run that fell back to the CPU never writes a ``*_gpu.json``. They go to ``benchmarks/out/`` (ignored by
git), to ``benchmarks/results/`` with ``--record``, or to ``--out DIR``.

On a machine with a GPU: ``python benchmarks/gpu.py --record`` (``timeout 480`` in front keeps it
inside 8 minutes whatever the GPU; the parts done by then are written).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import deflation as D  # float64

from _common import OUT, RESULTS, best_time, device_info, write_json

FIG1 = dict(d=10, r=5, m=50, scale=1e-15, t1=300.0, tol=1e-6)

#: Sizes of the GPU run and of ``--tiny`` (the CPU check).
SIZES = {
    "full": dict(flow_seeds=65_536, series_seeds=8_192, points=301, scipy_seeds=8, repeats=3,
                 float32_seeds=65_536, ref_seeds=256,
                 study_seeds=100_000, study_chunk=20_000, horizon=80.0,
                 a2_d=16, a2_eps=1e-2, a2_seeds=64, a2_max_epochs=30),
    "tiny": dict(flow_seeds=16, series_seeds=8, points=11, scipy_seeds=1, repeats=1,
                 float32_seeds=8, ref_seeds=4,
                 study_seeds=48, study_chunk=16, horizon=80.0,
                 a2_d=4, a2_eps=3e-2, a2_seeds=2, a2_max_epochs=4),
}
PARTS = ("flow", "float32", "study", "algorithm2")


def environment() -> dict:
    """Device, host CPU and versions, recorded in every results file."""
    import jaxlib

    devices = jax.devices()
    return device_info() | {
        "jaxlib": jaxlib.__version__, "device_name": getattr(devices[0], "device_kind", str(devices[0])),
        "devices": [str(d) for d in devices], "python": platform.python_version()}


def suffix(tiny: bool) -> str:
    platform_ = jax.devices()[0].platform
    return ("_tiny" if tiny else "") + ("_gpu" if platform_ in ("gpu", "cuda", "rocm") else f"_{platform_}")


def _fig1(dtype=jnp.float64):
    tg = D.Target.geometric(FIG1["d"], FIG1["r"])
    return tg if dtype == jnp.float64 else D.Target(tg.a.astype(dtype), tg.U.astype(dtype), tg.order)


def _W0(seeds: int, dtype=jnp.float64):
    return D.sample_sphere_batch(jax.random.PRNGKey(0), jnp.arange(seeds), FIG1["d"], FIG1["m"], FIG1["scale"],
                                 dtype=dtype)


def _first_and_best(fn, repeats: int) -> tuple:
    """The result and wall time of a first call (compilation included), and the best of
    ``repeats`` further calls."""
    t = time.perf_counter()
    res = jax.block_until_ready(fn())
    first = time.perf_counter() - t
    return res, first, best_time(lambda: fn().W, repeats)


def bench_flow(s: dict) -> dict:
    """Part 1: one save point at ``flow_seeds`` seeds, ``points`` save points at ``series_seeds``."""
    from deflation.baselines import scipy_flow  # imports SciPy only when called

    tg, tol, t1 = _fig1(), FIG1["tol"], FIG1["t1"]
    out = {"setting": FIG1, "seeds": s["flow_seeds"], "series_seeds": s["series_seeds"], "points": s["points"]}
    W0 = _W0(max(s["flow_seeds"], s["series_seeds"]))
    ts = np.linspace(0.0, t1, s["points"])
    runs = {"one_save": (W0[: s["flow_seeds"]], [t1]), "series": (W0[: s["series_seeds"]], ts)}
    for name, (W, times) in runs.items():
        res, first, best = _first_and_best(lambda: D.gradient_flow(tg, W, times, rtol=tol, atol=tol), s["repeats"])
        n = W.shape[0]
        out |= {f"{name}_first_call_s": first, f"{name}_s": best, f"{name}_seeds_per_s": n / best,
                f"{name}_steps_mean": float(np.mean(res.num_steps)), f"{name}_steps_max": int(np.max(res.num_steps)),
                f"{name}_failed": res.failed()[:20], f"{name}_num_failed": len(res.failed())}
        if name == "one_save":
            fit = np.asarray(res.fit_time)
            out["one_save_fit_time_median"] = np.median(fit, axis=0).tolist()
        del res
    try:
        import scipy  # noqa: F401  (the .[bench] extra)
    except ImportError:
        out["scipy_end_seeds_per_s"] = out["one_save_over_scipy_one_cpu_core"] = "scipy not installed"
    else:
        t = time.perf_counter()
        scipy_flow(tg, np.asarray(W0[: s["scipy_seeds"]]), t1, rtol=tol, atol=tol)
        out["scipy_end_seeds_per_s"] = s["scipy_seeds"] / (time.perf_counter() - t)
        out["one_save_over_scipy_one_cpu_core"] = out["one_save_seeds_per_s"] / out["scipy_end_seeds_per_s"]
    out["series_over_one_save"] = out["series_seeds_per_s"] / out["one_save_seeds_per_s"]
    return out


def bench_float32(s: dict) -> dict:
    """Part 2: float32 against float64, one save point, speed and accuracy (against Dopri8 at 1e-12)."""
    import diffrax

    t1, n, k = FIG1["t1"], s["float32_seeds"], s["ref_seeds"]
    ts = [50.0, 100.0, 200.0, t1]
    tg64, W64 = _fig1(), _W0(n)
    tg32, W32 = _fig1(jnp.float32), W64.astype(jnp.float32)
    ref = D.gradient_flow(tg64, W64[:k], ts, rtol=1e-12, atol=1e-12, solver=diffrax.Dopri8())
    ref_W, ref_fit = np.asarray(ref.W), np.asarray(ref.fit_time)
    scale = float(np.abs(ref_W).max())
    out = {"seeds": n, "reference_seeds": k}
    for tol in (1e-4, 1e-6):  # traced: one compiled program per dtype
        row = {}
        for label, tg, W in (("float64", tg64, W64), ("float32", tg32, W32)):
            res, first, best = _first_and_best(lambda: D.gradient_flow(tg, W, ts, rtol=tol, atol=tol), s["repeats"])
            fit = np.asarray(res.fit_time[:k], np.float64)
            both = np.isfinite(fit) & np.isfinite(ref_fit)
            row[label] = {
                "first_call_s": first, "s": best, "seeds_per_s": n / best,
                "W_error_rel": float(np.abs(np.asarray(res.W[:k], np.float64) - ref_W).max() / scale),
                "fit_time_error_max": float(np.abs(fit - ref_fit)[both].max()) if both.any() else float("nan"),
                "fit_time_mismatch_inf": int((np.isfinite(fit) != np.isfinite(ref_fit)).sum()),
                "num_failed": len(res.failed())}
            del res
        row["speedup"] = row["float64"]["s"] / row["float32"]["s"]
        out[f"tol_{tol:g}"] = row
    return out


def bench_study(s: dict) -> dict:
    """Part 3: a ``study_seeds``-seed Figure 1 flow study, after a compiling chunk."""
    from deflation.montecarlo import Study, run_study

    spec = dict(experiment="flow", seeds=s["study_seeds"], target=dict(kind="basis", ratio=1.2, r=5),
                params=dict(d=10, m=50, delta0=1e-15, horizon=s["horizon"]))
    study, chunk = Study.from_dict(spec), s["study_chunk"]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        run_study(study.replace(seeds=chunk), Path(tmp) / "warm.zarr", chunk=chunk, progress=False, summary=False)
        warm = time.perf_counter() - t
        t = time.perf_counter()
        ds = run_study(study, Path(tmp) / "study.zarr", chunk=chunk, progress=False, summary=False)
        wall = time.perf_counter() - t
        status = ds["status"].values
        p = ds["discovered"].values.mean(0)
    return {"setting": "Figure 1: d=10, m=50, r=5, a_i/a_(i+1)=1.2, delta0=1e-15, tsit5 rtol=atol=1e-8",
            "seeds": s["study_seeds"], "chunk": chunk, "horizon": s["horizon"], "compiling_chunk_s": warm,
            "seconds": wall, "seeds_per_s": s["study_seeds"] / wall, "failed": int((status != 0).sum()),
            "p_discovered": p.tolist()}


def bench_algorithm2(s: dict) -> dict:
    """Part 4: Algorithm 2 at d = ``a2_d`` with Theorem 1's parameters, ``a2_seeds`` seeds."""
    d, n = s["a2_d"], s["a2_seeds"]
    p = D.theorem1_parameters(d, s["a2_eps"])
    target = D.Target.geometric(d=d, r=d, ratio=1.2)
    run = lambda: D.modified_gradient_flow(target, jax.random.key(0), **p.as_kwargs(), seeds=n,  # noqa: E731
                                           max_epochs=s["a2_max_epochs"])
    t = time.perf_counter()
    res = jax.block_until_ready(run())
    first = time.perf_counter() - t
    t = time.perf_counter()
    res = jax.block_until_ready(run())
    second = time.perf_counter() - t
    epochs = np.asarray(res.epochs)
    return {"d": d, "r": d, "eps": p.eps, "m": p.m, "lam": p.lam, "alpha": p.alpha, "delta1": p.delta1,
            "delta0": p.delta0, "gamma": p.gamma, "max_epochs": s["a2_max_epochs"], "seeds": n,
            "first_call_s": first, "s": second, "seeds_per_s": n / second,
            "converged_fraction": float(np.mean(np.asarray(res.converged))),
            "epochs_mean": float(epochs.mean()), "epochs_max": int(epochs.max()),
            "residual_norm_max": float(np.max(np.asarray(res.residual_norm)))}


FILES = {"flow": "throughput", "float32": "throughput", "study": "montecarlo", "algorithm2": "algorithm2"}
BENCH = {"flow": bench_flow, "float32": bench_float32, "study": bench_study, "algorithm2": bench_algorithm2}


def summary_line(name: str, r: dict) -> str:
    if name == "flow":
        ratio = r["one_save_over_scipy_one_cpu_core"]
        ratio = f"{ratio:.0f}x" if isinstance(ratio, float) else ratio
        return (f"  flow: one save {r['one_save_seeds_per_s']:.0f} seeds/s at {r['seeds']} seeds (first call "
                f"{r['one_save_first_call_s']:.1f} s; {ratio} against a SciPy loop on one CPU core); "
                f"{r['points']} saves {r['series_seeds_per_s']:.0f} seeds/s at {r['series_seeds']} seeds "
                f"({r['series_over_one_save']:.2f} of one save); "
                f"failed {r['one_save_num_failed']} + {r['series_num_failed']}")
    if name == "float32":
        return "  float32: " + "; ".join(
            f"tol {k[4:]}: {v['speedup']:.2f}x, "
            f"W error {v['float64']['W_error_rel']:.1e} -> {v['float32']['W_error_rel']:.1e}, "
            f"fit-time error {v['float64']['fit_time_error_max']:.1e} -> {v['float32']['fit_time_error_max']:.1e}"
            for k, v in r.items() if k.startswith("tol_"))
    if name == "study":
        return (f"  study: {r['seeds']} seeds in chunks of {r['chunk']}: {r['seeds_per_s']:.0f} seeds/s "
                f"({r['seconds']:.1f} s after a {r['compiling_chunk_s']:.1f} s compiling chunk), {r['failed']} failed")
    return (f"  algorithm2: d = {r['d']}, m = {r['m']}, {r['seeds']} seeds: {r['seeds_per_s']:.2f} seeds/s "
            f"({r['s']:.1f} s compiled, first call {r['first_call_s']:.1f} s), "
            f"converged {r['converged_fraction']:.0%}, "
            f"epochs mean {r['epochs_mean']:.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="every part at a tiny size (the CPU check of the test suite)")
    ap.add_argument("--only", type=str, default=",".join(PARTS), help=f"comma list of: {', '.join(PARTS)}")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder of the results files (default benchmarks/out/, ignored by git)")
    ap.add_argument("--record", action="store_true", help="write the committed results in benchmarks/results/ instead")
    args = ap.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in only if x not in PARTS]
    if bad or not only:
        ap.error(f"--only must be a comma list of {', '.join(PARTS)}, got {args.only!r}")
    sizes = SIZES["tiny" if args.tiny else "full"]
    folder = args.out if args.out is not None else (RESULTS if args.record else OUT)
    env = environment()
    print(f"[gpu] {env['device_name']} x {env['device_count']} ({env['platform']}), host {env['cpu_model']} "
          f"({env['cpu_isa']}), jax {env['jax']}, jaxlib {env['jaxlib']}", flush=True)
    if env["platform"] == "cpu" and not args.tiny:
        print("[gpu] no GPU found: the full sizes are meant for one; files are named _cpu", file=sys.stderr)
    files: dict[str, dict] = {}
    start = time.perf_counter()
    for name in PARTS:
        if name not in only:
            continue
        print(f"[gpu] {name} ...", flush=True)
        t = time.perf_counter()
        result = BENCH[name](sizes)
        result["bench_wall_s"] = time.perf_counter() - t
        path = folder / f"{FILES[name]}{suffix(args.tiny)}.json"
        data = files.setdefault(FILES[name], {"device": env, "tiny": args.tiny, "sizes": sizes})
        data[name] = result
        write_json(path, data)
        print(summary_line(name, result), flush=True)
        print(f"[gpu] wrote {path} ({time.perf_counter() - start:.0f} s so far)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
