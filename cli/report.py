"""What ``gridsim`` prints about definitions and runs, as lines (no I/O here).

`summary_lines`: the end of ``gridsim run``, a few lines per layer present, read from
summary.json (deterministic figures only, so the same scenario and seed print the same
lines). Layers are recognized by federate type, so user-named federates are reported too;
types without a reader here (the sensor, the regulator, the recorder, user types) print
nothing. A missing key prints nothing rather than failing: a run's report must never turn
a successful run into an error.

`describe_definition`: what ``gridsim list`` shows of one component definition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gridsim.components import ComponentDefinition, InputPort, OutputPort
from gridsim.wiring import Federation

V_LIMIT_PU = 1.05
"""The feeder's line counts steps whose highest voltage, rounded as shown (4 decimals),
is above this (ANSI C84.1 range A)."""


def _feeder(name: str, part: Mapping[str, Any]) -> list[str]:
    per_step = part.get("v_max_pu_per_step") or []
    above = sum(1 for v in per_step if v is not None and round(v, 4) > V_LIMIT_PU)
    return [f"{name}: |V| {part['v_min_pu']:.4f} .. {part['v_max_pu']:.4f} pu; "
            f"{above} of {len(per_step)} steps above {V_LIMIT_PU:.2f} pu; "
            f"{part.get('rejected_commands', 0)} commands rejected"]


def _estimator(name: str, part: Mapping[str, Any]) -> list[str]:
    if part.get("v_error_mean_pu") is None:
        return [f"{name} ({part.get('algorithm')}): not scored (no truth linked)"]
    return [f"{name} ({part.get('algorithm')}): |V| error mean {part['v_error_mean_pu']:.4f}, "
            f"max {part['v_error_max_pu']:.4f} pu over {part.get('scored_steps')} steps; "
            f"{part.get('failed', 0)} failed, {part.get('skipped_steps', 0)} skipped"]


def _dopf(name: str, part: Mapping[str, Any]) -> list[str]:
    statuses = ", ".join(f"{k} {v}" for k, v in sorted((part.get("statuses") or {}).items()))
    curtailed = part.get("ordered_curtailment_kwh")
    above = part.get("input_steps_above_v_max")
    line = f"{name} ({part.get('algorithm')}): {part.get('solves')} solves ({statuses or 'none'})"
    if curtailed is not None:
        line += f"; curtailment ordered {curtailed:.1f} kWh"
    if above is not None:
        line += f"; {above} steps above v_max in its input"
    moves = [f"{part[k]} {k.replace('_', ' ')}" for k in ("tap_moves", "capacitor_switches")
             if part.get(k)]
    return [line + (f"; {', '.join(moves)}" if moves else "")]


def _market(name: str, part: Mapping[str, Any]) -> list[str]:
    if not part.get("rounds"):
        return [f"{name}: no round cleared"]
    checks = part.get("checks") or {}
    failed = [k for k, ok in sorted(checks.items()) if not ok]
    return [f"{name} ({part.get('payment_rule')}, {part.get('entities')} entities): saving "
            f"{part['saving_usd_per_h']:.2f} $/h ({part['saving_fraction']:.1%} of the loss "
            f"without market); checks {'failed: ' + ', '.join(failed) if failed else 'hold'}"]


def _auditor(name: str, part: Mapping[str, Any]) -> list[str]:
    codes = ", ".join(f"{k} {v}" for k, v in sorted((part.get("findings_by_code") or {}).items()))
    return [f"{name}: {part.get('findings', 0)} findings{f' ({codes})' if codes else ''} in "
            f"{part.get('checks', 0)} checks of {part.get('rounds', 0)} rounds"]


LAYERS: dict[str, Callable[[str, Mapping[str, Any]], list[str]]] = {
    "feeder": _feeder, "wls": _estimator, "truth": _estimator, "dopf": _dopf,
    "market": _market, "auditor": _auditor,
}
"""Federate type -> the lines of its summary part."""


def summary_lines(federation: Federation, summary: Mapping[str, Any]) -> list[str]:
    """A few lines per layer, in the scenario's order of federates."""
    lines: list[str] = []
    parts = summary.get("federates") or {}
    for name, inst in federation.federates.items():
        reader, part = LAYERS.get(inst.type), parts.get(name)
        if reader is None or not part:
            continue
        try:
            lines += reader(name, part)
        except (KeyError, TypeError, ValueError):
            continue
    return lines


def _input(port: InputPort) -> str:
    notes = ["required" if port.is_required else "optional"]
    if port.multiple:
        notes.append("any number of links")
    if port.combine:
        notes.append(f"several links, combined by {port.combine}")
    if port.accepts:
        notes.append(f"a link may also bring {', '.join(port.accepts)}")
    if port.overrides:
        notes.append(f"replaces parameters {', '.join(port.overrides)} while linked")
    return f"input  {port.port_id}: {_kind(port)} ({'; '.join(notes)}). {port.description}"


def _output(port: OutputPort) -> str:
    notes = []
    if port.carries:
        notes.append(f"carries {', '.join(port.carries)}")
    if port.schedule:
        notes.append(f"changed over the run by {port.schedule.parameter}")
    extra = f" ({'; '.join(notes)})" if notes else ""
    return f"output {port.port_id}: {_kind(port)}{extra}. {port.description}"


def _kind(port: InputPort | OutputPort) -> str:
    return f"{port.type}, {port.quantity}" if port.quantity else port.type


def describe_definition(definition: ComponentDefinition) -> list[str]:
    """One line per parameter and port: type, meaning, links taken, what it replaces."""
    lines = []
    for p in definition.static_inputs:
        default = "required" if p.is_required else f"default {p.default!r}"
        limits = "; ".join(f"{choice}: at most {n} {what}" for choice, found
                           in p.choice_limits.items() for what, n in found.items())
        default += f" ({limits})" if limits else ""
        lines.append(f"parameter {p.port_id}: {p.type}, {default}. {p.description}")
    lines += [_input(p) for p in definition.dynamic_inputs]
    lines += [_output(p) for p in definition.dynamic_outputs]
    return lines
