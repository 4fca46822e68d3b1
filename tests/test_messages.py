"""Message types: the JSON Schema, ids-aligned arrays, exact JSON round trips, compatibility."""

from __future__ import annotations

import json

import pytest
from helpers import gridsim
from pydantic import ValidationError

from gridsim.messages import (
    ANY_TYPE,
    MESSAGE_TYPES,
    UNTYPED,
    AdmittanceSparse,
    MeasurementArray,
    Topology,
    VoltagesAngle,
    VoltagesMagnitude,
    compatible,
    json_schema,
)


def _refs(node):
    """Every "$ref" value anywhere in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve_pointer(document: dict, ref: str):
    """Follow a local JSON pointer '#/a/b' from the document root (KeyError if dangling)."""
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


# --- JSON Schema ---------------------------------------------------------------------------

def test_schema_defines_every_message_type():
    """The schema has one definition per message type, each an object with properties."""
    defs = json_schema()["$defs"]
    assert set(MESSAGE_TYPES) <= set(defs)
    for name, model in MESSAGE_TYPES.items():
        assert defs[name]["type"] == "object", name
        assert set(model.model_fields) == set(defs[name]["properties"]), name


def test_schema_is_valid_json():
    """The schema serialises to JSON and reads back identically."""
    schema = json_schema()
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"].startswith("https://json-schema.org/")


def test_schema_refs_resolve_from_root():
    """Every '$ref' in the schema points at a definition that exists in the document."""
    schema = json_schema()
    dangling = []
    for ref in sorted(set(_refs(schema))):
        try:
            _resolve_pointer(schema, ref)
        except KeyError:
            dangling.append(ref)
    assert dangling == []


def test_schema_cli_prints_the_schema():
    """`gridsim schema` prints valid JSON: the same schema as `json_schema()`."""
    result = gridsim("schema")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json_schema()


# --- ids-aligned arrays --------------------------------------------------------------------

@pytest.mark.parametrize("model", [MeasurementArray, VoltagesMagnitude])
@pytest.mark.parametrize("fields", [
    {"ids": ["1.1", "1.2"], "values": [1.0]},
    {"ids": ["1.1"], "values": [1.0, 1.01]},
    {"ids": ["1.1", "1.2"], "values": [1.0, 1.01], "accuracy": [0.01]},
    {"ids": ["1.1"], "values": [1.0], "accuracy": [0.01, 0.02]},
], ids=["fewer-values", "more-values", "fewer-accuracies", "more-accuracies"])
def test_measurement_array_rejects_misaligned(model, fields):
    """values and accuracy must have one entry per id, in every MeasurementArray type."""
    with pytest.raises(ValidationError):
        model(units="pu", **fields)


@pytest.mark.parametrize("accuracy", [None, [0.01, 0.02]])
def test_measurement_array_accepts_aligned(accuracy):
    """Aligned values, with or without accuracy, are accepted as given."""
    array = MeasurementArray(ids=["1.1", "1.2"], values=[1.0, 1.01], units="pu",
                             accuracy=accuracy)
    assert array.accuracy == accuracy


def test_messages_reject_unknown_fields():
    """Messages are strict: a field the type does not have is refused."""
    with pytest.raises(ValidationError):
        VoltagesMagnitude.model_validate_json(
            '{"ids": [], "values": [], "units": "pu", "phase": 1}')


# --- JSON round trips ----------------------------------------------------------------------

def _voltages() -> VoltagesMagnitude:
    return VoltagesMagnitude(
        time_s=900.0,
        ids=["150.1", "150.2", "150.3", "48.1"],
        values=[1.0, 1 / 3, 0.1 + 0.2, 1.0499999999999998],
        units="pu",
        accuracy=[1e-300, 0.005, 2.0 ** -40, 0.0],
    )


def _topology() -> Topology:
    ids = ["650.1", "632.1", "632.2"]
    return Topology(
        time_s=0.0,
        ids=ids,
        admittance=AdmittanceSparse(
            from_equipment=["650.1", "650.1", "632.1", "632.2"],
            to_equipment=["650.1", "632.1", "632.1", "632.2"],
            admittance_list=[(12.5, -37.123456789), (-12.5, 37.123456789),
                             (1 / 7, -2 / 3), (0.0, -1e-9)],
        ),
        base_voltage_magnitudes=VoltagesMagnitude(ids=ids, values=[2401.7771198288433] * 3,
                                                  units="V"),
        base_voltage_angles=VoltagesAngle(ids=ids, values=[0.0, -120.0, 120.0], units="deg"),
        slack_bus=["650.1"],
        revision=3,
    )


@pytest.mark.parametrize("make", [_voltages, _topology], ids=["VoltagesMagnitude", "Topology"])
def test_json_round_trip_is_exact(make):
    """model -> JSON text -> model gives back an equal model of the same type, bit for bit."""
    original = make()
    text = original.model_dump_json()
    again = type(original).model_validate_json(text)
    assert type(again) is type(original)
    assert again == original
    assert again.model_dump_json() == text


# --- compatibility -------------------------------------------------------------------------

@pytest.mark.parametrize("source, target, expected", [
    ("VoltagesMagnitude", "VoltagesMagnitude", True),
    ("Topology", "Topology", True),
    ("VoltagesMagnitude", ANY_TYPE, True),
    (ANY_TYPE, "PVSetpoints", True),
    ("Topology", UNTYPED, True),
    (UNTYPED, "Topology", True),
    ("CommandList", UNTYPED, True),
    ("VoltagesMagnitude", "MeasurementArray", True),
    ("PowersReal", "MeasurementArray", True),
    ("MeasurementArray", "VoltagesMagnitude", False),
    ("VoltagesMagnitude", "VoltagesAngle", False),
    ("VoltagesMagnitude", "PVSetpoints", False),
    ("Topology", "MeasurementArray", False),
    ("CommandList", "CommandList", True),
    ("CommandList", "InverterControlList", False),
    ("CommandList", "MeasurementArray", False),
    ("MeasurementArray", "CommandList", False),
], ids=lambda v: repr(v) if isinstance(v, str) else str(v))
def test_compatible_truth_table(source, target, expected):
    """Equal names and wildcards match; inputs accept subtypes; foreign names only themselves."""
    assert compatible(source, target) is expected


def test_every_type_is_compatible_with_itself_and_its_bases_only():
    """For gridsim types, compatible(a, b) holds exactly when a is b or a subtype of b."""
    for a, model_a in MESSAGE_TYPES.items():
        for b, model_b in MESSAGE_TYPES.items():
            assert compatible(a, b) is issubclass(model_a, model_b), (a, b)
