"""Payment rules: hand-derived settlements and the conformance kit for every rule.

Notation (module doc of `payments`): ``L_i`` stand-alone loss, ``D`` the cooperation benefit,
gain = value of the cleared rights minus payment, loss = ``L_i`` - gain.
"""

from __future__ import annotations

import numpy as np
import pytest

from gridsim.federates.market import conformance
from gridsim.federates.market.clearing import best_total_value, clear
from gridsim.federates.market.conformance import (
    HAND_MADE,
    battery_shift,
    check_case,
    simple_entity,
    three_entities,
    two_entities,
)
from gridsim.federates.market.guidance import guidance
from gridsim.federates.market.payments import RULES, make_rule, settle

NAMES = sorted(RULES)


def settled(case, rule):
    bids = [guidance(entity, ub).bid for entity, ub in zip(case.entities, case.ub_kw)]
    return settle(rule, bids, clear(bids))


def test_paper_case_every_rule():
    """1.5 vs 7.5 $/kWh, 40 MW each, 20 MW each supplied, 1 h: L = (30,000, 150,000),
    D = 120,000; the combined loss falls from 180,000 to 60,000 $ whatever the rule.
    proportional: each loss falls by D / L = 2/3, to 10,000 and 50,000 (the low-value
    entity receives the 30,000 its rights were worth to it plus its sixth of D, 20,000).
    uniform-price at 4.5 $/kWh: it receives 90,000 for 20 MW, ending 60,000 above
    stand-alone (loss -30,000). shapley: two players, D split evenly: gains of 60,000 each,
    the same as the midpoint price."""
    case = two_entities(1.5, 7.5)
    results = {rule: settled(case, rule) for rule in NAMES}
    for result in results.values():
        np.testing.assert_allclose(result.standalone_loss_usd, [30_000.0, 150_000.0])
        assert result.loss_usd.sum() == pytest.approx(60_000.0)
        assert result.payment_usd.sum() == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(results["proportional"].loss_usd, [10_000.0, 50_000.0])
    np.testing.assert_allclose(results["proportional"].payment_usd, [-50_000.0, 50_000.0])
    np.testing.assert_allclose(results["uniform-price"].payment_usd, [-90_000.0, 90_000.0])
    np.testing.assert_allclose(results["shapley"].gain_usd, [60_000.0, 60_000.0])
    np.testing.assert_allclose(results["shapley"].loss_usd, [-30_000.0, 90_000.0])


def test_field_notes_case_rules_disagree():
    """1.5 vs 50 $/kWh: L = (30,000, 1,000,000), D = 20,000 * 48.5 = 970,000.
    proportional: everyone's loss falls by 970/1030 = 94.17%. shapley (and the midpoint
    price 25.75 $/kWh, the same split with two players): each gains 485,000, so the
    low-value entity ends 455,000 $/h better off than with no emergency at all."""
    case = two_entities(1.5, 50.0)
    proportional, shapley = settled(case, "proportional"), settled(case, "shapley")
    uniform = settled(case, "uniform-price")
    np.testing.assert_allclose(proportional.relative_saving, [970 / 1030] * 2)
    assert proportional.relative_saving[0] == pytest.approx(0.9417, abs=1e-4)
    assert np.all(proportional.loss_usd > 0.0)
    np.testing.assert_allclose(shapley.gain_usd, [485_000.0, 485_000.0])
    assert shapley.loss_usd[0] == pytest.approx(-455_000.0)
    np.testing.assert_allclose(uniform.payment_usd, shapley.payment_usd)
    np.testing.assert_allclose(uniform.payment_usd, [-25.75 * 20_000.0, 25.75 * 20_000.0])


def test_three_entities_by_hand():
    """2, 5, 20 $/kWh, 100 kW each, 50 supplied each: L = (100, 250, 1000); cleared values
    (-100, 0, 1000), D = 900. Coalition worths: {1,2} 50*3 = 150, {1,3} 50*18 = 900,
    {2,3} 50*15 = 750, all 900. Shapley: phi_1 = 150/6 + 900/6 + (900-750)/3 = 225,
    phi_2 = 150/6 + 750/6 + 0/3 = 150, phi_3 = 900/6 + 750/6 + (900-150)/3 = 525.
    Uniform price 5: payments (-250, 0, 250). Proportional: every loss is a third of L."""
    case = three_entities()
    shapley = settled(case, "shapley")
    np.testing.assert_allclose(shapley.gain_usd, [225.0, 150.0, 525.0], atol=1e-6)
    np.testing.assert_allclose(shapley.payment_usd, [-325.0, -150.0, 475.0], atol=1e-6)
    uniform = settled(case, "uniform-price")
    np.testing.assert_allclose(uniform.payment_usd, [-250.0, 0.0, 250.0], atol=1e-6)
    proportional = settled(case, "proportional")
    np.testing.assert_allclose(proportional.loss_usd, [100 / 3, 250 / 3, 1000 / 3])


def test_battery_case_by_hand():
    """`conformance.battery_shift`: ``spare`` has no stand-alone loss, so proportional gives
    all of D = 450 to ``store``: it pays 500 - 450 = 50, exactly what ``spare`` loses by
    giving up 50 kWh at 1 $/kWh. Uniform prices (1, 5.5) $/kW on rights (50, 0): the same.
    Shapley splits D evenly: ``store`` pays 500 - 225 = 275."""
    case = battery_shift()
    for rule in ("proportional", "uniform-price"):
        np.testing.assert_allclose(settled(case, rule).payment_usd, [50.0, -50.0], atol=1e-6)
    np.testing.assert_allclose(settled(case, "shapley").payment_usd, [275.0, -275.0],
                               atol=1e-6)


def test_core_and_no_profiteering_conflict():
    """Three entities (2, 5, 20 $/kWh): the core (gains no coalition can beat on its own:
    g1 + g3 >= 900, g2 + g3 >= 750, g1 + g2 >= 150, total 900, gains >= 0) is the single
    point (150, 0, 750), so entity 1 must gain 150 > L_1 = 100: no core-stable rule can avoid
    profiteering here. The uniform price (5 $/kW) lands on the core; proportional and
    Shapley give coalition {1, 3} less than the 900 it can make alone."""
    case = three_entities()
    bids = [guidance(entity, ub).bid for entity, ub in zip(case.entities, case.ub_kw)]
    assert best_total_value([bids[0], bids[2]]) == pytest.approx(900.0)
    assert best_total_value([bids[1], bids[2]]) == pytest.approx(750.0)
    assert best_total_value([bids[0], bids[1]]) == pytest.approx(150.0)
    uniform = settled(case, "uniform-price")
    np.testing.assert_allclose(uniform.gain_usd, [150.0, 0.0, 750.0], atol=1e-6)
    assert uniform.loss_usd[0] == pytest.approx(-50.0)
    for rule in ("proportional", "shapley"):
        gains = settled(case, rule).gain_usd
        assert gains[0] + gains[2] < 900.0 - 1.0


@pytest.mark.parametrize("rule", NAMES)
@pytest.mark.parametrize("make", HAND_MADE, ids=lambda make: make().name)
def test_conformance_hand_made(rule, make):
    assert check_case(rule, make()) == []


@pytest.mark.parametrize("rule", NAMES)
@pytest.mark.parametrize("case", conformance.random_cases(), ids=lambda case: case.name)
def test_conformance_random(rule, case):
    assert check_case(rule, case) == []


def test_kit_covers_every_rule_and_names_failing_cases(monkeypatch):
    """`run_kit` checks every registered rule on every case; a failure names its case."""
    assert conformance.names() == NAMES
    assert len(conformance.random_cases()) == 3

    class Giveaway:
        name = "giveaway"
        guarantees = frozenset()

        def payments_usd(self, bids, clearing):
            return -np.abs(clearing.value_usd)

    monkeypatch.setitem(RULES, "giveaway", Giveaway)
    cases = [two_entities(1.5, 7.5), three_entities()]
    failures = conformance.check("giveaway", cases)
    assert any(f.startswith("paper 1.5 vs 7.5 $/kWh: payments add up") for f in failures)
    assert any(f.startswith("three entities: payments add up") for f in failures)
    assert conformance.check("proportional", cases) == []


def test_kit_catches_a_bad_rule(monkeypatch):
    """A rule that hands every entity its cleared value back (payments = values) is not
    budget balanced; declaring no-profiteering for uniform prices is caught too."""
    class Giveaway:
        name = "giveaway"
        guarantees = frozenset()

        def payments_usd(self, bids, clearing):
            return -np.abs(clearing.value_usd)

    class Boasting:
        name = "uniform-price"
        guarantees = frozenset({"no-profiteering"})
        payments_usd = RULES["uniform-price"].payments_usd

    monkeypatch.setitem(RULES, "giveaway", Giveaway)
    assert any("add up" in p for p in check_case("giveaway", two_entities(1.5, 7.5)))
    monkeypatch.setitem(RULES, "uniform-price", Boasting)
    assert any("profits" in p for p in check_case("uniform-price", two_entities(1.5, 7.5)))


def test_shapley_refuses_thirteen_entities():
    case_entities = [simple_entity(f"e{i}", 10.0, 1.0 + i) for i in range(13)]
    bids = [guidance(entity, np.array([5.0])).bid for entity in case_entities]
    with pytest.raises(ValueError, match="at most 12"):
        settle("shapley", bids, clear(bids))


def test_registry():
    assert NAMES == ["proportional", "shapley", "uniform-price"]
    assert make_rule("proportional").name == "proportional"
    with pytest.raises(ValueError, match="known: proportional"):
        make_rule("nucleolus")


def test_in_core_says_which_rules_land_in_the_core():
    """The same three entities: `core.in_core` finds uniform price in the core (the single
    point above) and proportional and Shapley outside it; more entities than it can
    enumerate give None (not computed), never a guess."""
    from gridsim.federates.market.clearing import clear
    from gridsim.federates.market.core import MAX_ENTITIES, in_core

    case = three_entities()
    bids = [guidance(entity, ub).bid for entity, ub in zip(case.entities, case.ub_kw)]
    clearing = clear(bids)
    verdicts = {rule: in_core(bids, clearing, settled(case, rule).payment_usd)
                for rule in ("uniform-price", "proportional", "shapley")}
    assert verdicts == {"uniform-price": True, "proportional": False, "shapley": False}
    many = bids * (MAX_ENTITIES // 3 + 1)
    assert in_core(many, clearing, np.zeros(len(many))) is None
