"""Validation and resolution of a scenario against the component definitions.

`resolve` turns a `Scenario` into a `Federation`: every federate's type found, parameters
checked and completed with defaults, links checked (ports exist, types and meanings agree)
and the unambiguous missing ones added (`gridsim.links`), then the parameters linked inputs
replace checked (`gridsim.overrides`). Every problem is an `InputError` naming the scenario
file and the field, raised before any process starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridsim import feeders
from gridsim.components import (
    AFTER_INPUTS_S,
    ComponentDefinition,
    Timing,
    builtin_types,
    load_definition,
)
from gridsim.errors import InputError
from gridsim.links import check_required_inputs, default_links, expand_links
from gridsim.overrides import check_overrides
from gridsim.scenario import Link, Scenario, load_scenario


@dataclass
class FederateInstance:
    """One federate of a resolved federation."""

    name: str
    type: str
    definition: ComponentDefinition
    definition_path: Path
    parameters: dict[str, Any]
    timing: Timing


@dataclass
class Federation:
    """A validated scenario: federates with complete parameters, and every link."""

    scenario: Scenario
    source: Path
    federates: dict[str, FederateInstance]
    links: list[Link]
    feeder: feeders.FeederSource
    defaulted_links: list[Link] = field(default_factory=list)

    def inputs_of(self, name: str) -> dict[str, list[str]]:
        """Input port -> the topics (``federate/port``) linked to it."""
        inputs: dict[str, list[str]] = {}
        for link in self.links:
            if link.target == name:
                inputs.setdefault(link.target_port, []).append(topic(link.source,
                                                                     link.source_port))
        return inputs

    def has_cycle(self) -> bool:
        """Whether some federate's outputs come back to it through links (feeder -> sensor
        -> estimator -> DOPF -> feeder)."""
        after: dict[str, set[str]] = {}
        for link in self.links:
            after.setdefault(link.source, set()).add(link.target)
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(name: str) -> bool:
            state[name] = 1
            for nxt in after.get(name, ()):
                if state.get(nxt) == 1 or (nxt not in state and visit(nxt)):
                    return True
            state[name] = 2
            return False

        return any(name not in state and visit(name) for name in self.federates)

    def outputs_of(self, name: str) -> dict[str, str]:
        """Output port -> its topic, for every declared output."""
        definition = self.federates[name].definition
        return {p.port_id: topic(name, p.port_id) for p in definition.dynamic_outputs}


def topic(federate: str, port: str) -> str:
    """The HELICS publication key of a federate's output port."""
    return f"{federate}/{port}"


def load_federation(path: str | Path, settings: Sequence[str] = (), *,
                    model_checks: bool = True) -> Federation:
    """Load a scenario file with command-line `settings` (``FIELD=VALUE``,
    `gridsim.scenario.apply_settings`) and resolve it; raises `InputError` on any
    problem. ``model_checks=False`` skips the definitions' ``scenario_check`` hooks (the
    feeder's compiles the model): a federate re-reading the wiring the supervisor has
    already checked does not need them."""
    path = Path(path)
    return resolve(load_scenario(path, settings), path, model_checks=model_checks)


def resolve(scenario: Scenario, source: Path, *, model_checks: bool = True) -> Federation:
    """Check `scenario` (read from `source`) and complete it into a `Federation`."""
    where = str(source)
    feeder = feeders.resolve(scenario.feeder, base_dir=source.parent, source=where,
                             extra=scenario.feeder_overlays)
    if scenario.n_steps < 1 or abs(scenario.n_steps * scenario.step_s - scenario.duration_s) > 1e-6:
        raise InputError(where, "duration", "must be a whole number of steps")
    if not scenario.federates:
        raise InputError(where, "federates", "no federates: a scenario needs at least one")
    types = _federate_types(scenario, source)
    instances = {
        name: _instance(where, name, spec.type, spec.parameters, spec.timing, types)
        for name, spec in scenario.federates.items()
    }
    links = expand_links(where, scenario.links, instances)
    defaulted = default_links(where, links, instances)
    links = links + defaulted
    check_required_inputs(where, links, instances)
    check_overrides(where, scenario, links, instances)
    for name, inst in instances.items() if model_checks else ():
        for file, field_, message in inst.definition.scenario_problems(
                name, inst.parameters, feeder, scenario.n_steps, scenario.allow_long_run):
            raise InputError(file or where, field_, message)
    resolved = {name: _after_inputs(scenario, links, instances, name)
                for name, inst in instances.items() if inst.timing.after_inputs}
    for name, timing in resolved.items():  # from the declared timings, in any order
        instances[name].timing = timing
    return Federation(scenario, source, instances, links, feeder, defaulted)


def _after_inputs(scenario: Scenario, links: list[Link],
                  instances: dict[str, FederateInstance], name: str) -> Timing:
    """The concrete timing of a federate with ``after_inputs`` (`Timing`): once a step,
    after every source, if each source publishes at most once a step; else event-driven.

    Woken at every update instead, the recorder of the flagship was granted six times a
    step (once per source offset), and HELICS's wake-ups cost it 0.3 s of CPU over the
    day, five times its own work."""
    sources = [instances[s].timing for s in {link.source for link in links
                                             if link.target == name}]
    if sources and not any(t.event_driven or t.after_inputs for t in sources):
        offset = max(t.offset_s for t in sources) + AFTER_INPUTS_S
        if offset < scenario.step_s:
            return Timing(period_steps=1, offset_s=offset)
    return Timing(event_driven=True)


def _federate_types(scenario: Scenario, source: Path) -> dict[str, Path]:
    types = dict(builtin_types())
    for type_name, rel in scenario.components.items():
        path = (source.parent / rel).resolve()
        if not path.is_file():
            raise InputError(str(source), f"components.{type_name}",
                             f"component definition not found: {rel}")
        types[type_name] = path
    return types


def _instance(where: str, name: str, type_name: str, given: dict[str, Any],
              timing: Timing | None, types: dict[str, Path]) -> FederateInstance:
    prefix = f"federates.{name}"
    if not name.replace("_", "").replace("-", "").isalnum():
        raise InputError(where, prefix, "federate names may hold letters, digits, _ and - only")
    if type_name not in types:
        raise InputError(where, f"{prefix}.type",
                         f"unknown federate type {type_name!r}; known: {', '.join(sorted(types))}")
    definition = load_definition(types[type_name])
    parameters: dict[str, Any] = {}
    declared = {p.port_id for p in definition.static_inputs}
    for key, value in given.items():
        param = definition.parameter(key)
        if param is None:
            raise InputError(where, f"{prefix}.parameters.{key}",
                             f"unknown parameter of {type_name}; declared: "
                             f"{', '.join(sorted(declared)) or 'none'}")
        explicit_none = value is None and param.default is None and not param.is_required
        problem = None if explicit_none else param.check(value)
        if problem:
            raise InputError(where, f"{prefix}.parameters.{key}", problem)
        parameters[key] = value
    for param in definition.static_inputs:
        if param.port_id in parameters:
            continue
        if param.is_required:
            raise InputError(where, f"{prefix}.parameters.{param.port_id}",
                             f"required parameter of {type_name} is missing")
        parameters[param.port_id] = param.default
    for key, problem in definition.hook_problems(parameters):
        raise InputError(where, f"{prefix}.parameters.{key}", problem)
    return FederateInstance(name, type_name, definition, types[type_name], parameters,
                            timing or definition.timing)
