"""The regulator's policy over time: the initial policy and scheduled changes (pure).

A scenario states the policy as parameters and changes as a list, each with the hour (from
the scenario's start) it takes effect and the fields it changes::

    changes:
      - {at_h: 14, payment_rule: uniform-price}
      - {at_h: 16, v_max: 1.04}

Field names are the parameters': ``payment_rule``, ``price_cap``, ``fairness_premium``,
``v_min``, ``v_max``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gridsim.messages import Policy

FIELDS = {"payment_rule": "payment_rule", "price_cap": "price_cap_per_kwh",
          "fairness_premium": "fairness_premium", "v_min": "v_min_pu", "v_max": "v_max_pu"}
"""Parameter name -> `Policy` field."""


@dataclass(frozen=True)
class Change:
    """Fields that change at ``at_s`` seconds from the start."""

    at_s: float
    fields: dict


def parse_changes(changes: list) -> list[Change]:
    """The ``changes`` parameter, checked; raises ValueError naming the bad entry."""
    out = []
    for i, change in enumerate(changes):
        if not isinstance(change, dict) or "at_h" not in change:
            raise ValueError(f"changes[{i}]: needs at_h and the fields it changes")
        unknown = set(change) - set(FIELDS) - {"at_h"}
        if unknown:
            raise ValueError(f"changes[{i}]: unknown fields {sorted(unknown)}; "
                             f"known: {sorted(FIELDS)}")
        out.append(Change(float(change["at_h"]) * 3600.0,
                          {FIELDS[k]: v for k, v in change.items() if k != "at_h"}))
    return sorted(out, key=lambda c: c.at_s)


def check_parameters(parameters: dict) -> list[tuple[str, str]]:
    """Problems with the regulator's parameters, as (parameter, message) pairs (the
    component definition's ``parameter_check``: reported before the run starts)."""
    problems = []
    try:
        changes = parse_changes(parameters["changes"])
    except ValueError as exc:
        problems.append(("changes", str(exc)))
        changes = []
    for name, value in [("fairness_premium", parameters["fairness_premium"])] + [
            ("changes", c.fields.get("fairness_premium")) for c in changes]:
        if value is not None and not 0.0 <= value < 1.0:
            problems.append((name, f"fairness_premium must be in [0, 1), got {value!r}"))
    for name, value in [("v_min", parameters["v_min"]), ("v_max", parameters["v_max"])]:
        if not 0.5 < value < 1.5:
            problems.append((name, f"expected a voltage limit in pu, got {value!r}"))
    if parameters["v_min"] >= parameters["v_max"]:
        problems.append(("v_min", "must be below v_max"))
    return problems


def initial_policy(parameters: Mapping) -> Policy:
    """Revision 0, from the federate's parameters."""
    return Policy(time_s=0.0, revision=0, **{
        field: parameters[name] for name, field in FIELDS.items()})


@dataclass(frozen=True)
class RegulatorSettings:
    """The regulator's parameters, parsed: the initial policy and its scheduled changes."""

    initial: Policy
    changes: tuple[Change, ...]

    @classmethod
    def from_parameters(cls, parameters: Mapping) -> RegulatorSettings:
        """From parameters checked before the run (`check_parameters`)."""
        return cls(initial_policy(parameters), tuple(parse_changes(parameters["changes"])))

    def policy_at(self, t: float) -> Policy:
        """The policy in force at ``t`` seconds from the start."""
        return policy_at(self.initial, list(self.changes), t)


def policy_at(initial: Policy, changes: list[Change], t: float) -> Policy:
    """The policy in force at ``t`` seconds: each change due by then applied in order."""
    policy, revision = initial.model_dump(), 0
    for change in changes:
        if change.at_s <= t:
            policy.update(change.fields)
            revision += 1
    policy.update(revision=revision, time_s=t)
    return Policy(**policy)
