"""Market entities written in the scenario, instead of drawn from the feeder's loads.

The market federate's ``entities`` parameter is a count (that many feeder loads are drawn
with the seed, `entities.generate_entities`); ``entity_definitions``, when given, lists the
entities instead, one per feeder load::

    entity_definitions:
      - load: s1a                       # the feeder load (its demand is the entity's)
        blocks:                         # shares of the demand, with values of service
          - {name: critical, share: 0.3, value: 40}
          - {name: deferrable, share: 0.7, value: 2}
        generator: {kw: 10, cost: 0.5}  # optional: capacity kW, $/kWh
        battery: {kwh: 20, kw: 5, round_trip: 0.9, soc: 0.5}   # optional; soc as a share
        pv_kw: 5                        # optional: peak kW, on the clear-sky shape

Block shares must sum to 1. `check_definitions` reports problems as (parameter, message)
pairs before the run; `entities_from_definitions` builds the entities at the round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from gridsim.federates.market.entities import (
    Battery,
    Entity,
    LoadBlock,
    LocalGenerator,
    pv_shape_pu,
)

KEYS = {"load", "blocks", "generator", "battery", "pv_kw"}
BLOCK_KEYS = {"name", "share", "value"}


def check_definitions(entities: list) -> list[tuple[str, str]]:
    """Problems with the ``entity_definitions`` parameter."""
    problems, seen = [], set()
    for i, definition in enumerate(entities):
        where = f"entity_definitions[{i}]"
        if not isinstance(definition, Mapping) or "load" not in definition \
                or "blocks" not in definition:
            problems.append((where, "needs load and blocks"))
            continue
        unknown = set(definition) - KEYS
        if unknown:
            problems.append((where, f"unknown keys {sorted(unknown)}; known: {sorted(KEYS)}"))
        if definition["load"] in seen:
            problems.append((where, f"load {definition['load']!r} has two entities"))
        seen.add(definition["load"])
        problems += _check_blocks(where, definition["blocks"])
    return problems


def _check_blocks(where: str, blocks) -> list[tuple[str, str]]:
    if not isinstance(blocks, list) or not blocks:
        return [(f"{where}.blocks", "expected a non-empty list")]
    for j, block in enumerate(blocks):
        if not isinstance(block, Mapping) or not {"share", "value"} <= set(block) \
                or set(block) - BLOCK_KEYS:
            return [(f"{where}.blocks[{j}]", "expected {name, share, value}")]
        if not (0 <= block["share"] <= 1 and block["value"] >= 0):
            return [(f"{where}.blocks[{j}]", "share in [0, 1] and value >= 0 $/kWh")]
    total = sum(block["share"] for block in blocks)
    if abs(total - 1.0) > 1e-9:
        return [(f"{where}.blocks", f"shares sum to {total}, not 1")]
    return []


def entities_from_definitions(definitions: Sequence[Mapping], demand_kw: Mapping[str, float],
                              bus: Mapping[str, str], n_intervals: int, interval_h: float,
                              start_hour: float) -> list[Entity]:
    """The defined entities, with each load's demand (kW, every interval); a load the
    feeder does not have raises ValueError naming it."""
    shape = pv_shape_pu(n_intervals, interval_h, start_hour)
    out = []
    for definition in definitions:
        load = definition["load"]
        if load not in demand_kw:
            raise ValueError(f"entity on load {load!r}: the feeder has no such load")
        demand = np.full(n_intervals, float(demand_kw[load]))
        blocks = tuple(LoadBlock(b.get("name", f"block{j}"), demand * b["share"], b["value"])
                       for j, b in enumerate(definition["blocks"]))
        gen = definition.get("generator")
        bat = definition.get("battery")
        out.append(Entity(
            entity_id=load, bus=bus[load], blocks=blocks, interval_h=interval_h,
            generator=LocalGenerator(gen["kw"], gen["cost"]) if gen else None,
            battery=Battery.from_round_trip(bat["kwh"], bat["kw"], bat.get("round_trip", 0.9),
                                            bat["kwh"] * bat.get("soc", 0.5)) if bat else None,
            pv_kw=definition["pv_kw"] * shape if definition.get("pv_kw") else None))
    return out


def check_parameters(parameters: Mapping) -> list[tuple[str, str]]:
    """Problems with the market federate's parameters (its definition's
    ``parameter_check``: reported before the run starts)."""
    problems = check_definitions(parameters["entity_definitions"])
    if parameters["entities"] < 1:
        problems.append(("entities", "expected a count >= 1"))
    if not 0.0 <= parameters["supply_fraction"] <= 1.0:
        problems.append(("supply_fraction", "expected a share in [0, 1]"))
    if parameters["interval_h"] <= 0:
        problems.append(("interval_h", "expected hours > 0"))
    else:
        count = parameters["shortage_hours"] / parameters["interval_h"]
        if count < 1 or abs(count - round(count)) > 1e-9:
            problems.append(("shortage_hours", "expected a whole number (>= 1) of intervals"))
    if parameters["shortage_start_h"] < 0:
        problems.append(("shortage_start_h", "expected hours >= 0 from the start"))
    if not 0.0 <= parameters["fairness_premium"] < 1.0:
        problems.append(("fairness_premium", "expected a share in [0, 1)"))
    return problems
