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
# # How long are the plateaus?
#
# The paper splits each epoch into Phase 1 (components are small and follow the tensor power
# dynamics until one of them *discovers* a ground-truth direction) and Phase 2 (the discovered
# direction is *fitted*). Its time scales are stated up to constants:
#
# * **Lemma 4**: Phase 1 lasts $t_1 = \Theta(d/(\beta\log d)) + \Theta(d/(\beta\log^3 d)) +
#   \Theta(\log(d/\alpha)/\beta)$;
# * **Lemma 7**: a discovered component is fitted after $O\big((\log(1/\delta_1) + \log(1/\lambda))/a_k\big)$;
# * **Section 3** (growth-rate heuristic): while $T^* - T \approx T^*$,
#   $\frac{d w_i^2/dt}{w_i^2} \approx 8 a_i \bar w_i^2 - 4\sum_j a_j \bar w_j^4$.
#
# Here we measure discovery and fit times (Definition 1) with `deflation.gradient_flow` while
# varying $\delta_0$, $a_i$ (through the ratio $a_i/a_{i+1}$), $d$, $m$, $\lambda$ and
# $\delta_1$, fit slopes on log-log axes, and put them next to these statements.
#
# Two exact consequences of the log-norm form of the flow (`deflation.dynamics`:
# $d\log\|w\|/dt = 2R(\bar w^{\otimes 4}) - \lambda$) guide the reading:
# once a column is aligned with $e_k$ while $e_k$ is unfitted, its norm grows like
# $e^{2a_k t}$; and a column with squared correlation $x = \bar w_k^2$ aligns, by the Section 3
# heuristic with one dominant coordinate ($dx/dt \approx 8a_k x^2(1-x)$), losing
#
# $$\tau_{\rm align}(x_0) = \frac{1/x_0 - 1 + \log(1/x_0)}{8 a_k}$$
#
# time units against pure $e^{2a_k t}$ growth. So the heuristic predicts
# $t_{\rm disc} \approx \log(\delta_1/\delta_0)/(2a_k) + \tau_{\rm align}(x_0^*)$ with $x_0^*$ the
# best initial correlation, and a fit $\hat a_k$ that is logistic with rate $4a_k$.

# %% tags=["parameters"]
import os

SIZE = os.environ.get("DEFLATION_NB_SIZE", "full")
if SIZE == "full":
    D, R, RATIO, M, SEEDS = 10, 5, 1.2, 50, 4  # base setting (Figure 1's, with lambda > 0)
    DELTA0S = [1e-5, 1e-10, 1e-15, 1e-30, 1e-60]
    RATIOS = [1.1, 1.2, 1.5, 2.0, 3.0]
    LAMS = [1e-2, 1e-3, 1e-4, 1e-5]
    DELTA1S = [1e-2, 1e-3, 1e-4, 1e-6]
    DS, MS = [10, 20, 40, 80], [5, 20, 200]
elif SIZE == "small":
    D, R, RATIO, M, SEEDS = 6, 3, 1.5, 12, 2
    DELTA0S = [1e-5, 1e-15, 1e-30]
    RATIOS = [1.2, 2.0]
    LAMS = [1e-2, 1e-4]
    DELTA1S = [1e-2, 1e-4]
    DS, MS = [6, 12], [5, 20]
else:
    raise ValueError(f"DEFLATION_NB_SIZE must be 'small' or 'full', got {SIZE!r}")
LAM, DELTA0, DELTA1, ALPHA = 1e-3, 1e-15, 1e-3, 0.1  # base values of the swept parameters
TOL = 1e-9
SEED = 1

# %%
import functools
import json
import time
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np

import deflation as df
from deflation import plots
from deflation.montecarlo import Study, run_study

show = functools.partial(plots.show, prefix="phase_timing")  # display; PNG when DEFLATION_NB_FIGDIR is set


def loglog_slope(x, y):
    """Least-squares slope and intercept of log y against log x (finite points only)."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    slope, icpt = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(icpt)


def tau_align(x0, a):
    """Section 3 heuristic: time lost while a column with squared correlation x0 aligns."""
    return (1.0 / x0 - 1.0 + np.log(1.0 / x0)) / (8.0 * a)


STUDIES = Path(os.environ.get("DEFLATION_NB_STUDIES", "_build/studies"))
STUDIES.mkdir(parents=True, exist_ok=True)


def study(name, experiment, target, **params):
    """Run (or reuse) a deflation.montecarlo study: SEEDS seeds, base parameters overridden by
    ``params`` (a list sweeps a parameter; several make a grid). Seed k starts from the same
    directions at every grid point (common random numbers), as in a paired comparison."""
    base = dict(d=D, m=M, delta0=DELTA0, delta1=DELTA1, alpha=ALPHA, lam=LAM, rtol=TOL, atol=TOL)
    s = Study(experiment, SEEDS, target, {**base, **params}, key=SEED)
    ds = run_study(s, STUDIES / s.store_name(f"phase_timing_{name}"), progress=False, summary=False)
    assert (ds["status"].values == 0).all(), f"a solve failed in {name}"
    return ds


RESULTS = {"size": SIZE}
t_start = time.perf_counter()
target = df.Target.geometric(D, R, ratio=RATIO)
a = np.asarray(target.a)
print("base a =", np.round(a, 4), f"; d={D}, m={M}, lambda={LAM:g}, delta0={DELTA0:g}, delta1={DELTA1:g}")

# %% [markdown]
# ## 1. Phase 1 is mostly norm growth: discovery time against $\log(1/\delta_0)$
# Same directions, initial norm $\delta_0$ from $10^{-5}$ down to $10^{-60}$ (log-norm
# coordinates make that exact). The growth-rate heuristic predicts slope
# $1/(2a_k)$ for the discovery time of component $k$ against $\log(\delta_1/\delta_0)$.

# %%
def horizon(a_vec, log_d1_over_d0, lam=LAM):
    """Long enough to discover and fit the smallest component (heuristic estimate x 1.5 + margin)."""
    return 1.5 * (log_d1_over_d0 / (2 * a_vec.min()) + np.log(1 / lam) / a_vec.min()) + 20


ds = study("delta0", "flow", {"kind": "basis", "ratio": RATIO, "r": R}, delta0=DELTA0S,
           horizon=horizon(a, np.log(DELTA1 / min(DELTA0S))))
disc_d0 = ds["discovery_time"].values  # (n_delta0, SEEDS, R)
L = np.log(DELTA1 / np.array(DELTA0S))
slopes_d0 = np.array([np.polyfit(L, disc_d0[:, :, k].mean(axis=1), 1)[0] for k in range(R)])
for k in range(R):
    print(f"component {k + 1}: slope {slopes_d0[k]:.3f}  vs 1/(2 a_k) = {1 / (2 * a[k]):.3f}"
          f"  (ratio {slopes_d0[k] * 2 * a[k]:.3f})")

colors = plt.cm.viridis(np.linspace(0, 0.9, R))
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
for k in range(R):
    for b in range(SEEDS):
        ax0.plot(L, disc_d0[:, b, k], "o", color=colors[k], ms=3)
    ax0.plot(L, L / (2 * a[k]), "-", color=colors[k], lw=0.8, label=f"$e_{k + 1}$: $\\log(\\delta_1/\\delta_0)/(2a_k)$")
    ax1.plot(L, disc_d0[:, :, k].mean(axis=1) - L / (2 * a[k]), "o-", color=colors[k], label=f"$e_{k + 1}$")
ax0.set(xlabel=r"$\log(\delta_1/\delta_0)$", ylabel="discovery time",
        title="discovery time (dots) vs pure growth (lines)")
ax0.legend(fontsize=9)
ax1.set(xlabel=r"$\log(\delta_1/\delta_0)$", ylabel=r"$t_{\rm disc} - \log(\delta_1/\delta_0)/(2a_k)$",
        title="excess over pure growth (seed mean)")
ax1.legend(fontsize=9)
fig.tight_layout()
show(fig, "delta0")
excess_d0 = disc_d0.mean(axis=1) - L[:, None] / (2 * a[None, :])  # (n_delta0, R)
for k in range(R):
    print(f"component {k + 1}: excess over pure growth {excess_d0[0, k]:.2f} at log(delta1/delta0) = {L[0]:.0f}, "
          f"{excess_d0[-1, k]:.2f} at {L[-1]:.0f} (x{excess_d0[-1, k] / excess_d0[0, k]:.2f})")
RESULTS.update(delta0s=DELTA0S, disc_vs_delta0=disc_d0.tolist(), slope_vs_log_delta0=slopes_d0.tolist(),
               slope_ratio_to_heuristic=(slopes_d0 * 2 * a).tolist())

# %% [markdown]
# **Reading.** Each component's discovery time grows linearly in $\log(1/\delta_0)$ and the
# printed slopes are close to $1/(2a_k)$ (ratio near 1 means the heuristic's exponential growth
# rate $2a_k$ of $\|w\|$ is what sets the length of Phase 1 for that component). The excess in
# the right panel is small (a few time units against discovery times of tens to hundreds), but it
# is not constant: it grows linearly in $\log(\delta_1/\delta_0)$, fastest for the smallest
# components (the printed growth over the range: for the smallest component it about doubles).
# That drift is the fraction-of-a-percent slope excess printed above: a growth rate a little below
# $2a_k$, the time the later components' columns spend competing with already-growing ones. The
# intercept (the excess at small $\log(\delta_1/\delta_0)$) is the alignment time.
# In Lemma 4 the growth part is the $\Theta(\log(d/\alpha)/\beta)$ term (with the paper's
# $\delta_0 = \Theta(\delta_1\alpha/\log^{1/2}d)$, $\log(\delta_1/\delta_0) \approx \log(1/\alpha)$);
# at Figure 1's $\delta_0 = 10^{-15}$ it dominates Phase 1.

# %% [markdown]
# ## 2. Discovery time against $a_k$: sweeping the ratio $a_i/a_{i+1}$
# Targets $a_i \propto \text{ratio}^{-i}$ (sum 1) for several ratios; every component of every
# ratio gives one point (discovery time vs $1/a_k$). Growth-rate heuristic: slope 1 on log-log
# axes, $t_{\rm disc} \approx \log(\delta_1/\delta_0)/(2 a_k)$.

# %%
pts = []  # (ratio, k, a_k, mean discovery, mean fit)
a_max_ratio = np.asarray(df.Target.geometric(D, R, ratio=max(RATIOS)).a)
ds = study("ratio", "flow", {"kind": "basis", "ratio": RATIOS, "r": R},
           horizon=horizon(a_max_ratio, np.log(DELTA1 / DELTA0)))
for ratio in RATIOS:
    point = ds.sel(ratio=ratio)
    ak = point["a"].values
    dsc, ft = point["discovery_time"].values, point["fit_time"].values
    for k in range(R):
        pts.append((ratio, k, ak[k], np.nanmean(np.where(np.isfinite(dsc[:, k]), dsc[:, k], np.nan)),
                    np.nanmean(np.where(np.isfinite(ft[:, k]), ft[:, k], np.nan))))
pts = np.array(pts)
slope_a, icpt_a = loglog_slope(1 / pts[:, 2], pts[:, 3])
pred = np.log(DELTA1 / DELTA0) / (2 * pts[:, 2])
print(f"log-log slope of discovery time vs 1/a_k: {slope_a:.3f} (heuristic: 1)")
print(f"measured / heuristic discovery time: median {np.nanmedian(pts[:, 3] / pred):.3f}, "
      f"range [{np.nanmin(pts[:, 3] / pred):.3f}, {np.nanmax(pts[:, 3] / pred):.3f}]")
fig, ax = plt.subplots(figsize=(6, 4.3))
for ratio in RATIOS:
    sel = pts[:, 0] == ratio
    ax.loglog(1 / pts[sel, 2], pts[sel, 3], "o", label=f"ratio {ratio:g}")
xs = np.geomspace((1 / pts[:, 2]).min(), (1 / pts[:, 2]).max(), 50)
ax.loglog(xs, np.log(DELTA1 / DELTA0) / 2 * xs, "k--", lw=1, label=r"$\log(\delta_1/\delta_0)/(2a_k)$")
ax.loglog(xs, np.exp(icpt_a) * xs**slope_a, "k:", lw=1, label=f"fit: slope {slope_a:.2f}")
ax.set(xlabel=r"$1/a_k$", ylabel="discovery time (seed mean)", title="discovery time vs component size")
ax.legend(fontsize=9)
fig.tight_layout()
for axis in (ax.xaxis, ax.yaxis):
    plots.plain_log_ticks(axis)
show(fig, "ratio")
RESULTS.update(ratio_points=pts.tolist(), slope_disc_vs_inv_a=slope_a)

# %% [markdown]
# **Reading.** The discovery time of component $k$ depends on $a_k$ almost only through
# $1/a_k$, whatever the ratio (all ratios fall on one line): in plain gradient flow every
# component grows *from the start* at its own rate $2a_k$; the order of discovery (largest
# first) comes from these rates, not from waiting for the previous fit. The printed ratio
# measured/heuristic shows how close the $\log(\delta_1/\delta_0)/(2a_k)$ line is; where it
# departs from 1 the alignment and competition terms of section 1 matter.

# %% [markdown]
# ## 3. Phase 1 against $d$ and $m$ (Lemma 4)
# To isolate the alignment part we use the tensor power dynamics (paper Eq. 1): a `phase1` study
# over the grid $d \times m$, which governs Phase 1 until the first discovery (the columns are
# independent there). We report the *alignment excess* $t_{\rm disc}(e_1) - \log(\delta_1/\delta_0)/(2a_1)$
# and compare it with Lemma 4's $d/(\beta\log d)$ (constant fitted) and with the heuristic
# $\tau_{\rm align}(x_0^*)$ computed from the best initial squared correlation $x_0^*$ with $e_1$ of
# each run (the study's initial directions are `deflation.sample_sphere_batch`'s with the same key).

# %%
t_end_frozen = 1.5 * np.log(DELTA1 / DELTA0) / (2 * a[0]) + 40
ds = study("d_m", "phase1", {"kind": "basis", "a": a.tolist()}, d=DS, m=MS, lam=0.0, horizon=t_end_frozen)
excess = np.full((len(DS), len(MS), SEEDS), np.nan)
heur = np.full_like(excess, np.nan)
for i, d in enumerate(DS):
    for j, m in enumerate(MS):
        t1 = ds["discovery_time"].sel(d=d, m=m).values[:, 0]  # discovery of e_1
        excess[i, j] = np.where(np.isfinite(t1), t1 - np.log(DELTA1 / DELTA0) / (2 * a[0]), np.nan)
        dirs = np.asarray(df.sample_sphere_batch(jax.random.PRNGKey(SEED), range(SEEDS), d, m, 1.0))
        x0 = (dirs[:, 0, :] ** 2).max(axis=1)  # best initial squared correlation with e_1
        heur[i, j] = np.where(np.isfinite(t1), tau_align(x0, a[0]), np.nan)

mean_ex = np.nanmean(excess, axis=2)
slopes_d = [loglog_slope(DS, mean_ex[:, j])[0] for j in range(len(MS))]
lemma4 = np.array(DS) / np.log(DS)
slope_lemma4 = loglog_slope(DS, lemma4)[0]
print("alignment excess (seed mean), rows d =", DS, "columns m =", MS)
print(np.round(mean_ex, 2))
print("log-log slope in d for each m:", np.round(slopes_d, 2), f"; d/log d over this range: {slope_lemma4:.2f}")
ok = np.isfinite(excess) & np.isfinite(heur)
print(f"measured / heuristic tau_align(x0*): median {np.median(excess[ok] / heur[ok]):.2f}, "
      f"10-90% [{np.quantile(excess[ok] / heur[ok], 0.1):.2f}, {np.quantile(excess[ok] / heur[ok], 0.9):.2f}]"
      f" over {ok.sum()} runs; {np.isnan(excess).sum()} runs had no column reach e_1")

# %%
fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 4.3))
cm = plt.cm.plasma(np.linspace(0, 0.85, len(MS)))
for j, m in enumerate(MS):
    ax0.loglog(DS, mean_ex[:, j], "o-", color=cm[j], label=f"m={m} (slope {slopes_d[j]:.2f})")
c4 = np.nanmedian(mean_ex / lemma4[:, None])
ax0.loglog(DS, c4 * lemma4, "k--", label=r"$c\,d/\log d$ (Lemma 4, c fitted)")
ax0.set(xlabel="d", ylabel="alignment excess", title="Phase 1 excess vs d")
ax0.legend(fontsize=9)
cd = plt.cm.viridis(np.linspace(0, 0.85, len(DS)))
for i, d in enumerate(DS):
    ax1.semilogx(MS, mean_ex[i] * np.log(MS) / d, "o-", color=cd[i], label=f"d={d}")
ax1.set(xlabel="m", ylabel=r"excess $\times \log m / d$", title=r"excess vs m: flat means $\propto d/\log m$")
ax1.legend(fontsize=9)
ax2.loglog(heur[ok], excess[ok], ".", ms=4)
lim = [min(heur[ok].min(), excess[ok].min()), max(heur[ok].max(), excess[ok].max())]
ax2.loglog(lim, lim, "k--", lw=1, label="y = x")
ax2.set(xlabel=r"heuristic $\tau_{\rm align}(x_0^*)$", ylabel="measured excess", title="per run: heuristic vs measured")
ax2.legend(fontsize=9)
fig.tight_layout()
show(fig, "d_m")
RESULTS.update(ds=DS, ms=MS, alignment_excess=mean_ex.tolist(), slope_excess_vs_d=slopes_d,
               slope_lemma4_shape=slope_lemma4,
               excess_over_heuristic_median=float(np.median(excess[ok] / heur[ok])))

# %% [markdown]
# **Reading.** The alignment excess grows with $d$ and shrinks with $m$. The best of $m$
# random columns has $x_0^* \approx 2\log m / d$, so the heuristic predicts an excess of order
# $d/(16\, a_1 \log m)$: linear in $d$ at fixed $m$ (compare the printed slopes with 1, and with the
# slope of $d/\log d$ over the same range), and $\propto 1/\log m$ at fixed $d$ (middle panel
# roughly flat). At the smallest $m$ the best column is often a poor one (or none reaches
# $e_1$), so that row is noisy and its slope is not informative. Lemma 4's $d/(\beta\log d)$ is the same expression with
# $m = \mathrm{poly}(d)$, i.e. $\log m \asymp \log d$: at fixed $m$ the $\log d$ in the denominator is not visible, and
# the $\log$ comes from $m$. The right panel checks the heuristic run by run; the printed median
# ratio is the constant the $\Theta(\cdot)$ hides (competition from other directions makes
# the measured excess deviate, most where $x_0^*$ is small).

# %% [markdown]
# ## 4. Fitting time (Lemma 7): $t_{\rm fit} - t_{\rm disc}$ against $\delta_1$ and $\lambda$
# With $\lambda > 0$ component $k$ is *fitted* when $a_k - \hat a_k \le 2\lambda$ (Definition 1).
# Lemma 7: $d\hat a_k/dt \ge (2(a_k - \hat a_k) - \lambda - O(\alpha^2))\hat a_k$, hence
# $t_{\rm fit} - t_{\rm disc} = O((\log(1/\delta_1) + \log(1/\lambda))/a_k)$. The exact flow has
# $d\log\|w\|^2/dt = 4R(\bar w^{\otimes 4}) - 2\lambda$, i.e. a logistic $\hat a_k$ with rate
# $4a_k$ from $\delta_1^2$ to $a_k - 2\lambda$, which predicts
# $a_k(t_{\rm fit}-t_{\rm disc}) \approx \tfrac12\log(1/\delta_1) + \tfrac14\log(1/\lambda) + c$.
# We fit $a_k (t_{\rm fit} - t_{\rm disc}) = c_0 + c_1\log(1/\delta_1) + c_2\log(1/\lambda)$ over all
# components, $\lambda$ and $\delta_1$.

# %%
rows = []  # (lam, delta1, k, a_k, mean fit - disc)
ds = study("lemma7", "flow", {"kind": "basis", "ratio": RATIO, "r": R}, lam=LAMS, delta1=DELTA1S,
           horizon=horizon(a, np.log(max(DELTA1S) / DELTA0), min(LAMS)))
for lam in LAMS:
    for d1 in DELTA1S:
        point = ds.sel(lam=lam, delta1=d1)  # by label: the grid's dimension order is the study's
        gap = point["fit_time"].values - point["discovery_time"].values
        for k in range(R):
            g = gap[:, k][np.isfinite(gap[:, k])]
            rows.append((lam, d1, k, a[k], g.mean() if g.size else np.nan))
rows = np.array(rows)
ok7 = np.isfinite(rows[:, 4])
X = np.column_stack([np.ones(ok7.sum()), np.log(1 / rows[ok7, 1]), np.log(1 / rows[ok7, 0])])
coef, *_ = np.linalg.lstsq(X, rows[ok7, 3] * rows[ok7, 4], rcond=None)
resid7 = rows[ok7, 3] * rows[ok7, 4] - X @ coef
print(f"a_k (t_fit - t_disc) = {coef[0]:.2f} + {coef[1]:.3f} log(1/delta1) + {coef[2]:.3f} log(1/lambda)"
      f"   (logistic heuristic: 1/2 and 1/4); rms residual {np.sqrt(np.mean(resid7**2)):.3f}")
scale7 = (np.log(1 / rows[:, 1]) + np.log(1 / rows[:, 0])) / rows[:, 3]
slope7, icpt7 = loglog_slope(scale7[ok7], rows[ok7, 4])
print(f"log-log slope of (t_fit - t_disc) against Lemma 7's (log 1/delta1 + log 1/lambda)/a_k: {slope7:.3f}")

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.3))
for k in range(R):
    sel = ok7 & (rows[:, 2] == k)
    ax0.loglog(scale7[sel], rows[sel, 4], "o", color=colors[k], label=f"$e_{k + 1}$")
xs = np.geomspace(scale7[ok7].min(), scale7[ok7].max(), 50)
ax0.loglog(xs, np.exp(icpt7) * xs**slope7, "k:", label=f"fit: slope {slope7:.2f}")
ax0.set(xlabel=r"Lemma 7 scale $(\log(1/\delta_1)+\log(1/\lambda))/a_k$", ylabel=r"$t_{\rm fit}-t_{\rm disc}$",
        title="fitting time vs Lemma 7")
ax0.legend(fontsize=9)
pred7 = (0.5 * np.log(1 / rows[:, 1]) + 0.25 * np.log(1 / rows[:, 0])) / rows[:, 3]
ax1.plot(pred7[ok7], rows[ok7, 4], "o", ms=4, label=r"measured (seed mean per $k$, $\lambda$, $\delta_1$)")
ax1.plot(pred7[ok7], pred7[ok7] + coef[0] / rows[ok7, 3], "k.", ms=2, label="+ fitted constant $c_0/a_k$")
lim = [0, 1.05 * max(pred7[ok7].max(), rows[ok7, 4].max())]
ax1.plot(lim, lim, "k--", lw=1, label="y = x")
ax1.set(xlabel=r"$(\frac{1}{2}\log(1/\delta_1)+\frac{1}{4}\log(1/\lambda))/a_k$", ylabel=r"$t_{\rm fit}-t_{\rm disc}$",
        title="logistic heuristic")
ax1.legend(fontsize=9)
fig.tight_layout()
for axis in (ax0.xaxis, ax0.yaxis):
    plots.plain_log_ticks(axis)
show(fig, "lemma7")
RESULTS.update(lemma7_rows=rows.tolist(), lemma7_coef=coef.tolist(), lemma7_slope=slope7)

# %% [markdown]
# **Reading.** Fitting time is proportional to $1/a_k$ and grows linearly in $\log(1/\delta_1)$ and
# $\log(1/\lambda)$, as Lemma 7 says. The constants are not the same for the two logarithms:
# the fitted $c_1$ and $c_2$ (printed) are to be compared with the logistic values $1/2$ and
# $1/4$: leaving the threshold $\delta_1$ costs twice as much per e-fold as approaching the
# regularized optimum within $2\lambda$. Lemma 7's rate $2(a_k-\hat a_k)$ is a lower bound; the
# exact rate is $4(a_k-\hat a_k)$, so the bound overestimates the fitting time by about 2.
#
# ## Summary
# The cell below prints the headline numbers from the runs above.

# %%
summary = {
    "slope of t_disc vs log(1/delta0), times 2 a_k (heuristic 1)": np.round(slopes_d0 * 2 * a, 3).tolist(),
    "log-log slope of t_disc vs 1/a_k (heuristic 1)": round(slope_a, 3),
    "log-log slope of alignment excess vs d per m (heuristic 1)": np.round(slopes_d, 2).tolist(),
    "same slope for d/log d (Lemma 4 at fixed m)": round(slope_lemma4, 2),
    "median measured/heuristic alignment excess": round(RESULTS["excess_over_heuristic_median"], 2),
    "Lemma 7 fit c1, c2 (logistic 1/2, 1/4)": np.round(coef[1:], 3).tolist(),
}
for k, v in summary.items():
    print(f"{k}: {v}")
RESULTS["wall_s"] = time.perf_counter() - t_start
if os.environ.get("DEFLATION_NB_RESULTS"):
    Path(os.environ["DEFLATION_NB_RESULTS"]).write_text(json.dumps(RESULTS, default=float))
print(f"wall time {RESULTS['wall_s']:.1f} s")
