"""Component definitions: what a federate type is, takes, emits and when it runs.

The format is a superset of OEDI-SI's ``component_definition.json``: their keys
(``directory``, ``execute_function``, ``static_inputs``, ``dynamic_inputs``,
``dynamic_outputs``, ports as ``{"type", "port_id", "description", "unit"}``) load unchanged,
and gridsim adds ``version``, ``description``, typed parameters with defaults, required or
optional inputs, inputs that take several links (``multiple``) and timing.

Parameters are the ``static_inputs``. A parameter is required when it says so, or when it has
a type and no default; OEDI-SI's untyped parameters (``"type": ""``) without a default are
optional, as their runtime treats them. An input is required unless it says ``"required":
false`` or OEDI-SI's ``"optional": true``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridsim.errors import InputError, from_validation_error
from gridsim.messages import UNTYPED

PARAMETER_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "any": (object,),
    UNTYPED: (object,),
}
"""Parameter type names and the Python types a value of each may have (after YAML/JSON)."""

class Port(BaseModel):
    """What every port and parameter has: OEDI-SI's ``{"type", "port_id", "description",
    "unit"}``."""

    model_config = ConfigDict(extra="forbid")

    port_id: str
    type: str = UNTYPED
    description: str = ""
    unit: str = ""


class Parameter(Port):
    """One static input (parameter) of a federate."""

    default: Any = None
    required: bool | None = None
    choices: list[Any] | None = None

    @property
    def is_required(self) -> bool:
        """Required if it says so; else if it is typed and has no default."""
        if self.required is not None:
            return self.required
        return "default" not in self.model_fields_set and self.type != UNTYPED

    def check(self, value: Any) -> str | None:
        """None if `value` suits this parameter, else what is wrong with it."""
        allowed = PARAMETER_TYPES[self.type]
        bad_bool = isinstance(value, bool) and self.type in ("int", "float")
        if bad_bool or not isinstance(value, allowed):
            return f"expected {self.type}, got {type(value).__name__} {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {self.choices}, got {value!r}"
        return None


class InputPort(Port):
    """A dynamic input: a port the federate subscribes to."""

    required: bool | None = None
    optional: bool | None = Field(None, description="OEDI-SI's spelling of required: false.")
    multiple: bool = Field(False, description="Accepts any number of links (e.g. a recorder).")

    @property
    def is_required(self) -> bool:
        """Required unless marked otherwise in either spelling."""
        if self.required is not None:
            return self.required
        return not self.optional


class OutputPort(Port):
    """A dynamic output: a port the federate publishes."""


class Timing(BaseModel):
    """When a federate runs, relative to the scenario's step.

    A periodic federate is granted times ``k * period_steps * step + offset_s``. An
    event-driven one is woken whenever one of its inputs is updated.
    """

    model_config = ConfigDict(extra="forbid")

    period_steps: int = Field(1, ge=1)
    offset_s: float = Field(0.0, ge=0)
    event_driven: bool = False


class ComponentDefinition(BaseModel):
    """A federate type, as read from its ``component_definition.json``."""

    model_config = ConfigDict(extra="forbid")

    directory: str = "."
    execute_function: str
    version: str | None = None
    description: str = ""
    static_inputs: list[Parameter] = []
    dynamic_inputs: list[InputPort] = []
    dynamic_outputs: list[OutputPort] = []
    timing: Timing = Timing()
    parameter_check: str | None = Field(
        None, description="'module:function' taking the parameters (defaults filled in) and "
                          "returning the problems found, as (parameter, message) pairs: "
                          "checks a type name alone cannot express (nested lists, ranges).")

    def parameter(self, name: str) -> Parameter | None:
        """The parameter called `name`, if declared."""
        return next((p for p in self.static_inputs if p.port_id == name), None)

    def input(self, name: str) -> InputPort | None:
        """The input port called `name`, if declared."""
        return next((p for p in self.dynamic_inputs if p.port_id == name), None)

    def output(self, name: str) -> OutputPort | None:
        """The output port called `name`, if declared."""
        return next((p for p in self.dynamic_outputs if p.port_id == name), None)


def load_definition(path: Path) -> ComponentDefinition:
    """Read and check one component definition file."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(str(path), "", "component definition not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(str(path), f"line {exc.lineno}", f"invalid JSON: {exc.msg}") from None
    try:
        definition = ComponentDefinition.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(str(path), exc) from None
    _check_unique(path, definition)
    return definition


def _check_unique(path: Path, definition: ComponentDefinition) -> None:
    for group in ("static_inputs", "dynamic_inputs", "dynamic_outputs"):
        seen: set[str] = set()
        for i, port in enumerate(getattr(definition, group)):
            if port.port_id in seen:
                raise InputError(str(path), f"{group}[{i}].port_id", f"duplicate {port.port_id!r}")
            seen.add(port.port_id)
    for i, param in enumerate(definition.static_inputs):
        if param.type not in PARAMETER_TYPES:
            raise InputError(
                str(path),
                f"static_inputs[{i}].type",
                f"unknown parameter type {param.type!r}; use one of {sorted(PARAMETER_TYPES)}",
            )
        if "default" in param.model_fields_set and param.default is not None:
            problem = param.check(param.default)
            if problem:
                raise InputError(str(path), f"static_inputs[{i}].default", problem)


@cache
def builtin_types() -> dict[str, Path]:
    """gridsim's own federate types: folder name -> definition file."""
    import gridsim.federates

    folder = Path(gridsim.federates.__file__).parent
    return {p.parent.name: p for p in sorted(folder.glob("*/component_definition.json"))}
