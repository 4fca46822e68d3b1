"""The regulator: its policy over time (pure), its checks before a run, and a policy change
that changes the DOPF's behaviour in a real federation with no code change."""

from __future__ import annotations

import pytest
import yaml
from helpers import scenario_data

from gridsim.federates.regulator.policy import (
    check_parameters,
    initial_policy,
    parse_changes,
    policy_at,
)

BASE = {"payment_rule": "proportional", "price_cap": None, "fairness_premium": 0.0,
        "v_min": 0.95, "v_max": 1.05, "changes": []}


def test_changes_apply_in_time_order_with_revisions():
    changes = parse_changes([{"at_h": 3, "v_max": 1.04},
                             {"at_h": 1, "payment_rule": "uniform-price"}])
    initial = initial_policy(BASE)
    assert policy_at(initial, changes, 0.0).revision == 0
    at_2h = policy_at(initial, changes, 7200.0)
    assert (at_2h.revision, at_2h.payment_rule, at_2h.v_max_pu) == (1, "uniform-price", 1.05)
    at_3h = policy_at(initial, changes, 3 * 3600.0)
    assert (at_3h.revision, at_3h.payment_rule, at_3h.v_max_pu) == (2, "uniform-price", 1.04)


@pytest.mark.parametrize(("changes", "field", "words"), [
    ([{"v_max": 1.04}], "changes", "needs at_h"),
    ([{"at_h": 1, "vmax": 1.04}], "changes", "unknown fields ['vmax']"),
    ([{"at_h": 1, "fairness_premium": 1.5}], "changes", "[0, 1)"),
])
def test_bad_changes_are_named(changes, field, words):
    problems = check_parameters({**BASE, "changes": changes})
    assert problems and problems[0][0] == field and words in problems[0][1]


def test_inverted_limits_are_refused():
    assert ("v_min", "must be below v_max") in check_parameters({**BASE, "v_min": 1.06})


def test_bad_policy_stops_before_the_run(run_gridsim, repo_root, tmp_path):
    data = yaml.safe_load((repo_root / "scenarios" / "ieee13.yaml").read_text())
    data["federates"]["regulator"] = {"type": "regulator",
                                      "parameters": {"changes": [{"at_h": 1, "x": 2}]}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, _, stderr = run_gridsim("validate", path)
    assert code == 2
    line = stderr.strip().splitlines()
    assert len(line) == 1 and "federates.regulator.parameters.changes" in line[0]
    assert "Traceback" not in stderr


def test_regulator_voltage_limit_drives_the_dopf(run_data, tmp_path):
    """The regulator's v_max of 1.04 replaces the DOPF's own 1.05: the real maximum of the
    high-PV day stays within 1.04 + 0.002 p.u. after each excursion of at most 4 steps."""
    data = scenario_data("ieee123-dopf")
    data["federates"]["regulator"] = {"type": "regulator", "parameters": {"v_max": 1.04}}
    data["links"].append("regulator.policy -> dopf.policy")
    summary = run_data(data, tmp_path / "run")
    v_max = summary["feeder"]["v_max_pu_per_step"]
    above, run = [], 0
    for v in v_max:
        run = run + 1 if v > 1.042 else 0
        above.append(run)
    assert max(above) <= 4, v_max
    assert max(v_max[40:60]) < 1.045  # the 1.05 scenario sits at 1.050 here
    assert summary["regulator"]["revisions"][0]["v_max_pu"] == 1.04


def test_regulator_is_granted_only_where_the_policy_changes():
    """The steps the regulator asks HELICS for: the first, and the first step at or after
    each change (a change between steps takes effect at the next one)."""
    from datetime import datetime

    from gridsim.federates.regulator.federate import publishing_steps
    from gridsim.federates.regulator.policy import RegulatorSettings
    from gridsim.loop import Clock

    settings = RegulatorSettings.from_parameters(
        {**BASE, "changes": [{"at_h": 3, "v_max": 1.04}, {"at_h": 14.1, "v_max": 1.045}]})
    clock = Clock(datetime(2026, 7, 1), 900.0, 96, 900.0, 0.5)
    assert publishing_steps(settings, clock) == [0, 12, 57]
    assert publishing_steps(RegulatorSettings.from_parameters(BASE), clock) == [0]
