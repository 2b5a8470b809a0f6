"""A Monte Carlo study: an experiment, a target, a grid of parameters and a number of seeds.

A study is declared in Python (:class:`~deflation.montecarlo.Study`) or in a TOML file
(:meth:`~deflation.montecarlo.Study.from_toml`)::

    experiment = "flow"          # "flow", "phase1", "algorithm2" or "gd"
    seeds = 64                   # seeds 0 .. 63 at every grid point
    chunk = 32                   # seeds per compiled call and per stored chunk (default 512)
    key = 0                      # base PRNG key
    [target]
    kind = "random"              # "basis", "random", "angle" or "file"
    ratio = 1.2                  # a_i / a_(i+1), normalized to sum 1 (or a = [...])
    r = 3
    [params]
    d = [6, 10]                  # a list sweeps the parameter; several lists make a Cartesian grid
    m = [8, 24]
    horizon = 60
    model = "normalized"         # or "plain"; a list compares models on the same seeds
    [series]                     # optional: time series on a coarse grid, per seed
    points = 31
    norms = 3

Everything is checked here, in Python, before anything is traced or stored: an unknown key, a
list for a parameter that cannot be swept, a grid point that is invalid, more than 2^32 seeds or a
grid of more than :data:`~deflation.montecarlo.study.MAX_GRID_POINTS` points (refused by its size,
before a point is built) is a ``ValueError`` naming the key and the value. Whether the study fits
in memory is checked before a store is created (:func:`deflation.montecarlo.resources.check_fits`).
Every scalar parameter of :data:`~deflation.montecarlo.study.PARAMS` (and the target's ``ratio``
and ``angle``) may be a list; each swept parameter becomes a dimension of the study's dataset,
with its values as coordinates, in the order the lists are given.

Common random numbers: seed ``k``'s initialization depends only on ``k``, the study's ``key`` and
the shape ``(d, m)``, so neighbouring grid points are compared on the same draws.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import tomllib
import warnings
from pathlib import Path
from typing import Any

import equinox as eqx
import numpy as np

from .. import _validate as check
from ..integrate import SOLVERS, SolverConfig
from ..models import MODELS
from ..target import MAX_ORDER
from ..theorem import theorem1_parameters
from .experiments import EXPERIMENTS as REGISTRY
from .params import Param, choice, int_at_least, nonnegative, positive, unit_interval

TARGET_KINDS = ("basis", "random", "angle", "file")
DTYPES = ("float64", "float32")
#: The most seeds a study may have: seed indices are 32-bit (seed ``k`` uses ``fold_in(key, k)``
#: with ``k`` a uint32), so seeds ``0 .. 2^32 - 1``; more would wrap around into repeated seeds.
MAX_SEEDS = check.SEED_LIMIT + 1
#: The most grid points a study may have (the product of the lengths of its sweeps): every grid
#: point is resolved and checked in Python before anything runs, and has its own chunks.
MAX_GRID_POINTS = 100_000

#: The keys of a study's ``[params]`` table that several experiments share; ``experiments`` names
#: them or selects them by what they are (:data:`deflation.montecarlo.params.SELECTORS`). A default
#: of None means: required (see each experiment's ``required``), or, with ``eps`` given, Theorem 1's
#: scaling (:func:`deflation.theorem1_parameters`) at each grid point for ``m``, ``lam``, ``alpha``,
#: ``delta1`` and ``delta0``. Each experiment declares its own keys besides these.
COMMON: dict[str, Param] = {
    "d": Param(int_at_least(1), "all", None, "dimension", static=True),
    "m": Param(int_at_least(1), "all", None, "number of columns of W (algorithm2: Theorem 1's default 2 d^2)",
               static=True),
    "order": Param(int_at_least(2, MAX_ORDER), "all", 4, "tensor order p (2: the matrix case; at most 2^31 - 1)",
                   static=True),
    "delta0": Param(positive, "all", None, "initial (and algorithm2's re-draw) norm of every column (default 1e-15)"),
    "delta1": Param(positive, "all", None, "Definition 1's norm threshold (default 1e-3)"),
    "alpha": Param(unit_interval, "all", None, "Definition 1's alignment slack: wbar_i^2 >= 1 - alpha^2 "
                                               "(default 0.1)"),
    "lam": Param(nonnegative, "all", None, "regularization lam/2 |W|^2 (default 0)"),
    "eps": Param(positive, "all", None, "Theorem 1's target accuracy: algorithm2's stopping rule; sets the defaults "
                                        "of m, lam, alpha, delta1, delta0 by Theorem 1's scalings"),
    "horizon": Param(positive, "timed", None, "time allowed (gd: lr x iterations)"),
    "rtol": Param(positive, "solved", SolverConfig.DEFAULT_RTOL, "relative tolerance of the PID step-size controller"),
    "atol": Param(positive, "solved", SolverConfig.DEFAULT_ATOL, "absolute tolerance of the PID step-size controller"),
    "fit_fraction": Param(unit_interval, "timed", 0.1, "with lam = 0 a component is fitted once its residual is "
                                                       "<= fit_fraction a_i"),
    "event_points": Param(int_at_least(2), "all", 512, "grid on which Definition 1's events are located (algorithm2: "
                                                       "per phase, >= 3, default 65)", static=True),
    "max_steps": Param(int_at_least(1, check.MAX_STEPS_LIMIT), "solved", SolverConfig.DEFAULT_MAX_STEPS,
                       "solver step budget per trajectory (per phase for algorithm2; at most 2^31 - 1)", static=True),
    "model": Param(choice(lambda: tuple(MODELS)), "all", "normalized",
                   "factorization model: normalized (the paper's T = sum_j w_j^p / |w_j|^(p-2)), plain "
                   "(T = sum_j w_j^p; escapes delta0 in a time ~ delta0^-(p-2)) or asymmetric (T = sum_j "
                   "w_j^(1) x ... x w_j^(p), one factor matrix per mode); flow for every model, gd for the "
                   "first two",
                   static=True),
    "solver": Param(choice(tuple(SOLVERS)), "solved", "tsit5", "diffrax solver by name", sweep=False, static=True),
    "dtype": Param(choice(DTYPES), "continuous", "float64", "floating point type of the state", sweep=False,
                   static=True),
}


def params_table() -> dict[str, Param]:
    """Every ``[params]`` key: the common ones, then each experiment's own, each with the names of
    the experiments it applies to; computed once per content of the registry (an experiment
    registered later, as a test does, is seen)."""
    key = tuple((name, id(e)) for name, e in REGISTRY.items())
    if key not in _TABLES:
        _TABLES.clear()
        _TABLES[key] = _table()
    return _TABLES[key]


_TABLES: dict[tuple, dict[str, Param]] = {}


def _table() -> dict[str, Param]:
    out = {name: dataclasses.replace(p, experiments=tuple(e.name for e in REGISTRY.values()
                                                          if e.applies(p.experiments)))
           for name, p in COMMON.items()}
    for e in REGISTRY.values():
        for name, p in e.params.items():
            if name in out:
                names = tuple(dict.fromkeys(tuple(out[name].experiments) + (e.name,)))
                out[name] = dataclasses.replace(out[name], experiments=names)
            else:
                out[name] = dataclasses.replace(p, experiments=(e.name,))
    return out


#: The experiments by name (each one module of :mod:`deflation.montecarlo.experiments`).
EXPERIMENTS = tuple(REGISTRY)
#: Every key of a study's ``[params]`` table (:data:`COMMON` and the experiments' own), with the
#: experiments it applies to: what the checks, the defaults, the CLI and the docs read.
PARAMS: dict[str, Param] = params_table()

#: Old spellings of ``[params]`` keys (deprecated: a ``FutureWarning`` says so) -> the key to use.
PARAM_ALIASES = {"grid_points": "event_points", "t_end": "horizon", "time": "horizon"}

#: Defaults of the flow-experiment parameters that Theorem 1 would otherwise set.
FLOW_DEFAULTS = {"delta0": 1e-15, "delta1": 1e-3, "alpha": 0.1, "lam": 0.0}
#: Parameters that Theorem 1's scalings set when ``eps`` is given (and they are not).
THEOREM1 = ("m", "lam", "alpha", "delta1", "delta0")

#: Keys of the ``[target]`` table; ``ratio`` and ``angle`` may be swept.
TARGET_KEYS = {
    "kind": "basis (U = I[:, :r]), random (a Haar-random orthonormal U per seed), angle (components at one "
            "pairwise angle, degrees), or file (explicit a and U from an .npz with arrays 'a' and 'U')",
    "a": "the weights a_i (a list; used as given)",
    "ratio": "a_i / a_(i+1) >= 1 with r components, normalized to sum 1 (Figure 1's weights)",
    "r": "number of components with ratio",
    "angle": "pairwise angle in degrees (kind = angle)",
    "file": "path of an .npz holding 'a' (r,) and 'U' (d, r) (kind = file)",
}
SWEEPABLE_TARGET = ("ratio", "angle")

#: Keys of the optional ``[series]`` table.
SERIES_KEYS = {
    "points": "save points of the time series, on linspace(0, horizon, points) (>= 2)",
    "norms": "how many of the largest column norms to record at each save point (default 3)",
}

#: Top-level keys of a study file.
TOP_KEYS = ("experiment", "seeds", "chunk", "key", "target", "params", "series", "description")

#: Parameters a sweep can name: the ``[params]`` keys that may be swept and the target's.
SWEEPABLE = tuple(k for k, p in PARAMS.items() if p.sweep) + SWEEPABLE_TARGET


def _is_list(v) -> bool:
    return isinstance(v, (list, tuple, np.ndarray))


def _values(name: str, value: Any, sweep: bool) -> tuple:
    """The values of a parameter: one, or a non-empty list of distinct ones."""
    if not _is_list(value):
        return (value,)
    if not sweep:
        raise ValueError(f"{name} cannot be swept (given as a list), got {list(value)!r}")
    vals = tuple(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else tuple(value)
    if not vals:
        raise ValueError(f"{name} must be a value or a non-empty list of values, got an empty list")
    if len(set(map(repr, vals))) != len(vals):
        raise ValueError(f"{name} sweep values must be distinct, got {list(vals)!r}")
    return vals


def _freeze(value):
    """Lists as tuples (a study is hashable and compares by value)."""
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in value.items())
    if _is_list(value):
        return tuple(_freeze(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value))
    return value


def _thaw(items) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


class Study(eqx.Module):
    """A Monte Carlo study (see the module docstring for the file format).

    Args:
        experiment: ``"flow"`` (gradient flow to ``horizon``), ``"phase1"`` (the decoupled Phase 1
            dynamics, paper Eq. 1, with a rigorous bound on their distance to the full flow) or
            ``"algorithm2"`` (the paper's Algorithm 2 per seed).
        seeds: seeds ``0 .. seeds - 1`` at every grid point (at most
            :data:`~deflation.montecarlo.study.MAX_SEEDS` = 2^32: seed indices are 32-bit).
        target: the ``[target]`` table (a dict; see :data:`~deflation.montecarlo.study.TARGET_KEYS`).
        params: the ``[params]`` table (a dict; see :data:`~deflation.montecarlo.study.PARAMS`).
        key: base PRNG key (an integer in ``[0, 2^32)``).
        chunk: seeds per compiled call and stored chunk (default: ``run_study``'s, 512).
        series: the optional ``[series]`` table (flow and phase1).
        description: free text, kept in the store.

    Raises:
        ValueError / TypeError: on an unknown key, a bad value, a list for a parameter that cannot
            be swept, or an invalid grid point; the message names the key and the value.
    """

    experiment: str = eqx.field(static=True)
    seeds: int = eqx.field(static=True)
    target: tuple = eqx.field(static=True)
    params: tuple = eqx.field(static=True)
    key: int = eqx.field(static=True, default=0)
    chunk: int | None = eqx.field(static=True, default=None)
    series: tuple | None = eqx.field(static=True, default=None)
    description: str = eqx.field(static=True, default="")

    def __init__(self, experiment: str, seeds: int, target: dict, params: dict, *, key: int = 0,
                 chunk: int | None = None, series: dict | None = None, description: str = ""):
        self.experiment = choice(tuple(REGISTRY))("experiment", experiment)
        self.seeds = check.integer("seeds", seeds, 1)
        if self.seeds > MAX_SEEDS:
            raise ValueError(f"seeds must be at most 2^32 = {MAX_SEEDS} (seed indices are 32-bit: seed k uses "
                             f"fold_in(key, k)), got {seeds}")
        self.key = check.integer("key", key, 0)
        if self.key >= 2**32:
            raise ValueError(f"key must be an integer in [0, 2^32), got {key}")
        self.chunk = None if chunk is None else check.integer("chunk", chunk, 1)
        if not isinstance(description, str):
            raise TypeError(f"description must be a string, got {type(description).__name__}")
        self.description = description
        self.target = _freeze(_check_target(target))
        self.params = _freeze(_check_params(self.experiment, params))
        self.series = None if series is None else _freeze(_check_series(self.experiment, series))
        size = math.prod(len(v) for _, v in self.grid)  # refused by size before a point is built
        if size > MAX_GRID_POINTS:
            sweeps = " x ".join(f"{k} ({len(v)})" for k, v in self.grid)
            raise ValueError(f"the grid {sweeps} has {size:.4g} points, more than the {MAX_GRID_POINTS} a study may "
                             "have; sweep fewer parameters or fewer values (or split it into several studies)")
        for point in self.points():  # every grid point is valid, before anything runs
            _check_point(self, point)

    # ------------------------------------------------------------------ construction from files
    @classmethod
    def from_dict(cls, spec: dict, source: str = "study") -> Study:
        """A study from the dict of a study file (top-level keys :data:`~deflation.montecarlo.study.TOP_KEYS`)."""
        if not isinstance(spec, dict):
            raise TypeError(f"{source} must be a table of keys, got {type(spec).__name__}")
        unknown = [k for k in spec if k not in TOP_KEYS]
        if unknown:
            raise ValueError(f"{source}: unknown key {unknown[0]!r} (allowed: {', '.join(TOP_KEYS)})")
        for required in ("experiment", "seeds", "target"):
            if required not in spec:
                raise ValueError(f"{source}: missing key {required!r}")
        return cls(spec["experiment"], spec["seeds"], spec["target"], spec.get("params", {}), key=spec.get("key", 0),
                   chunk=spec.get("chunk"), series=spec.get("series"), description=spec.get("description", ""))

    @classmethod
    def from_toml(cls, path: str | Path) -> Study:
        """A study from a TOML file (see the module docstring): UTF-8 text without a byte-order
        mark (a binary file, another encoding or a BOM is a ``ValueError`` naming the file and the
        problem). A relative ``target.file`` is relative to the study file."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read study file {str(path)!r}: {err.strerror or err}") from None
        text = _toml_text(path, raw)
        try:
            spec = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not a valid TOML file: {err}") from None
        target = spec.get("target")
        if isinstance(target, dict) and isinstance(target.get("file"), str) and not Path(target["file"]).is_absolute():
            spec["target"] = dict(target, file=str((path.parent / target["file"]).resolve()))
        return cls.from_dict(spec, source=str(path))

    # ------------------------------------------------------------------ the grid
    @property
    def target_spec(self) -> dict:
        return _thaw(self.target)

    @property
    def param_spec(self) -> dict:
        return _thaw(self.params)

    @property
    def series_spec(self) -> dict | None:
        return None if self.series is None else _thaw(self.series)

    @property
    def grid(self) -> list[tuple[str, tuple]]:
        """``[(name, values), ...]`` of the swept parameters, in the order given (target's last)."""
        out = [(k, v) for k, v in self.params if isinstance(v, tuple)]
        out += [(k, v) for k, v in self.target if k in SWEEPABLE_TARGET and isinstance(v, tuple)]
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for _, v in self.grid)

    @property
    def r(self) -> int:
        """Number of ground-truth components."""
        spec = self.target_spec
        if "a" in spec:
            return len(spec["a"])
        if "r" in spec:
            return int(spec["r"])
        with np.load(spec["file"]) as data:
            return int(np.asarray(data["a"]).shape[0])

    def points(self) -> list[dict]:
        """Every grid point (row-major over :attr:`grid`) as a dict of all parameters, with the
        defaults and Theorem 1's scalings filled in."""
        names = [k for k, _ in self.grid]
        combos = itertools.product(*[v for _, v in self.grid]) if names else [()]
        return [self._resolve(dict(zip(names, combo))) for combo in combos]

    def _resolve(self, chosen: dict) -> dict:
        point = {k: (chosen[k] if k in chosen else v) for k, v in self.params}
        target = {k: (chosen[k] if k in chosen else v) for k, v in self.target}
        for name, value in REGISTRY[self.experiment].defaults.items():
            point.setdefault(name, value)
        for name, p in params_table().items():
            if self.experiment in p.experiments and name not in point and p.default is not None:
                point[name] = p.default
        if point.get("eps") is not None:
            given = {k: point[k] for k in THEOREM1 if k in point}
            try:
                t1 = theorem1_parameters(point["d"], point["eps"], m=given.get("m"), lam=given.get("lam"),
                                         alpha=given.get("alpha"), delta1=given.get("delta1"),
                                         delta0=given.get("delta0"), gamma=point.get("gamma", 0.5))
            except ValueError as err:
                raise ValueError(f"params: Theorem 1's scalings {_where(chosen)}: {err}") from None
            for k in THEOREM1:
                point.setdefault(k, getattr(t1, k))
        for k, v in FLOW_DEFAULTS.items():
            point.setdefault(k, v)
        point["target"] = target
        return point

    def coordinates(self) -> dict[str, np.ndarray]:
        """The values of each swept parameter (the dataset's coordinates)."""
        return {k: np.asarray(v) for k, v in self.grid}

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict:
        """The study as the dict of its file (lists for sweeps)."""
        out = dict(experiment=self.experiment, seeds=self.seeds, key=self.key, target=self.target_spec,
                   params=self.param_spec)
        if self.chunk is not None:
            out["chunk"] = self.chunk
        if self.series is not None:
            out["series"] = self.series_spec
        if self.description:
            out["description"] = self.description
        return out

    def identity(self) -> str:
        """Canonical JSON of what the results depend on (not ``chunk`` or ``description``): a store
        holds one identity."""
        spec = self.to_dict()
        spec.pop("chunk", None)
        spec.pop("description", None)
        return json.dumps(spec, allow_nan=False)  # key order kept: it is the order of the grid dimensions

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    def store_name(self, prefix: str | None = None) -> str:
        """A store name derived from the study's content, ``<prefix>-<digest>.zarr`` (default prefix:
        the experiment): a folder of studies then serves as a cache, where rerunning a script finds
        the studies it already computed and a changed study gets a new store."""
        import hashlib

        digest = hashlib.sha256(self.identity().encode()).hexdigest()[:12]
        return f"{prefix or self.experiment}-{digest}.zarr"

    @classmethod
    def from_json(cls, text: str) -> Study:
        with warnings.catch_warnings():  # a store written before a key was renamed: read silently
            warnings.simplefilter("ignore", FutureWarning)
            return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> Study:
        """A copy with top-level fields changed (``seeds=...``, ``params={...}``, ...)."""
        spec = self.to_dict()
        spec.update(changes)
        return Study.from_dict(spec)


#: Byte-order marks, and the encodings they announce.
_BOMS = ((b"\xef\xbb\xbf", "UTF-8"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def _toml_text(path: Path, raw: bytes) -> str:
    """The text of a study file: UTF-8 without a byte-order mark, as TOML requires; a
    ``ValueError`` naming the file and the problem otherwise (a binary file, another encoding)."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            raise ValueError(f"{path}: starts with a {encoding} byte-order mark (BOM); save the study file as UTF-8 "
                             "without a BOM (TOML files are UTF-8 text)")
    if b"\x00" in raw:
        raise ValueError(f"{path}: is a binary file (it holds NUL bytes), not a TOML study file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}: is not UTF-8 text (byte 0x{raw[err.start]:02x} on line {line}; another encoding "
                         "such as latin-1?); save the study file as UTF-8") from None


def _weights(name: str, a: np.ndarray) -> np.ndarray:
    """``a`` as the weights of a target: finite, ``>= 0``, at least one and at least one ``> 0``."""
    if a.size < 1:
        raise ValueError(f"{name} must hold at least one weight, got an empty list")
    check.finite_array(name, a)
    if (a < 0).any() or not (a > 0).any():
        raise ValueError(f"{name} must be >= 0 with at least one weight > 0, got {a.tolist()}")
    return a


def _where(chosen: dict) -> str:
    return "at the grid point " + ", ".join(f"{k} = {v!r}" for k, v in chosen.items()) if chosen else "for the study"


def _check_params(experiment: str, params: dict) -> dict:
    if not isinstance(params, dict):
        raise TypeError(f"params must be a table of keys, got {type(params).__name__}")
    out = {}
    params = _renamed(params)
    table = params_table()
    for name, value in params.items():
        if name not in table:
            raise ValueError(f"params: unknown key {name!r} (allowed: {', '.join(table)})")
        p = table[name]
        if experiment not in p.experiments:
            raise ValueError(f"params.{name} does not apply to experiment {experiment!r} "
                             f"(it applies to {', '.join(p.experiments)})")
        vals = tuple(p.check(f"params.{name}", v) for v in _values(f"params.{name}", value, p.sweep))
        out[name] = list(vals) if _is_list(value) else vals[0]
    required = REGISTRY[experiment].required
    for name in required:
        if name not in out:
            raise ValueError(f"params: missing key {name!r} (experiment {experiment!r} needs {', '.join(required)})")
    if "m" not in out and "eps" not in out:
        raise ValueError("params: missing key 'm' (or give 'eps' for Theorem 1's m = 2 d^2)")
    return out


def _renamed(params: dict) -> dict:
    """``params`` with the deprecated keys of :data:`PARAM_ALIASES` renamed (a ``FutureWarning``
    each); ``ValueError`` if a key is given under both names."""
    out = {}
    for name, value in params.items():
        new = PARAM_ALIASES.get(name)
        if new is None:
            out[name] = value
            continue
        if new in params:
            raise ValueError(f"params: give {new!r} only ({name!r} is its deprecated spelling), got both")
        warnings.warn(f"params.{name} is deprecated; use params.{new}", FutureWarning, stacklevel=5)
        out[new] = value
    return out


def _check_target(target: dict) -> dict:
    if not isinstance(target, dict):
        raise TypeError(f"target must be a table of keys, got {type(target).__name__}")
    unknown = [k for k in target if k not in TARGET_KEYS]
    if unknown:
        raise ValueError(f"target: unknown key {unknown[0]!r} (allowed: {', '.join(TARGET_KEYS)})")
    kind = choice(TARGET_KINDS)("target.kind", target.get("kind", "basis"))
    out: dict[str, Any] = {"kind": kind}
    if kind == "file":
        for k in ("a", "ratio", "r", "angle"):
            if k in target:
                raise ValueError(f"target.{k} does not apply to kind 'file' (a and U come from the file)")
        path = target.get("file")
        if not isinstance(path, str):
            raise ValueError(f"target.file must be the path of an .npz file with arrays 'a' and 'U', got {path!r}")
        try:
            with np.load(path, allow_pickle=False) as data:  # never unpickles: a file cannot run code
                a, U = np.asarray(data["a"]), np.asarray(data["U"])
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"target.file = {path!r} must be an .npz with arrays 'a' (r,) and 'U' (d, r): "
                             f"{err}") from None
        from ..target import Target

        # real arrays only (a complex U would be cast to real, dropping its imaginary part)
        a = check.array(f"target.file = {path!r}: a", a, 1).astype(np.float64)
        U = check.array(f"target.file = {path!r}: U", U, 2).astype(np.float64)
        _weights(f"target.file = {path!r}: a", a)  # the same rule as a list target.a
        Target(a, U)  # checks shapes, finiteness, unit columns
        out["file"] = path
        return out
    if "file" in target:
        raise ValueError(f"target.file applies to kind 'file' only, got kind {kind!r}")
    if ("a" in target) == ("ratio" in target):
        raise ValueError("target: give either a (a list of weights) or ratio with r")
    if "a" in target:
        if "r" in target:
            raise ValueError("target.r goes with ratio (with a list a, r = len(a))")
        a = target["a"]
        if not _is_list(a):
            raise ValueError(f"target.a must be a list of weights, got {a!r}")
        a_np = _weights("target.a", check.array("target.a", a, 1).astype(np.float64))
        out["a"] = a_np.tolist()
    else:
        if "r" not in target:
            raise ValueError("target.r is required with ratio (the number of components)")
        out["r"] = check.integer("target.r", target["r"], 1)
        vals = _values("target.ratio", target["ratio"], True)
        for v in vals:
            v = check.real_scalar("target.ratio", v)
            if not (math.isfinite(v) and v >= 1):
                raise ValueError(f"target.ratio must be a finite number >= 1 (a_i / a_(i+1)), got {v!r}")
        out["ratio"] = list(vals) if len(vals) > 1 or _is_list(target["ratio"]) else vals[0]
    if kind == "angle":
        if "angle" not in target:
            raise ValueError("target.angle (degrees) is required with kind 'angle'")
        vals = tuple(check.real_scalar("target.angle", v) for v in _values("target.angle", target["angle"], True))
        out["angle"] = list(vals) if _is_list(target["angle"]) else vals[0]
    elif "angle" in target:
        raise ValueError(f"target.angle applies to kind 'angle' only, got kind {kind!r}")
    return out


def _check_series(experiment: str, series: dict) -> dict:
    if not REGISTRY[experiment].continuous:
        continuous = [e.name for e in REGISTRY.values() if e.continuous]
        raise ValueError(f"series applies to experiments {', '.join(continuous)}, not {experiment!r}")
    if not isinstance(series, dict):
        raise TypeError(f"series must be a table of keys, got {type(series).__name__}")
    unknown = [k for k in series if k not in SERIES_KEYS]
    if unknown:
        raise ValueError(f"series: unknown key {unknown[0]!r} (allowed: {', '.join(SERIES_KEYS)})")
    if "points" not in series:
        raise ValueError("series: missing key 'points'")
    return dict(points=check.integer("series.points", series["points"], 2),
                norms=check.integer("series.norms", series.get("norms", 3), 0))


def weights(point: dict) -> np.ndarray:
    """The ground-truth weights ``a`` (r,) of a grid point."""
    t = point["target"]
    if "a" in t:
        return np.asarray(t["a"], np.float64)
    if "ratio" in t:
        a = float(t["ratio"]) ** -np.arange(int(t["r"]), dtype=np.float64)
        return a / a.sum()
    with np.load(t["file"]) as data:
        return np.asarray(data["a"], np.float64)


def _check_point(study: Study, point: dict) -> None:
    """Checks that need a whole grid point (several parameters together)."""
    chosen = {k: point[k] if k in point else point["target"][k] for k, _ in study.grid}
    at = _where(chosen)
    d, m, r = point["d"], point["m"], study.r
    kind = point["target"]["kind"]
    if kind == "file":
        with np.load(point["target"]["file"]) as data:
            U = np.asarray(data["U"])
        if U.shape[0] != d:
            raise ValueError(f"params.d = {d} does not match target.file's U with {U.shape[0]} rows ({at})")
    if r > d:
        raise ValueError(f"target has r = {r} components but params.d = {d}: r must be <= d ({at})")
    if kind == "angle":
        from ..target import Target

        try:
            Target.angle(weights(point), d, point["target"]["angle"])
        except ValueError as err:
            raise ValueError(f"target.angle = {point['target']['angle']!r}: {err} ({at})") from None
    if not point["delta0"] < point["delta1"]:
        raise ValueError(f"params.delta0 = {point['delta0']!r} must be < params.delta1 = {point['delta1']!r} "
                         f"(columns start below the discovery norm) ({at})")
    if point.get("dtype") == "float32":
        if min(point["rtol"], point["atol"]) < 1e-6:
            raise ValueError(f"params.rtol and params.atol must be >= 1e-6 with dtype float32, got rtol = "
                             f"{point['rtol']!r}, atol = {point['atol']!r} ({at})")
    experiment = REGISTRY[study.experiment]
    if experiment.models is not None and point.get("model", "normalized") not in experiment.models:
        runs = [e.name for e in REGISTRY.values() if e.models is None or point["model"] in e.models]
        raise ValueError(f"params.model = {point['model']!r} runs only with experiments "
                         f"{' and '.join(map(repr, runs))} (experiment {study.experiment!r} runs the models "
                         f"{', '.join(map(repr, experiment.models))}) ({at})")
    if point["order"] < experiment.min_order:
        raise ValueError(f"params.order = {point['order']!r} must be >= {experiment.min_order} for experiment "
                         f"{study.experiment!r} ({at})")
    experiment.check_point(point, r, at)
    series = study.series_spec
    if series is not None and series["norms"] > m:
        raise ValueError(f"series.norms = {series['norms']} must be <= params.m = {m} ({at})")
