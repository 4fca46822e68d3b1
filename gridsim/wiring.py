"""Validation and resolution of a scenario against the component definitions.

`resolve` turns a `Scenario` into a `Federation`: every federate's type found, parameters
checked and completed with defaults, links checked (ports exist, types compatible) and the
unambiguous missing ones added. Every problem is an `InputError` naming the scenario file and
the field, raised before any process starts.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridsim import feeders
from gridsim.components import ComponentDefinition, Timing, builtin_types, load_definition
from gridsim.errors import InputError
from gridsim.messages import ANY_TYPE, UNTYPED, compatible, is_known_type
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

    def outputs_of(self, name: str) -> dict[str, str]:
        """Output port -> its topic, for every declared output."""
        definition = self.federates[name].definition
        return {p.port_id: topic(name, p.port_id) for p in definition.dynamic_outputs}


def topic(federate: str, port: str) -> str:
    """The HELICS publication key of a federate's output port."""
    return f"{federate}/{port}"


def load_federation(path: str | Path) -> Federation:
    """Load a scenario file and resolve it; raises `InputError` on any problem."""
    path = Path(path)
    return resolve(load_scenario(path), path)


def resolve(scenario: Scenario, source: Path) -> Federation:
    """Check `scenario` (read from `source`) and complete it into a `Federation`."""
    where = str(source)
    feeder = feeders.resolve(scenario.feeder, base_dir=source.parent, source=where,
                             extra=scenario.feeder_overlays)
    if scenario.n_steps < 1 or abs(scenario.n_steps * scenario.step_s - scenario.duration_s) > 1e-6:
        raise InputError(where, "duration", "must be a whole number of steps")
    types = _federate_types(scenario, source)
    instances = {
        name: _instance(where, name, spec.type, spec.parameters, spec.timing, types)
        for name, spec in scenario.federates.items()
    }
    links = _expand_links(where, scenario.links, instances)
    defaulted = _default_links(where, links, instances)
    links = links + defaulted
    _check_required_inputs(where, links, instances)
    return Federation(scenario, source, instances, links, feeder, defaulted)


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
    for key, problem in _deep_check(definition, parameters):
        raise InputError(where, f"{prefix}.parameters.{key}", problem)
    return FederateInstance(name, type_name, definition, types[type_name], parameters,
                            timing or definition.timing)


def _deep_check(definition, parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """The problems the definition's own ``parameter_check`` finds (none if it has none)."""
    if not definition.parameter_check:
        return []
    module, _, function = definition.parameter_check.partition(":")
    return list(getattr(importlib.import_module(module), function)(parameters))


def _expand_links(where: str, links: list[Link],
                  instances: dict[str, FederateInstance]) -> list[Link]:
    """Check explicit links; expand ``source.*`` to every compatible output.

    A link written twice is kept once; two different links into an input that takes one
    are an error naming the second.
    """
    result: dict[Link, int] = {}
    for i, link in enumerate(links):
        for expanded in _check_link(where, f"links[{i}]", link, instances):
            result.setdefault(expanded, i)
    fed_by: dict[tuple[str, str], Link] = {}
    for link, i in result.items():
        key = (link.target, link.target_port)
        first = fed_by.setdefault(key, link)
        if first != link and not instances[link.target].definition.input(link.target_port).multiple:
            raise InputError(where, f"links[{i}].target_port",
                             f"{link.target}.{link.target_port} takes one link and is already "
                             f"fed by {first.source}.{first.source_port}")
    return list(result)


def _check_link(where: str, field_: str, link: Link,
                instances: dict[str, FederateInstance]) -> list[Link]:
    """The link itself, or its expansion for ``source.*``, after checking ports and types."""
    for role in ("source", "target"):
        if getattr(link, role) not in instances:
            raise InputError(where, f"{field_}.{role}",
                             f"no federate named {getattr(link, role)!r}")
    source, target = instances[link.source], instances[link.target]
    port_in = target.definition.input(link.target_port)
    if port_in is None:
        raise InputError(where, f"{field_}.target_port",
                         f"{link.target} ({target.type}) has no input {link.target_port!r}")
    if link.source_port == "*":
        return [link.model_copy(update={"source_port": p.port_id})
                for p in source.definition.dynamic_outputs if compatible(p.type, port_in.type)]
    port_out = source.definition.output(link.source_port)
    if port_out is None:
        raise InputError(where, f"{field_}.source_port",
                         f"{link.source} ({source.type}) has no output {link.source_port!r}")
    if not compatible(port_out.type, port_in.type):
        raise InputError(where, field_, f"{link}: output type {port_out.type} cannot feed input "
                                         f"type {port_in.type}")
    return [link]


def _default_links(where: str, links: list[Link],
                   instances: dict[str, FederateInstance]) -> list[Link]:
    """Links for unconnected inputs whose type matches exactly one output elsewhere."""
    linked = {(link.target, link.target_port) for link in links}
    added: list[Link] = []
    for name, inst in instances.items():
        for port in inst.definition.dynamic_inputs:
            if (name, port.port_id) in linked or port.multiple:
                continue
            if port.type in (ANY_TYPE, UNTYPED) or not is_known_type(port.type):
                continue
            candidates = [
                Link(source=other, source_port=out.port_id, target=name, target_port=port.port_id)
                for other, o_inst in instances.items() if other != name
                for out in o_inst.definition.dynamic_outputs
                if out.type not in (ANY_TYPE, UNTYPED) and compatible(out.type, port.type)
            ]
            if len(candidates) == 1:
                added.append(candidates[0])
            elif len(candidates) > 1 and port.is_required:
                names = ", ".join(f"{c.source}.{c.source_port}" for c in candidates)
                raise InputError(where, f"federates.{name}",
                                 f"input {port.port_id!r} ({port.type}) could come from "
                                 f"{names}; add a link to choose")
    return added


def _check_required_inputs(where: str, links: list[Link],
                           instances: dict[str, FederateInstance]) -> None:
    linked = {(link.target, link.target_port) for link in links}
    for name, inst in instances.items():
        for port in inst.definition.dynamic_inputs:
            if port.is_required and (name, port.port_id) not in linked:
                raise InputError(where, f"federates.{name}",
                                 f"required input {port.port_id!r} ({port.type or 'untyped'}) "
                                 f"of {inst.type} is not connected")
