"""The model as a study parameter: ``model = ["normalized", "plain"]`` is a grid dimension on common
random numbers; its normalized slice is the study without the parameter, bit for bit; its plain
slice is what :func:`deflation.gradient_flow` with ``model="plain"`` gives for the same seeds
(an independent route: the Python API, not the study kernel); experiments defined only for the
paper's model refuse another one in one line, before anything is stored."""

from __future__ import annotations

import jax
import numpy as np
import pytest

pytest.importorskip("xarray")
pytest.importorskip("zarr")

import deflation as D  # noqa: E402
from deflation import cli  # noqa: E402
from deflation.montecarlo import Study, run_study  # noqa: E402

# plain order 4 escapes delta0 in a time ~ 1 / (8 a delta0^2): ~ 2000 here
PARAMS = dict(d=3, m=3, delta0=1e-2, delta1=0.3, horizon=4000.0, event_points=32)
TARGET = {"kind": "basis", "a": [0.6, 0.4]}
SEEDS = 8


@pytest.mark.slow
def test_a_model_sweep_is_a_grid_dimension_on_common_random_numbers(tmp_path):
    both = run_study(Study("flow", SEEDS, TARGET, dict(PARAMS, model=["normalized", "plain"]), chunk=4),
                     tmp_path / "both.zarr", progress=False)
    assert both["discovery_time"].dims == ("model", "seed", "component")
    assert list(both["model"].values) == ["normalized", "plain"]
    alone = run_study(Study("flow", SEEDS, TARGET, PARAMS, chunk=4), tmp_path / "alone.zarr", progress=False)
    for name in ("discovery_time", "fit_time", "loss", "status", "members", "num_steps"):
        a, b = both[name].sel(model="normalized").values, alone[name].values
        assert a.tobytes() == b.tobytes(), name

    plain = both.sel(model="plain")
    assert (plain["status"].values == 0).all()
    target = D.Target.basis(TARGET["a"], PARAMS["d"])
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(SEEDS), PARAMS["d"], PARAMS["m"], PARAMS["delta0"])
    res = D.gradient_flow(target, W0, [PARAMS["horizon"]], model="plain", delta1=PARAMS["delta1"],
                          event_points=PARAMS["event_points"])
    want = np.asarray(res.discovery_time)
    got = plain["discovery_time"].values
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    assert np.isfinite(got).any()  # the horizon lets the plain model discover something
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=1e-9)
    # the normalized model escapes in ~ log(delta1/delta0) / (4 a), the plain one ~ 1 / (8 a delta0^2)
    t_norm = both["discovery_time"].sel(model="normalized").values
    assert np.nanmax(np.where(np.isfinite(t_norm), t_norm, np.nan)) < np.nanmin(np.where(np.isfinite(got), got, np.nan))

    from deflation.montecarlo import summarize

    df = summarize(both)
    assert list(df.columns[:2]) == ["model", "component"] and set(df["model"]) == {"normalized", "plain"}


@pytest.mark.parametrize("experiment, params", [
    ("phase1", PARAMS),
    ("algorithm2", dict(d=4, eps=0.1)),
])
def test_experiments_of_the_papers_model_refuse_another_in_one_line(experiment, params, tmp_path, capsys):
    text = "".join([f"experiment = '{experiment}'\nseeds = 4\n[target]\na = [0.6, 0.4]\n[params]\n",
                    *(f"{k} = {v!r}\n" for k, v in params.items()), "model = 'plain'\n"])
    (tmp_path / "s.toml").write_text(text)
    assert cli.main(["study", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "x.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "params.model = 'plain' runs only with experiments 'flow' and 'gd'" in err
    assert not (tmp_path / "x.zarr").exists()


def test_montecarlo_command_names_the_model_flag(tmp_path, capsys):
    argv = ["montecarlo", "--d", "3", "--m", "3", "--a", "0.6,0.4", "--horizon", "5", "--seeds", "2",
            "--model", "normalized,cp", "--out", str(tmp_path / "x.zarr")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model: params.model must be one of" in err and "'asymmetric'" in err, err


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match=r"params.model must be one of .*normalized.*plain.*asymmetric.*got 'cp'"):
        Study("flow", 4, TARGET, dict(PARAMS, model="cp"))


def test_gd_refuses_the_asymmetric_model_and_algorithm2_order_2_in_one_line(tmp_path, capsys):
    for extra, message in ((dict(experiment="gd", lr=0.1, model="asymmetric"),
                            "params.model = 'asymmetric' runs only with experiments 'flow' (experiment 'gd' runs "
                            "the models 'normalized', 'plain')"),
                           (dict(experiment="phase1", order=2),
                            "params.order = 2 must be >= 3 for experiment 'phase1'")):
        params = dict(PARAMS, **{k: v for k, v in extra.items() if k != "experiment"})
        text = "".join([f"experiment = '{extra['experiment']}'\nseeds = 4\n[target]\na = [0.6, 0.4]\n[params]\n",
                        *(f"{k} = {v!r}\n" for k, v in params.items())])
        (tmp_path / "s.toml").write_text(text)
        assert cli.main(["study", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "x.zarr")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("order, horizon", [(2, 60.0), (3, 1500.0)])
@pytest.mark.slow  # (15 s cold) the default suite keeps the model refusals; the studies' flow of a model: -m slow
def test_asymmetric_model_in_a_study_is_the_python_apis(order, horizon, tmp_path):
    """A study of the asymmetric model (one factor matrix per mode, each drawn as the model's own
    ``init`` draws it) gives the discovery and fit times of ``gradient_flow(model="asymmetric")``
    for the same seeds; at order 2 (``U V^T``) Definition 1 reads the singular pairs."""
    params = dict(PARAMS, model="asymmetric", order=order, horizon=horizon)
    ds = run_study(Study("flow", 4, TARGET, params, chunk=4), tmp_path / "a.zarr", progress=False)
    assert (ds["status"].values == 0).all()
    asym = D.models.MODELS["asymmetric"]
    draws = [asym.init(jax.random.fold_in(jax.random.PRNGKey(0), k), PARAMS["d"], PARAMS["m"], PARAMS["delta0"], order)
             for k in range(4)]
    W0 = tuple(np.stack([w[j] for w in draws]) for j in range(order))
    res = D.gradient_flow(D.Target.basis(TARGET["a"], PARAMS["d"], order=order), W0, [horizon], model="asymmetric",
                          delta1=PARAMS["delta1"], event_points=PARAMS["event_points"])
    for name in ("discovery_time", "fit_time"):
        want, got = np.asarray(getattr(res, name)), ds[name].values
        found = np.isfinite(want)
        assert found.sum() >= 4, name  # most components found and fitted by the horizon
        np.testing.assert_array_equal(np.isfinite(got), found, err_msg=name)
        np.testing.assert_allclose(got[found], want[found], rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(ds["loss"].values, np.asarray(res.loss)[:, -1], rtol=1e-8, atol=1e-14)
    assert ds.attrs["definition1"] == f"asymmetric at order {order}: {'spectral' if order == 2 else 'columns'}"


@pytest.mark.slow
def test_figure1_runs_the_plain_model_and_says_so(tmp_path, capsys):
    out = tmp_path / "f1"
    argv = ["figure1", "--model", "plain", "--d", "4", "--r", "2", "--m", "4", "--seeds", "2", "--init", "0.05",
            "--delta1", "0.5", "--horizon", "400", "--points", "21", "--event-points", "32", "--out", str(out)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "model=plain" in text and "fitted: residual on u_i <= 0.1 a_i" in text
    with np.load(out / "figure1.npz") as data:
        disc, loss = data["discovery_time"], data["loss"]
    assert np.isfinite(disc).any()
    # the same seeds through the Python API with model="plain": W0 = 0.05 * the seeds' unit columns
    W0 = D.sample_sphere_batch(jax.random.PRNGKey(0), range(2), 4, 4, 0.05)
    res = D.gradient_flow(D.Target.geometric(4, 2, 1.2), W0, np.linspace(0, 400, 21), model="plain",
                          rtol=1e-10, atol=1e-10, delta1=0.5, event_points=32)
    np.testing.assert_allclose(np.asarray(res.discovery_time), disc, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(res.loss), loss, rtol=1e-8)


def test_figure1_refuses_an_init_at_or_above_delta1(tmp_path, capsys):
    assert cli.main(["figure1", "--model", "plain", "--init", "0.05", "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--init must be < --delta1 = 0.001" in err
