"""Experiments are plug-ins: a new one is a module declaring an Experiment, registered by name; the
study, the compiled program, the store and the summaries take it from its declaration alone, and
no module outside ``montecarlo/experiments`` tests which experiment a study runs."""

from __future__ import annotations

import ast
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("zarr")

import deflation as D  # noqa: E402
from deflation import memory  # noqa: E402
from deflation.montecarlo import Study, run_study, summarize  # noqa: E402
from deflation.montecarlo.experiments import EXPERIMENTS, Experiment  # noqa: E402
from deflation.montecarlo.kernel import initial_state  # noqa: E402
from deflation.montecarlo.params import Param, positive  # noqa: E402
from deflation.montecarlo.records import COMPONENT, Var  # noqa: E402
from deflation.montecarlo.study import PARAMS  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src" / "deflation"


def _draw(s, seed_idx, p):
    """The toy kernel: records seed k's initial draw (its first coordinate and its norm, scaled)."""
    rho, ubar = initial_state(s, seed_idx, p["delta0"])
    B = seed_idx.shape[0]
    return dict(discovered=jnp.zeros((B, s.r), bool), discovery_time=jnp.full((B, s.r), jnp.inf),
                status=jnp.zeros((B,), jnp.int8), first=ubar[:, 0, :], norm=p["scale"] * jnp.exp(rho[:, 0]))


def _memory(point, r, seeds, series_points, backend):
    itemsize = 8 * seeds * point["d"] * point["m"]
    return memory.MemoryEstimate(total=itemsize, parts={"state": itemsize}, chunk=seeds, block=seeds, precise=False)


TOY = Experiment(
    name="draw",
    doc="records the initialization (a test's toy experiment)",
    run=_draw,
    variables={
        "discovered": Var(COMPONENT, "bool", False, "never"),
        "discovery_time": Var(COMPONENT, "float", np.nan, "never (inf)"),
        "status": Var((), "int8", -1, "always 0"),
        "first": Var(("column",), "float", np.nan, "the first coordinate of every column's direction"),
        "norm": Var((), "float", np.nan, "scale x the first column's norm"),
    },
    required=("d", "m", "horizon"),
    memory=_memory,
    params={"scale": Param(positive, ("draw",), 2.0, "a factor of the toy experiment's norm")},
    solved=False,
    continuous=False,
    dims=lambda points: {"column": max(p["m"] for p in points)},
)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(EXPERIMENTS, "draw", TOY)
    return TOY


def test_a_registered_experiment_runs_as_a_study(toy, tmp_path):
    params = {"d": 3, "m": 4, "delta0": 1e-4, "horizon": 1.0, "scale": [1.0, 3.0]}
    study = Study("draw", 6, {"kind": "basis", "a": [1.0]}, params, chunk=4)
    ds = run_study(study, tmp_path / "draw.zarr", progress=False)
    W0 = np.asarray(D.sample_sphere_batch(jax.random.PRNGKey(0), range(6), 3, 4, 1.0))
    # its records are the initialization an independent route draws, at every grid point
    np.testing.assert_allclose(ds["first"].values, np.broadcast_to(W0[:, 0, :], (2, 6, 4)), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(ds["norm"].values, [[1e-4] * 6, [3e-4] * 6], rtol=1e-12)
    assert list(ds["scale"].values) == [1.0, 3.0]
    # its own parameter and its default are the study's; common ones that do not apply are refused
    assert Study("draw", 1, {"kind": "basis", "a": [1.0]}, {"d": 2, "m": 2, "horizon": 1.0}).points()[0]["scale"] == 2
    with pytest.raises(ValueError, match="rtol does not apply to experiment 'draw'"):  # it is not solved
        Study("draw", 1, {"kind": "basis", "a": [1.0]}, {"d": 2, "m": 2, "horizon": 1.0, "rtol": 1e-6})
    with pytest.raises(ValueError, match="missing key 'horizon'"):
        Study("draw", 1, {"kind": "basis", "a": [1.0]}, {"d": 2, "m": 2})
    # the summaries read what it records (no fit times: it records none)
    df = summarize(ds)
    assert len(df) == 2 and (df["p"] == 0).all() and df["t_q50"].isna().all() and "fit_q50" not in df


def test_an_unregistered_experiment_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="experiment must be one of .*'flow'.*'gd'.*got 'draw'"):
        Study("draw", 1, {"kind": "basis", "a": [1.0]}, {"d": 2, "m": 2})


def test_the_params_table_is_derived_from_the_declarations():
    for name, e in EXPERIMENTS.items():
        for key in e.params:
            assert name in PARAMS[key].experiments, (name, key)
        for key in e.required:
            assert name in PARAMS[key].experiments, (name, key)
    assert PARAMS["rtol"].experiments == tuple(n for n, e in EXPERIMENTS.items() if e.solved)
    assert PARAMS["horizon"].experiments == tuple(n for n, e in EXPERIMENTS.items() if e.timed)
    assert PARAMS["lr"].experiments == ("gd",)


def _compares_a_name(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines where an experiment's name is compared (``==``, ``!=``, ``in``, ``not in``)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for operand in [node.left, *node.comparators]:
            consts = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            if any(isinstance(c, ast.Constant) and c.value in names for c in consts):
                lines.append(node.lineno)
    return lines


def test_no_module_outside_the_experiments_tests_which_experiment_runs():
    names = set(EXPERIMENTS)
    bad = {}
    for path in sorted(SRC.rglob("*.py")):
        if "experiments" in path.relative_to(SRC).parts:
            continue
        lines = _compares_a_name(ast.parse(path.read_text()), names)
        if lines:
            bad[str(path.relative_to(SRC))] = lines
    assert not bad, bad
    # the check sees a comparison where there is one
    assert _compares_a_name(ast.parse('if study.experiment == "algorithm2": pass'), names) == [1]
    assert _compares_a_name(ast.parse('ok = e not in ("flow", "gd")'), names) == [1]
