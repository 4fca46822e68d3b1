"""The clearing certificate's stationarity is two-sided: a price moved either way fails.

For every entity i and interval t the certificate requires
``sum_k mu_k g_k,t - p_t - beta+_i,t + beta-_i,t = 0`` (`clearing` module doc). Moving one
price ``p_t`` by ``delta`` with every multiplier kept moves that residual by ``-delta`` for
every entity in interval t and nowhere else, so the worst dual violation becomes ``|delta|``
whichever way the price moved: a raised price is as wrong as a lowered one. Nothing else in
the certificate depends on the prices (the equality rows have a zero right-hand side, so
``p`` is absent from the dual objective), so only stationarity can see the change.
"""

from __future__ import annotations

import dataclasses

import pytest

from gridsim.federates.market.clearing import clear, verify_certificate
from gridsim.federates.market.conformance import battery_shift, three_entities, two_entities
from gridsim.federates.market.guidance import guidance

CASES = {"paper": lambda: two_entities(1.5, 7.5), "three": three_entities,
         "battery": battery_shift}


def cleared(case):
    bids = [guidance(entity, ub).bid for entity, ub in zip(case.entities, case.ub_kw)]
    return bids, clear(bids)


def moved(clearing, interval: int, delta: float):
    """The clearing with price ``p_interval`` moved by `delta` $/kW, multipliers kept."""
    price = clearing.price_usd_per_kw.copy()
    price[interval] += delta
    return dataclasses.replace(clearing, price_usd_per_kw=price)


@pytest.mark.parametrize("delta", [0.5, -0.5], ids=["raised", "lowered"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_moved_price_fails_verification(name, delta):
    bids, clearing = cleared(CASES[name]())
    before = verify_certificate(bids, clearing)
    assert before.ok
    for interval in range(len(clearing.price_usd_per_kw)):
        check = verify_certificate(bids, moved(clearing, interval, delta))
        assert not check.ok
        assert check.dual_violation_usd_per_kw == pytest.approx(abs(delta), abs=1e-6)
        assert check.gap_usd == before.gap_usd
        assert check.primal_violation_kw == before.primal_violation_kw


@pytest.mark.parametrize("delta", [1e-9, -1e-9], ids=["raised", "lowered"])
def test_a_price_moved_within_the_tolerance_still_verifies(delta):
    """The price tolerance is 1e-6 times (1 + the largest slope, 7.5 $/kW here)."""
    bids, clearing = cleared(two_entities(1.5, 7.5))
    assert verify_certificate(bids, moved(clearing, 0, delta)).ok

