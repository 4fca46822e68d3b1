"""One market round from entities to load caps: the three steps chained (pure numerics).

1. Decision guidance: each entity's bid from its microgrid and its default allocation.
2. Clearing of the bids, then payments by the rule the policy names, with the fairness
   premium and price cap applied.
3. Operation: each entity's microgrid re-optimized for its cleared rights; its planned grid
   import per interval is the feeder's load cap.

Policy adjustments (the regulator's): a price cap clips the published prices (the clearing
itself is unchanged); the fairness premium moves a share ``f`` of the buyers' gain (``kw``
net > 0) to the sellers (``kw`` net < 0), each side in proportion to its gain or rights given
up, so payments still sum to zero and every buyer keeps ``1 - f`` of its gain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gridsim.federates.market.clearing import Clearing, clear
from gridsim.federates.market.entities import Entity
from gridsim.federates.market.guidance import Guidance, guidance
from gridsim.federates.market.operation import Operation, operate_all
from gridsim.federates.market.payments import Settlement, settle


@dataclass(frozen=True, eq=False)
class Round:
    """Everything one round decided, in entity order."""

    guidance: list[Guidance]
    clearing: Clearing
    settlement: Settlement
    payments_usd: np.ndarray
    """After the fairness premium, $ (> 0 pays)."""
    prices_usd_per_kwh: np.ndarray
    """After the price cap."""
    operations: list[Operation]

    @property
    def standalone_loss_usd(self) -> float:
        """Combined loss without the market: full-supply value minus stand-alone value."""
        return float(sum(g.full_usd - g.standalone_usd for g in self.guidance))

    @property
    def market_loss_usd(self) -> float:
        """Combined loss with the market (payments cancel out)."""
        return self.standalone_loss_usd - float(self.clearing.objective_usd)


def fairness_premium(payments: np.ndarray, gains: np.ndarray, kw: np.ndarray,
                     share: float) -> np.ndarray:
    """Payments after moving ``share`` of the buyers' gain to the sellers (module doc)."""
    if share <= 0.0:
        return payments
    net = kw.sum(axis=1)
    buyers, sellers = net > 1e-9, net < -1e-9
    pot = share * np.clip(gains[buyers], 0.0, None)
    if not sellers.any() or pot.sum() <= 0.0:
        return payments
    out = payments.copy()
    out[buyers] += pot
    out[sellers] -= pot.sum() * net[sellers] / net[sellers].sum()
    return out


def run_round(entities: Sequence[Entity], ub_kw: np.ndarray, rule: str,
              price_cap_usd_per_kwh: float | None = None,
              premium: float = 0.0) -> Round:
    """Guidance, clearing, payments and operation for one round (module doc)."""
    advice = [guidance(entity, ub) for entity, ub in zip(entities, ub_kw)]
    bids = [g.bid for g in advice]
    clearing = clear(bids)
    settlement = settle(rule, bids, clearing)
    payments = fairness_premium(settlement.payment_usd, settlement.gain_usd, clearing.kw,
                                premium)
    interval_h = entities[0].interval_h if entities else 1.0
    prices = np.asarray(clearing.price_usd_per_kw, dtype=float) / interval_h
    if price_cap_usd_per_kwh is not None:
        prices = np.minimum(prices, price_cap_usd_per_kwh)
    operations = operate_all(entities, ub_kw, clearing.kw)
    return Round(advice, clearing, settlement, payments, prices, operations)
