"""The `gridsim.messages.MarketClearing` of a round, built in one place.

The market federate publishes it, the benchmarks build it to time the auditor on exactly
what the market would publish, and the auditor reads it (with `gridsim.contracts.bid` and
`gridsim.contracts.certificate`). Arrays are in entity order, rows per entity and columns
per interval of the round's horizon.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gridsim import messages as m
from gridsim.contracts.certificate import SupportsPrimalDual, certificate_message


def clearing_message(
    *, time_s: float, round_: int, horizon_start_s: float, interval_s: float,
    entities: Sequence[str], bounds_kw: np.ndarray, solution: SupportsPrimalDual,
    values_usd: np.ndarray, prices_usd_per_kwh: np.ndarray, payment_rule: str,
    payments_usd: np.ndarray, standalone_values_usd: Sequence[float],
    full_values_usd: Sequence[float], bid_indices: Sequence[int],
    bids: Sequence[dict]) -> m.MarketClearing:
    """One round as published: the default allocation (``bounds_kw``), the clearing's
    rights and certificate (``solution``: the market's `Clearing`), each entity's value by
    its bid, the interval prices after any price cap, the payments by ``payment_rule``,
    each entity's stand-alone and full-supply values, and the ledger entries of the bids
    used with their log indices."""
    return m.MarketClearing(
        time_s=time_s, round=round_, horizon_start_s=horizon_start_s, interval_s=interval_s,
        entities=list(entities), bounds_kw=np.asarray(bounds_kw).tolist(),
        kw=np.asarray(solution.kw).tolist(),
        prices_per_kwh=np.asarray(prices_usd_per_kwh).tolist(), payment_rule=payment_rule,
        payments=np.asarray(payments_usd).tolist(), values=np.asarray(values_usd).tolist(),
        standalone_values=[float(v) for v in standalone_values_usd],
        full_values=[float(v) for v in full_values_usd],
        certificate=certificate_message(solution), status="optimal",
        bid_indices=list(bid_indices), bids=list(bids))
