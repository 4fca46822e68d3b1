"""Payment rules by name: who pays whom once the market has cleared (pure numerics).

Signs: a payment > 0 means the entity pays, < 0 that it receives; ``kw > 0`` means it
received rights. Every figure is in $ over the market's horizon and comes from the bids
(the market knows nothing else), relative to the stand-alone operation:

- value ``v_i(kw_i*)``: what the cleared rights are worth to entity i by its bid;
- stand-alone value ``V_i(UB_i)``: its best without the market; bids are relative to it, so
  it is 0 here (`guidance.Guidance.standalone_usd` holds the absolute figure);
- stand-alone loss ``L_i = v_i(max_kw_i)``: value at full demand minus stand-alone value;
- gain ``v_i(kw_i*) - payment_i`` (individual rationality: >= 0);
- loss ``L_i - gain_i``: value at full demand minus the value reached, payment included;
  below 0 the entity profits from the emergency.

Rules (``RULES``, `make_rule`): ``proportional`` shares the cooperation benefit
``D = sum_i v_i(kw_i*)`` in proportion to stand-alone losses, so every loss falls by the same
fraction ``D / sum L`` and no one profits (``D <= sum L``); ``uniform-price`` charges the
cleared prices, ``sum_t p_t kw_i,t``; ``shapley`` gives each entity its Shapley value of the
game whose coalition worth is the best clearing among its members (exact, ``2^k - 1``
clearings, at most 12 entities). The three disagree; see docs/market.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import factorial
from typing import Protocol

import numpy as np

from gridsim.contracts.bid import Bid
from gridsim.federates.market.clearing import Clearing
from gridsim.federates.market.core import MAX_ENTITIES, coalition_worths


class PaymentRule(Protocol):
    """What the market and the conformance kit need from a payment rule."""

    name: str
    guarantees: frozenset[str]
    """Properties beyond budget balance and individual rationality (every rule's), checked
    by `gridsim.federates.market.conformance`: ``"no-profiteering"`` (every loss >= 0),
    ``"equal-relative-saving"`` (every loss is the same fraction of the stand-alone loss),
    ``"price-linear"`` (payments are prices times rights)."""

    def payments_usd(self, bids: Sequence[Bid], clearing: Clearing) -> np.ndarray:
        """Payment of every entity, in bid order, $ (> 0: pays)."""
        ...


def standalone_losses_usd(bids: Sequence[Bid]) -> np.ndarray:
    """``L_i = v_i(max_kw_i)`` of every bid, $."""
    return np.array([bid.standalone_loss_usd for bid in bids])


class Proportional:
    """Benefit shared in proportion to stand-alone loss: ``pay_i = v_i(kw*) - D L_i / L``."""

    name = "proportional"
    guarantees = frozenset({"no-profiteering", "equal-relative-saving"})

    def payments_usd(self, bids: Sequence[Bid], clearing: Clearing) -> np.ndarray:
        losses = standalone_losses_usd(bids)
        total = losses.sum()
        share = losses / total if total > 0 else np.full(len(bids), 1.0 / len(bids))
        return clearing.value_usd - clearing.objective_usd * share


class UniformPrice:
    """Everyone pays the cleared price for the rights received: ``sum_t p_t kw_i,t``."""

    name = "uniform-price"
    guarantees = frozenset({"price-linear"})

    def payments_usd(self, bids: Sequence[Bid], clearing: Clearing) -> np.ndarray:
        return clearing.kw @ clearing.price_usd_per_kw


class Shapley:
    """Shapley value of the clearing game: ``pay_i = v_i(kw*) - phi_i``.

    Coalition worth ``w(S)`` as in `core.coalition_worths`; ``w`` of everyone is the
    clearing's objective, so the payments add up to 0 exactly.
    """

    name = "shapley"
    guarantees = frozenset()
    max_entities = MAX_ENTITIES

    def payments_usd(self, bids: Sequence[Bid], clearing: Clearing) -> np.ndarray:
        k = len(bids)
        if k > self.max_entities:
            raise ValueError(f"shapley: {k} entities, at most {self.max_entities} "
                             f"(exact enumeration of 2^k coalitions)")
        worth = coalition_worths(bids, clearing)
        weight = [factorial(s) * factorial(k - s - 1) / factorial(k) for s in range(k)]
        size = np.array([bin(mask).count("1") for mask in range(1 << k)])
        phi = np.zeros(k)
        for i in range(k):
            without = np.array([mask for mask in range(1 << k) if not mask >> i & 1])
            gains = worth[without | (1 << i)] - worth[without]
            phi[i] = float(np.dot([weight[s] for s in size[without]], gains))
        return clearing.value_usd - phi


RULES: dict[str, type] = {cls.name: cls for cls in (Proportional, UniformPrice, Shapley)}
"""Payment rules by name: ``"proportional"``, ``"uniform-price"``, ``"shapley"``."""


def make_rule(name: str) -> PaymentRule:
    """A payment rule by name; the error lists the known names."""
    if name not in RULES:
        raise ValueError(f"unknown payment rule {name!r}; known: {', '.join(sorted(RULES))}")
    return RULES[name]()


@dataclass(frozen=True, eq=False)
class Settlement:
    """Payments and what they leave each entity with (module doc), $ in bid order."""

    rule: str
    entity_ids: tuple[str, ...]
    payment_usd: np.ndarray
    value_usd: np.ndarray
    gain_usd: np.ndarray
    standalone_loss_usd: np.ndarray
    loss_usd: np.ndarray

    @property
    def relative_saving(self) -> np.ndarray:
        """Fraction of each stand-alone loss the market removed (nan where it was 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.standalone_loss_usd > 0,
                            self.gain_usd / self.standalone_loss_usd, np.nan)


def settle(rule: str, bids: Sequence[Bid], clearing: Clearing) -> Settlement:
    """Payments by the named rule and each entity's gain and loss."""
    payment = np.asarray(make_rule(rule).payments_usd(bids, clearing), dtype=float)
    standalone = standalone_losses_usd(bids)
    gain = clearing.value_usd - payment
    return Settlement(rule=rule, entity_ids=clearing.entity_ids, payment_usd=payment,
                      value_usd=clearing.value_usd, gain_usd=gain,
                      standalone_loss_usd=standalone, loss_usd=standalone - gain)
