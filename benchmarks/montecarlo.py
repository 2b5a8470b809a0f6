"""Monte Carlo throughput of studies (``deflation.montecarlo``): seeds/s on 1, 2 and 4 forced host
devices (one subprocess each, with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``); a
large study (``--scale-seeds``, e.g. 100,000) against a 1,024-seed one with the same chunk size (no
per-chunk recompilation: the rates should agree); and the decoupled Phase 1 experiment, plus how
close its discovery probabilities are to the full flow's.

Setting: Figure 1 (d = 10, m = 50, a_i / a_(i+1) = 1.2, r = 5, delta0 = 1e-15). Throughput is
measured after compilation (a first chunk is run and discarded). The decoupled comparison uses a
Phase 1 horizon (the top component has typically just been discovered), where the coupling bound
is checked and reported.

    python benchmarks/montecarlo.py [--seeds 1024] [--chunk 1024] [--scale-seeds 100000] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import add_output_arguments, device_info, output_path, write_json

WORKER = r"""
import json, sys, time, shutil
import jax, numpy as np
from deflation.montecarlo import Study, run_study
args = json.loads(sys.argv[1])
study = Study.from_dict(args["study"])
warm = study.replace(seeds=args["chunk"])  # compile on a throwaway store (same shapes)
run_study(warm, args["out"] + ".warm", chunk=args["chunk"], progress=False, summary=False)
t = time.perf_counter()
ds = run_study(study, args["out"], chunk=args["chunk"], progress=args["progress"], summary=False)
dt = time.perf_counter() - t
print(json.dumps(dict(devices=jax.device_count(), seconds=dt, seeds_per_s=study.seeds / dt,
                      p=ds["discovered"].values.mean(0).tolist(), failed=int((ds["status"].values != 0).sum()),
                      coupling_max=float(np.nanmax(ds["coupling"].values)) if "coupling" in ds else None)))
"""


def run_worker(study: dict, chunk: int, devices: int, tmp: Path, name: str, progress: bool = False) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    payload = json.dumps(dict(study=study, chunk=chunk, out=str(tmp / f"{name}.zarr"), progress=progress))
    p = subprocess.run([sys.executable, "-c", WORKER, payload], env=env, stdout=subprocess.PIPE,
                       stderr=None if progress else subprocess.PIPE, text=True)
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def study(seeds: int, horizon: float, experiment: str = "flow") -> dict:
    """The Figure 1 setting as a study file's dict."""
    return dict(experiment=experiment, seeds=seeds, target=dict(kind="basis", ratio=1.2, r=5),
                params=dict(d=10, m=50, delta0=1e-15, horizon=horizon))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--scale-seeds", type=int, default=100_000, help="the large study (0: skip it)")
    ap.add_argument("--horizon", type=float, default=80.0, help="horizon of the throughput runs")
    ap.add_argument("--phase1-horizon", type=float, default=52.0, help="horizon of the decoupled-vs-full comparison")
    ap.add_argument("--devices", type=str, default="1,2,4", help="forced host device counts to time")
    add_output_arguments(ap)
    args = ap.parse_args()
    import numpy as np

    out_path = output_path("montecarlo.json", args.record, args.out)
    results = dict(setting="Figure 1: d=10, m=50, r=5, a_i/a_(i+1)=1.2, delta0=1e-15, tsit5 rtol=atol=1e-8",
                   seeds=args.seeds, chunk=args.chunk, device=device_info(), throughput={}, phase1={})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for devices in (int(x) for x in args.devices.split(",")):
            r = run_worker(study(args.seeds, args.horizon), args.chunk, devices, tmp, f"full{devices}")
            results["throughput"][f"full_{devices}dev"] = r
            print(f"full flow, horizon {args.horizon:g}, {devices} device(s): {r['seeds_per_s']:.1f} seeds/s",
                  flush=True)
            write_json(out_path, results)
        if args.scale_seeds:
            r = run_worker(study(args.scale_seeds, args.horizon), args.chunk, 1, tmp, "scale", progress=True)
            base = results["throughput"].get("full_1dev")
            r["over_small_study"] = r["seeds_per_s"] / base["seeds_per_s"] if base else None
            results["scale"] = r
            print(f"{args.scale_seeds} seeds in chunks of {args.chunk}: {r['seeds_per_s']:.1f} seeds/s "
                  f"({r['over_small_study']:.3f} of the {args.seeds}-seed rate)", flush=True)
            write_json(out_path, results)
        r = run_worker(study(args.seeds, args.horizon, "phase1"), args.chunk, 1, tmp, "dec80")
        results["throughput"]["decoupled_1dev"] = r
        print(f"decoupled, horizon {args.horizon:g}, 1 device: {r['seeds_per_s']:.1f} seeds/s "
              f"(coupling bound max {r['coupling_max']:.3g}: not Phase 1 any more)")
        full = run_worker(study(args.seeds, args.phase1_horizon), args.chunk, 1, tmp, "p1full")
        dec = run_worker(study(args.seeds, args.phase1_horizon, "phase1"), args.chunk, 1, tmp, "p1dec")
        n = args.seeds
        diff = np.abs(np.array(dec["p"]) - np.array(full["p"]))
        se = np.sqrt(np.array(full["p"]) * (1 - np.array(full["p"])) / n)
        results["phase1"] = dict(horizon=args.phase1_horizon, full=full, decoupled=dec,
                                 speedup=dec["seeds_per_s"] / full["seeds_per_s"], max_abs_p_diff=float(diff.max()),
                                 binomial_se=se.tolist())
        print(f"Phase 1 horizon {args.phase1_horizon:g}: full {full['seeds_per_s']:.1f} seeds/s, decoupled "
              f"{dec['seeds_per_s']:.1f} seeds/s (x{results['phase1']['speedup']:.2f}); P(discovered) full "
              f"{np.round(full['p'], 4).tolist()} vs decoupled {np.round(dec['p'], 4).tolist()} "
              f"(max |diff| {diff.max():.4f}; coupling bound max {dec['coupling_max']:.3g})")
    write_json(out_path, results)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
