"""Market entities and decision guidance: the microgrid LP, its value and the bids.

Expected values are worked out by hand in each docstring (merit order of the load blocks,
generator and battery), never read back from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from gridsim.federates.market.entities import (
    Battery,
    Entity,
    LoadBlock,
    LocalGenerator,
    default_bounds,
    demand_matrix,
    generate_entities,
)
from gridsim.federates.market.guidance import guidance, value


def one_interval(*blocks, **resources) -> Entity:
    """An entity over one 1 h interval with ``(kW, $/kWh)`` blocks."""
    return Entity("e", "bus", tuple(LoadBlock(f"b{i}", np.array([kw]), v)
                                    for i, (kw, v) in enumerate(blocks)), **resources)


def test_paper_entity_is_linear():
    """40 MW at 1.5 $/kWh with 20 MW allowed: each kW of bound is worth 1.5 $ over 1 h, from
    giving up all 20 MW (-30,000 $) to receiving 20 MW (+30,000 $, the stand-alone loss)."""
    entity = one_interval((40_000.0, 1.5))
    result = guidance(entity, np.array([20_000.0]))
    assert result.standalone_usd == pytest.approx(30_000.0)
    assert result.full_usd == pytest.approx(60_000.0)
    assert result.bid.standalone_loss_usd == pytest.approx(30_000.0)
    for kw in (-20_000.0, -5_000.0, 0.0, 7_000.0, 20_000.0):
        assert result.bid.value_usd(np.array([kw])) == pytest.approx(1.5 * kw, abs=1e-6)
    np.testing.assert_array_equal(result.bid.min_kw, [-20_000.0])
    np.testing.assert_array_equal(result.bid.max_kw, [20_000.0])


def generator_and_pv_value(cap_kw: float) -> float:
    """Blocks 100 kW at 10 $/kWh and 100 kW at 2 $/kWh, a 50 kW generator at 5 $/kWh, 30 kW
    of PV; free energy ``F = cap + 30``. The generator serves what free energy leaves of the
    10 $/kWh block (never the 2 $/kWh one): ``V = 10 F + 5 * 50`` for ``F <= 50``,
    ``500 + 5 F`` up to 100, then ``1000 + 2 (F - 100)`` up to 200, 1200 beyond (the cap
    ranges up to the 200 kW demand, so the last 30 kW of it are worth nothing)."""
    free = cap_kw + 30.0
    if free <= 50.0:
        return 10.0 * free + 250.0
    if free <= 100.0:
        return 500.0 + 5.0 * free
    return 1000.0 + 2.0 * (min(free, 200.0) - 100.0)


def test_generator_and_pv_pieces():
    entity = one_interval((100.0, 10.0), (100.0, 2.0), generator=LocalGenerator(50.0, 5.0),
                          pv_kw=np.array([30.0]))
    ub = np.array([100.0])
    result = guidance(entity, ub)
    assert result.standalone_usd == pytest.approx(generator_and_pv_value(100.0))
    slopes = sorted(set(np.round(result.bid.slope_usd_per_kw[:, 0], 9)))
    assert slopes == [0.0, 2.0, 5.0, 10.0]
    for cap in np.linspace(0.0, 200.0, 41):
        expected = generator_and_pv_value(cap) - generator_and_pv_value(100.0)
        assert result.bid.value_usd(np.array([cap - 100.0])) == pytest.approx(expected, abs=1e-6)
        assert value(entity, ub, np.array([cap - 100.0])) == pytest.approx(
            generator_and_pv_value(cap), abs=1e-6)


def test_battery_dynamics():
    """100 kW at 10 $/kWh over two 1 h intervals, 50 kWh / 50 kW battery starting full.
    Import (0, 100): the battery covers 50 kW in the first, the grid all of the second:
    500 + 1000. Import (0, 0): 50 kWh at most, 500. With 0.9 discharge efficiency only 45 kWh
    come out: 450. Ending with at least 20 kWh: 30 kWh usable, 300."""
    blocks = (LoadBlock("b", np.array([100.0, 100.0]), 10.0),)
    full = Entity("e", "bus", blocks, battery=Battery(50.0, 50.0, 1.0, 1.0, 50.0))
    assert value(full, np.array([0.0, 100.0])) == pytest.approx(1500.0)
    assert value(full, np.array([0.0, 0.0])) == pytest.approx(500.0)
    lossy = Entity("e", "bus", blocks, battery=Battery(50.0, 50.0, 1.0, 0.9, 50.0))
    assert value(lossy, np.array([0.0, 0.0])) == pytest.approx(450.0)
    reserve = Entity("e", "bus", blocks,
                     battery=Battery(50.0, 50.0, 1.0, 1.0, 50.0, soc_final_min_kwh=20.0))
    assert value(reserve, np.array([0.0, 0.0])) == pytest.approx(300.0)


def test_battery_moves_energy_forward():
    """Import (150, 0) with an empty lossless battery: 100 kW served and 50 kW stored in the
    first interval, 50 kW served from storage in the second: 1,500 $. More import in the
    first interval adds nothing: the battery charges at most 50 kW."""
    blocks = (LoadBlock("b", np.array([100.0, 100.0]), 10.0),)
    entity = Entity("e", "bus", blocks, battery=Battery(50.0, 50.0, 1.0, 1.0))
    assert value(entity, np.array([150.0, 0.0])) == pytest.approx(1500.0)
    assert value(entity, np.array([200.0, 0.0])) == pytest.approx(1500.0)


@pytest.fixture(scope="module")
def separable_entities():
    loads = [(f"l{i}", f"b{i}", kw) for i, kw in enumerate([20.0, 45.0, 80.0, 150.0])]
    entities = generate_entities(loads, 4, np.random.default_rng(3), battery_share=0.0,
                                 generator_share=0.6, pv_share=0.6, start_hour=8.0)
    assert any(e.generator for e in entities) and any(e.pv_kw is not None for e in entities)
    return entities


def test_separable_bid_is_exact_everywhere(separable_entities):
    rng = np.random.default_rng(4)
    ub = default_bounds(demand_matrix(separable_entities), [0.3, 0.5, 0.7, 0.9])
    for entity, bound in zip(separable_entities, ub):
        result = guidance(entity, bound)
        bid = result.bid
        assert np.all(bid.group_interval >= 0)
        for _ in range(15):
            kw = rng.uniform(bid.min_kw, bid.max_kw)
            exact = value(entity, bound, kw) - result.standalone_usd
            assert bid.value_usd(kw) == pytest.approx(exact, rel=1e-9, abs=1e-6)


@pytest.fixture(scope="module")
def battery_guidance():
    loads = [(f"l{i}", f"b{i}", kw) for i, kw in enumerate([30.0, 60.0, 120.0])]
    entities = generate_entities(loads, 5, np.random.default_rng(8), battery_share=1.0,
                                 pv_share=0.5, start_hour=9.0)
    ub = default_bounds(demand_matrix(entities), [0.4, 0.6, 0.5, 0.8, 0.3])
    return [(entity, bound, guidance(entity, bound)) for entity, bound in zip(entities, ub)]


def test_coupled_cuts_exact_at_their_points(battery_guidance):
    for entity, bound, result in battery_guidance:
        assert len(result.points_kw) <= 9 + 2 * entity.n_intervals
        assert len(result.bid.intercept_usd) <= len(result.points_kw)
        for kw, expected in zip(result.points_kw, result.points_value_usd):
            exact = value(entity, bound, kw) - result.standalone_usd
            assert expected == pytest.approx(exact, rel=1e-9, abs=1e-6)
            assert result.bid.value_usd(kw) == pytest.approx(exact, rel=1e-9, abs=1e-6)


def test_coupled_cuts_bound_the_value_from_above(battery_guidance):
    rng = np.random.default_rng(9)
    over = 0.0
    for entity, bound, result in battery_guidance:
        bid = result.bid
        for _ in range(15):
            kw = rng.uniform(bid.min_kw, bid.max_kw)
            exact = value(entity, bound, kw) - result.standalone_usd
            assert bid.value_usd(kw) >= exact - 1e-6 * (1.0 + abs(exact))
            over = max(over, bid.value_usd(kw) - exact)
    assert over > 1e-3, "a battery's value is not separable: some points must be overstated"


def test_generated_entities_are_deterministic_and_plausible():
    loads = [(f"l{i}", f"b{i}", kw) for i, kw in enumerate([10.0, 25.0, 40.0, 55.0, 70.0] * 8)]
    first = generate_entities(loads, 6, np.random.default_rng(11))
    again = generate_entities(loads, 6, np.random.default_rng(11))
    other = generate_entities(loads, 6, np.random.default_rng(12))

    def summary(entities):
        return [(e.entity_id, e.bus, [(b.name, b.value_usd_per_kwh, tuple(b.p_kw))
                                      for b in e.blocks], e.generator, e.battery,
                 None if e.pv_kw is None else tuple(e.pv_kw)) for e in entities]

    assert summary(first) == summary(again)
    assert summary(first) != summary(other)
    values = [b.value_usd_per_kwh for e in first for b in e.blocks]
    assert 1.0 <= min(values) < 4.0 and 15.0 < max(values) <= 50.0
    for entity, (_, _, kw) in zip(first, loads):
        np.testing.assert_allclose(entity.demand_kw, kw)
    assert {True, False} == {e.battery is None for e in first}


def test_shares_change_resources_not_sizes():
    loads = [(f"l{i}", f"b{i}", 50.0) for i in range(10)]
    none = generate_entities(loads, 3, np.random.default_rng(2), generator_share=0.0,
                             battery_share=0.0, pv_share=0.0)
    every = generate_entities(loads, 3, np.random.default_rng(2), generator_share=1.0,
                              battery_share=1.0, pv_share=1.0)
    assert all(e.generator is None and e.battery is None and e.pv_kw is None for e in none)
    assert all(e.generator and e.battery and e.pv_kw is not None for e in every)
    for a, b in zip(none, every):
        assert [blk.value_usd_per_kwh for blk in a.blocks] == \
            [blk.value_usd_per_kwh for blk in b.blocks]


def test_default_bounds_are_proportional_to_demand():
    demand = np.array([[100.0, 50.0], [10.0, 30.0]])
    np.testing.assert_allclose(default_bounds(demand, [0.5, 0.2]), [[50.0, 10.0], [5.0, 6.0]])
    np.testing.assert_allclose(default_bounds(demand, 1.0), demand)
    with pytest.raises(ValueError):
        default_bounds(demand, 1.5)


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError):
        Battery(10.0, 5.0, soc_initial_kwh=20.0)
    with pytest.raises(ValueError):
        guidance(one_interval((10.0, 1.0)), np.array([-1.0]))
