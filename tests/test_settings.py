"""Command-line settings: ``--set FIELD=VALUE`` (repeatable) and ``--seed N`` change the
scenario as if its file said so, are validated exactly like it, and are recorded in the run
directory; a wrong one is exit code 2 with one line."""

from __future__ import annotations

import json

import pytest
from helpers import gridsim
from test_validation import assert_input_error, base_scenario, write_yaml

from gridsim.errors import InputError
from gridsim.scenario import apply_settings


def test_settings_apply_in_order_and_create_what_is_missing():
    raw = {"seed": 1, "federates": {"feeder": {"type": "feeder"}}}
    apply_settings(raw, ["federates.feeder.parameters.pv_scale=2",
                         "federates.feeder.parameters.mode=yearly", "seed=3", "seed=4",
                         "links=[feeder.* -> recorder.subscription]", "description="])
    assert raw == {"seed": 4, "description": None,
                   "federates": {"feeder": {"type": "feeder", "parameters": {
                       "pv_scale": 2, "mode": "yearly"}}},
                   "links": ["feeder.* -> recorder.subscription"]}


@pytest.mark.parametrize("setting, words", [
    ("seed", "expected FIELD=VALUE"), ("=3", "expected FIELD=VALUE"),
    ("federates..type=x", "expected FIELD=VALUE"), ("seed.x=1", "seed is not a mapping")])
def test_a_setting_that_cannot_apply_names_itself(setting, words):
    with pytest.raises(InputError, match=words) as caught:
        apply_settings({"seed": 1}, [setting])
    assert caught.value.source == "--set"


def test_set_and_seed_change_the_run_and_are_recorded(tmp_path):
    """pv_scale=2 raises the feeder's highest voltage; --seed is the run's seed; both are
    in settings.json and in the configuration the federates ran with."""
    path = write_yaml(tmp_path, base_scenario(start="2026-07-01T11:00:00"))
    plain, changed = tmp_path / "plain", tmp_path / "changed"
    assert gridsim("run", str(path), "--out", str(plain), "--quiet").returncode == 0
    result = gridsim("run", str(path), "--out", str(changed), "--quiet", "--seed", "7",
                     "--set", "federates.feeder.parameters.pv_scale=2")
    assert result.returncode == 0, result.stderr
    before, after = (json.loads((d / "summary.json").read_text()) for d in (plain, changed))
    assert after["seed"] == 7 and before["seed"] != 7
    assert after["federates"]["feeder"]["v_max_pu"] > before["federates"]["feeder"]["v_max_pu"]
    assert json.loads((changed / "settings.json").read_text())["set"] == [
        "federates.feeder.parameters.pv_scale=2", "seed=7"]
    feeder = json.loads((changed / "federates" / "feeder.json").read_text())
    assert feeder["parameters"]["pv_scale"] == 2


@pytest.mark.parametrize("args, field, words", [
    (["--set", "federates.feeder.parameters.pv_scale=abc"],
     "federates.feeder.parameters.pv_scale", "float"),
    (["--set", "federates.feeder.parameters.bogus=1"],
     "federates.feeder.parameters.bogus", "unknown parameter"),
    (["--set", "duration=0s"], "duration", ""),
    (["--seed", "x"], "seed", "integer")])
def test_a_wrong_setting_is_refused_like_the_file(tmp_path, args, field, words):
    """Validated like the YAML: one line naming the scenario file and the field, exit 2,
    for validate and for run (which then writes nothing)."""
    path = write_yaml(tmp_path, base_scenario())
    assert_input_error(gridsim("validate", str(path), *args), path, field, words)
    out = tmp_path / "run"
    assert_input_error(gridsim("run", str(path), "--out", str(out), "--quiet", *args), path,
                       field, words)
    assert not out.exists()


def test_a_malformed_setting_is_one_line(tmp_path):
    path = write_yaml(tmp_path, base_scenario())
    result = gridsim("validate", str(path), "--set", "pv_scale")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: --set: pv_scale: expected FIELD=VALUE")
