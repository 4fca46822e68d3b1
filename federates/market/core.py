"""The core of the clearing game: whether a settlement leaves no coalition better off alone.

Coalition worth ``w(S)``: the best ``sum_{i in S} v_i`` with rights traded inside ``S`` only
(`clearing.best_total_value`); ``w`` of one entity is ``v_i(0) = 0`` (bids are relative to
the stand-alone operation) and ``w`` of everyone is the clearing's objective. Payments lie in
the core when every coalition's members gain together at least its worth,
``sum_{i in S} (v_i(kw_i*) - pay_i) >= w(S)``: no group would rather trade among itself.

The rules differ on it (docs/market.md): with three parties at 1.5, 50 and 7.5 $/kWh only
uniform price is in the core. Exact enumeration needs ``2^k - 1`` clearings, so it is done
for at most `MAX_ENTITIES` entities (the Shapley rule's limit too).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gridsim.contracts.bid import Bid
from gridsim.federates.market.clearing import Clearing, best_total_value

MAX_ENTITIES = 12
"""Most entities whose coalitions are enumerated (4,095 clearings)."""


def coalition_worths(bids: Sequence[Bid], clearing: Clearing) -> np.ndarray:
    """``w(S)`` of every coalition, indexed by the bit mask of its members."""
    k = len(bids)
    if k > MAX_ENTITIES:
        raise ValueError(f"{k} entities, at most {MAX_ENTITIES} (exact enumeration of 2^k "
                         f"coalitions)")
    worth = np.zeros(1 << k)
    for mask in range(1, 1 << k):
        members = [i for i in range(k) if mask >> i & 1]
        if len(members) == k:
            worth[mask] = clearing.objective_usd
        elif len(members) > 1:
            worth[mask] = best_total_value([bids[i] for i in members])
    return worth


def in_core(bids: Sequence[Bid], clearing: Clearing, payments_usd: np.ndarray,
            rtol: float = 1e-6) -> bool | None:
    """Whether the payments lie in the core (module doc); None when there are more than
    `MAX_ENTITIES` entities (not computed). Tolerance: `rtol` x (1 + total worth)."""
    k = len(bids)
    if k > MAX_ENTITIES:
        return None
    worth = coalition_worths(bids, clearing)
    gains = np.asarray(clearing.value_usd, dtype=float) - np.asarray(payments_usd, float)
    member = (np.arange(1 << k)[:, None] >> np.arange(k)[None, :]) & 1
    shortfall = worth - member @ gains
    return bool(shortfall.max() <= rtol * (1.0 + abs(float(clearing.objective_usd))))
