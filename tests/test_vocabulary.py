"""One vocabulary across the command line, the study files and the library: one flag per concept
in every command, old spellings still accepted with a one-line deprecation notice, and help texts
without doubled defaults or reST markup. Nothing here compiles or runs a flow."""

from __future__ import annotations

import argparse
import re
import warnings

import pytest

from deflation.cli import build_parser, main

#: concept -> the one flag every command that takes it uses
CONCEPTS = {
    "PRNG key": ("--key", ("figure1", "algorithm2", "montecarlo")),
    "horizon": ("--horizon", ("figure1", "montecarlo")),
    "geometric weights": ("--ratio", ("figure1", "algorithm2", "montecarlo")),
    "explicit weights": ("--a", ("algorithm2", "montecarlo")),
    "ground-truth count": ("--r", ("figure1", "algorithm2", "montecarlo")),
    "columns of W": ("--m", ("figure1", "algorithm2", "montecarlo")),
    "event grid": ("--event-points", ("figure1", "algorithm2", "montecarlo")),
}
#: old spellings: hidden from --help in every command
OLD = ("--seed", "--t-end", "--time", "--geometric", "--grid-points", "--no-calibration")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every parser of the command line by its program name (commands and their actions)."""
    out, todo = {}, [build_parser()]
    while todo:
        parser = todo.pop()
        out[parser.prog] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return out


def _visible(parser) -> dict[str, str]:
    """Option string -> its help, for the options ``--help`` shows."""
    return {s: a.help or "" for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


def test_help_has_no_doubled_defaults_or_rest_markup():
    parsers = _parsers()
    assert {"deflation figure1", "deflation algorithm2", "deflation montecarlo", "deflation study plan",
            "deflation study run", "deflation montecarlo summarize"} <= set(parsers)
    for prog, parser in parsers.items():
        text = " ".join(parser.format_help().split())
        assert not re.search(r"\(default[^()]*\)\s*\(default", text), (prog, text)
        for markup in ("``", ":func:", ":class:", ":mod:", ":data:", ":meth:", ":py:"):
            assert markup not in text, (prog, markup)
        for flag, help_text in _visible(parser).items():
            assert help_text.count("(default") <= 1, (prog, flag, help_text)


def test_same_concept_same_flag_in_every_command():
    parsers = _parsers()
    for concept, (flag, commands) in CONCEPTS.items():
        for command in commands:
            assert flag in _visible(parsers[f"deflation {command}"]), (concept, command, flag)
    for prog, parser in parsers.items():
        shown = _visible(parser)
        assert not set(OLD) & set(shown), (prog, set(OLD) & set(shown))
        for flag, help_text in shown.items():
            # "component" is the ground truth's; the columns of W are "columns"
            assert "model component" not in help_text and "number of components" not in help_text, (prog, flag)
        if "--m" in shown:
            assert "columns of W" in shown["--m"], (prog, shown["--m"])


@pytest.mark.parametrize("argv, attr, value, notice", [
    (["figure1", "--t-end", "5"], "horizon", 5.0, "--t-end is deprecated; use --horizon"),
    (["algorithm2", "--seed", "3"], "key", 3, "--seed is deprecated; use --key"),
    (["algorithm2", "--grid-points", "9"], "event_points", 9, "--grid-points is deprecated; use --event-points"),
    (["algorithm2", "--geometric", "1.4"], "ratio", 1.4, "--geometric is deprecated; use --ratio"),
    (["montecarlo", "--time", "80"], "horizon", "80", "--time is deprecated; use --horizon"),
])
def test_old_flag_spellings_still_work_and_say_so(argv, attr, value, notice, capsys):
    new = {"horizon": "--horizon", "key": "--key", "event_points": "--event-points", "ratio": "--ratio"}[attr]
    args = build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert getattr(args, attr) == value
    assert err.count("\n") == 1 and notice in err, err
    # the new spelling: the same value, no notice
    same = build_parser().parse_args([argv[0], new, argv[-1]])
    assert getattr(same, attr) == value and capsys.readouterr().err == ""


def test_weights_one_syntax_old_forms_still_work(capsys):
    from deflation.commands import algorithm2, montecarlo

    args = build_parser().parse_args(["algorithm2", "--a", "0.5", "0.3", "0.2"])
    algorithm2.check_args(args)
    err = capsys.readouterr().err
    assert args.a == [0.5, 0.3, 0.2] and "deprecated" in err and "--a 0.5,0.3,0.2" in err
    args = build_parser().parse_args(["algorithm2", "--a", "0.5,0.3,0.2"])
    algorithm2.check_args(args)
    assert args.a == [0.5, 0.3, 0.2] and capsys.readouterr().err == ""

    common = ["--d", "6", "--m", "8", "--horizon", "3", "--seeds", "4"]
    new = montecarlo.build_study(build_parser().parse_args(["montecarlo", "--ratio", "1.2", "--r", "3", *common]))
    assert capsys.readouterr().err == ""
    old = montecarlo.build_study(build_parser().parse_args(["montecarlo", "--a", "geometric:3:1.2", *common]))
    err = capsys.readouterr().err
    assert old == new and err.count("\n") == 1 and "--ratio 1.2 --r 3" in err, err
    sweep = montecarlo.build_study(build_parser().parse_args(["montecarlo", "--ratio", "1.2,1.5", "--r", "3", *common]))
    assert dict(sweep.grid)["ratio"] == (1.2, 1.5)
    with pytest.raises(ValueError, match="--a or --ratio"):
        montecarlo.build_study(build_parser().parse_args(["montecarlo", "--a", "0.5,0.5", "--ratio", "2", *common]))


def test_study_file_old_keys_still_work_and_warn():
    from deflation.montecarlo import Study

    target = dict(kind="basis", ratio=1.2, r=3)
    new = Study("algorithm2", 4, target, dict(d=4, eps=3e-2, max_epochs=2, event_points=17))
    with pytest.warns(FutureWarning, match="params.grid_points is deprecated; use params.event_points"):
        old = Study("algorithm2", 4, target, dict(d=4, eps=3e-2, max_epochs=2, grid_points=17))
    assert old == new and old.points()[0]["event_points"] == 17
    assert Study("algorithm2", 4, target, dict(d=4, eps=3e-2)).points()[0]["event_points"] == 65
    with pytest.raises(ValueError, match="event_points must be >= 3"):
        Study("algorithm2", 4, target, dict(d=4, eps=3e-2, event_points=2))
    flow = Study("flow", 4, target, dict(d=4, m=5, horizon=3.0))
    for old_key in ("time", "t_end"):
        with pytest.warns(FutureWarning, match=f"params.{old_key} is deprecated; use params.horizon"):
            assert Study("flow", 4, target, dict(d=4, m=5, **{old_key: 3.0})) == flow
    with pytest.raises(ValueError, match="give 'horizon' only"):
        Study("flow", 4, target, dict(d=4, m=5, horizon=3.0, time=3.0))
    with warnings.catch_warnings():  # a store written with the old key opens silently, as the same study
        warnings.simplefilter("error")
        assert Study.from_json(new.to_json().replace("event_points", "grid_points")) == new


def test_study_file_old_key_is_one_line_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "old.toml"
    path.write_text('experiment = "flow"\nseeds = 4\n[target]\nratio = 1.2\nr = 2\n'
                    '[params]\nd = 4\nm = 3\ntime = 3\n')
    assert main(["study", "plan", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "deflation study: params.time is deprecated; use params.horizon\n", captured.err
    assert "not measured" in captured.out and "--calibrate" in captured.out
    assert main(["study", "plan", str(path), "--no-calibration"]) == 0
    assert "--no-calibration is deprecated" in capsys.readouterr().err


def test_library_keyword_old_spelling_still_works():
    import jax

    import deflation

    target = deflation.Target.geometric(4, 2, 1.5)
    p = deflation.theorem1_parameters(4, 5e-2)
    # the old keyword is read (here its bad value is refused, naming the new one) before anything runs
    with pytest.warns(FutureWarning, match=re.escape("(grid_points=...) is deprecated; use event_points")):
        with pytest.raises(ValueError, match="event_points"):
            deflation.modified_gradient_flow(target, jax.random.key(0), **p.as_kwargs(), grid_points=2)
