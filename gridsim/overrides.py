"""Parameters a linked input replaces: refused in the scenario, and checked at every value
the link will bring.

An input declares the parameters of its own federate it replaces while linked
(``overrides``: the DOPF's ``policy`` input replaces ``v_min`` and ``v_max``; the market's
its payment rule, price cap and fairness premium). Two rules follow, the same for every
federate type:

1. Such a parameter may not be set in the scenario while the input is linked: the policy
   would replace it without a word. The error says where to set it instead. A value equal
   to the definition's default is let through (it states nothing a reader could expect to
   hold against the policy; `scenarios/ieee123-dopf.yaml` writes the DOPF's default
   ``v_max`` and tests add a regulator to it).
2. When the source output declares what it ``carries`` (parameters of its own federate of
   the same names, and a ``schedule`` of dated changes to them), each value the target
   will receive over the run is checked as if the scenario had set it: the target
   parameter's type and choices, then the target's own ``parameter_check`` hook. So a
   regulator that switches a 36-entity market to ``shapley`` at 14:00 fails before the run
   with the limit the market's hook enforces, not twelve simulated hours in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gridsim.components import InputPort, OutputPort
from gridsim.errors import InputError
from gridsim.scenario import Link, Scenario

if TYPE_CHECKING:
    from gridsim.wiring import FederateInstance


def check_overrides(where: str, scenario: Scenario, links: list[Link],
                    instances: dict[str, FederateInstance]) -> None:
    """Both rules of the module, for every link into an input that overrides parameters."""
    for link in links:
        target = instances[link.target]
        port = target.definition.input(link.target_port)
        if not port.overrides:
            continue
        source = instances[link.source]
        output = source.definition.output(link.source_port)
        _check_not_set(where, scenario.federates[link.target].parameters, link, port, source,
                       target)
        if output.carries:
            _check_carried(where, link, port, output, source, target)


def _check_not_set(where: str, given: Mapping[str, Any], link: Link, port: InputPort,
                   source: FederateInstance, target: FederateInstance) -> None:
    for name in port.overrides:
        if name not in given or given[name] == target.definition.parameter(name).default:
            continue
        instead = (f"set it on {link.source} instead" if source.definition.parameter(name)
                   else "remove it here")
        raise InputError(where, f"federates.{link.target}.parameters.{name}",
                         f"set by the linked {port.port_id} ({link.source}.{link.source_port});"
                         f" {instead}")


def published_values(source: FederateInstance,
                     output: OutputPort) -> list[tuple[str, dict[str, Any]]]:
    """Each set of values `output` will publish over the run, with the parameter of
    `source` it comes from: the carried parameters, then each scheduled change applied in
    time order on top of the ones before."""
    values = {name: source.parameters[name] for name in output.carries}
    found = [("", dict(values))]
    if output.schedule is None:
        return found
    entries = source.parameters.get(output.schedule.parameter) or []
    dated = sorted((_time(entry.get(output.schedule.time)), i, entry)
                   for i, entry in enumerate(entries) if isinstance(entry, Mapping))
    for _, i, entry in dated:
        values.update({k: v for k, v in entry.items() if k in output.carries})
        found.append((f"{output.schedule.parameter}[{i}]", dict(values)))
    return found


def _time(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _check_carried(where: str, link: Link, port: InputPort, output: OutputPort,
                   source: FederateInstance, target: FederateInstance) -> None:
    shared = [name for name in port.overrides if name in output.carries]
    for origin, values in published_values(source, output):
        changed = {name: values[name] for name in shared
                   if values[name] != target.parameters[name]}
        if not changed:
            continue
        becomes = ", ".join(f"{name} becomes {value!r}" for name, value in changed.items())
        lead = f"{link.target}'s {becomes} through {link.target}.{link.target_port}"
        problems = [(name, param.check(value)) for name, value in changed.items()
                    if (param := target.definition.parameter(name)) is not None
                    and not (value is None and param.default is None)]
        problems = [(n, p) for n, p in problems if p] or target.definition.hook_problems(
            {**target.parameters, **changed})
        for name, problem in problems:
            at = origin or (name if name in changed else next(iter(changed)))
            raise InputError(where, f"federates.{link.source}.parameters.{at}",
                             f"{lead}: {name}: {problem}")
