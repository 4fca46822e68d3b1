"""Component definitions: gridsim's own, and OEDI-SI's loaded unchanged (no broker needed).

The definition format is a superset of OEDI-SI's ``component_definition.json``. Their files
(in ``../shared/interop/oedisi-example`` beside the repository, when present) must load as
they are; gridsim's own must be fully typed and documented.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import gridsim

from gridsim.components import (
    PARAMETER_TYPES,
    InputPort,
    Parameter,
    builtin_types,
    load_definition,
)
from gridsim.messages import is_known_type

REPO = Path(__file__).resolve().parents[1]
OEDISI = REPO.parent / "shared" / "interop" / "oedisi-example"
OEDISI_DEFINITIONS = sorted(OEDISI.glob("*/component_definition.json"))



def needs_oedisi() -> None:
    """Skip unless OEDI-SI's example folder is beside the repository."""
    if not OEDISI_DEFINITIONS:
        pytest.skip(f"OEDI-SI example definitions not found in {OEDISI} "
                    "(only present beside the repository in the development setup)")


# --- OEDI-SI's definitions -----------------------------------------------------------------

@pytest.mark.parametrize("rel", [str(p.relative_to(OEDISI)) for p in OEDISI_DEFINITIONS]
                         or ["<absent>"])
def test_oedisi_definition_loads_unchanged(rel):
    """Every OEDI-SI component definition loads as it is, keeping every port and its type."""
    needs_oedisi()
    path = OEDISI / rel
    raw = json.loads(path.read_text())
    definition = load_definition(path)
    assert definition.execute_function == raw["execute_function"]
    assert definition.directory == raw.get("directory", ".")
    for group in ("static_inputs", "dynamic_inputs", "dynamic_outputs"):
        loaded = [(p.port_id, p.type) for p in getattr(definition, group)]
        assert loaded == [(p["port_id"], p.get("type", "")) for p in raw.get(group, [])], group


def test_oedisi_optional_input_is_not_required_and_plain_input_is():
    """In OEDI-SI's files, `"optional": true` inputs are optional, plain inputs required."""
    needs_oedisi()
    for path in OEDISI_DEFINITIONS:
        raw = json.loads(path.read_text())
        definition = load_definition(path)
        for raw_port in raw.get("dynamic_inputs", []):
            port = definition.input(raw_port["port_id"])
            assert port.is_required is not raw_port.get("optional", False), (path, port)


def test_oedisi_untyped_parameters_are_optional():
    """OEDI-SI's untyped parameters without a default are optional, as their runtime has it."""
    needs_oedisi()
    untyped = [(path, p) for path in OEDISI_DEFINITIONS
               for p in load_definition(path).static_inputs if p.type == ""]
    assert untyped, "expected untyped parameters in OEDI-SI's definitions"
    for path, param in untyped:
        assert not param.is_required, (path, param.port_id)


def _oedisi_system(tmp_path: Path, keep_parameters_of: set[str] | None = None) -> Path:
    """OEDI-SI's system.json with gridsim's scenario block added, written into tmp_path.

    With `keep_parameters_of`, only components of those types keep their parameters.
    """
    raw = json.loads((OEDISI / "system.json").read_text())
    components = json.loads((OEDISI / "components.json").read_text())
    raw["scenario"] = {
        "feeder": "ieee13", "duration_s": 900, "step_s": 900,
        "components": {key: str((OEDISI / rel).resolve()) for key, rel in components.items()},
    }
    if keep_parameters_of is not None:
        for component in raw["components"]:
            if component["type"] not in keep_parameters_of:
                component.pop("parameters", None)
    path = tmp_path / "system.json"
    path.write_text(json.dumps(raw, indent=2))
    return path


def _one_line_error(result: subprocess.CompletedProcess, path: Path) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stderr
    return lines[0]


def test_oedisi_system_json_fails_on_first_undeclared_parameter(tmp_path):
    """Their system.json gives parameters their definitions do not declare: exit 2.

    Validation stops at the first problem, in file order: the feeder (LocalFeeder) is given
    `use_smartds`, which their LocalFeeder definition does not declare.
    """
    needs_oedisi()
    path = _oedisi_system(tmp_path)
    line = _one_line_error(gridsim("validate", str(path)), path)
    assert "federates.feeder.parameters.use_smartds: unknown parameter" in line
    assert "LocalFeeder" in line


def test_oedisi_recorder_feather_filename_is_undeclared(tmp_path):
    """Their recorder declares `filename` but system.json gives it `feather_filename`.

    With the other components' parameters left out, the recorder's inconsistency is the one
    reported, naming the parameter and the declared one.
    """
    needs_oedisi()
    path = _oedisi_system(tmp_path, keep_parameters_of={"Recorder"})
    line = _one_line_error(gridsim("validate", str(path)), path)
    first_recorder = next(c["name"] for c in json.loads(path.read_text())["components"]
                          if c["type"] == "Recorder")
    assert f"federates.{first_recorder}.parameters.feather_filename: unknown parameter" in line
    assert "declared: filename" in line


# --- gridsim's own definitions -------------------------------------------------------------

BUILTIN = sorted(builtin_types().items())


def test_builtin_types_include_feeder_and_recorder():
    """gridsim ships at least the feeder and the recorder federate types."""
    assert {"feeder", "recorder"} <= set(builtin_types())
    for path in builtin_types().values():
        assert path.is_file()


@pytest.mark.parametrize("type_name, path", BUILTIN, ids=[n for n, _ in BUILTIN])
def test_builtin_ports_use_known_message_types(type_name, path):
    """Every input and output of a built-in type is a gridsim message type (or Any)."""
    definition = load_definition(path)
    for port in [*definition.dynamic_inputs, *definition.dynamic_outputs]:
        assert port.type, f"{type_name}.{port.port_id} is untyped"
        assert is_known_type(port.type), f"{type_name}.{port.port_id}: {port.type}"


@pytest.mark.parametrize("type_name, path", BUILTIN, ids=[n for n, _ in BUILTIN])
def test_builtin_definition_is_documented(type_name, path):
    """A built-in type has a version and a description, and so does each port and parameter."""
    definition = load_definition(path)
    assert definition.version, type_name
    assert definition.description.strip(), type_name
    for port in [*definition.static_inputs, *definition.dynamic_inputs,
                 *definition.dynamic_outputs]:
        assert port.description.strip(), f"{type_name}.{port.port_id} has no description"


@pytest.mark.parametrize("type_name, path", BUILTIN, ids=[n for n, _ in BUILTIN])
def test_builtin_parameters_are_typed_with_valid_defaults(type_name, path):
    """Built-in parameters are typed; defaults suit their type and are among the choices
    (a default of None means "not set", as a scenario may also write it)."""
    definition = load_definition(path)
    for param in definition.static_inputs:
        assert param.type in PARAMETER_TYPES and param.type not in ("", "any"), param.port_id
        if not param.is_required and param.default is not None:
            assert param.check(param.default) is None, param.port_id


# --- the rules, on single ports (no files needed) ------------------------------------------

@pytest.mark.parametrize("raw, required", [
    ({"port_id": "x", "type": ""}, True),
    ({"port_id": "x", "type": "Topology"}, True),
    ({"port_id": "x", "type": "", "optional": True}, False),
    ({"port_id": "x", "type": "", "optional": False}, True),
    ({"port_id": "x", "type": "Topology", "required": False}, False),
    ({"port_id": "x", "type": "Topology", "required": True, "optional": True}, True),
], ids=["plain-untyped", "plain-typed", "oedisi-optional", "oedisi-not-optional",
        "required-false", "required-wins"])
def test_input_required_rule(raw, required):
    """An input is required unless `"required": false` or OEDI-SI's `"optional": true`."""
    assert InputPort.model_validate(raw).is_required is required


@pytest.mark.parametrize("raw, required", [
    ({"port_id": "p", "type": ""}, False),
    ({"port_id": "p", "type": "float"}, True),
    ({"port_id": "p", "type": "float", "default": 1.0}, False),
    ({"port_id": "p", "type": "str", "default": None}, False),
    ({"port_id": "p", "type": "", "required": True}, True),
    ({"port_id": "p", "type": "int", "default": 3, "required": True}, True),
], ids=["untyped", "typed-no-default", "typed-default", "typed-default-none",
        "untyped-required", "required-despite-default"])
def test_parameter_required_rule(raw, required):
    """A parameter is required if it says so, else if it is typed and has no default."""
    assert Parameter.model_validate(raw).is_required is required
