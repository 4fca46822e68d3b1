"""Operation after clearing: each entity's schedule under its cleared rights."""

from __future__ import annotations

import numpy as np
import pytest

from gridsim.federates.market.clearing import clear
from gridsim.federates.market.conformance import battery_shift, mixed_resources, simple_entity
from gridsim.federates.market.entities import Battery
from gridsim.federates.market.guidance import guidance, value
from gridsim.federates.market.operation import load_caps_kw, operate, operate_all


def test_battery_shift_schedule():
    """After clearing `conformance.battery_shift` (+50 kW to ``store`` in the first hour):
    ``store`` imports 150 kW, serves 100 and charges 50, then serves 100 from 50 kW of import
    and 50 kW of discharge: 2,000 $. ``spare`` serves and imports 50 kW, then nothing."""
    case = battery_shift()
    bids = [guidance(entity, ub).bid for entity, ub in zip(case.entities, case.ub_kw)]
    cleared = clear(bids)
    store, spare = operate_all(case.entities, case.ub_kw, cleared.kw)
    np.testing.assert_allclose(store.import_kw, [150.0, 50.0], atol=1e-6)
    np.testing.assert_allclose(store.served_kw, [[100.0, 100.0]], atol=1e-6)
    np.testing.assert_allclose(store.charge_kw, [50.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(store.discharge_kw, [0.0, 50.0], atol=1e-6)
    np.testing.assert_allclose(store.soc_kwh, [50.0, 0.0], atol=1e-6)
    assert store.value_usd == pytest.approx(2000.0)
    np.testing.assert_allclose(spare.import_kw, [50.0, 0.0], atol=1e-6)
    assert spare.value_usd == pytest.approx(50.0)
    caps = load_caps_kw([store, spare])
    np.testing.assert_allclose(caps["store"], [150.0, 50.0], atol=1e-6)


def test_least_import_and_no_needless_cycling():
    """100 kW at 10 $/kWh, 60 kW of PV, a full 50 kWh battery and a 100 kW bound: PV covers
    60 and the grid 40; the battery could replace 40 kW of import for the same value, but a
    kWh through the battery counts twice a grid kWh, so it stays full."""
    entity = simple_entity("e", 100.0, 10.0, pv_kw=np.array([60.0]),
                           battery=Battery(50.0, 50.0, 0.95, 0.95, 50.0))
    schedule = operate(entity, np.array([100.0]))
    np.testing.assert_allclose(schedule.import_kw, [40.0], atol=1e-6)
    np.testing.assert_allclose(schedule.pv_kw, [60.0], atol=1e-6)
    np.testing.assert_allclose(schedule.discharge_kw + schedule.charge_kw, [0.0], atol=1e-6)
    np.testing.assert_allclose(schedule.soc_kwh, [50.0], atol=1e-6)
    assert schedule.value_usd == pytest.approx(1000.0)


def test_schedules_reach_the_exact_value_within_the_supply():
    case = mixed_resources()
    bids = [guidance(entity, ub).bid for entity, ub in zip(case.entities, case.ub_kw)]
    cleared = clear(bids)
    schedules = operate_all(case.entities, case.ub_kw, cleared.kw)
    supply = case.ub_kw.sum(axis=0)
    imports = np.array([s.import_kw for s in schedules])
    assert np.all(imports.sum(axis=0) <= supply + 1e-6)
    for entity, ub, kw, schedule in zip(case.entities, case.ub_kw, cleared.kw, schedules):
        assert np.all(schedule.import_kw <= schedule.cap_kw + 1e-6)
        assert schedule.value_usd == pytest.approx(value(entity, ub, kw), rel=1e-8)
        balance = (schedule.import_kw + schedule.generation_kw + schedule.pv_kw
                   + schedule.discharge_kw - schedule.charge_kw - schedule.served_kw.sum(0))
        np.testing.assert_allclose(balance, 0.0, atol=1e-6)
