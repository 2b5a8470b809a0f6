"""Parameters in one shape: one status vocabulary, errors that carry their parameter (and the
command line naming the flag from it), and the solver defaults defined once on ``SolverConfig``."""

from __future__ import annotations

import inspect
import pickle

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest

import deflation as D
from deflation import ParamError, ParamTypeError, SolverConfig, Status, _validate as check, cli
from deflation.commands import algorithm2 as algorithm2_command, montecarlo as montecarlo_command
from deflation.commands._options import flag_names
from deflation.montecarlo import Study
from deflation.montecarlo.study import PARAMS
from deflation.status import describe, legend

# ---------------------------------------------------------------------------- status


def test_status_codes_are_the_stored_values():
    """The codes are what results and stores hold: they must never change."""
    assert {s.name: int(s) for s in Status} == dict(SUCCESS=0, MAX_STEPS=1, NONFINITE=2, SOLVER_FAILED=3,
                                                    LOSS_INCREASED=4)
    assert [s.description for s in Status] == ["success", "max_steps reached", "non-finite state",
                                               "solver failed", "loss increased"]
    assert describe(np.int8(1)) == "max_steps reached" and describe(7) == "status 7"
    assert legend((0, 3)) == "0 success, 3 solver failed"
    assert not hasattr(D.integrate, "STATUS_NAMES")


def test_stepping_result_codes_are_the_status_codes():
    from deflation import stepping

    assert (stepping.OK, stepping.MAX_STEPS, stepping.FAILED) == (Status.SUCCESS, Status.MAX_STEPS,
                                                                   Status.SOLVER_FAILED)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("call, param, kind", [
    (lambda: check.positive("rtol", -1.0), "rtol", ParamError),
    (lambda: check.positive("params.rtol", "x"), "params.rtol", ParamTypeError),
    (lambda: check.integer("max_steps", 1.5, 1), "max_steps", ParamTypeError),
    (lambda: check.integer("max_steps", 0, 1), "max_steps", ParamError),
    (lambda: check.in_open_interval("alpha", 1.0, 0.0, 1.0), "alpha", ParamError),
    (lambda: check.choice("solver", "rk4", ("tsit5",)), "solver", ParamError),
    (lambda: check.array("ts", [[object()]], 1), "ts", ParamTypeError),
    (lambda: check.finite_array("ts", np.array([0.0, np.nan])), "ts", ParamError),
])
def test_every_check_names_its_parameter(call, param, kind):
    with pytest.raises(kind) as err:
        call()
    assert err.value.param == param
    assert isinstance(err.value, ValueError)  # ``except ValueError`` still catches a wrong kind
    assert str(err.value).startswith(param)  # the message as before


def test_public_functions_raise_errors_that_carry_the_parameter():
    tg = D.Target.basis(jnp.array([0.6, 0.4]), 3)
    W0 = 1e-3 * jnp.eye(3)[:, :2]
    for kwargs, param in [(dict(rtol=-1.0), "rtol"), (dict(max_steps=0), "max_steps"), (dict(alpha=2.0), "alpha"),
                          (dict(lam=-1.0), "lam")]:
        with pytest.raises(ParamError) as err:
            D.gradient_flow(tg, W0, jnp.linspace(0.0, 1.0, 3), **kwargs)
        assert err.value.param == param, (kwargs, err.value)
    with pytest.raises(ParamError) as err:
        Study("flow", 4, dict(kind="basis", a=[0.6, 0.4]), dict(d=6, m=8, horizon=1.0, rtol=-1.0))
    assert err.value.param == "params.rtol"
    with pytest.raises(ParamError) as err:  # SolverConfig checks its settings at construction
        SolverConfig(solver=diffrax.Tsit5(), controller=diffrax.PIDController(rtol=-1.0, atol=1e-8))
    assert err.value.param == "controller.rtol"
    with pytest.raises(ParamError) as err:
        SolverConfig.adaptive(max_steps=0)
    assert err.value.param == "max_steps"


def test_a_param_error_keeps_its_parameter_when_pickled_and_when_renamed():
    err = pickle.loads(pickle.dumps(ParamTypeError("rtol must be a real number", param="rtol")))
    assert type(err) is ParamTypeError and err.param == "rtol" and str(err) == "rtol must be a real number"
    with pytest.raises(ParamError) as renamed, flag_names({"rtol": "--rtol"}):
        check.positive("rtol", -1.0)
    assert str(renamed.value).startswith("--rtol must") and renamed.value.param == "rtol"


MC = ["montecarlo", "--a", "0.6,0.4", "--d", "6", "--m", "8", "--horizon", "1", "--seeds", "4"]


@pytest.mark.parametrize("flags, line", [
    (["--rtol", "-1"], "deflation montecarlo: error: --rtol: params.rtol must be a finite number > 0, got -1.0"),
    (["--max-steps", "0"], "deflation montecarlo: error: --max-steps: params.max_steps must be an integer >= 1"),
    (["--event-points", "1"], "deflation montecarlo: error: --event-points: params.event_points must be"),
    (["--m", "0"], "deflation montecarlo: error: --m: params.m must be an integer >= 1, got 0"),
    (["--solver", "rk4"], "deflation montecarlo: error: --solver: params.solver must be one of"),
])
def test_the_command_line_names_the_flag_of_a_parameter_error(capsys, tmp_path, flags, line):
    out = tmp_path / "x.zarr"
    assert cli.main(MC + flags + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(line), err
    assert not out.exists()


def test_a_message_that_names_its_flag_already_gets_no_prefix(capsys, tmp_path):
    assert cli.main(["figure1", "--rtol", "2", "--out", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err.startswith("deflation figure1: error: --rtol must lie in the open interval")


def test_the_flag_tables_map_every_solver_option_to_its_parameter():
    assert {montecarlo_command.PARAM_FLAGS[p] for p in ("params.rtol", "params.atol", "params.max_steps",
                                                         "params.solver", "params.dtype", "params.event_points",
                                                         "params.d", "params.horizon", "seeds", "key")} == {
        "--rtol", "--atol", "--max-steps", "--solver", "--dtype", "--event-points", "--d", "--horizon", "--seeds",
        "--key"}
    assert algorithm2_command.PARAM_FLAGS["c_rho"] == "--c-rho"


# ---------------------------------------------------------------------------- defaults


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def test_the_solver_defaults_are_defined_once_on_solver_config():
    """Every place that offers a default for rtol, atol or max_steps reads SolverConfig's."""
    from deflation.cli import build_parser

    want = dict(rtol=SolverConfig.DEFAULT_RTOL, atol=SolverConfig.DEFAULT_ATOL,
                max_steps=SolverConfig.DEFAULT_MAX_STEPS)
    assert want == dict(rtol=1e-8, atol=1e-8, max_steps=100_000)  # today's values: results stay the same
    mc = vars(build_parser().parse_args(["montecarlo"]))
    a2 = vars(build_parser().parse_args(["algorithm2"]))
    for name, value in want.items():
        assert _default(D.gradient_flow, name) == value, name
        assert _default(D.modified_gradient_flow, name) == value, name
        assert _default(SolverConfig.adaptive, name) == value, name
        assert PARAMS[name].default == value, name
        assert mc[name] == value, name
        if name != "max_steps":  # algorithm2 has no --max-steps
            assert a2[name] == value, name
    assert SolverConfig(solver=diffrax.Tsit5(), controller=diffrax.ConstantStepSize(), dt0=0.1).max_steps == \
        SolverConfig.DEFAULT_MAX_STEPS
