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
# above $10^{-10}$, the wall time and the number of vector-field evaluations. Timings here come
# from one run on whatever machine executes the notebook: read them as relative, not absolute.

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


def solve(name, tol):
    """Run one (solver, tolerance); compile first (untimed) so that the timing is of the solve."""
    solver = getattr(diffrax, name)()
    if name not in compiled:  # tolerances are traced: one compilation per solver
        jax.block_until_ready(df.gradient_flow(target, W0, ts, solver=solver, rtol=tol, atol=tol).loss)
        compiled.add(name)
    t0 = time.perf_counter()
    out = df.gradient_flow(target, W0, ts, solver=solver, rtol=tol, atol=tol)
    jax.block_until_ready(out.loss)
    wall = time.perf_counter() - t0
    assert not out.failed(), (name, tol, out.failed())
    return out, wall


ref, ref_wall = solve(*REFERENCE)
ref_disc, ref_loss = np.asarray(ref.discovery_time), np.asarray(ref.loss)
print(f"reference {REFERENCE}: {ref_wall:.2f} s, steps {np.asarray(ref.num_steps)}")
print("reference discovery times:", np.round(ref_disc, 4))

# %%
rows = []
above = ref_loss > 1e-10
for name, tol in CASES:
    out, wall = solve(name, tol)
    steps = int(np.asarray(out.num_steps).sum())
    err_disc = float(np.max(np.abs(np.asarray(out.discovery_time) - ref_disc)))
    err_loss = float(np.max(np.abs(np.log10(np.asarray(out.loss)[above] / ref_loss[above]))))
    rows.append(dict(solver=name, tol=tol, wall_s=wall, steps=steps, n_evals=steps * stages_per_step(getattr(diffrax, name)()),
                     rejected=int(np.asarray(out.num_rejected_steps).sum()), err_disc=err_disc, err_loss_dex=err_loss))
print(f"{'solver':>7} {'tol':>7} {'wall s':>7} {'steps':>6} {'evals':>7} {'rej':>5} {'max |dt_disc|':>13} {'loss err (dex)':>14}")
for r in rows:
    print(f"{r['solver']:>7} {r['tol']:>7.0e} {r['wall_s']:>7.2f} {r['steps']:>6} {r['n_evals']:>7} {r['rejected']:>5} "
          f"{r['err_disc']:>13.2e} {r['err_loss_dex']:>14.2e}")

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2))
marks = {"Bosh3": "v", "Tsit5": "o", "Dopri5": "s", "Dopri8": "D"}
for name in dict.fromkeys(r["solver"] for r in rows):
    sel = [r for r in rows if r["solver"] == name]
    for ax, x in ((ax0, "wall_s"), (ax1, "n_evals")):
        ax.loglog([r[x] for r in sel], [max(r["err_disc"], 1e-14) for r in sel], marks[name] + "-", label=name)
        for r in sel:
            ax.annotate(f"{r['tol']:.0e}", (r[x], max(r["err_disc"], 1e-14)), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
ax0.set(xlabel="wall time (s)", ylabel="max error of discovery times", title="work-precision: wall time")
ax1.set(xlabel="vector-field evaluations", title="work-precision: evaluations")
ax0.legend(fontsize=8)
fig.tight_layout()
show(fig, "work_precision")

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
#   ($10^{-10}$ or below); compare Tsit5 and Dopri8 at $10^{-10}$ in the table: the higher order
#   pays off in evaluations as the tolerance tightens.
#
# At these sizes one solve takes about a second and the wall time includes fixed per-call work
# (event location, loss at the save points) and the noise of a shared machine; the
# evaluation counts are the more robust measure of cost.
# * **Reference solutions and tests**: Dopri8 at $10^{-12}$, as here.

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
