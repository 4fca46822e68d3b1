"""The DOPF in a closed loop on IEEE 123: feeder, truth estimator, DOPF, recorder.

``scenarios/ieee123-dopf.yaml``: three times the bundled PV on a lightly loaded July day,
regulators at 121 V. Without control the PV pushes voltages above 1.05 p.u. around noon;
with the DOPF the real OpenDSS maximum comes back to 1.05 + 0.002 p.u. within at most four
DOPF steps of any excursion, with every solve optimal.
"""

from __future__ import annotations

import pytest
from helpers import scenario_data

LIMIT = 1.05 + 0.002


def dopf_scenario(control: bool, algorithm: str = "primal-dual") -> dict:
    data = scenario_data("ieee123-dopf")
    if control:
        data["federates"]["dopf"]["parameters"]["algorithm"] = algorithm
    else:
        del data["federates"]["dopf"]
        data["links"] = [link for link in data["links"] if "dopf" not in link]
    return data


@pytest.fixture(scope="module")
def uncontrolled(run_data, tmp_path_factory):
    return run_data(dopf_scenario(control=False), tmp_path_factory.mktemp("uncontrolled") / "run")


@pytest.fixture(scope="module")
def controlled(run_data, tmp_path_factory):
    return run_data(dopf_scenario(control=True), tmp_path_factory.mktemp("controlled") / "run")


def excursions(v_max: list[float]) -> list[int]:
    """Lengths of the runs of consecutive steps above the limit."""
    runs, length = [], 0
    for v in v_max:
        if v > LIMIT:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    return runs + ([length] if length else [])


def test_without_control_pv_pushes_voltages_above_the_limit(uncontrolled):
    v_max = uncontrolled["feeder"]["v_max_pu_per_step"]
    assert max(v_max) > LIMIT
    assert sum(v > LIMIT for v in v_max) >= 8  # hours, not a blip


def test_with_dopf_voltages_return_within_four_steps(controlled, uncontrolled):
    v_max = controlled["feeder"]["v_max_pu_per_step"]
    assert all(length <= 4 for length in excursions(v_max)), excursions(v_max)
    assert sum(v > LIMIT for v in v_max) < sum(
        v > LIMIT for v in uncontrolled["feeder"]["v_max_pu_per_step"])


def test_dopf_summary_reports_the_run(controlled):
    dopf = controlled["dopf"]
    assert dopf["solves"] == 96
    assert dopf["statuses"] == {"optimal": 96}
    assert len(dopf["objective_per_step"]) == len(dopf["input_v_max_pu_per_step"]) == 96
    assert dopf["ordered_curtailment_kwh"] >= 0.0
    assert dopf["steps_with_unestimated_nodes"] == 0
    assert controlled["feeder"]["rejected_commands"] == 0


@pytest.fixture(scope="module")
def discrete(run_data, tmp_path_factory):
    """``scenarios/ieee123-dopf-discrete.yaml``: the DOPF also sets taps and banks."""
    return run_data(scenario_data("ieee123-dopf-discrete"),
                    tmp_path_factory.mktemp("discrete") / "run")


def test_dopf_with_taps_and_banks_keeps_the_limit(discrete):
    """With tap steps cheap (0.2 per step) and reactive power dear, the DOPF moves
    regulators; the real maximum still returns under the limit within four steps, the
    minimum stays above 0.95 - 0.002, and the feeder accepts every command."""
    feeder, dopf = discrete["feeder"], discrete["dopf"]
    assert all(length <= 4 for length in excursions(feeder["v_max_pu_per_step"]))
    assert feeder["v_min_pu"] >= 0.95 - 0.002
    assert dopf["statuses"] == {"optimal": 96}
    assert dopf["tap_moves"] > 0
    assert feeder["rejected_commands"] == 0
