"""One market round chained (guidance, clearing, payments, operation) and the regulator's
adjustments: price cap and fairness premium."""

from __future__ import annotations

import numpy as np
import pytest

from gridsim.federates.market.entities import Entity, LoadBlock, default_bounds
from gridsim.federates.market.session import fairness_premium, run_round


def entity(name: str, kw: float, value: float) -> Entity:
    return Entity(entity_id=name, bus=name, blocks=(LoadBlock("all", np.array([kw]), value),))


@pytest.fixture(scope="module")
def three():
    entities = [entity("a", 100.0, 1.5), entity("b", 100.0, 7.5), entity("c", 50.0, 20.0)]
    ub = default_bounds(np.array([[100.0], [100.0], [50.0]]), 0.5)
    return entities, ub


def test_round_moves_rights_to_the_highest_values(three):
    entities, ub = three
    rnd = run_round(entities, ub, "proportional")
    assert rnd.clearing.kw[:, 0] == pytest.approx([-50.0, 25.0, 25.0])
    assert rnd.standalone_loss_usd == pytest.approx(50 * 1.5 + 50 * 7.5 + 25 * 20.0)
    assert rnd.market_loss_usd == pytest.approx(100 * 1.5 + 25 * 7.5)
    assert [op.import_kw[0] for op in rnd.operations] == pytest.approx([0.0, 75.0, 50.0])
    assert rnd.payments_usd.sum() == pytest.approx(0.0, abs=1e-9)


def test_price_cap_clips_prices_not_the_clearing(three):
    entities, ub = three
    free, capped = run_round(entities, ub, "uniform-price"), run_round(
        entities, ub, "uniform-price", price_cap_usd_per_kwh=2.0)
    assert free.prices_usd_per_kwh[0] > 2.0
    assert capped.prices_usd_per_kwh[0] == 2.0
    assert capped.clearing.kw == pytest.approx(free.clearing.kw)


def test_fairness_premium_moves_a_share_of_buyers_gain_to_sellers(three):
    entities, ub = three
    base = run_round(entities, ub, "proportional")
    premium = run_round(entities, ub, "proportional", premium=0.2)
    gain = base.clearing.value_usd - base.payments_usd
    gain_after = premium.clearing.value_usd - premium.payments_usd
    assert premium.payments_usd.sum() == pytest.approx(0.0, abs=1e-9)
    buyers = base.clearing.kw[:, 0] > 0
    assert gain_after[buyers] == pytest.approx(0.8 * gain[buyers])
    moved = 0.2 * gain[buyers].sum()
    assert gain_after[~buyers].sum() == pytest.approx(gain[~buyers].sum() + moved)


def test_no_premium_without_sellers():
    payments = np.array([1.0, -1.0])
    out = fairness_premium(payments, np.array([2.0, 3.0]), np.array([[1.0], [2.0]]), 0.5)
    assert out is payments
