"""Parameters a linked policy replaces, and the limits of the values it will bring
(`gridsim.overrides`, `federates/market/limits.py`).

The regulator's policy replaces the DOPF's voltage limits and the market's payment rule,
price cap and fairness premium. Before, a ``v_max`` set on the DOPF (or a ``payment_rule``
on the market) was silently replaced, and a ``shapley`` market of 36 entities validated and
failed at its round, twelve simulated hours in. Each case is now one line at validation.
"""

from __future__ import annotations

import pytest
from test_validation import base_scenario, validate_error, write_yaml

from gridsim.components import builtin_types, load_definition
from gridsim.federates.market.limits import entity_count, rule_limits
from gridsim.federates.market.payments import RULES
from gridsim.wiring import load_federation


def policy_scenario(regulator: dict | None = None, dopf: dict | None = None,
                    market: dict | None = None, links: tuple[str, ...] = ()) -> dict:
    """ieee13: feeder, regulator, DOPF (fed the true voltages) and market, with the given
    parameters; the policy reaches both by default links."""
    federates = {"feeder": {"type": "feeder"},
                 "regulator": {"type": "regulator", "parameters": regulator or {}},
                 "dopf": {"type": "dopf", "parameters": dopf or {}},
                 "market": {"type": "market", "parameters": market or {"entities": 6}}}
    return base_scenario(federates=federates, links=[
        "feeder.voltages_magnitude -> dopf.voltages_magnitude",
        "feeder.voltages_angle -> dopf.voltages_angle", *links])


def entity(load: str) -> dict:
    return {"load": load, "blocks": [{"name": "all", "share": 1.0, "value": 2.0}]}


# --- a parameter the linked policy replaces may not be set -------------------------------

def test_dopf_limit_set_beside_a_linked_policy_fails(tmp_path):
    raw = policy_scenario(dopf={"v_max": 1.04}, links=("regulator.policy -> dopf.policy",))
    line = validate_error(write_yaml(tmp_path, raw), "federates.dopf.parameters.v_max",
                          "set by the linked policy (regulator.policy)",
                          "set it on regulator instead")
    assert line.endswith("set by the linked policy (regulator.policy); set it on regulator "
                         "instead")


def test_default_linked_policy_counts_too(tmp_path):
    """No link written: the policy reaches the market by default, and replaces its rule."""
    raw = policy_scenario(market={"entities": 6, "payment_rule": "uniform-price"})
    validate_error(write_yaml(tmp_path, raw), "federates.market.parameters.payment_rule",
                   "set by the linked policy (regulator.policy)")


@pytest.mark.parametrize("name, value", [("price_cap", 2.0), ("fairness_premium", 0.1),
                                         ("v_min", 0.96)])
def test_every_overridden_parameter_is_checked(tmp_path, name, value):
    target = "dopf" if name.startswith("v_") else "market"
    params = {name: value} if target == "dopf" else {"entities": 6, name: value}
    raw = policy_scenario(**{target: params})
    validate_error(write_yaml(tmp_path, raw), f"federates.{target}.parameters.{name}",
                   "set by the linked policy")


def test_parameters_at_their_default_or_without_a_policy_are_fine(tmp_path):
    """Left at (or written as) the default, the parameter says nothing the policy could
    silently contradict; without a regulator the DOPF's own limit applies."""
    at_default = policy_scenario(dopf={"v_max": 1.05})
    assert load_federation(write_yaml(tmp_path, at_default)).federates["dopf"]
    no_regulator = policy_scenario(dopf={"v_max": 1.04})
    del no_regulator["federates"]["regulator"]
    federation = load_federation(write_yaml(tmp_path, no_regulator, "alone.yaml"))
    assert federation.federates["dopf"].parameters["v_max"] == 1.04


def test_the_overrides_are_declared_on_the_policy_inputs():
    dopf = load_definition(builtin_types()["dopf"]).input("policy")
    market = load_definition(builtin_types()["market"]).input("policy")
    regulator = load_definition(builtin_types()["regulator"]).output("policy")
    assert dopf.overrides == ["v_min", "v_max"]
    assert market.overrides == ["payment_rule", "price_cap", "fairness_premium"]
    assert set(dopf.overrides + market.overrides) <= set(regulator.carries)
    assert regulator.schedule.parameter == "changes"


# --- the limits of a payment rule ----------------------------------------------------------

def test_shapley_market_over_its_limit_fails(tmp_path):
    """36 entities and the exact Shapley rule: refused before the run."""
    raw = policy_scenario(market={"entities": 36, "payment_rule": "shapley"})
    del raw["federates"]["regulator"]
    validate_error(write_yaml(tmp_path, raw), "federates.market.parameters.payment_rule",
                   "shapley is exact for at most 12 entities", "36 (entities)")


def test_shapley_counts_entity_definitions(tmp_path):
    """Written-out entities count, whatever `entities` says; 12 is within the limit."""
    loads = ["671", "692", "675a", "675b", "675c", "634a", "634b", "634c", "645", "646",
             "652", "611", "670a"]
    over = policy_scenario(market={"payment_rule": "shapley",
                                   "entity_definitions": [entity(x) for x in loads]})
    del over["federates"]["regulator"]
    validate_error(write_yaml(tmp_path, over), "federates.market.parameters.payment_rule",
                   "13 (entity_definitions)")
    within = policy_scenario(market={"payment_rule": "shapley", "entities": 12})
    del within["federates"]["regulator"]
    assert load_federation(write_yaml(tmp_path, within, "within.yaml"))


def test_regulator_selecting_shapley_for_a_large_market_fails(tmp_path):
    raw = policy_scenario(regulator={"payment_rule": "shapley"}, market={"entities": 36})
    validate_error(write_yaml(tmp_path, raw), "federates.regulator.parameters.payment_rule",
                   "market's payment_rule becomes 'shapley' through market.policy",
                   "at most 12 entities", "36")


def test_scheduled_change_to_shapley_fails_naming_the_change(tmp_path):
    raw = policy_scenario(regulator={"changes": [{"at_h": 1, "v_max": 1.04},
                                                 {"at_h": 14, "payment_rule": "shapley"}]},
                          market={"entities": 36})
    validate_error(write_yaml(tmp_path, raw), "federates.regulator.parameters.changes[1]",
                   "payment_rule becomes 'shapley'", "at most 12 entities")


def test_scheduled_change_outside_the_markets_choices_fails(tmp_path):
    raw = policy_scenario(regulator={"changes": [{"at_h": 2, "payment_rule": "vickrey"}]})
    validate_error(write_yaml(tmp_path, raw), "federates.regulator.parameters.changes[0]",
                   "payment_rule becomes 'vickrey'", "must be one of")


def test_shapley_policy_for_a_small_market_or_no_market_is_fine(tmp_path):
    small = policy_scenario(regulator={"payment_rule": "shapley"}, market={"entities": 6})
    assert load_federation(write_yaml(tmp_path, small))
    no_market = policy_scenario(regulator={"payment_rule": "shapley"})
    del no_market["federates"]["market"]
    assert load_federation(write_yaml(tmp_path, no_market, "no-market.yaml"))


def test_declared_limits_are_the_payment_rules_own():
    """The definition's ``choice_limits`` agree with the rules' code (``max_entities``)."""
    declared = rule_limits()
    for name, rule in RULES.items():
        limit = getattr(rule, "max_entities", None)
        assert declared.get(name, {}).get("entities") == limit, name
    assert entity_count({"entities": 5, "entity_definitions": []}) == 5
