"""Inputs that combine several links (``combine`` in a definition): the feeder's load caps
take the market's and the DOPF's, and the federate's config carries the rule.

An input with a ``combine`` rule accepts several links (explicit, or by default every
output of its type and meaning); an input without one still takes one link.
"""

from __future__ import annotations

import json

from helpers import gridsim
from test_validation import base_scenario, validate_error, with_custom, write_yaml

from gridsim.build import RunSettings, federate_config
from gridsim.components import COMBINE_RULES, builtin_types, load_definition
from gridsim.scenario import Link
from gridsim.wiring import load_federation


def caps_scenario(links: list[str]) -> dict:
    """ieee13 with a market and a DOPF (fed the true voltages), the given links."""
    return base_scenario(
        federates={"feeder": {"type": "feeder"}, "market": {"type": "market"},
                   "dopf": {"type": "dopf"}},
        links=["feeder.voltages_magnitude -> dopf.voltages_magnitude",
               "feeder.voltages_angle -> dopf.voltages_angle", *links])


def test_feeder_load_caps_declare_min():
    port = load_definition(builtin_types()["feeder"]).input("load_caps")
    assert port.combine == "min" and port.combine in COMBINE_RULES


def test_several_links_into_a_combine_input_validate(tmp_path):
    """Market and DOPF caps into the feeder: both kept, and the federate's config says
    how to combine them."""
    path = write_yaml(tmp_path, caps_scenario(["market.load_caps -> feeder.load_caps",
                                               "dopf.load_caps -> feeder.load_caps"]))
    result = gridsim("validate", str(path))
    assert result.returncode == 0, result.stderr
    federation = load_federation(path)
    assert federation.inputs_of("feeder")["load_caps"] == ["market/load_caps", "dopf/load_caps"]
    config = federate_config(federation, "feeder", RunSettings())
    assert config["inputs"]["load_caps"]["combine"] == "min"
    assert config["inputs"]["load_caps"]["topics"] == ["market/load_caps", "dopf/load_caps"]
    assert config["inputs"]["pv_setpoints"]["combine"] is None
    json.dumps(config)


def test_combine_input_defaults_to_every_source_of_its_meaning(tmp_path):
    """Left unlinked, a combine input gets every output of its type and meaning."""
    federation = load_federation(write_yaml(tmp_path, caps_scenario([])))
    assert {Link.parse("market.load_caps -> feeder.load_caps"),
            Link.parse("dopf.load_caps -> feeder.load_caps")} <= set(federation.defaulted_links)
    assert Link.parse("market.load_caps -> dopf.planned_caps") in federation.defaulted_links


def test_explicit_link_into_a_combine_input_is_the_whole_choice(tmp_path):
    """One explicit link: no other source is added by default."""
    federation = load_federation(write_yaml(
        tmp_path, caps_scenario(["market.load_caps -> feeder.load_caps"])))
    assert federation.inputs_of("feeder")["load_caps"] == ["market/load_caps"]


def test_several_links_into_a_single_link_builtin_input_fail(tmp_path):
    """The DOPF's planned caps take one link: a second market's is named."""
    raw = caps_scenario(["market.load_caps -> dopf.planned_caps",
                         "market2.load_caps -> dopf.planned_caps"])
    raw["federates"]["market2"] = {"type": "market"}
    validate_error(write_yaml(tmp_path, raw), "links[3].target_port", "takes one link",
                   "market.load_caps")


def test_unknown_combine_rule_is_refused(tmp_path):
    path = with_custom(tmp_path, "sink", {"sink": {"type": "sink"}}, [],
                       inputs=[{"port_id": "caps", "type": "LoadCaps", "required": False,
                                "combine": "sum"}])
    result = gridsim("validate", str(path))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "dynamic_inputs[0].combine: unknown rule 'sum'" in result.stderr
