"""The market federate's parameters, typed, and the shortage's timing in steps.

Parameters are checked before the run (`definitions.check_parameters`); `MarketSettings`
holds them parsed, so no raw parameter dict reaches the numerics. The regulator's policy,
when linked, replaces the payment rule, price cap and fairness premium
(`MarketSettings.with_policy`); the component definition's values apply until one arrives.

Timing, for a step of data time ``t`` and length ``step_s`` whose load caps apply at the
next step (``t + step_s``): the round is due at the last step before the shortage (or, if
the shortage began before any step could clear it, at the first step that can); the caps of
interval ``k`` are published at the step before it applies; the step before the shortage
ends lifts every cap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gridsim import messages as m


@dataclass(frozen=True)
class MarketSettings:
    """The market's parameters (component definition), parsed."""

    entity_count: int
    """How many feeder loads become entities when none are defined (``entities``)."""
    entity_definitions: tuple[Mapping[str, Any], ...]
    """Entities written out, one per feeder load (`definitions`); empty: draw them."""
    shortage_start_h: float
    """Start of the shortage, hours from the scenario's start."""
    shortage_hours: float
    supply_fraction: float
    """Share of every load's demand the substation supplies during the shortage."""
    interval_h: float
    """Length of a market interval, hours."""
    payment_rule: str
    price_cap_usd_per_kwh: float | None
    fairness_premium: float

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> MarketSettings:
        """From the federate's parameters, checked before the run."""
        return cls(
            entity_count=int(parameters["entities"]),
            entity_definitions=tuple(parameters["entity_definitions"] or ()),
            shortage_start_h=float(parameters["shortage_start_h"]),
            shortage_hours=float(parameters["shortage_hours"]),
            supply_fraction=float(parameters["supply_fraction"]),
            interval_h=float(parameters["interval_h"]),
            payment_rule=str(parameters["payment_rule"]),
            price_cap_usd_per_kwh=(None if parameters["price_cap"] is None
                                   else float(parameters["price_cap"])),
            fairness_premium=float(parameters["fairness_premium"]))

    def with_policy(self, policy: m.Policy) -> MarketSettings:
        """These settings under the regulator's policy."""
        return dataclasses.replace(self, payment_rule=policy.payment_rule,
                                   price_cap_usd_per_kwh=policy.price_cap_per_kwh,
                                   fairness_premium=policy.fairness_premium)

    @property
    def start_s(self) -> float:
        """Start of the shortage, s from the scenario's start."""
        return self.shortage_start_h * 3600.0

    @property
    def interval_s(self) -> float:
        return self.interval_h * 3600.0

    @property
    def n_intervals(self) -> int:
        return int(round(self.shortage_hours / self.interval_h))

    @property
    def end_s(self) -> float:
        """End of the shortage's last interval, s."""
        return self.start_s + self.n_intervals * self.interval_s

    def start_hour(self, scenario_start: datetime) -> float:
        """Clock hour at which the shortage starts (PV shapes follow the clock)."""
        return (scenario_start.hour + scenario_start.minute / 60.0
                + self.start_s / 3600.0) % 24.0

    def round_due(self, t: float, step_s: float) -> bool:
        """Whether a round not yet cleared is cleared at the step of data time `t`."""
        return self.start_s <= t + step_s and t < self.end_s

    def interval_after(self, t: float, step_s: float) -> int | None:
        """The interval whose caps the step at `t` publishes (they apply at the next step),
        None if the next step is outside the shortage."""
        t_next = t + step_s
        if self.start_s <= t_next < self.end_s:
            return int((t_next - self.start_s) // self.interval_s)
        return None

    def lifts_after(self, t: float, step_s: float) -> bool:
        """Whether the step at `t` lifts the caps (the next step is the first after the
        shortage)."""
        return self.end_s <= t + step_s < self.end_s + step_s
