"""Print the markdown tables of benchmarks/README.md from the results JSON files.

Usage: python benchmarks/table.py [results/throughput_cpu.json] [results/solvers_quick_cpu.json]
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent / "results"


def throughput(path):
    r = json.loads(Path(path).read_text())
    dev = r["device"]
    print(f"Device: {dev['device_kind']} ({dev['platform']}, {dev['cpu_count']} cores), {dev['time']}.\n")
    print("| target | measured (one run, best of repeats) | goal | met |")
    print("|---|---|---|---|")
    if "flow" in r:
        f = r["flow"]
        yes = lambda ok: "yes" if ok else "no"  # noqa: E731
        print(f"| time series: {f['points']} save points (W, loss, residuals, events) vs one save ({f['seeds']} seeds, "
              f"Fig. 1, t=300, tol 1e-6) | {f['series_seeds_per_s']:.1f} vs {f['one_save_seeds_per_s']:.1f} seeds/s = "
              f"**{f['series_over_one_save']:.2f}** | >= 0.8 | {yes(f['series_over_one_save'] >= 0.8)} |")
        print(f"| time series vs SciPy RK45 loop with t_eval and the NumPy loss at the same points | "
              f"{f['series_seeds_per_s']:.1f} vs {f['scipy_series_seeds_per_s']:.2f} seeds/s = "
              f"**{f['ratio_series']:.1f}x**; "
              f"loss above its floor within {f['series_loss_rel_error_above_floor']:.1e} of a Dopri8 1e-12 solve | "
              f">= 20x | "
              f"{yes(f['ratio_series'] >= 20)} |")
        print(f"| one save point vs SciPy RK45 loop | "
              f"{f['one_save_seeds_per_s']:.1f} vs {f['scipy_end_seeds_per_s']:.2f} "
              f"seeds/s = **{f['ratio']:.1f}x**; bound with zero solver overhead and no events: "
              f"{f['ceiling'].get('solve_ratio_bound', float('nan')):.1f}x; NumPy RHS / batched VF per seed: "
              f"{f['ceiling']['ratio']:.1f}x; nfev/seed {f['ours_nfev_mean_estimate']:.0f} (ours) vs "
              f"{f['scipy_nfev_mean']:.0f} (SciPy); error vs Dopri8 {f['ours_error_vs_dopri8']:.1e} vs "
              f"{f['scipy_error_vs_dopri8']:.1e} | >= 30x | {yes(f['ratio'] >= 30)} |")
    if "compile" in r:
        c = r["compile"]
        print(f"| compilation of figure1's solve in a new process | "
              f"{c['cold_cache']['compile_s']:.1f} s without a cache, "
              f"**{c['warm_cache']['compile_s']:.1f} s** with a warm cache; `deflation figure1` wall: no cache "
              f"{c['cli_no_cache_wall_s']:.1f} s, cold cache {c['cli_cold_cache_wall_s']:.1f} s, warm "
              f"{c['cli_warm_cache_wall_s']:.1f} s | < 3 s | {'yes' if c['warm_cache']['compile_s'] < 3 else 'no'} |")
    if "flops" in r:
        g = r["flops"]
        for k, goal in (("small", 0.3), ("large", 0.6)):
            c = g[k]
            print(f"| 2. VF flop rate / 1024^3 matmul at (B={c['B']}, d={c['d']}, m={c['m']}) | "
                  f"{c['vf_flops_per_s'] / 1e9:.1f} / {g['matmul_1024_flops_per_s'] / 1e9:.1f} GF/s = "
                  f"**{c['vf_fraction_of_matmul']:.0%}** "
                  f"(batched Gram product alone: {c['gram_only_fraction_of_matmul']:.0%}"
                  + (', as XLA batched dot: {:.0%}'.format(c['gram_xla_batched_dot_fraction_of_matmul'])
                     if 'gram_xla_batched_dot_fraction_of_matmul' in c else '')
                  + ('; one seed Gram GEMM: {:.0%}'.format(c['gram_single_seed_fraction_of_matmul'])
                     if 'gram_single_seed_fraction_of_matmul' in c and k == 'large' else '')
                  + ('; inside a compiled loop: {:.0%}'.format(c['vf_in_loop_fraction_of_matmul'])
                     if 'vf_in_loop_fraction_of_matmul' in c else '')
                  + ('; all seeds at once instead of seed by seed: {:.0%} with {} page faults per call'.format(
                      c['vf_all_seeds_at_once_fraction_of_matmul'],
                      c['vf_all_seeds_at_once_minor_page_faults_per_call'])
                     if 'vf_all_seeds_at_once_fraction_of_matmul' in c else '')
                  + f") | >= {goal:.0%} | {'yes' if c['vf_fraction_of_matmul'] >= goal else 'no'} |")
    if "dense" in r:
        d = r["dense"]
        print(f"| 3. one VF eval vs dense NumPy gradient (d={d['d']}, m={d['m']}) | "
              f"{d['vf_in_loop_s'] * 1e6:.1f} us per "
              f"evaluation inside a compiled loop vs {d['numpy_dense_gradient_s'] * 1e3:.2f} ms = "
              f"**{d['ratio_in_loop']:.0f}x**; "
              f"per standalone jitted call {d['vf_s'] * 1e6:.0f} us = {d['ratio']:.0f}x (vs NumPy Gram RHS: "
              f"{d['ratio_numpy_gram']:.1f}x; torch: {d.get('ratio_torch', d.get('torch'))}) | >= 100x | "
              f"{'yes' if d['ratio_in_loop'] >= 100 else 'no'} |")
    if "memory" in r:
        m = r["memory"]
        print(f"| 4. peak RSS, {m['seeds']}-seed Fig. 1 study in chunks of {m['chunk']} | "
              f"**{m['peak_rss_GiB']:.2f} GiB** "
              f"(after first chunk {m['peak_rss_after_first_chunk_bytes'] / 2**30:.2f} GiB), "
              f"{m['seeds_per_s']:.1f} seeds/s, {m['num_failed']} failed | < 2 GiB | "
              f"{'yes' if m['peak_rss_GiB'] < 2 else 'no'} |")
    if "float32" in r:
        for k, v in r["float32"].items():
            if k.startswith("tol_"):
                print(f"| 5. float32 vs float64, tol {k[4:]} ({r['float32']['seeds']} seeds) | "
                      f"speed-up **{v['speedup']:.2f}x**; "
                      f"W error {v['float64']['W_error_rel']:.1e} -> {v['float32']['W_error_rel']:.1e}; fit-time error "
                      f"{v['float64']['fit_time_error_max']:.1e} -> {v['float32']['fit_time_error_max']:.1e} | "
                      f"report | - |")


def solvers(path):
    r = json.loads(Path(path).read_text())
    for name in ("figure1", "hard"):
        if name not in r:
            continue
        s = r[name]
        print(f"\n{name}: d={s['d']}, m={s['m']}, {s['seeds']} seeds, W error at t = {s['ts']}; "
              f"reference Dopri8 1e-12 took {s['reference']['wall_s']:.1f} s (with compilation)\n")
        print("| solver | tol / dt | rel. error in W at each t | max fit-time error | nfev (seed 0) | steps | wall s |")
        print("|---|---|---|---|---|---|---|")
        for row in s["runs"]:
            errs = ", ".join(f"{e:.1e}" for e in row["W_error_rel"])
            print(f"| {row['solver']} | {row.get('tol', row.get('dt')):g} | {errs} | {row['fit_time_error']:.1e} | "
                  f"{row['nfev_seed0']}{'' if row.get('nfev_counted', True) else '*'} | {row['num_steps_mean']:.0f} | "
                  f"{row['wall_s']:.3f} |")
    if "optax" in r:
        o = r["optax"]
        print(f"\nDiscrete GD (Figure 1 setting, one seed); "
              f"flow fit times {[round(x, 1) for x in o['flow_fit_time']]}\n")
        print("| optimizer | lr | fit times in lr x iterations | resolution | sgd vs Euler(dt=lr) |")
        print("|---|---|---|---|---|")
        for row in o["runs"]:
            fits = ", ".join(f"{x:.1f}" if isinstance(x, float) else str(x) for x in row["fit_time_lr_x_iterations"])
            print(f"| {row['optimizer']} | {row['lr']:g} | {fits} | {row['resolution']:g} | "
                  f"{row.get('sgd_vs_euler_max_rel_diff', '')} |")
    if "raw_vs_lognorm" in r:
        v = r["raw_vs_lognorm"]
        print(f"\nRaw W vs log-norm coordinates (Tsit5, Figure 1 setting), at t = {v['ts']}\n")
        print("| coordinates | tol | max direction error of columns with norm < 1e-3 | max log-norm error of those |")
        print("|---|---|---|---|")
        for row in v["runs"]:
            f = lambda xs: ", ".join("-" if x is None else f"{x:.1e}" for x in xs)  # noqa: E731
            print(f"| {row['coordinates']} | {row['tol']:g} | {f(row['small_direction_error_max'])} | "
                  f"{f(row['small_log_norm_error_max'])} |")


if __name__ == "__main__":
    args = sys.argv[1:] or [str(HERE / "throughput_cpu.json"), str(HERE / "solvers_quick_cpu.json")]
    for a in args:
        if Path(a).exists():
            (throughput if "throughput" in Path(a).name else solvers)(a)
            print()
