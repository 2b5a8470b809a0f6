"""The configuration of a Monte Carlo study (one parameter set, or a sweep of one parameter).

A :class:`Study` is plain, validated Python data (no JAX arrays), so a bad parameter is refused
before anything is traced, the backend is started or a store is touched. The target is the
paper's orthogonal case ``T* = sum_i a_i e_i^{(x)p}`` in ``R^d`` (``Target.basis``); by the
rotation invariance of ``Unif(S^{d-1})`` any orthonormal ``U`` gives the same statistics.
"""

from __future__ import annotations

import json
from typing import Any

import equinox as eqx
import numpy as np

from .. import _validate as check
from ..integrate import SOLVERS
MODES = ("full", "decoupled")
DTYPES = ("float64", "float32")
#: Parameters that may be swept (given as a list of values); the dataset gets a dimension of that name.
SWEEPABLE = ("d", "m", "order", "delta0", "delta1", "alpha", "lam", "horizon")
_INTS = ("d", "m", "order")


def _values(name: str, value: Any) -> tuple:
    if isinstance(value, (list, tuple, np.ndarray)):
        vals = tuple(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else tuple(value)
        if not vals:
            raise ValueError(f"{name} must be a value or a non-empty list of values, got an empty list")
        return vals
    return (value,)


def _check_value(name: str, v: Any) -> Any:
    if name in _INTS:
        return check.integer(name, v, {"d": 1, "m": 1, "order": 3}[name])
    if name in ("delta0", "delta1", "horizon"):
        return check.positive(name, v)
    if name == "alpha":
        return check.in_open_interval(name, v, 0.0, 1.0)
    if name == "lam":
        return check.nonnegative(name, v)
    raise AssertionError(name)


class Study(eqx.Module):
    """One Monte Carlo study: a parameter set and a number of seeds.

    Seed ``k`` starts from ``W0 = delta0 * unit_columns(fold_in(PRNGKey(key), k), d, m)``
    (``m`` columns i.i.d. ``delta0 Unif(S^{d-1})``, given to the solver in log-norm coordinates
    so any ``delta0 > 0`` is exact), and the flow runs from ``t = 0`` to ``horizon``. Each seed's
    result depends only on ``k`` and the parameters, never on chunking or devices.

    Any one of ``d, m, order, delta0, delta1, alpha, lam, horizon`` may be a list of values: the
    study is then a sweep over that parameter (same seeds for every value: common random numbers).

    Attributes:
        a: ground-truth weights ``a_i >= 0`` (r <= d), the target ``sum_i a_i e_i^{(x)order}``.
        d, m, order: dimension, number of components, tensor order ``p >= 3``.
        delta0: initial norm of every column (paper Algorithm 2).
        delta1, alpha: Definition 1's "discovered": a column reaches norm ``delta1`` with
            ``wbar_i^2 >= 1 - alpha^2``.
        lam: regularization ``lam/2 |W|^2`` (Section 4).
        horizon: time allowed.
        seeds: number of random initializations.
        key: integer base seed of ``jax.random.PRNGKey``.
        solver, rtol, atol, max_steps: diffrax solver (by name, see ``SOLVERS``), tolerances of its
            PID controller and step budget per trajectory.
        dtype: "float64" (default) or "float32".
        mode: "full" gradient flow, or "decoupled": the Phase 1 tensor-power dynamics (paper Eq. 1,
            ``R`` frozen at ``T*``) with every column an independent ODE; valid while
            ``|T|_F <= sum_j |w_j|^2`` stays small (checked, see ``coupling_tol``).
        fit_fraction: with ``lam = 0`` a component counts as fitted once its residual is
            ``<= fit_fraction * a_i`` (see :mod:`deflation.definition1`).
        event_points: grid on which discovery/fit events are bracketed.
        coupling_tol: decoupled mode flags a seed whose coupling bound exceeds this.
    """

    a: tuple = eqx.field(static=True)
    d: Any = eqx.field(static=True)
    m: Any = eqx.field(static=True)
    horizon: Any = eqx.field(static=True)
    seeds: int = eqx.field(static=True)
    order: Any = eqx.field(static=True, default=4)
    delta0: Any = eqx.field(static=True, default=1e-15)
    delta1: Any = eqx.field(static=True, default=1e-3)
    alpha: Any = eqx.field(static=True, default=0.1)
    lam: Any = eqx.field(static=True, default=0.0)
    key: int = eqx.field(static=True, default=0)
    solver: str = eqx.field(static=True, default="tsit5")
    rtol: float = eqx.field(static=True, default=1e-8)
    atol: float = eqx.field(static=True, default=1e-8)
    max_steps: int = eqx.field(static=True, default=100_000)
    dtype: str = eqx.field(static=True, default="float64")
    mode: str = eqx.field(static=True, default="full")
    fit_fraction: float = eqx.field(static=True, default=0.1)
    event_points: int = eqx.field(static=True, default=512)
    coupling_tol: float = eqx.field(static=True, default=1e-2)

    def __init__(self, a, d, m, horizon, seeds, *, order=4, delta0=1e-15, delta1=1e-3, alpha=0.1, lam=0.0,
                 key=0, solver="tsit5", rtol=1e-8, atol=1e-8, max_steps=100_000, dtype="float64",
                 mode="full", fit_fraction=0.1, event_points=512, coupling_tol=1e-2):
        a_np = check.array("a", a, 1).astype(np.float64)
        if a_np.size < 1:
            raise ValueError("a must hold at least one weight, got an empty list")
        check.finite_array("a", a_np)
        if (a_np < 0).any():
            i = int(np.argmax(a_np < 0))
            raise ValueError(f"a must be >= 0 (weights of T*), got a[{i}] = {a_np[i]!r}")
        if not (a_np > 0).any():
            raise ValueError(f"a must have at least one weight > 0, got {a_np.tolist()}")
        self.a = tuple(float(x) for x in a_np)
        raw = dict(d=d, m=m, order=order, delta0=delta0, delta1=delta1, alpha=alpha, lam=lam, horizon=horizon)
        swept = [k for k, v in raw.items() if len(_values(k, v)) > 1]
        if len(swept) > 1:
            raise ValueError(f"at most one parameter may be swept (given as a list), got lists for {', '.join(swept)}")
        for k, v in raw.items():
            vals = tuple(_check_value(k, x) for x in _values(k, v))
            if len(set(vals)) != len(vals):
                raise ValueError(f"{k} sweep values must be distinct, got {list(vals)}")
            setattr(self, k, vals if len(vals) > 1 else vals[0])
        for k in ("d",):
            for v in _values(k, self.d):
                if v < len(self.a):
                    raise ValueError(f"d must be >= r = len(a) = {len(self.a)} (U = I[:, :r]), got d = {v}")
        for d0 in _values("delta0", self.delta0):
            for d1 in _values("delta1", self.delta1):
                if not d0 < d1:
                    raise ValueError(f"delta0 must be < delta1 (columns start below the discovery norm), got delta0 = {d0!r}, delta1 = {d1!r}")
        self.seeds = check.integer("seeds", seeds, 1)
        self.key = check.integer("key", key, 0)
        if self.key >= 2**32:
            raise ValueError(f"key must be an integer in [0, 2^32), got {key}")
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
        self.solver = solver
        self.rtol = check.positive("rtol", rtol)
        self.atol = check.positive("atol", atol)
        self.max_steps = check.integer("max_steps", max_steps, 1)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.dtype = dtype
        if dtype == "float32" and min(self.rtol, self.atol) < 1e-6:
            raise ValueError(
                f"rtol and atol must be >= 1e-6 with dtype float32 (single precision cannot meet them), got rtol = {self.rtol!r}, atol = {self.atol!r}"
            )
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.fit_fraction = check.in_open_interval("fit_fraction", fit_fraction, 0.0, 1.0)
        self.event_points = check.integer("event_points", event_points, 2)
        self.coupling_tol = check.positive("coupling_tol", coupling_tol)

    # ------------------------------------------------------------------ sweep
    @property
    def sweep(self) -> tuple[str, tuple] | None:
        """``(name, values)`` of the swept parameter, or None."""
        for k in SWEEPABLE:
            v = getattr(self, k)
            if isinstance(v, tuple):
                return k, v
        return None

    @property
    def r(self) -> int:
        return len(self.a)

    def points(self) -> list["Study"]:
        """The scalar studies of the sweep (one, the study itself, when nothing is swept)."""
        sw = self.sweep
        if sw is None:
            return [self]
        name, vals = sw
        return [self.replace(**{name: v}) for v in vals]

    def replace(self, **changes) -> "Study":
        params = self.params()
        params.update(changes)
        return Study(**params)

    # ------------------------------------------------------------------ serialization
    def params(self) -> dict:
        """All parameters as JSON-compatible Python values (lists for a sweep)."""
        out = {}
        for k in ("a", "d", "m", "horizon", "seeds", "order", "delta0", "delta1", "alpha", "lam", "key", "solver",
                  "rtol", "atol", "max_steps", "dtype", "mode", "fit_fraction", "event_points", "coupling_tol"):
            v = getattr(self, k)
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    def to_json(self) -> str:
        """Canonical JSON of :meth:`params` (identifies the study in a store)."""
        return json.dumps(self.params(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Study":
        return cls(**json.loads(text))


def differences(old: Study, new: Study) -> list[str]:
    """Human-readable list of the parameters in which two studies differ."""
    a, b = old.params(), new.params()
    return [f"{k}: {a[k]!r} (stored) vs {b[k]!r} (requested)" for k in a if a[k] != b[k] and not _same(a[k], b[k])]


def _same(x, y) -> bool:
    try:
        return bool(np.all(np.asarray(x) == np.asarray(y)))
    except Exception:  # noqa: BLE001
        return False

