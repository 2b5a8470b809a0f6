"""Accuracy figures of the core simulator (issue 2), measured against independent routes.

1. loss: `deflation.loss` (double-double) and the float Gram formula against the exact loss of the
   same float64 W (60-digit mpmath), at the Figure 1 size, for losses from 1e-8 to 1e-24;
2. trajectory: `gradient_flow` (Tsit5, rtol = atol = 1e-10) against SciPy DOP853 at rtol 1e-12 on
   the raw-W equations in NumPy (dense-tensor gradient of deflation.baselines);
3. events: discovery and fit times (default settings) against crossings of a rtol 1e-12 solve
   saved every 0.01 time units;
4. the wall time of the Figure 1 job (5 seeds, t = 300, rtol = atol = 1e-10), compile and run.

Writes benchmarks/out/core_accuracy.json (``--record``: the committed benchmarks/results/core_accuracy.json).
Run: python benchmarks/core_accuracy.py [--record]
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
from scipy.integrate import solve_ivp

import deflation as D
from deflation.baselines import numpy_dense_gradient

from _common import add_output_arguments, output_path


def exact_loss(W, a, U, p=4):
    mpmath.mp.dps = 60
    cols = [[mpmath.mpf(float(x)) for x in W[:, j]] for j in range(W.shape[1])]
    us = [[mpmath.mpf(float(x)) for x in U[:, i]] for i in range(U.shape[1])]
    aa = [mpmath.mpf(float(x)) for x in a]
    n2 = [mpmath.fsum(x * x for x in c) for c in cols]

    def dot(x, y):
        return mpmath.fsum(xi * yi for xi, yi in zip(x, y))

    tot = mpmath.fsum(dot(cj, ck) ** p / mpmath.sqrt(n2[j] * n2[k]) ** (p - 2)
                      for j, cj in enumerate(cols) for k, ck in enumerate(cols))
    tot -= 2 * mpmath.fsum(aa[i] * dot(u, c) ** p / mpmath.sqrt(n2[j]) ** (p - 2)
                           for i, u in enumerate(us) for j, c in enumerate(cols))
    tot += mpmath.fsum(aa[i] * aa[k] * dot(u, v) ** p for i, u in enumerate(us) for k, v in enumerate(us))
    return float(tot / 2)


def loss_accuracy():
    target = D.Target.geometric(10, 5, 1.2)
    a = np.asarray(target.a)
    rng = np.random.default_rng(11)
    rows = []
    for level in (1e-8, 1e-12, 1e-16, 1e-20, 1e-24):
        eps = np.sqrt(level)
        W = np.zeros((10, 50))
        for i in range(5):
            for j, share in enumerate((0.6, 0.4)):
                v = np.eye(10)[:, i] + eps * 0.3 * rng.standard_normal(10)
                W[:, 2 * i + j] = np.sqrt(share * a[i] * (1 + eps * rng.standard_normal())) * v / np.linalg.norm(v)
        W[:, 10:] = eps * rng.standard_normal((10, 40)) / np.sqrt(10)
        ex = exact_loss(W, a, np.asarray(target.U))
        precise = float(D.loss(jnp.asarray(W), target, precise=True))
        fast = float(D.loss(jnp.asarray(W), target, precise=False))
        rows.append(dict(exact=ex, rel_err_precise=abs(precise - ex) / ex, rel_err_float_gram=abs(fast - ex) / ex))
        print(f"loss {ex:9.2e}: double-double rel. error {rows[-1]['rel_err_precise']:.1e}, "
              f"float Gram formula {rows[-1]['rel_err_float_gram']:.1e}")
    return rows


def trajectory_accuracy():
    rng = np.random.default_rng(0)
    d, m, p, lam = 5, 7, 4, 0.02
    U = np.linalg.qr(rng.standard_normal((d, 3)))[0]
    target = D.Target(np.array([0.5, 0.3, 0.2]), U, p)
    W0 = 0.05 * rng.standard_normal((d, m))
    ts = np.array([2.0, 10.0, 30.0, 60.0])
    # the NumPy dense-tensor gradient (deflation.baselines), an independent route to the RHS
    ref = solve_ivp(lambda t, y: -numpy_dense_gradient(y.reshape(d, m), np.asarray(target.a), U, p, lam).ravel(),
                    (0.0, ts[-1]), W0.ravel(), method="DOP853", rtol=1e-12, atol=1e-14, t_eval=ts)
    out = {}
    for tol in (1e-8, 1e-10):
        res = D.gradient_flow(target, W0, ts, lam=lam, rtol=tol, atol=tol)
        errs = [float(np.linalg.norm(np.asarray(res.W[k]) - ref.y[:, k].reshape(d, m)) / np.linalg.norm(ref.y[:, k]))
                for k in range(len(ts))]
        out[f"tol={tol:g}"] = dict(times=ts.tolist(), rel_err=errs)
        print(f"trajectory at tol {tol:g}: relative error in W vs DOP853 at t={ts.tolist()}: "
              + ", ".join(f"{e:.1e}" for e in errs))
    return out


def event_accuracy():
    target = D.Target.geometric(10, 5, 1.2)
    W0 = D.sample_sphere(jax.random.PRNGKey(4), 10, 50, 1e-15)
    fast = D.gradient_flow(target, W0, jnp.array([150.0]))
    ts = np.linspace(0.0, 150.0, 15001)
    ref = D.gradient_flow(target, W0, jnp.asarray(ts), rtol=1e-12, atol=1e-12, event_points=2)
    ln = np.asarray(ref.log_norm)
    Wn = np.asarray(ref.W) / np.exp(ln)[:, None, :]
    U, a = np.asarray(target.U), np.asarray(target.a)
    disc = np.full(5, np.inf)
    for j in range(50):
        g = ln[:, j] - np.log(1e-3)
        up = np.nonzero((g[:-1] < 0) & (g[1:] >= 0))[0]
        if up.size:
            k = up[0]
            tc = ts[k] - g[k] * (ts[k + 1] - ts[k]) / (g[k + 1] - g[k])
            c2 = (U.T @ Wn[k + 1, :, j]) ** 2
            if c2.max() >= 1 - 0.1**2:
                disc[c2.argmax()] = min(disc[c2.argmax()], tc)
    res = np.asarray(ref.residual)
    fit = np.empty(5)
    for i in range(5):
        g = res[:, i] - 0.1 * a[i]
        k = np.nonzero((g[:-1] > 0) & (g[1:] <= 0))[0][0]
        fit[i] = ts[k] - g[k] * (ts[k + 1] - ts[k]) / (g[k + 1] - g[k])
    de = np.abs(np.asarray(fast.discovery_time) - disc) / disc
    fe = np.abs(np.asarray(fast.fit_time) - fit) / fit
    print(f"event times (512-point grid, rtol 1e-8) vs dense rtol-1e-12 reference: max relative error "
          f"discovery {de.max():.1e}, fit {fe.max():.1e}")
    return dict(discovery_rel_err=de.tolist(), fit_rel_err=fe.tolist())


def figure1_time():
    target = D.Target.geometric(10, 5, 1.2)
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(5), 10, 50, 1e-15)
    ts = jnp.linspace(0.0, 300.0, 601)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        res = D.gradient_flow(target, W0, ts, rtol=1e-10, atol=1e-10)
        jax.block_until_ready(res.loss)
        times.append(time.perf_counter() - t)
    print(f"figure1 job (5 seeds, t=300, tol 1e-10): first call {times[0]:.1f} s (with compilation), "
          f"then {min(times[1:]):.2f} s; steps per seed {np.asarray(res.num_steps).tolist()}")
    return dict(first_call_s=times[0], warm_call_s=min(times[1:]), num_steps=np.asarray(res.num_steps).tolist())


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_arguments(ap)
    args = ap.parse_args()
    out = output_path("core_accuracy.json", args.record, args.out)
    results = dict(
        device=str(jax.devices()[0]), loss=loss_accuracy(), trajectory=trajectory_accuracy(),
        events=event_accuracy(), figure1=figure1_time(),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
