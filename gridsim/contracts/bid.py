"""A market bid, what an entity signs of it, and how a checker reads it back.

The market's decision guidance (the market federate's `guidance` module) makes a `Bid` for each
entity; the entity signs `bid_content` (its cuts and bounds, no identity) in the ledger
(`gridsim.ledger.identity.sign_bid`), with the round it is for. The auditor reads a logged
entry back into a `Bid` with `bid_of_entry`, so the certificate and the payments are checked
on exactly what was signed. `bid_from_content` checks shapes as well as types: a malformed
bid raises `ValueError` instead of breaking the arithmetic that follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from gridsim.ledger.identity import IntervalKeys, LedgerEntry, read_bid, sign_bid

CONTENT_FIELDS = ("min_kw", "max_kw", "intercept_usd", "slope_usd_per_kw", "group",
                  "group_interval")
"""The fields of a signed bid, as `Bid` names them."""


@dataclass(frozen=True, eq=False)
class Bid:
    """A concave piecewise-linear bid ``v(kw) = sum_j min_{k in group j} (a_k + g_k . kw)``.

    ``v(kw)`` is what the entity would pay ($; negative: what it must receive) for import
    bounds raised by ``kw`` (kW per interval, > 0 receives rights) on
    ``min_kw <= kw <= max_kw``. Cuts are sorted by group.
    """

    entity_id: str
    min_kw: np.ndarray
    max_kw: np.ndarray
    intercept_usd: np.ndarray
    """``a_k``, $ (K)."""
    slope_usd_per_kw: np.ndarray
    """``g_k``, $ per kW of bound in each interval (K x n)."""
    group: np.ndarray
    """Group of each cut, 0, 1, ... in order (K)."""
    group_interval: np.ndarray
    """The one interval each group depends on, -1 if it couples intervals (n_groups)."""

    @property
    def n_intervals(self) -> int:
        return len(self.min_kw)

    @cached_property
    def group_starts(self) -> np.ndarray:
        """Index of each group's first cut."""
        return np.flatnonzero(np.r_[True, self.group[1:] != self.group[:-1]])

    def group_values_usd(self, kw: np.ndarray) -> np.ndarray:
        """``min_k (a_k + g_k . kw)`` of every group, $."""
        return np.minimum.reduceat(self.intercept_usd + self.slope_usd_per_kw @ kw,
                                   self.group_starts)

    def value_usd(self, kw: np.ndarray) -> float:
        """``v(kw)``, $."""
        return float(self.group_values_usd(np.asarray(kw, dtype=float)).sum())

    @property
    def standalone_loss_usd(self) -> float:
        """Loss without the market: value of the bound raised to ``max_kw`` (full demand)."""
        return self.value_usd(self.max_kw)


def bid_content(bid: Bid) -> dict[str, list]:
    """What an entity signs: its cuts and bounds, no identity (`gridsim.ledger`)."""
    return {name: getattr(bid, name).tolist() for name in CONTENT_FIELDS}


def bid_from_content(entity_id: str, content: Mapping[str, Any]) -> Bid:
    """The `Bid` of signed content (`bid_content`'s inverse; other keys, such as the round,
    are ignored). Raises ValueError if a field is missing, not numeric or misshapen."""
    try:
        arrays = {name: np.asarray(content[name], dtype=int if name.startswith("group")
                                   else float) for name in CONTENT_FIELDS}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bid of {entity_id}: {type(exc).__name__}: {exc}") from exc
    bid = Bid(entity_id=entity_id, **arrays)
    n, k = bid.min_kw.size, bid.intercept_usd.size
    group = bid.group
    well_formed = (
        bid.min_kw.shape == bid.max_kw.shape == (n,) and n > 0 and k > 0
        and bid.intercept_usd.shape == group.shape == (k,)
        and bid.slope_usd_per_kw.shape == (k, n)
        and group[0] == 0 and np.all(np.diff(group) >= 0) and np.all(np.diff(group) <= 1)
        and bid.group_interval.shape == (group[-1] + 1,)
        and np.all((bid.group_interval >= -1) & (bid.group_interval < n)))
    if not well_formed:
        raise ValueError(f"bid of {entity_id}: arrays of inconsistent shapes or groups")
    return bid


def sign_bid_for_round(keys: IntervalKeys, round_: int, bid: Bid) -> LedgerEntry:
    """The ledger entry of an entity's bid for market round ``round_``, signed with the
    round's keys (`gridsim.ledger.identity.make_keys`)."""
    return sign_bid(keys, {"round": round_, **bid_content(bid)})


def bid_of_entry(entity_id: str, entry: LedgerEntry) -> Bid:
    """The `Bid` a ledger entry holds (the auditor's view of what was signed); raises
    ValueError (`gridsim.ledger.identity.EntryError` for malformed entry bytes)."""
    _, content = read_bid(entry)
    return bid_from_content(entity_id, content)
