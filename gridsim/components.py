"""Component definitions: what a federate type is, takes, emits and when it runs.

The format is a superset of OEDI-SI's ``component_definition.json``: their keys
(``directory``, ``execute_function``, ``static_inputs``, ``dynamic_inputs``,
``dynamic_outputs``, ports as ``{"type", "port_id", "description", "unit"}``) load unchanged,
and gridsim adds ``version``, ``description``, typed parameters with defaults, required or
optional inputs, inputs that take several links (``multiple``) and timing.

Ports may say what their data *means* beyond the message class (``quantity``, one of
`QUANTITIES`): a ``VoltagesMagnitude`` may be the feeder's truth, a sensor's readings or an
estimate, and a ``PowersReal`` node injections or line flows. The wiring refuses a link
whose two ends declare different meanings and adds default links only between ports of the
same type and meaning (`gridsim.links`); a port without a declared meaning (user and
OEDI-SI definitions) links by type alone. An input may name further meanings it takes from
an explicit link (``accepts``; the DOPF takes true voltages as well as estimates), never by
default.

An input may take several links and combine them (``combine``, one of `COMBINE_RULES`). An
input may replace parameters of its own federate while linked (``overrides``: the
regulator's policy replaces the DOPF's voltage limits); such a parameter may then not be
set in the scenario, since the scenario's value would be silently ignored. An output may
carry the values of parameters of its own federate (``carries``), changed over the run by
a list parameter of dated changes (``schedule``): the wiring checks every value the
overriding inputs will receive as if the scenario had set it (`gridsim.overrides`).

A parameter's choices may have limits (``choice_limits``: per choice, the most of something
it handles, e.g. ``{"shapley": {"entities": 12}}``), which the definition's
``parameter_check`` hook enforces and ``gridsim list`` shows.

Parameters are the ``static_inputs``. A parameter is required when it says so, or when it has
a type and no default; OEDI-SI's untyped parameters (``"type": ""``) without a default are
optional, as their runtime treats them. An input is required unless it says ``"required":
false`` or OEDI-SI's ``"optional": true``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridsim.errors import InputError, from_validation_error
from gridsim.messages import UNTYPED
from gridsim.userfiles import parse_json, read_text

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

QUANTITIES: dict[str, str] = {
    "true-voltage": "node voltages as the feeder's power flow computes them (ground truth)",
    "measured-voltage": "voltage readings of meters and PMUs, with their accuracy",
    "estimated-voltage": "node voltages an estimator publishes (observable nodes only)",
    "true-injection": "power injected into the network at each node (ground truth)",
    "measured-injection": "node injection readings and pseudo-measurements, with accuracy",
    "true-flow": "power flowing into each line at its first terminal (ground truth)",
    "measured-flow": "line-flow readings, with accuracy",
    "network": "the network model: nodes, admittance, base voltages",
    "device-state": "what the feeder's devices report: loads, PV, generators, regulators, "
                    "capacitors",
    "command": "a control the feeder applies at its next solve (setpoints, caps, taps, "
               "switching)",
    "policy": "rules in force that replace parameters of the federates reading them",
    "market-record": "what the market publishes about a round: registration, ledger, "
                     "disclosures, clearing",
    "report": "how a federate worked: diagnostics, command reports, audit findings",
}
"""What a port's data means beyond its message class (a port's ``quantity``)."""

COMBINE_RULES: dict[str, str] = {
    "min": "element-wise minimum by id over the links; a None from a link means no bound "
           "from that link (load caps: the least cap of every source applies)",
}
"""How an input that takes several links (``combine``) merges their messages."""

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
    choice_limits: dict[str, dict[str, int]] = Field(
        {}, description="Per choice, the most of something it can handle, e.g. "
                        "{\"shapley\": {\"entities\": 12}}; enforced by the definition's "
                        "parameter_check hook.")

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


class DynamicPort(Port):
    """What inputs and outputs have beyond OEDI-SI's port: the meaning of their data."""

    quantity: str | None = Field(None, description="What the data means (`QUANTITIES`); "
                                                   "none: linked by type alone.")


class InputPort(DynamicPort):
    """A dynamic input: a port the federate subscribes to."""

    required: bool | None = None
    optional: bool | None = Field(None, description="OEDI-SI's spelling of required: false.")
    multiple: bool = Field(False, description="Accepts any number of links (e.g. a recorder).")
    accepts: list[str] = Field([], description="Further meanings an explicit link may bring "
                                               "(never a default link).")
    combine: str | None = Field(None, description="Takes several links, merged by this rule "
                                                  "(`COMBINE_RULES`).")
    overrides: list[str] = Field([], description="Parameters of this federate that this "
                                                 "input replaces while linked.")

    @property
    def is_required(self) -> bool:
        """Required unless marked otherwise in either spelling."""
        if self.required is not None:
            return self.required
        return not self.optional

    @property
    def takes_several(self) -> bool:
        """Whether several links may feed this input (``multiple`` or a ``combine`` rule)."""
        return self.multiple or self.combine is not None

    @property
    def meanings(self) -> list[str]:
        """Every meaning an explicit link may bring: the quantity, then ``accepts``."""
        return [q for q in [self.quantity, *self.accepts] if q is not None]


class Schedule(BaseModel):
    """A list parameter of dated changes to the parameters an output carries: entries such
    as ``{at_h: 14, payment_rule: uniform-price}`` (the regulator's ``changes``)."""

    model_config = ConfigDict(extra="forbid")

    parameter: str
    time: str = Field(description="The key of an entry that dates it (not a carried value).")


class OutputPort(DynamicPort):
    """A dynamic output: a port the federate publishes."""

    carries: list[str] = Field([], description="Parameters of this federate whose values the "
                                               "output publishes (a policy's fields).")
    schedule: Schedule | None = None


def meanings_agree(output: DynamicPort, input_: InputPort) -> bool:
    """Whether `output` may feed `input_` by meaning: either declares none, or the input
    takes the output's (its quantity or one it ``accepts``)."""
    if output.quantity is None or input_.quantity is None:
        return True
    return output.quantity in input_.meanings


def same_meaning(output: DynamicPort, input_: InputPort) -> bool:
    """Whether a default link may join them: meanings agree, and a declared one on both
    ends is the input's own quantity (``accepts`` is for explicit links only)."""
    if output.quantity is None or input_.quantity is None:
        return True
    return output.quantity == input_.quantity


AFTER_INPUTS_S = 0.1
"""How long after the latest of its sources a federate with ``after_inputs`` runs."""


class Timing(BaseModel):
    """When a federate runs, relative to the scenario's step.

    A periodic federate is granted times ``k * period_steps * step + offset_s``. An
    event-driven one is woken whenever one of its inputs is updated.
    """

    model_config = ConfigDict(extra="forbid")

    period_steps: int = Field(1, ge=1)
    offset_s: float = Field(0.0, ge=0)
    event_driven: bool = False
    after_inputs: bool = Field(
        False, description="Run once a step, just after the federates that feed it (at "
                           "the latest of their offsets plus AFTER_INPUTS_S), when each of "
                           "them is periodic and so publishes at most once a step; "
                           "otherwise event-driven. Resolved when the scenario is loaded.")


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

    scenario_check: str | None = Field(
        None, description="'module:function' taking the federate's name, its parameters, "
                          "the scenario's feeder, its number of steps and its "
                          "allow_long_run, and returning the problems found as (file, "
                          "field, message) triples (file '' for the scenario): checks that "
                          "need the feeder model itself.")

    def parameter(self, name: str) -> Parameter | None:
        """The parameter called `name`, if declared."""
        return next((p for p in self.static_inputs if p.port_id == name), None)

    def input(self, name: str) -> InputPort | None:
        """The input port called `name`, if declared."""
        return next((p for p in self.dynamic_inputs if p.port_id == name), None)

    def output(self, name: str) -> OutputPort | None:
        """The output port called `name`, if declared."""
        return next((p for p in self.dynamic_outputs if p.port_id == name), None)

    def hook_problems(self, parameters: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The problems the ``parameter_check`` hook finds in complete `parameters` (none
        without a hook); found by name, so the core imports no federate."""
        if not self.parameter_check:
            return []
        return list(_hook(self.parameter_check)(parameters))

    def scenario_problems(self, name: str, parameters: Mapping[str, Any], feeder: Any,
                          n_steps: int, allow_long_run: bool) -> list[tuple[str, str, str]]:
        """The problems the ``scenario_check`` hook finds (none without a hook)."""
        if not self.scenario_check:
            return []
        return list(_hook(self.scenario_check)(name, parameters, feeder, n_steps,
                                               allow_long_run))


def _hook(spec: str):
    """The function a definition names as ``module:function`` (so the core imports no
    federate until a scenario uses it)."""
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def load_definition(path: Path) -> ComponentDefinition:
    """Read and check one component definition file."""
    raw = parse_json(str(path), read_text(Path(path), "component definition"))
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
    for field_, problem in _port_problems(definition):
        raise InputError(str(path), field_, problem)
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


def _port_problems(definition: ComponentDefinition) -> list[tuple[str, str]]:
    """Meanings, combine rules and parameter names the ports use that do not exist."""
    params = {p.port_id: p for p in definition.static_inputs}
    problems = []
    for group in ("dynamic_inputs", "dynamic_outputs"):
        for i, port in enumerate(getattr(definition, group)):
            where = f"{group}[{i}]"
            for j, quantity in enumerate([port.quantity, *getattr(port, "accepts", [])]):
                if quantity is not None and quantity not in QUANTITIES:
                    key = "quantity" if j == 0 else f"accepts[{j - 1}]"
                    problems.append((f"{where}.{key}", f"unknown meaning {quantity!r}; use "
                                                       f"one of {', '.join(QUANTITIES)}"))
            named = [*getattr(port, "overrides", []), *getattr(port, "carries", [])]
            problems += [(where, f"names no parameter of this definition: {name!r}")
                         for name in named if name not in params]
    for i, port in enumerate(definition.dynamic_inputs):
        if port.combine is not None and port.combine not in COMBINE_RULES:
            problems.append((f"dynamic_inputs[{i}].combine", f"unknown rule {port.combine!r}; "
                                                             f"use one of {list(COMBINE_RULES)}"))
        if port.combine is not None and port.multiple:
            problems.append((f"dynamic_inputs[{i}].combine", "a multiple input takes every "
                                                             "link as it is; drop one of them"))
    for i, port in enumerate(definition.dynamic_outputs):
        schedule = params.get(port.schedule.parameter) if port.schedule else None
        if port.schedule and (schedule is None or schedule.type != "list"):
            problems.append((f"dynamic_outputs[{i}].schedule.parameter",
                             f"expected a list parameter of this definition, got "
                             f"{port.schedule.parameter!r}"))
    for i, param in enumerate(definition.static_inputs):
        unknown = set(param.choice_limits) - set(param.choices or [])
        if unknown:
            problems.append((f"static_inputs[{i}].choice_limits",
                             f"not among the choices: {sorted(unknown)}"))
    return problems


@cache
def builtin_types() -> dict[str, Path]:
    """gridsim's own federate types: folder name -> definition file.

    The folder is located, not imported (the core imports no federate): its definitions
    are data, and their hooks are found by name when a scenario uses them."""
    spec = importlib.util.find_spec("gridsim.federates")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return {p.parent.name: p for p in sorted(folder.glob("*/component_definition.json"))}
