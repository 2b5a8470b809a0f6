# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Which ODE solver and tolerance for which study?
#
# A short, interactive version of a work-precision benchmark. `deflation.gradient_flow` takes any
# diffrax solver and step-size controller. On the Figure 1 setting we run several solvers and
# tolerances and compare each with a reference solve (Dopri8, rtol = atol = $10^{-12}$, at full size):
# the error in the discovery times (Definition 1), the error in the loss curve while the loss is
# above $10^{-10}$, the number of vector-field evaluations (the cost measure: it does not depend
# on the machine) and the wall time (median of a few repeats on whatever machine executes the
# notebook; the figure shows how much of it depends on the solver at all).

# %% tags=["parameters"]
import os

SIZE = os.environ.get("DEFLATION_NB_SIZE", "full")
if SIZE == "full":
    D, R, RATIO, M, SEEDS, T_END, N_SAVE = 10, 5, 1.2, 50, 2, 200.0, 401
    CASES = [("Bosh3", 1e-6), ("Bosh3", 1e-8), ("Tsit5", 1e-6), ("Tsit5", 1e-8), ("Tsit5", 1e-10),
             ("Dopri5", 1e-8), ("Dopri8", 1e-8), ("Dopri8", 1e-10)]
elif SIZE == "small":
    # same shapes as figure1's small size (the test suite's compilation cache is then shared)
    D, R, RATIO, M, SEEDS, T_END, N_SAVE = 6, 3, 1.5, 12, 2, 150.0, 151
    CASES = [("Tsit5", 1e-6), ("Tsit5", 1e-8)]
else:
    raise ValueError(f"DEFLATION_NB_SIZE must be 'small' or 'full', got {SIZE!r}")
# full: an independent higher-order method; small: the same solver (one compilation, fast test)
REFERENCE = ("Dopri8", 1e-12) if SIZE == "full" else ("Tsit5", 1e-12)
SCALE, SEED = 1e-15, 0
REPEATS = 3  # timed solves per setting (the median is reported, the spread is drawn)

# %%
import functools
import json
import time
from pathlib import Path

import diffrax
import jax
import matplotlib.pyplot as plt
import numpy as np

import deflation as df
from deflation import plots
from deflation.stepping import stages_per_step

show = functools.partial(plots.show, prefix="solvers")  # display; PNG when DEFLATION_NB_FIGDIR is set


target = df.Target.geometric(D, R, ratio=RATIO)
W0 = df.sample_sphere_batch(jax.random.PRNGKey(SEED), range(SEEDS), D, M, SCALE)
ts = np.linspace(0.0, T_END, N_SAVE)
compiled = set()
RESULTS = {"size": SIZE}
t_start = time.perf_counter()


def solve(name, tol, repeats=1):
    """Run one (solver, tolerance) ``repeats`` times; compile first (untimed) so that the timing is
    of the solve. Returns the result and the wall times of the repeats."""
    solver = getattr(diffrax, name)()
    if name not in compiled:  # tolerances are traced: one compilation per solver
        jax.block_until_ready(df.gradient_flow(target, W0, ts, solver=solver, rtol=tol, atol=tol).loss)
        compiled.add(name)
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = df.gradient_flow(target, W0, ts, solver=solver, rtol=tol, atol=tol)
        jax.block_until_ready(out.loss)
        walls.append(time.perf_counter() - t0)
    assert not out.failed(), (name, tol, out.failed())
    return out, np.array(walls)


ref, ref_walls = solve(*REFERENCE)
ref_wall = float(ref_walls[0])
ref_disc, ref_loss = np.asarray(ref.discovery_time), np.asarray(ref.loss)
print(f"reference {REFERENCE}: {ref_wall:.2f} s, steps {np.asarray(ref.num_steps)}")
print("reference discovery times:", np.round(ref_disc, 4))

# %%
rows = []
above = ref_loss > 1e-10
for name, tol in CASES:
    out, walls = solve(name, tol, REPEATS)
    wall = float(np.median(walls))
    steps = int(np.asarray(out.num_steps).sum())
    err_disc = float(np.max(np.abs(np.asarray(out.discovery_time) - ref_disc)))
    err_loss = float(np.max(np.abs(np.log10(np.asarray(out.loss)[above] / ref_loss[above]))))
    rows.append(dict(solver=name, tol=tol, wall_s=wall, wall_min_s=float(walls.min()), wall_max_s=float(walls.max()),
                     steps=steps, n_evals=steps * stages_per_step(getattr(diffrax, name)()),
                     rejected=int(np.asarray(out.num_rejected_steps).sum()), err_disc=err_disc, err_loss_dex=err_loss))
print(f"{'solver':>7} {'tol':>7} {'wall s':>7} {'steps':>6} {'evals':>7} {'rej':>5} {'max |dt_disc|':>13} "
      f"{'loss err (dex)':>14}")
for r in rows:
    print(f"{r['solver']:>7} {r['tol']:>7.0e} {r['wall_s']:>7.2f} {r['steps']:>6} {r['n_evals']:>7} {r['rejected']:>5} "
          f"{r['err_disc']:>13.2e} {r['err_loss_dex']:>14.2e}")

# %% [markdown]
# ## Work-precision
# (a) and (b): error against cost, measured in vector-field evaluations (summed over the seeds;
# one line per solver, its points labelled by the tolerance; lower left is better). (c): what the
# wall time of one solve (all seeds) is made of: a straight-line fit of the median wall time
# against the evaluations splits it into a fixed per-call part (compilation excluded: event
# location, the loss at the save points, dispatch) and a part per evaluation; bars show the
# spread of the repeats.

# %%
marks = {"Bosh3": "v", "Tsit5": "o", "Dopri5": "s", "Dopri8": "D"}
tones = dict(zip(marks, plots.component_colors(len(marks))))
offsets = dict(zip(marks, [(4, 3), (4, -10), (-34, 3), (-34, -10)]))  # tolerance labels of different solvers apart
evals = np.array([r["n_evals"] for r in rows], dtype=float)
walls = np.array([r["wall_s"] for r in rows])
slope, intercept = np.polyfit(evals, walls, 1) if len(rows) >= 2 else (np.nan, np.nan)
spread = max(r["wall_max_s"] - r["wall_min_s"] for r in rows)
fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 4.8), layout="constrained")
for name in dict.fromkeys(r["solver"] for r in rows):
    sel = [r for r in rows if r["solver"] == name]
    x = [r["n_evals"] for r in sel]
    style = dict(marker=marks[name], color=tones[name], label=name)
    ax0.loglog(x, [max(r["err_disc"], 1e-14) for r in sel], "-", **style)
    ax1.loglog(x, [max(r["err_loss_dex"], 1e-14) for r in sel], "-", **style)
    ax2.errorbar(x, [r["wall_s"] for r in sel], ls="none", capsize=3, ms=6, **style,
                 yerr=[[r["wall_s"] - r["wall_min_s"] for r in sel], [r["wall_max_s"] - r["wall_s"] for r in sel]])
    for ax, key in ((ax0, "err_disc"), (ax1, "err_loss_dex")):
        for r in sel:
            ax.annotate(f"{r['tol']:.0e}", (r["n_evals"], max(r[key], 1e-14)), fontsize=7, xytext=offsets[name],
                        textcoords="offset points", color=tones[name])
ax0.set(xlabel="vector-field evaluations", ylabel="max |discovery time - reference|",
        title="(a) discovery times (Definition 1)")
ax1.set(xlabel="vector-field evaluations", ylabel=r"max $|\log_{10}$(loss / reference loss)| (dex)",
        title=r"(b) loss curve while the loss $> 10^{-10}$")
xs = np.linspace(0, evals.max() * 1.05, 50)
if np.isfinite(slope):
    ax2.plot(xs, intercept + slope * xs, "k:", lw=1,
             label=f"fit: {intercept:.2f} s + {1e3 * slope * 1e3:.2g} ms per 1000 evaluations")
ax2.set(xlabel="vector-field evaluations", ylabel=f"wall time of one solve (s), median of {REPEATS}",
        xlim=(0, evals.max() * 1.05), ylim=(0, 1.15 * max(r["wall_max_s"] for r in rows)),
        title="(c) wall time: a fixed cost per call + a cost per evaluation")
for ax in (ax0, ax1):
    plots.plain_log_ticks(ax.xaxis)
    plots.plain_log_ticks(ax.yaxis)
for ax in (ax0, ax1, ax2):
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=5 if ax is not ax2 else 3)
show(fig, "work_precision")
print(f"wall time per solve: {walls.min():.3g} to {walls.max():.3g} s over the settings (median of {REPEATS}); "
      f"largest spread of the repeats of one setting: {spread:.3g} s")
growth = slope * (evals.max() - evals.min())  # what the evaluations add across the settings, by the fit
print(f"straight-line fit: {intercept:.3g} s fixed + {1e3 * slope:.3g} ms per evaluation, i.e. {growth:+.3g} s "
      f"from the cheapest to the dearest setting")
print("wall-time differences between settings are "
      + ("within the noise of the repeats: use the evaluations to compare" if abs(growth) <= spread else
         "larger than the noise of the repeats"))
RESULTS.update(wall_fit_intercept_s=float(intercept), wall_fit_slope_s=float(slope), wall_repeat_spread_s=float(spread))

# %% [markdown]
# ## Which solver for which study
# The cell below picks, from the measured rows, the cheapest (fewest evaluations) setting that
# reaches a given accuracy of the discovery times. Rules of thumb that follow from how the
# studies use the results (check them against the table of your run):
#
# * **Monte Carlo over many seeds** (discovery probabilities, phase timing): discovery times to
#   ~$10^{-2}$ are plenty; take the cheapest setting that reaches that.
# * **Figure-quality loss curves** (loss on a log scale far below $10^{-10}$): the loss floor of a
#   run is set by the tolerance (see the `figure1` notebook), so use a tight tolerance
#   ($10^{-10}$ or below). Compare the solvers at equal cost (panels (a) and (b)), not at equal
#   tolerance: the same tolerance gives different solvers different errors.
# * **Reference solutions and tests**: Dopri8 at $10^{-12}$, as here.
#
# Wall time is not a useful way to choose between these settings at this size: panel (c) and the
# printed fit show how much of a solve's wall time is a fixed cost per call, the same for every
# solver and tolerance, and how much grows with the evaluations; compare that growth with the
# spread of the repeats (the noise of the machine). The evaluation counts are the cost measure
# that carries over to larger problems and other machines.

# %%
for target_err in (1e-2, 1e-4, 1e-6):
    good = [r for r in rows if r["err_disc"] <= target_err]
    if good:
        best = min(good, key=lambda r: r["n_evals"])
        print(f"discovery times to {target_err:g}: cheapest is {best['solver']} at tol {best['tol']:g} "
              f"({best['n_evals']} evaluations, {best['wall_s']:.2f} s)")
    else:
        print(f"discovery times to {target_err:g}: none of the tried settings")
RESULTS.update(rows=rows, reference=dict(solver=REFERENCE[0], tol=REFERENCE[1], wall_s=ref_wall),
               wall_s=time.perf_counter() - t_start)
if os.environ.get("DEFLATION_NB_RESULTS"):
    Path(os.environ["DEFLATION_NB_RESULTS"]).write_text(json.dumps(RESULTS, default=float))
print(f"wall time {RESULTS['wall_s']:.1f} s")
