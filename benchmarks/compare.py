"""Before and after: the same workloads on two revisions of the package, in one run.

Checks that a change of the code's structure (the models as values, the experiments as modules)
leaves the paper's normalized model bit-identical and no slower: each workload runs in fresh
processes alternating between a checkout of ``--base`` (a ``git worktree`` made here, removed at
the end) and the working tree, ``--rounds`` times, and the best time of each side is compared
(the same-run ratio; the target is within 5%). The workloads are what users run:

- ``flow``: ``gradient_flow`` of the Figure 1 setting (d = 10, m = 50, ``a_i ~ 1.2^-i``, ``delta0 = 1e-15``,
  tol 1e-6) to t = 300 with one save point, ``--seeds`` seeds;
- ``series``: the same with 301 save points;
- ``study``: the README's ``deflation montecarlo`` study (d = 10, m = 50, ``a = 0.3 .. 0.1``,
  ``delta0 = 1e-15``, horizon 80, chunks of 512) with ``--study-seeds`` seeds, end to end with its
  store;
- ``algorithm2``: an ``algorithm2`` study at d = 6 with Theorem 1's parameters (eps = 0.05), in
  chunks of ``--alg2-chunk`` seeds.

Every output the workloads produce is hashed (SHA-256 of the arrays' bytes): equal hashes are
bit-identical results. A first call in each process is a compilation and is not timed (it is
reported). The CPU model, its vector ISA and the versions go in the results file.

Usage: python benchmarks/compare.py [--base REV] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import add_output_arguments, device_info, output_path, tag, write_json

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, json, sys, tempfile, time
from pathlib import Path
import jax, jax.numpy as jnp, numpy as np
import deflation as D
from deflation.montecarlo import Study, run_study

work, seeds, study_seeds, alg2_chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def digest(*arrays):
    h = hashlib.sha256()
    for x in arrays:
        h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
    return h.hexdigest()[:16]

def timed(fn):
    t = time.perf_counter(); out = fn(); return time.perf_counter() - t, out

if work in ("flow", "series"):
    tg = D.Target.geometric(10, 5)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), jnp.arange(seeds), 10, 50, 1e-15)
    ts = [300.0] if work == "flow" else np.linspace(0.0, 300.0, 301)
    def fn():
        r = D.gradient_flow(tg, W0, ts, rtol=1e-6, atol=1e-6)
        jax.block_until_ready(r.W)
        return digest(r.W, r.loss, r.discovery_time, r.fit_time, r.num_steps, r.status)
    first, _ = timed(fn)
    best, h = min(timed(fn) for _ in range(3))
else:
    if work == "study":
        study = Study("flow", study_seeds, {"kind": "basis", "a": [0.3, 0.25, 0.2, 0.15, 0.1]},
                      {"d": 10, "m": 50, "horizon": 80.0, "delta0": 1e-15}, chunk=min(study_seeds, 512))
    else:
        study = Study("algorithm2", study_seeds, {"kind": "basis", "a": [0.5, 0.3, 0.2]}, {"d": 6, "eps": 0.05},
                      chunk=min(study_seeds, alg2_chunk))
    def fn():
        with tempfile.TemporaryDirectory() as tmp:
            ds = run_study(study, Path(tmp) / "s.zarr", progress=False)
            return digest(*(ds[k].values for k in sorted(ds.data_vars)))
    first, _ = timed(fn)
    best, h = min(timed(fn) for _ in range(2))
print(json.dumps({"first_s": first, "best_s": best, "digest": h}))
"""


def run(args) -> int:
    q = args.quick
    seeds, study_seeds = (64, 128) if q else (args.seeds, args.study_seeds)
    works = args.only.split(",")
    out_path = output_path(f"compare{'_quick' if q else ''}_{tag()}.json", args.record, args.out)
    base = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.base], check=True, capture_output=True,
                          text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], check=True,
                                capture_output=True, text=True).stdout.strip())
    results = {"device": device_info(), "base": base, "head": head, "head_has_uncommitted_src": dirty,
               "seeds": seeds, "study_seeds": study_seeds, "alg2_chunk": args.alg2_chunk, "rounds": args.rounds,
               "workloads": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), base], check=True,
                       capture_output=True)
        try:
            sides = {"before": tree / "src", "after": ROOT / "src"}
            for work in works:
                runs: dict[str, list] = {side: [] for side in sides}
                for _ in range(args.rounds):
                    for side, src in sides.items():
                        env = dict(os.environ, PYTHONPATH=str(src))
                        env.pop("JAX_COMPILATION_CACHE_DIR", None)
                        argv = [sys.executable, "-c", CHILD, work, str(seeds), str(study_seeds), str(args.alg2_chunk)]
                        done = subprocess.run(argv, env=env, capture_output=True, text=True)
                        if done.returncode:
                            raise SystemExit(f"{work} ({side}, {src}) failed:\n{done.stderr[-3000:]}")
                        runs[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
                row = {side: {"best_s": min(r["best_s"] for r in rs), "first_s": min(r["first_s"] for r in rs),
                              "digest": rs[0]["digest"], "digests_agree": len({r["digest"] for r in rs}) == 1}
                       for side, rs in runs.items()}
                row["ratio_after_over_before"] = row["after"]["best_s"] / row["before"]["best_s"]
                row["bit_identical"] = row["after"]["digest"] == row["before"]["digest"]
                results["workloads"][work] = row
                print(f"  {work}: before {row['before']['best_s']:.3f} s, after {row['after']['best_s']:.3f} s -> "
                      f"after/before {row['ratio_after_over_before']:.3f} (first call {row['before']['first_s']:.1f} "
                      f"vs {row['after']['first_s']:.1f} s); bit-identical: {row['bit_identical']}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False,
                           capture_output=True)
    write_json(out_path, results)
    print(f"wrote {out_path}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="b6cddb3", help="the revision before (default: before the models change)")
    p.add_argument("--only", default="flow,series,study,algorithm2", help="comma list of workloads")
    p.add_argument("--seeds", type=int, default=512, help="seeds of the flow and series workloads")
    p.add_argument("--study-seeds", type=int, default=1024, help="seeds of the study workloads")
    p.add_argument("--rounds", type=int, default=3, help="alternating fresh processes per side")
    p.add_argument("--alg2-chunk", type=int, default=64,
                   help="seeds per chunk of the algorithm2 study (512: the studies' default, where a chunk's seeds "
                        "go through the solver's lanes as a work queue)")
    p.add_argument("--quick", action="store_true", help="64 / 128 seeds")
    add_output_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
