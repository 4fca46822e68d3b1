"""Port meanings (`quantity`): links that agree in message class but not in meaning are
refused, and default links never cross meanings (`gridsim.links`).

Before meanings, a one-line ``truth`` -> ``wls`` swap on ``scenarios/ieee123-dopf.yaml``
validated: the default links fed the feeder's TRUE node injections into the estimator's
branch-flow meter inputs (both ``PowersReal``) and its true voltages into the meter inputs,
and the run failed at step 0. These tests run the real console script (`gridsim validate`,
one short `gridsim run`) on scenarios written into tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from helpers import gridsim, scenario_data
from test_validation import base_scenario, validate_error, with_custom, write_definition, write_yaml

from gridsim.components import QUANTITIES, builtin_types, load_definition
from gridsim.scenario import Link
from gridsim.wiring import load_federation

REPO = Path(__file__).resolve().parents[1]


def se13(**overrides) -> dict:
    """ieee13 for an hour: feeder, sensor, wls estimator, recorder, and no link but the
    recorder's: everything else is linked by default."""
    raw = base_scenario(federates={"feeder": {"type": "feeder"}, "sensor": {"type": "sensor"},
                                   "estimator": {"type": "wls"},
                                   "recorder": {"type": "recorder"}},
                        links=["estimator.* -> recorder.subscription"])
    raw.update(overrides)
    return raw


# --- explicit links ------------------------------------------------------------------------

def test_link_wrong_by_meaning_is_refused(tmp_path):
    """True node injections into the estimator's line-flow meter input: both PowersReal,
    refused as one line naming the link and both meanings."""
    raw = se13(links=["estimator.* -> recorder.subscription",
                      "feeder.powers_real -> estimator.branch_powers_real"])
    line = validate_error(write_yaml(tmp_path, raw), "links[1]", "true-injection",
                          "measured-flow", "PowersReal")
    assert "feeder.powers_real -> estimator.branch_powers_real" in line


def test_truth_into_meter_input_is_refused(tmp_path):
    """The feeder's true voltages are not a sensor's readings."""
    raw = se13(links=["feeder.voltages_magnitude -> estimator.voltages_magnitude"])
    validate_error(write_yaml(tmp_path, raw), "links[0]", "true-voltage", "measured-voltage")


def test_readings_into_the_dopf_are_refused_truth_is_taken(tmp_path):
    """The DOPF's operating point is an estimate; a link may also bring the truth
    (``accepts``), never a sensor's readings."""
    federates = {"feeder": {"type": "feeder"}, "sensor": {"type": "sensor"},
                 "dopf": {"type": "dopf"}}
    bad = base_scenario(federates=federates,
                        links=["sensor.voltages_magnitude -> dopf.voltages_magnitude"])
    validate_error(write_yaml(tmp_path, bad), "links[0]", "measured-voltage",
                   "estimated-voltage or true-voltage")
    good = base_scenario(federates=federates,
                         links=["feeder.voltages_magnitude -> dopf.voltages_magnitude",
                                "feeder.voltages_angle -> dopf.voltages_angle"])
    federation = load_federation(write_yaml(tmp_path, good, "good.yaml"))
    assert federation.inputs_of("dopf")["voltages_magnitude"] == ["feeder/voltages_magnitude"]


def test_wildcard_expands_to_the_inputs_meaning_only(tmp_path):
    """``sensor.* -> estimator.powers_real`` takes the injection readings, not the line
    flows (also PowersReal), so it does not over-feed a single-link input."""
    raw = se13(links=["sensor.* -> estimator.powers_real"])
    federation = load_federation(write_yaml(tmp_path, raw))
    assert federation.inputs_of("estimator")["powers_real"] == ["sensor/powers_real"]


def test_ports_without_meaning_link_by_type_alone(tmp_path):
    """A user output without a meaning may feed a meter input, explicitly or by default."""
    path = with_custom(
        tmp_path, "meter", {"meter": {"type": "meter"}, "estimator": {"type": "wls"}},
        ["meter.v -> estimator.voltages_magnitude"],
        outputs=[{"port_id": "v", "type": "VoltagesMagnitude"},
                 {"port_id": "p", "type": "PowersReal"},
                 {"port_id": "q", "type": "PowersImaginary"}])
    federation = load_federation(path)
    assert Link.parse("meter.q -> estimator.powers_imag") in federation.defaulted_links
    assert federation.inputs_of("estimator")["voltages_magnitude"] == ["meter/v"]


def test_unknown_meaning_in_a_definition_is_refused(tmp_path):
    """A meaning outside the vocabulary names the definition file and the field."""
    rel = write_definition(tmp_path, "src", outputs=[
        {"port_id": "v", "type": "VoltagesMagnitude", "quantity": "guessed-voltage"}])
    raw = base_scenario(components={"src": rel},
                        federates={"feeder": {"type": "feeder"}, "src": {"type": "src"}})
    result = gridsim("validate", str(write_yaml(tmp_path, raw)))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert f"{tmp_path / rel}: dynamic_outputs[0].quantity: unknown meaning" in result.stderr


# --- default links -------------------------------------------------------------------------

def test_defaults_follow_meaning(tmp_path):
    """Feeder -> sensor -> estimator wire themselves: every input gets the one output of its
    type and meaning; none crosses meanings."""
    federation = load_federation(write_yaml(tmp_path, se13()))
    inputs = federation.inputs_of("estimator")
    assert inputs["voltages_magnitude"] == ["sensor/voltages_magnitude"]
    assert inputs["powers_real"] == ["sensor/powers_real"]
    assert inputs["branch_powers_real"] == ["sensor/branch_powers_real"]
    assert inputs["truth_voltages_magnitude"] == ["feeder/voltages_magnitude"]
    assert federation.inputs_of("sensor")["powers_real"] == ["feeder/powers_real"]
    for link in federation.defaulted_links:
        out = federation.federates[link.source].definition.output(link.source_port)
        port = federation.federates[link.target].definition.input(link.target_port)
        assert out.quantity == port.quantity, link


def dopf_swapped(tmp_path: Path, **federates) -> Path:
    """scenarios/ieee123-dopf.yaml with the one-line swap ``type: truth`` -> ``type: wls``."""
    data = scenario_data("ieee123-dopf")
    assert data["federates"]["estimator"] == {"type": "truth"}
    data["federates"]["estimator"]["type"] = "wls"
    data["federates"].update(federates)
    return write_yaml(tmp_path, data, "swapped.yaml")


def test_truth_to_wls_swap_fails_validation_naming_the_meaning(tmp_path):
    """Without a sensor the estimator has no meter readings: one line saying so, naming
    the true voltages it will not take (before: validated, then failed at step 0)."""
    path = dopf_swapped(tmp_path)
    validate_error(path, "federates.estimator", "required input 'voltages_magnitude'",
                   "measured-voltage", "not connected", "feeder.voltages_magnitude is "
                   "true-voltage")


def test_truth_to_wls_swap_with_a_sensor_runs(tmp_path, run_gridsim):
    """Add a sensor (one line, no links) and the swap validates into a federation that runs:
    the estimator reads the sensor, never the feeder's true injections."""
    path = dopf_swapped(tmp_path, sensor={"type": "sensor"})
    data = yaml.safe_load(path.read_text())
    data.update(start="2026-07-01T11:00:00", duration="1h")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    federation = load_federation(path)
    inputs = federation.inputs_of("estimator")
    assert inputs["branch_powers_real"] == ["sensor/branch_powers_real"]
    assert inputs["powers_real"] == ["sensor/powers_real"]
    assert not [lk for lk in federation.links
                if lk.source == "feeder" and lk.source_port.startswith("powers")
                and lk.target == "estimator"]
    code, _, stderr = run_gridsim("run", path, "--out", tmp_path / "run", "--quiet",
                                  timeout=180)
    assert code == 0, stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["federates"]
    assert summary["estimator"]["estimates"] == 4 and summary["estimator"]["failed"] == 0


def test_full_stack_needs_only_the_recorders_links():
    """scenarios/ieee123.yaml (the flagship): eight federates, seven link lines (what to
    record); every other link is a default, the DOPF's and the market's caps both feeding
    the feeder's combined load caps."""
    full = load_federation(REPO / "scenarios" / "ieee123.yaml")
    assert len(full.federates) == 8
    assert len(full.scenario.links) == 7
    assert {link.target for link in full.scenario.links} == {"recorder"}
    caps = {link for link in full.links if link.target_port == "load_caps"
            and link.target == "feeder"}
    assert caps == {Link.parse("dopf.load_caps -> feeder.load_caps"),
                    Link.parse("market.load_caps -> feeder.load_caps")}


# --- the vocabulary ------------------------------------------------------------------------

def test_every_builtin_port_has_a_known_meaning():
    """Every bundled port but the recorder's catch-all declares a meaning."""
    for type_name, path in builtin_types().items():
        definition = load_definition(path)
        for port in [*definition.dynamic_inputs, *definition.dynamic_outputs]:
            if port.type == "Any":
                assert port.quantity is None
                continue
            assert port.quantity in QUANTITIES, f"{type_name}.{port.port_id}"
