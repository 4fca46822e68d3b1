"""What `gridsim validate` and `gridsim list` print about the wiring: every default link,
and each port's meaning, combine rule and the parameters it replaces (real console
script)."""

from __future__ import annotations

from helpers import gridsim
from test_validation import base_scenario, write_yaml

from gridsim.components import COMBINE_RULES, QUANTITIES
from gridsim.wiring import load_federation


def se13() -> dict:
    """ieee13 for an hour: feeder, sensor and wls estimator linked by default."""
    return base_scenario(federates={"feeder": {"type": "feeder"}, "sensor": {"type": "sensor"},
                                    "estimator": {"type": "wls"},
                                    "recorder": {"type": "recorder"}},
                         links=["estimator.* -> recorder.subscription"])


def test_validate_prints_every_default_link(tmp_path):
    """`gridsim validate` names each link it added, one line each, after the summary line."""
    path = write_yaml(tmp_path, se13())
    result = gridsim("validate", str(path))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    federation = load_federation(path)
    assert lines[0].startswith(f"ok: t: 4 federates, {len(federation.links)} links "
                               f"({len(federation.defaulted_links)} defaulted)")
    assert lines[1:] == [f"default link: {link}" for link in federation.defaulted_links]
    assert "default link: feeder.topology -> estimator.topology" in lines


def test_list_shows_meanings_and_the_vocabulary():
    result = gridsim("list")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "input  voltages_magnitude: VoltagesMagnitude, estimated-voltage (required; a " \
           "link may also bring true-voltage)" in out
    assert "output branch_powers_real: PowersReal, measured-flow." in out
    assert "port meanings (quantity" in out
    for quantity in QUANTITIES:
        assert f"    {quantity}: " in out


def test_list_shows_combine_overrides_and_limits():
    result = gridsim("list")
    assert result.returncode == 0, result.stderr
    assert "input  load_caps: LoadCaps, command (optional; several links, combined by min)" \
        in result.stdout
    assert "combine rules (inputs that take several links):\n    min: " in result.stdout
    assert "input  policy: Policy, policy (optional; replaces parameters v_min, v_max while " \
           "linked)" in result.stdout
    assert "output policy: Policy, policy (carries payment_rule, price_cap, fairness_premium, " \
           "v_min, v_max; changed over the run by changes)" in result.stdout
    assert "parameter payment_rule: str, default 'proportional' (shapley: at most 12 " \
           "entities)" in result.stdout
    for rule in COMBINE_RULES:
        assert f"    {rule}: " in result.stdout
