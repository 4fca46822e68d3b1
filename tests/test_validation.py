"""`gridsim validate`: every kind of bad input is one line on stderr and exit code 2.

The contract (cli/main.py, gridsim/errors.py): bad input prints exactly one line
``error: <file>: <field>: <message>`` to stderr, exits with code 2 and never shows a
traceback. These tests run the real console script on scenarios written into tmp_path, one
test per kind of error, and check the file, the field and a key word of the reason.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import gridsim

from gridsim.errors import InputError
from gridsim.scenario import Link
from gridsim.wiring import load_federation

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"



def assert_input_error(result: subprocess.CompletedProcess, path: Path,
                       field: str | re.Pattern | None, *words: str) -> str:
    """Exit 2, one non-empty stderr line 'error: <path>: <field>: ...' holding `words`."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{result.stderr}"
    line = lines[0]
    assert line.strip(), "the error line is empty"
    if field is None:
        prefix = re.escape(f"error: {path}: ")
    elif isinstance(field, re.Pattern):
        prefix = re.escape(f"error: {path}: ") + field.pattern + ": "
    else:
        prefix = re.escape(f"error: {path}: {field}: ")
    assert re.match(prefix, line), f"{line!r} does not start with {prefix!r}"
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    return line


def validate_error(path: Path, field, *words: str) -> str:
    """`gridsim validate path` fails as bad input naming `field` and `words`."""
    return assert_input_error(gridsim("validate", str(path)), path, field, *words)


# --- building scenarios --------------------------------------------------------------------

def base_scenario(**overrides) -> dict:
    """A small valid scenario: the ieee13 feeder recorded for an hour at 15-minute steps."""
    raw = {
        "name": "t",
        "feeder": "ieee13",
        "duration": "1h",
        "step": "15m",
        "federates": {"feeder": {"type": "feeder"}, "recorder": {"type": "recorder"}},
        "links": ["feeder.* -> recorder.subscription"],
    }
    raw.update(overrides)
    return raw


def write_yaml(tmp_path: Path, raw: dict, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_definition(tmp_path: Path, type_name: str, *, params=(), inputs=(), outputs=()) -> str:
    """A custom component definition in tmp_path; returns its path relative to tmp_path."""
    rel = f"{type_name}/component_definition.json"
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "version": "0.0.1",
        "description": f"test federate {type_name}",
        "execute_function": "python -c pass",
        "static_inputs": list(params),
        "dynamic_inputs": list(inputs),
        "dynamic_outputs": list(outputs),
    }))
    return rel


def with_custom(tmp_path: Path, type_name: str, federates: dict, links: list, **definition):
    """A scenario with the feeder, a custom type and the given federates and links."""
    rel = write_definition(tmp_path, type_name, **definition)
    raw = base_scenario(components={type_name: rel},
                        federates={"feeder": {"type": "feeder"}, **federates}, links=links)
    return write_yaml(tmp_path, raw)


# --- the valid case and default links ------------------------------------------------------

@pytest.mark.parametrize("name", ["ieee13.yaml", "ieee123.yaml"])
def test_bundled_scenario_validates(name):
    """A bundled scenario validates: exit 0, an 'ok:' summary on stdout, nothing on stderr."""
    result = gridsim("validate", str(SCENARIOS / name))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")
    assert result.stderr == ""


def test_default_link_added_when_exactly_one_output_matches(tmp_path):
    """An unconnected input whose type matches exactly one output is linked to it."""
    path = with_custom(
        tmp_path, "sink", {"sink": {"type": "sink"}}, [],
        inputs=[{"port_id": "angles", "type": "VoltagesAngle"}],
    )
    federation = load_federation(path)
    expected = Link(source="feeder", source_port="voltages_angle",
                    target="sink", target_port="angles")
    assert federation.defaulted_links == [expected]
    assert expected in federation.links
    assert federation.inputs_of("sink") == {"angles": ["feeder/voltages_angle"]}


def test_no_default_link_when_input_is_linked_explicitly(tmp_path):
    """An explicit link wins: nothing is defaulted for an input that is already fed."""
    path = with_custom(
        tmp_path, "sink", {"sink": {"type": "sink"}},
        ["feeder.voltages_magnitude -> sink.values"],
        inputs=[{"port_id": "values", "type": "MeasurementArray"}],
    )
    federation = load_federation(path)
    assert federation.defaulted_links == []
    assert federation.inputs_of("sink") == {"values": ["feeder/voltages_magnitude"]}


def test_optional_ambiguous_input_is_left_unconnected(tmp_path):
    """An optional input matching several outputs is neither an error nor defaulted."""
    path = with_custom(
        tmp_path, "sink", {"sink": {"type": "sink"}, "feeder2": {"type": "feeder"}}, [],
        inputs=[{"port_id": "v", "type": "VoltagesMagnitude", "required": False}],
    )
    federation = load_federation(path)
    assert [lk for lk in federation.defaulted_links if lk.target == "sink"] == []


def test_ambiguous_default_link(tmp_path):
    """A required input whose type matches two outputs must be linked by hand."""
    path = with_custom(
        tmp_path, "sink", {"sink": {"type": "sink"}, "feeder2": {"type": "feeder"}}, [],
        inputs=[{"port_id": "v", "type": "VoltagesMagnitude"}],
    )
    validate_error(path, "federates.sink", "could come from", "feeder.voltages_magnitude",
                   "feeder2.voltages_magnitude", "add a link")


# --- federates and parameters --------------------------------------------------------------

def test_unknown_federate_type(tmp_path):
    """A federate of a type that is neither built in nor in `components` is refused."""
    raw = base_scenario(federates={"feeder": {"type": "feeder"},
                                   "recorder": {"type": "turbine"}})
    validate_error(write_yaml(tmp_path, raw), "federates.recorder.type",
                   "unknown federate type", "turbine")


def test_missing_component_definition_file(tmp_path):
    """A `components` entry pointing at no file is refused."""
    raw = base_scenario(components={"ctl": "nowhere/component_definition.json"})
    validate_error(write_yaml(tmp_path, raw), "components.ctl", "not found")


def test_unknown_parameter(tmp_path):
    """A parameter the type does not declare is refused, listing the declared ones."""
    raw = base_scenario(federates={"feeder": {"type": "feeder",
                                              "parameters": {"colour": "red"}},
                                   "recorder": {"type": "recorder"}})
    validate_error(write_yaml(tmp_path, raw), "federates.feeder.parameters.colour",
                   "unknown parameter", "load_scale")


def test_missing_required_parameter(tmp_path):
    """A typed parameter without a default must be given."""
    path = with_custom(
        tmp_path, "ctl", {"ctl": {"type": "ctl"}}, [],
        params=[{"port_id": "gain", "type": "float", "description": "controller gain"}],
    )
    validate_error(path, "federates.ctl.parameters.gain", "required", "missing")


@pytest.mark.parametrize("key, value, words", [
    ("load_scale", "big", ("expected float", "big")),
    ("max_control_iter", True, ("expected int", "bool")),
    ("max_control_iter", 2.5, ("expected int",)),
    ("mode", 1, ("expected str",)),
], ids=["str-for-float", "bool-for-int", "float-for-int", "int-for-str"])
def test_wrong_parameter_type(tmp_path, key, value, words):
    """A parameter value of the wrong type is refused with the expected type."""
    raw = base_scenario(federates={"feeder": {"type": "feeder", "parameters": {key: value}},
                                   "recorder": {"type": "recorder"}})
    validate_error(write_yaml(tmp_path, raw), f"federates.feeder.parameters.{key}", *words)


def test_parameter_not_in_choices(tmp_path):
    """A parameter with `choices` takes only those values."""
    raw = base_scenario(federates={"feeder": {"type": "feeder",
                                              "parameters": {"mode": "hourly"}},
                                   "recorder": {"type": "recorder"}})
    validate_error(write_yaml(tmp_path, raw), "federates.feeder.parameters.mode",
                   "must be one of", "hourly", "daily")


def test_duplicate_federate_name_in_yaml(tmp_path):
    """Two federates with the same name in YAML (a duplicate key) are refused, not merged."""
    text = (
        "name: t\nfeeder: ieee13\nduration: 1h\nstep: 15m\n"
        "federates:\n"
        "  feeder:\n    type: feeder\n"
        "  feeder:\n    type: recorder\n"
    )
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    line = text.splitlines().index("  feeder:", 6) + 1
    validate_error(path, f"line {line}", "duplicate", "feeder")


def test_duplicate_federate_name_in_wiring_json(tmp_path):
    """Two components with the same name in wiring JSON are refused."""
    path = tmp_path / "system.json"
    path.write_text(json.dumps({
        "name": "t",
        "scenario": {"feeder": "ieee13", "duration_s": 900, "step_s": 900},
        "components": [{"name": "feeder", "type": "feeder", "parameters": {}},
                       {"name": "feeder", "type": "recorder", "parameters": {}}],
        "links": [],
    }))
    validate_error(path, "components[1].name", "duplicate", "feeder")


# --- links ---------------------------------------------------------------------------------

def test_link_from_missing_output_port(tmp_path):
    """A link from a port the source federate does not publish is refused."""
    raw = base_scenario(links=["feeder.voltages_phase -> recorder.subscription"])
    validate_error(write_yaml(tmp_path, raw), "links[0].source_port",
                   "no output", "voltages_phase")


def test_link_to_missing_input_port(tmp_path):
    """A link into a port the target federate does not subscribe to is refused."""
    raw = base_scenario(links=["feeder.voltages_magnitude -> recorder.inbox"])
    validate_error(write_yaml(tmp_path, raw), "links[0].target_port", "no input", "inbox")


@pytest.mark.parametrize("link, role", [
    ("ghost.voltages_magnitude -> recorder.subscription", "source"),
    ({"source": "feeder", "source_port": "voltages_magnitude",
      "target": "ghost", "target_port": "subscription"}, "target"),
], ids=["source", "target"])
def test_link_to_missing_federate(tmp_path, link, role):
    """A link naming a federate the scenario does not have is refused (text or mapping)."""
    raw = base_scenario(links=[link])
    validate_error(write_yaml(tmp_path, raw), f"links[0].{role}", "no federate", "ghost")


def test_link_text_malformed(tmp_path):
    """A link that is not 'source.port -> target.port' is refused."""
    raw = base_scenario(links=["feeder.voltages_magnitude => recorder.subscription"])
    validate_error(write_yaml(tmp_path, raw), re.compile(r"links(\[0\])?"), "source.port")


def test_link_between_incompatible_builtin_ports(tmp_path):
    """Voltage magnitudes cannot feed a second feeder's PV setpoints input."""
    raw = base_scenario(
        federates={"feeder": {"type": "feeder"}, "feeder2": {"type": "feeder"}},
        links=["feeder.voltages_magnitude -> feeder2.pv_setpoints"])
    validate_error(write_yaml(tmp_path, raw), "links[0]", "cannot feed",
                   "VoltagesMagnitude", "PVSetpoints")


@pytest.mark.parametrize("source, input_type", [
    ("feeder.voltages_magnitude", "Topology"),
    ("src.out", "VoltagesMagnitude"),
], ids=["unrelated-types", "supertype-into-subtype"])
def test_link_into_typed_custom_input_incompatible(tmp_path, source, input_type):
    """A typed custom input refuses unrelated types and the supertype of its type."""
    rel = write_definition(tmp_path, "sink", inputs=[{"port_id": "v", "type": input_type}])
    rel_src = write_definition(tmp_path, "src",
                               outputs=[{"port_id": "out", "type": "MeasurementArray"}])
    raw = base_scenario(components={"sink": rel, "src": rel_src},
                        federates={"feeder": {"type": "feeder"}, "sink": {"type": "sink"},
                                   "src": {"type": "src"}},
                        links=[f"{source} -> sink.v"])
    validate_error(write_yaml(tmp_path, raw), "links[0]", "cannot feed", input_type)


def test_required_input_unconnected(tmp_path):
    """A required input with no link and no producer of its type is refused."""
    path = with_custom(
        tmp_path, "ctl", {"ctl": {"type": "ctl"}}, [],
        inputs=[{"port_id": "setpoints", "type": "PVSetpoints"}],
    )
    validate_error(path, "federates.ctl", "required input", "setpoints", "not connected")


def test_two_links_into_single_link_input(tmp_path):
    """An input without `multiple` takes one link; the second one is named."""
    path = with_custom(
        tmp_path, "ctl", {"c1": {"type": "ctl"}, "c2": {"type": "ctl"}},
        ["c1.pv -> feeder.pv_setpoints", "c2.pv -> feeder.pv_setpoints"],
        outputs=[{"port_id": "pv", "type": "PVSetpoints"}],
    )
    validate_error(path, "links[1].target_port", "takes one link", "c1.pv")


# --- top level, clock, feeder, file --------------------------------------------------------

def test_unknown_top_level_field(tmp_path):
    """A top-level key the scenario format does not have is refused."""
    validate_error(write_yaml(tmp_path, base_scenario(colour="red")), "colour", "unknown field")


@pytest.mark.parametrize("duration, word", [
    ("soon", "soon"), ("15 parsecs", "15 parsecs"), ("1.2.3", "1.2.3"), (True, "boolean"),
], ids=["word", "unknown-unit", "two-points", "boolean"])
def test_bad_duration_string(tmp_path, duration, word):
    """A duration that is not a number of seconds or '<number><s|m|min|h|d>' is refused."""
    raw = base_scenario(duration=duration)
    validate_error(write_yaml(tmp_path, raw), re.compile(r"duration(_s)?"), word)


@pytest.mark.parametrize("duration, step", [("20m", "15m"), ("10m", "15m")],
                         ids=["not-a-multiple", "shorter-than-a-step"])
def test_duration_not_whole_number_of_steps(tmp_path, duration, step):
    """The duration must be a whole (positive) number of steps."""
    raw = base_scenario(duration=duration, step=step)
    validate_error(write_yaml(tmp_path, raw), "duration", "whole number of steps")


def test_unknown_bundled_feeder(tmp_path):
    """A feeder name that is not bundled (and no .dss file) is refused, listing the bundled."""
    validate_error(write_yaml(tmp_path, base_scenario(feeder="ieee999")), "feeder",
                   "ieee999", "bundled", "ieee13")


def test_missing_dss_file(tmp_path):
    """A feeder master file that does not exist is refused."""
    validate_error(write_yaml(tmp_path, base_scenario(feeder="grid/master.dss")), "feeder",
                   "grid/master.dss", "master file")


def test_invalid_yaml_syntax(tmp_path):
    """A file that is not YAML is refused with the line of the problem."""
    path = tmp_path / "scenario.yaml"
    path.write_text("name: t\nfederates: {feeder: [}\n")
    validate_error(path, re.compile(r"line \d+"), "invalid YAML")


def test_missing_scenario_file(tmp_path):
    """A scenario path that does not exist is refused as bad input."""
    validate_error(tmp_path / "nothere.yaml", None, "not found")


# --- edge cases that once crashed or slipped through ------------------------------------

def test_exact_duplicate_link_into_single_link_input(tmp_path):
    """The very same link given twice is kept once (`wiring`: a repeated link is not a second
    feed of a single-link input): the scenario validates with one link, and the resolved
    federation feeds feeder.pv_setpoints exactly once."""
    path = with_custom(
        tmp_path, "ctl", {"c1": {"type": "ctl"}},
        ["c1.pv -> feeder.pv_setpoints", "c1.pv -> feeder.pv_setpoints"],
        outputs=[{"port_id": "pv", "type": "PVSetpoints"}],
    )
    result = gridsim("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("ok: t: 2 federates, 1 links (0 defaulted)")
    federation = load_federation(path)
    assert federation.links == [Link.parse("c1.pv -> feeder.pv_setpoints")]
    assert federation.defaulted_links == []


def test_second_link_named_after_wildcard_link(tmp_path):
    """The link that over-feeds a single-link input is the one named, after a wildcard."""
    path = with_custom(
        tmp_path, "ctl", {"c1": {"type": "ctl"}, "c2": {"type": "ctl"}},
        ["c1.* -> feeder.pv_setpoints", "c2.pv -> feeder.pv_setpoints"],
        outputs=[{"port_id": "pv", "type": "PVSetpoints"}],
    )
    validate_error(path, "links[1].target_port", "takes one link")


def test_infinite_duration(tmp_path):
    """An infinite duration is bad input, not a crash."""
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(base_scenario()).replace("duration: 1h", "duration: .inf"))
    validate_error(path, re.compile(r"duration(_s)?"))


@pytest.mark.parametrize("patch, field", [
    ({"scenario": 5}, "scenario"),
    ({"components": 5}, "components"),
], ids=["scenario-not-mapping", "components-not-list"])
def test_wiring_json_wrong_shapes(tmp_path, patch, field):
    """A wiring JSON whose blocks have the wrong shape is bad input, not a crash."""
    raw = {"name": "t", "scenario": {"feeder": "ieee13", "duration_s": 900, "step_s": 900},
           "components": [], "links": []}
    raw.update(patch)
    path = tmp_path / "system.json"
    path.write_text(json.dumps(raw))
    validate_error(path, re.compile(re.escape(field) + r".*"))


def test_scenario_path_is_a_directory(tmp_path):
    """A directory given as the scenario is one line of bad input like a missing file."""
    validate_error(tmp_path, None)


def test_null_for_typed_parameter(tmp_path):
    """`mode: null` is refused, naming the parameter: the feeder never gets None."""
    raw = base_scenario(federates={"feeder": {"type": "feeder", "parameters": {"mode": None}},
                                   "recorder": {"type": "recorder"}})
    path = write_yaml(tmp_path, raw)
    with pytest.raises(InputError) as caught:
        load_federation(path)
    assert caught.value.field == "federates.feeder.parameters.mode"
    assert "expected str" in str(caught.value)
