"""Commands leave no untracked files: each command the README shows, run with its default outputs
in a temporary git repository holding the project's tracked files (``.gitignore``, the example
study file, the notebooks), leaves ``git status --porcelain`` empty. The default suite checks the
paths the commands write by default; ``-m slow`` runs the commands themselves (tiny sizes)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                                reason="needs git and a git checkout")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def clone(tmp_path, monkeypatch) -> Path:
    """A git repository with every tracked file of this checkout, as in the working tree (the
    ``.gitignore`` being tested included), committed; the current directory."""
    repo = tmp_path / "clone"
    for name in _git(ROOT, "ls-files", "-z").split("\0"):
        if name and (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, repo / name)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tree")
    assert _git(repo, "status", "--porcelain") == ""
    monkeypatch.chdir(repo)
    return repo


def _clean(repo: Path) -> None:
    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_example_study_file_plans_and_is_tracked(clone, capsys):
    from deflation.cli import main

    assert (clone / "examples" / "discovery.toml").is_file()  # the README's study file ships with the repository
    assert main(["study", "plan", "examples/discovery.toml"]) == 0
    text = capsys.readouterr().out
    assert "grid d (2) x m (2) = 4 point(s) x 64 seeds = 256 runs" in text and "4 compiled program(s)" in text
    _clean(clone)


def test_every_default_output_is_ignored(clone):
    """The default ``--out`` of every command (read from the parser) and the files next to it,
    a notebook converted by jupytext, a benchmark's output: all ignored by git."""
    from deflation.cli import build_parser

    parser = build_parser()
    f1, a2 = parser.parse_args(["figure1"]).out, parser.parse_args(["algorithm2"]).out
    mc = Path(parser.parse_args(["montecarlo"]).out)
    assert mc.parts[0] == "out" and mc.suffix == ".zarr"
    paths = [f"{f1}/figure1.png", f"{f1}/figure1.npz", f"{f1}/figure1.json", f"{a2}/algorithm2.png",
             f"{a2}/algorithm2.npz", f"{a2}/algorithm2.json", f"{mc}/zarr.json", "notebooks/figure1.ipynb",
             "benchmarks/out/solvers_quick_cpu.json", "site/html/index.html"]
    for store in (mc, Path("out/discovery.zarr")):  # montecarlo's default; study run examples/discovery.toml's
        paths += [str(store.with_suffix(".csv")), str(store.with_suffix(".png")),
                  str(store.with_name(store.stem + "_cdf.png")), str(store.with_name(store.stem + "_convergence.png"))]
    for path in paths:
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text("x")
    _clean(clone)


@pytest.mark.slow
def test_commands_with_default_outputs_leave_the_tree_clean(clone, capsys):
    from deflation.cli import main

    tiny = ["--seeds", "1", "--d", "3", "--r", "2", "--m", "3", "--horizon", "2", "--points", "3",
            "--rtol", "1e-5", "--atol", "1e-5", "--event-points", "8"]
    assert main(["figure1", *tiny]) == 0
    assert (clone / "figure1-out" / "figure1.png").is_file()
    _clean(clone)

    assert main(["montecarlo", "--ratio", "1.5", "--r", "2", "--d", "3", "--m", "3", "--delta0", "1e-4",
                 "--horizon", "2", "--seeds", "4", "--chunk", "4", "--event-points", "8", "--rtol", "1e-5",
                 "--atol", "1e-5", "--no-progress"]) == 0
    assert (clone / "out" / "montecarlo.zarr").is_dir() and (clone / "out" / "montecarlo.csv").is_file()
    _clean(clone)

    study = clone / "out" / "tiny.toml"  # a user's own study file, kept where git ignores it
    study.write_text('experiment = "phase1"\nseeds = 4\nchunk = 4\n[target]\nratio = 1.5\nr = 2\n'
                     '[params]\nd = 3\nm = 3\ndelta0 = 1e-4\nhorizon = 2\nevent_points = 8\nrtol = 1e-5\natol = 1e-5\n')
    assert main(["study", "run", str(study), "--no-progress"]) == 0
    assert (clone / "out" / "tiny.zarr").is_dir() and (clone / "out" / "tiny.csv").is_file()
    _clean(clone)

    # what notebooks/README.md suggests: jupytext --to ipynb notebooks/figure1.py
    (clone / "notebooks" / "figure1.ipynb").write_text("{}")
    (clone / "benchmarks" / "out").mkdir(exist_ok=True)
    (clone / "benchmarks" / "out" / "solvers_quick_cpu.json").write_text("{}")
    _clean(clone)
    capsys.readouterr()
