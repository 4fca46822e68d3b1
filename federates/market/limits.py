"""The market's parameters checked before the run, with the limits of its payment rules.

The component definition's ``parameter_check`` hook: `definitions.check_parameters` (the
entities, the shortage's timing, the fairness premium), plus the limits a payment rule
declares in the definition (``choice_limits`` of ``payment_rule``): ``shapley`` enumerates
every coalition, exactly, so at most 12 entities (`payments.Shapley.max_entities`, held
equal to the declared limit by a test). Without this check a 36-entity market validated and
failed at its round, twelve simulated hours in.

The wiring runs the same hook with each payment rule a linked regulator will publish
(`gridsim.overrides`), so a policy that switches to ``shapley`` is refused the same way.
This module imports no solver: validation stays quick.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from gridsim.components import load_definition
from gridsim.federates.market.definitions import check_parameters as check_definitions

DEFINITION = Path(__file__).with_name("component_definition.json")


@cache
def rule_limits() -> dict[str, dict[str, int]]:
    """Payment rule -> its declared limits (e.g. ``{"shapley": {"entities": 12}}``)."""
    return dict(load_definition(DEFINITION).parameter("payment_rule").choice_limits)


def entity_count(parameters: Mapping[str, Any]) -> int:
    """How many entities the market will have: the written-out ones, else ``entities``."""
    return len(parameters["entity_definitions"] or []) or int(parameters["entities"])


def check_parameters(parameters: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems with the market's parameters, as (parameter, message) pairs."""
    problems = check_definitions(parameters)
    rule = parameters["payment_rule"]
    limit = rule_limits().get(rule, {}).get("entities")
    count = entity_count(parameters)
    if limit is not None and count > limit:
        source = "entity_definitions" if parameters["entity_definitions"] else "entities"
        problems.append(("payment_rule", f"{rule} is exact for at most {limit} entities; "
                                         f"this market has {count} ({source})"))
    return problems
