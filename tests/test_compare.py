"""`gridsim compare`: two seeds of the same scenario differ where the randomness acts and
nowhere else; a run against itself, or against its stored summary, is equal; a tolerance
turns a changed figure into exit code 1 (the CI use); bad input is one line, exit 2."""

from __future__ import annotations

import json
import math

import pytest
from helpers import gridsim

from gridsim.compare import compare, deviation, flatten


def test_figures_and_their_deviation():
    summary = {"gridsim_version": "x", "seed": 1,
               "federates": {"feeder": {"v": 2.0, "per_step": [1.0, 2.0]}, "empty": {}}}
    assert flatten(summary) == {"seed": 1, "federates.feeder.v": 2.0,
                                "federates.feeder.per_step": [1.0, 2.0],
                                "federates.empty": {}}
    assert deviation(2.0, 2.0) == 0.0
    assert deviation(200.0, 202.0) == pytest.approx(0.01)     # relative for large values
    assert deviation(0.001, 0.003) == pytest.approx(0.002)    # absolute near zero
    assert deviation([1.0, 5.0], [1.0, 5.5]) == pytest.approx(0.1)
    assert deviation([1.0], [1.0, 2.0]) == math.inf
    assert deviation("ok", "failed") == math.inf and deviation(True, 1) == math.inf
    rows = compare([summary, {**summary, "seed": 2}])
    assert [(r.path, r.deviation) for r in rows if r.deviation] == [("seed", 1.0)]


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory, repo_root):
    """ieee13-se (sensor noise, WLS) for two hours, seeds 13 and 14."""
    folder = tmp_path_factory.mktemp("compare")
    runs = []
    for seed in (13, 14):
        out = folder / f"seed{seed}"
        result = gridsim("run", str(repo_root / "scenarios" / "ieee13-se.yaml"), "--out",
                         str(out), "--quiet", "--seed", str(seed), "--set", "duration=2h")
        assert result.returncode == 0, result.stderr
        runs.append(out)
    return runs


def test_two_seeds_differ_where_the_noise_acts(two_seeds):
    a, b = two_seeds
    result = gridsim("compare", str(a), str(b), "--stream", "estimator/voltages_magnitude")
    assert result.returncode == 0, result.stderr
    differing = {line.split()[0] for line in result.stdout.splitlines()[1:]
                 if line.startswith(("federates.", "seed"))}
    assert "seed" in differing and "federates.estimator.v_error_mean_pu" in differing
    assert not any(name.startswith("federates.feeder.") for name in differing), \
        "the feeder's truth does not depend on the seed"
    stream = next(line for line in result.stdout.splitlines()
                  if line.startswith("estimator/voltages_magnitude"))
    assert "8 of 8 steps differ" in stream


def test_a_run_equals_itself_and_its_golden_summary(two_seeds, tmp_path):
    a = two_seeds[0]
    golden = tmp_path / "golden.json"
    golden.write_text((a / "summary.json").read_text())
    result = gridsim("compare", str(a), str(golden), "--tolerance", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 of" in result.stdout


def test_a_changed_figure_beyond_the_tolerance_fails(two_seeds, tmp_path):
    """The CI use: a golden summary with one figure changed by 2%: within 5%, exit 0;
    within 1%, exit 1 naming it."""
    a = two_seeds[0]
    golden = json.loads((a / "summary.json").read_text())
    golden["federates"]["feeder"]["v_max_pu"] *= 1.02
    path = tmp_path / "golden.json"
    path.write_text(json.dumps(golden))
    assert gridsim("compare", str(path), str(a), "--tolerance", "0.05").returncode == 0
    result = gridsim("compare", str(path), str(a), "--tolerance", "0.01")
    assert result.returncode == 1
    assert "federates.feeder.v_max_pu" in result.stderr


@pytest.mark.parametrize("runs, words", [(["first"], "at least two"),
                                         (["first", "nowhere"], "no summary"),
                                         (["first", "first"], "no results database")])
def test_bad_input_is_one_line(runs, words, two_seeds, tmp_path):
    """One run; a path that is no run; a stream asked of a summary file alone."""
    golden = tmp_path / "summary.json"
    golden.write_text((two_seeds[0] / "summary.json").read_text())
    paths = [str(golden) if r == "first" else str(tmp_path / r) for r in runs]
    extra = ["--stream", "feeder/voltages_magnitude"] if words == "no results database" else []
    result = gridsim("compare", *paths, *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1 and words in result.stderr
