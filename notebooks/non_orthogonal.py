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
# # Non-orthogonal ground truth: does gradient flow still follow the deflation path?
#
# The paper's guarantee is for orthogonal $T^*$. Its Section 6 names the limitation: *"for
# general tensors, overparametrized gradient flow may have a very different behavior compared to
# the greedy low-rank procedure, as it is possible for two large component in the same direction
# to split into two different directions"* (Appendix E).
#
# We take the simplest non-orthogonal target, two components of equal weight at angle $\theta$,
# $$T^* = \tfrac12 u_1^{\otimes 4} + \tfrac12 u_2^{\otimes 4},\qquad \langle u_1,u_2\rangle=\cos\theta,$$
# run over-parametrized gradient flow from a small initialization, and compare it with the tensor
# deflation baseline (Algorithm 1 with the tensor power method) on the same target. We follow the
# direction of every column in the $(u_1,u_2)$ plane (angle measured from $u_1$, modulo $180°$
# since $w$ and $-w$ give the same term) and vary $\theta$.

# %% tags=["parameters"]
import os

SIZE = os.environ.get("DEFLATION_NB_SIZE", "full")
if SIZE == "full":
    D, M, SEEDS, T_END, N_SAVE = 5, 20, 3, 1500.0, 1501
    ANGLES = [5, 10, 15, 20, 30, 45, 60, 90]  # degrees
    SHOW_ANGLE = 15
elif SIZE == "small":
    D, M, SEEDS, T_END, N_SAVE = 4, 10, 2, 300.0, 301
    ANGLES = [30, 90]
    SHOW_ANGLE = 30
else:
    raise ValueError(f"DEFLATION_NB_SIZE must be 'small' or 'full', got {SIZE!r}")
WEIGHTS = (0.5, 0.5)
SCALE = 1e-10
BIG = 0.05  # a column counts as "large" when it holds >= 5% of the model's total |w|^2
SEED = 2

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
from deflation.baselines import tensor_power_deflation


show = functools.partial(plots.show, prefix="non_orthogonal")  # display; PNG when DEFLATION_NB_FIGDIR is set


def make_target(deg):
    th = np.deg2rad(deg)
    U = np.zeros((D, 2))
    U[0, 0], U[0, 1], U[1, 1] = 1.0, np.cos(th), np.sin(th)
    return df.Target(np.array(WEIGHTS), U)


def plane_angle(W, deg):
    """Angle (degrees) of each column in the (e1, e2) plane, modulo 180, centred on the bisector."""
    ang = np.degrees(np.arctan2(W[..., 1, :], W[..., 0, :]))
    return (ang - deg / 2 + 90) % 180 - 90 + deg / 2


key = jax.random.PRNGKey(SEED)
W0 = df.sample_sphere_batch(key, range(SEEDS), D, M, SCALE)
ts = np.linspace(0.0, T_END, N_SAVE)
RESULTS = {"size": SIZE, "angles": ANGLES}
t_start = time.perf_counter()


def analyse(deg, flow):
    """Per seed: the merged-then-split diagnosis and the time of the split."""
    W = np.asarray(flow.W)  # (B, K, d, m)
    omega = (W**2).sum(axis=2)
    ang = plane_angle(W, deg)
    big = omega >= BIG * omega.sum(axis=-1, keepdims=True)
    spread = np.where(big, ang, -np.inf).max(-1) - np.where(big, ang, np.inf).min(-1)  # (B, K)
    total = omega.sum(-1)
    out = []
    for b in range(W.shape[0]):
        k_half = int(np.argmax(total[b] >= 0.5 * sum(WEIGHTS)))  # the first big component has formed
        merged = spread[b, k_half] < deg / 3
        final = ang[b, -1][big[b, -1]]
        near1, near2 = np.any(np.abs(final) < deg / 3), np.any(np.abs(final - deg) < deg / 3)
        split = bool(merged and near1 and near2)
        k_split = k_half + int(np.argmax(spread[b, k_half:] > deg / 2)) if split else None
        out.append(dict(merged=bool(merged), split=split, t_half=float(ts[k_half]),
                        t_split=float(ts[k_split]) if split else float("nan")))
    return out, ang, omega, big


# %% [markdown]
# ## One angle in detail
# Left: the loss, with the deflation baseline's levels after one and two components. Middle: the
# angle of every column in the $(u_1,u_2)$ plane (bold: the large ones), with $u_1$ at $0°$,
# $u_2$ at $\theta$ and the baseline's first component. Right: the squared norm of each column.

# %%
target = make_target(SHOW_ANGLE)
flow = df.gradient_flow(target, W0, ts, precise_loss=False)
assert not flow.failed(), flow.failed()
diag, ang, omega, big = analyse(SHOW_ANGLE, flow)
baseline = tensor_power_deflation(target, jax.random.fold_in(key, 10_000), 2, iterations=100)
weights, V = np.asarray(baseline.weights), np.asarray(baseline.directions)
levels = list(0.5 * np.concatenate([[float(target.norm())], np.asarray(baseline.residual_norm)]) ** 2)
base_ang = plane_angle(V, SHOW_ANGLE)
print(f"theta = {SHOW_ANGLE} deg: baseline components at {np.round(base_ang, 2)} deg with weights {np.round(weights, 4)}")
print(f"deflation loss levels after 0, 1, 2 components: {np.array(levels)}")
for b, dg in enumerate(diag):
    print(f"seed {b}: {dg}; final loss {float(flow.loss[b, -1]):.3g}")

b = 0
fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 4.3))
ax0.semilogy(ts, np.asarray(flow.loss[b]), label="gradient flow")
for k, lev in enumerate(levels):
    ax0.axhline(lev, color="0.4", ls="--", lw=0.8)
    ax0.text(ts[-1], lev, f"deflation, k={k}", ha="right", va="bottom" if k != 2 else "top", fontsize=8)
ax0.set(xlabel="t", ylabel="loss", title=rf"loss, $\theta = {SHOW_ANGLE}°$ (seed {b})")
for j in range(M):
    lw = np.where(big[b, :, j], 2.0, 0.4)
    ax1.scatter(ts, ang[b, :, j], s=lw, color=plt.cm.tab20(j % 20))
for y, lab in [(0, "$u_1$"), (SHOW_ANGLE, "$u_2$")]:
    ax1.axhline(y, color="k", lw=0.8)
    ax1.text(ts[-1], y, lab, ha="right", va="bottom")
ax1.axhline(base_ang[0], color="r", ls="--", lw=0.8, label="deflation: 1st component")
ax1.set_ylim(-1.5 * SHOW_ANGLE, 2.5 * SHOW_ANGLE)
ax1.set(xlabel="t", ylabel="angle from $u_1$ in the plane (deg)", title="column directions (bold: large)")
ax1.legend(fontsize=8, loc="lower right")
ax2.semilogy(ts, omega[b], lw=0.8)
ax2.set(xlabel="t", ylabel=r"$\|w_j\|^2$", title="column norms", ylim=(1e-6, 1))
if diag[b]["split"]:
    for ax in (ax1, ax2):
        ax.axvline(diag[b]["t_split"], color="m", ls=":", label="split")
fig.tight_layout()
show(fig, "detail")

# %% [markdown]
# What to look for: the loss first drops to the deflation level after *one* component - the
# large columns all point along one direction close to the baseline's first component, between
# $u_1$ and $u_2$ (the best rank-1 approximation of $T^*$ for a small angle). The greedy deflation
# process then adds a second, small component and stops at its level after two components. The
# over-parametrized flow instead (when the printed diagnosis says `split=True`) splits the
# large group: some of its columns turn towards $u_1$, others towards $u_2$, and the loss falls
# far below anything the two-step deflation reaches. This is the behaviour Section 6 describes:
# the flow leaves the greedy path.

# %% [markdown]
# ## How the behaviour changes with the angle

# %%
rows = []
for deg in ANGLES:
    tg = make_target(deg)
    fl = flow if deg == SHOW_ANGLE else df.gradient_flow(tg, W0, ts, precise_loss=False)
    assert not fl.failed(), fl.failed()
    dg, *_ = analyse(deg, fl)
    base = tensor_power_deflation(tg, jax.random.fold_in(key, 10_000), 2, iterations=100)
    Vb = np.asarray(base.directions)
    bang = plane_angle(Vb, deg)
    base_split = bool(np.min(np.abs(bang)) < deg / 4 and np.min(np.abs(bang - deg)) < deg / 4)
    rows.append(dict(angle=deg, split_fraction=np.mean([x["split"] for x in dg]),
                     merged_fraction=np.mean([x["merged"] for x in dg]),
                     t_split=np.nanmedian([x["t_split"] for x in dg]) if any(x["split"] for x in dg) else np.nan,
                     flow_loss=float(np.median(np.asarray(fl.loss[:, -1]))),
                     deflation_loss=0.5 * float(base.residual_norm[-1]) ** 2, baseline_split=base_split,
                     baseline_first=float(bang[0])))
for r in rows:
    print(f"theta {r['angle']:>3} deg: merged first {r['merged_fraction']:.2f}, split {r['split_fraction']:.2f}, "
          f"median split time {r['t_split']:.0f}; loss at t={T_END:g}: flow {r['flow_loss']:.2e} vs "
          f"2-step deflation {r['deflation_loss']:.2e}; baseline recovers u1,u2: {r['baseline_split']} "
          f"(1st component at {r['baseline_first']:.1f} deg)")

# %%
A = np.array([r["angle"] for r in rows])
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
ax0.semilogy(A, [r["flow_loss"] for r in rows], "o-", label=f"gradient flow, loss at t={T_END:g}")
dl = np.array([r["deflation_loss"] for r in rows])
ax0.semilogy(A, np.where(dl > 0, dl, np.nan), "s--", label="Algorithm 1, 2 components (0 not drawn)")
ax0.set(xlabel=r"angle $\theta$ (deg)", ylabel="loss", title="final loss vs angle")
ax0.legend(fontsize=8)
ax1.plot(A, [r["merged_fraction"] for r in rows], "o-", label="one merged component first")
ax1.plot(A, [r["split_fraction"] for r in rows], "s-", label="merged, then split")
ax1.plot(A, [float(r["baseline_split"]) for r in rows], "k^--", label="deflation recovers $u_1, u_2$")
ax1.set(xlabel=r"angle $\theta$ (deg)", ylabel="fraction of seeds", title="what happens", ylim=(-0.05, 1.05))
ax1.legend(fontsize=8)
fig.tight_layout()
show(fig, "angles")

# %% [markdown]
# **Reading** (the printed table above is the evidence; the statements below describe the
# full-size run). At $90°$ the target is orthogonal and both methods recover $u_1, u_2$. Already at
# $60°$ the baseline's first component is a compromise direction between $u_1$ and $u_2$ (printed),
# so the two-step deflation stops at a high loss, while gradient flow discovers the two directions
# with separate columns (no merged phase) and fits $T^*$. At smaller angles gradient flow first
# fits one merged direction - the same as Algorithm 1's first component, and the loss rests on the
# deflation level $k=1$ - and then splits that group, reaching a far lower loss than the two-step
# deflation, which cannot undo its first choice. The printed split times grow as $\theta$ shrinks;
# at the smallest angles the split may not complete within the horizon (then the flow rests on
# the deflation level for the whole run and the seed is not counted as split).

# %%
RESULTS.update(
    split=[r["split_fraction"] > 0 for r in rows], merged=[r["merged_fraction"] for r in rows],
    baseline_split=[r["baseline_split"] for r in rows], t_split=[r["t_split"] for r in rows],
    final_loss=[r["flow_loss"] for r in rows], deflation_loss=[r["deflation_loss"] for r in rows],
    wall_s=time.perf_counter() - t_start,
)
if os.environ.get("DEFLATION_NB_RESULTS"):
    Path(os.environ["DEFLATION_NB_RESULTS"]).write_text(json.dumps(RESULTS, default=float))
print(f"wall time {RESULTS['wall_s']:.1f} s")
