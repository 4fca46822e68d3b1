"""Market clearing: hand-made markets, the certificate, and a cross-check against the plain
epigraph LP (every cut a row, as written in the paper) solved independently here."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import linprog

from gridsim.federates.market import formulation
from gridsim.federates.market.clearing import clear, verify_certificate
from gridsim.federates.market.conformance import (
    Case,
    battery_shift,
    random_case,
    simple_entity,
    three_entities,
    two_entities,
)
from gridsim.federates.market.guidance import guidance


def bids_of(case: Case):
    return [guidance(entity, ub).bid for entity, ub in zip(case.entities, case.ub_kw)]


def epigraph_optimum(bids) -> float:
    """``max sum_j s_j`` s.t. ``s_j - g_k . kw_i <= a_k``, ``sum_i kw_i = 0``, bounds."""
    k, n = len(bids), bids[0].n_intervals
    rows, cols, vals, rhs, groups = [], [], [], [], 0
    for i, bid in enumerate(bids):
        for cut, (a, g) in enumerate(zip(bid.intercept_usd, bid.slope_usd_per_kw)):
            row = len(rhs)
            rows += [row] * (n + 1)
            cols += [i * n + t for t in range(n)] + [k * n + groups + bid.group[cut]]
            vals += list(-g) + [1.0]
            rhs.append(a)
        groups += len(bid.group_interval)
    a_ub = sparse.csr_matrix((vals, (rows, cols)), shape=(len(rhs), k * n + groups))
    a_eq = sparse.hstack([sparse.hstack([sparse.identity(n)] * k), np.zeros((n, groups))])
    bounds = [(lo, hi) for bid in bids for lo, hi in zip(bid.min_kw, bid.max_kw)]
    bounds += [(None, None)] * groups
    result = linprog(np.r_[np.zeros(k * n), -np.ones(groups)], A_ub=a_ub, b_ub=rhs,
                     A_eq=a_eq, b_eq=np.zeros(n), bounds=bounds, method="highs")
    assert result.status == 0
    return -result.fun


def test_paper_two_entities():
    """40 MW each, 20 MW each supplied, 1.5 and 7.5 $/kWh: moving 20 MW to the 7.5 $/kWh
    entity cuts the combined loss from 30,000 + 150,000 = 180,000 $/h to 40,000 * 1.5 =
    60,000 $/h; the benefit 120,000 $/h is two thirds of the loss. Any price in [1.5, 7.5]
    $/kWh clears; the rule takes the midpoint, 4.5."""
    bids = bids_of(two_entities(1.5, 7.5))
    result = clear(bids)
    np.testing.assert_allclose(result.kw, [[-20_000.0], [20_000.0]])
    assert result.objective_usd == pytest.approx(120_000.0)
    standalone = sum(bid.standalone_loss_usd for bid in bids)
    assert standalone == pytest.approx(180_000.0)
    assert standalone - result.objective_usd == pytest.approx(60_000.0)
    assert result.objective_usd / standalone == pytest.approx(2 / 3)
    np.testing.assert_allclose(result.price_range_usd_per_kw, [[1.5, 7.5]])
    np.testing.assert_allclose(result.price_usd_per_kw, [4.5])
    assert result.price_rule == "midpoint"
    assert verify_certificate(bids, result).ok


def test_three_entities_price_set_by_the_middle_one():
    """2, 5 and 20 $/kWh, 100 kW each, 50 supplied each: the 20 $/kWh entity takes the 2
    $/kWh entity's 50 kW (+1,000 - 100 $); the 5 $/kWh entity keeps its share and, with
    rights in the middle of its range, pins the price at 5."""
    bids = bids_of(three_entities())
    result = clear(bids)
    np.testing.assert_allclose(result.kw.ravel(), [-50.0, 0.0, 50.0], atol=1e-9)
    assert result.objective_usd == pytest.approx(900.0)
    np.testing.assert_allclose(result.price_usd_per_kw, [5.0])
    np.testing.assert_allclose(result.value_usd, [-100.0, 0.0, 1000.0])
    assert verify_certificate(bids, result).ok


def test_battery_shift_across_intervals():
    """`conformance.battery_shift`: 50 kW of the first interval move to ``store``, which
    stores them for its second-interval shortfall (+500 $ against -50 $). The first price
    is pinned at 1 $/kW by ``spare`` (inside its range); the second interval's price is only
    bounded by ``store``'s marginal values, [1, 10], and the rule takes 5.5."""
    bids = bids_of(battery_shift())
    result = clear(bids)
    np.testing.assert_allclose(result.kw, [[50.0, 0.0], [-50.0, 0.0]], atol=1e-9)
    assert result.objective_usd == pytest.approx(450.0)
    np.testing.assert_allclose(result.price_usd_per_kw, [1.0, 5.5])
    np.testing.assert_allclose(result.price_range_usd_per_kw, [[1.0, 1.0], [1.0, 10.0]])
    assert verify_certificate(bids, result).ok


@pytest.mark.parametrize("make", [lambda: two_entities(1.5, 50.0), battery_shift,
                                  three_entities])
def test_solver_dual_also_certifies(make):
    bids = bids_of(make())
    midpoint, solver = clear(bids), clear(bids, price_rule="solver-dual")
    assert solver.price_rule == "solver-dual"
    assert verify_certificate(bids, solver).ok
    assert solver.objective_usd == pytest.approx(midpoint.objective_usd)


def tampered(result, **changes):
    return dataclasses.replace(result, **changes)


def test_certificate_rejects_tampering():
    bids = bids_of(battery_shift())
    result = clear(bids)
    assert verify_certificate(bids, result).ok
    unbalanced = tampered(result, kw=result.kw + np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert verify_certificate(bids, unbalanced).primal_violation_kw == pytest.approx(1.0)
    assert not verify_certificate(bids, unbalanced).ok
    cheaper = tampered(result, price_usd_per_kw=result.price_usd_per_kw - [0.5, 0.0])
    assert not verify_certificate(bids, cheaper).ok
    inflated = tampered(result, group_value_usd=result.group_value_usd + 1.0)
    assert verify_certificate(bids, inflated).cut_violation_usd == pytest.approx(1.0)
    suboptimal = tampered(result, kw=np.zeros_like(result.kw),
                          group_value_usd=np.zeros_like(result.group_value_usd))
    check = verify_certificate(bids, suboptimal)
    assert check.primal_violation_kw == 0.0 and check.cut_violation_usd <= 1e-9
    assert check.gap_usd > 100.0 and not check.ok


def test_free_rights_move_once():
    """``buyer`` (10 $/kWh) lacks 50 kW. ``pv`` and ``flat`` are covered by their PV, so
    their rights are worth nothing to them (``pv`` holds 100 kW, ``flat`` 50 kW and could
    take 50 more); ``seller`` values its rights at 1 $/kWh. The optimum (+500 $) takes 50 kW
    from the PV-covered entities, and the least transfer moves exactly those 50 kW: nobody
    receives rights it does not need and the seller keeps its own."""
    entities = [simple_entity("buyer", 100.0, 10.0),
                simple_entity("pv", 100.0, 3.0, pv_kw=np.array([100.0])),
                simple_entity("flat", 100.0, 3.0, pv_kw=np.array([100.0])),
                simple_entity("seller", 100.0, 1.0)]
    ub = np.array([[50.0], [100.0], [50.0], [100.0]])
    bids = bids_of(Case("free rights", entities, ub))
    result = clear(bids)
    kw = result.kw[:, 0]
    assert result.objective_usd == pytest.approx(500.0)
    assert kw[0] == pytest.approx(50.0)
    assert kw[1] + kw[2] == pytest.approx(-50.0)
    assert kw[1] <= 1e-9 and kw[2] <= 1e-9
    assert kw[3] == pytest.approx(0.0, abs=1e-9)
    assert verify_certificate(bids, result).ok


@pytest.fixture(scope="module")
def random_markets():
    rng = np.random.default_rng(21)
    cases = [random_case(rng, 12, 4) for _ in range(3)] + [random_case(rng, 25, 3)]
    return [bids_of(case) for case in cases]


def test_random_markets_match_the_epigraph_lp(random_markets):
    for bids in random_markets:
        assert any(np.any(bid.group_interval < 0) for bid in bids), "no battery entity"
        result = clear(bids)
        reference = epigraph_optimum(bids)
        assert result.objective_usd == pytest.approx(reference, rel=1e-7, abs=1e-6)
        assert verify_certificate(bids, result).ok
        assert result.price_rule == "midpoint"
        assert np.all(result.price_usd_per_kw >= 0.0)
        lo, hi = result.price_range_usd_per_kw.T
        assert np.all(lo - 1e-9 <= result.price_usd_per_kw)
        assert np.all(result.price_usd_per_kw <= hi + 1e-9)


def test_tie_break_keeps_the_value_and_moves_less(random_markets):
    for bids in random_markets:
        least, any_optimum = clear(bids), clear(bids, tie_break=False)
        assert least.objective_usd == pytest.approx(any_optimum.objective_usd, rel=1e-9)
        assert np.abs(least.kw).sum() <= np.abs(any_optimum.kw).sum() + 1e-6


def test_same_bids_same_clearing(random_markets):
    bids = random_markets[0]
    first, again = clear(bids), clear(bids)
    for name in ("kw", "price_usd_per_kw", "cut_dual", "upper_dual_usd_per_kw",
                 "lower_dual_usd_per_kw", "group_value_usd"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))


def test_bad_bids_are_refused():
    bids = bids_of(two_entities(1.5, 7.5))
    with pytest.raises(ValueError):
        clear([bids[0], dataclasses.replace(bids[1], min_kw=np.array([1.0]))])
    with pytest.raises(ValueError):
        clear(bids, price_rule="vickrey")


@pytest.fixture(scope="module")
def wide_market():
    """60 entities over 4 intervals: about 130 free segments per interval, enough for the
    coarse LP of `formulation`."""
    return bids_of(random_case(np.random.default_rng(8), 60, 4))


def same_optimum(result, reference):
    assert result.objective_usd == pytest.approx(reference.objective_usd, rel=1e-9)
    np.testing.assert_allclose(result.price_usd_per_kw, reference.price_usd_per_kw,
                               rtol=1e-9, atol=1e-9)
    assert np.abs(result.kw).sum() == pytest.approx(np.abs(reference.kw).sum(), rel=1e-9)


def test_coarse_stage_reaches_the_single_lp_optimum(wide_market, monkeypatch):
    """The coarse LP and its window give the value, prices and least transfer of one LP over
    every free segment, and of the plain epigraph LP."""
    coarse_calls = []
    original = formulation.Formulation._coarse
    monkeypatch.setattr(formulation.Formulation, "_coarse",
                        lambda self, *args: coarse_calls.append(1) or original(self, *args))
    staged = clear(wide_market)
    assert coarse_calls, "the coarse stage did not run"
    monkeypatch.setattr(formulation, "COARSE_MIN_SEGMENTS", 10**9)
    single = clear(wide_market)
    assert len(coarse_calls) == 1
    same_optimum(staged, single)
    assert staged.objective_usd == pytest.approx(epigraph_optimum(wide_market), rel=1e-9)
    assert verify_certificate(wide_market, staged).ok and staged.price_rule == "midpoint"


def test_wrongly_settled_segments_are_freed(wide_market, monkeypatch):
    """Segments settled on the wrong side of the price (here every segment whose slope is
    within 0.5 $/kW above the optimal price is declared empty) are found by their reduced
    costs and freed, and the LP, started again from its last basis, ends at the optimum."""
    expected = clear(wide_market)
    pivot = expected.price_usd_per_kw

    def settled(self):
        above = self.seg_slope - pivot[self.seg_t]
        return above > 1.0, above < 0.5

    monkeypatch.setattr(formulation, "COARSE_MIN_SEGMENTS", 10**9)
    monkeypatch.setattr(formulation.Formulation, "_settled_segments", settled)
    solves = []
    original = formulation.highs.solve
    monkeypatch.setattr(formulation.highs, "solve",
                        lambda *args, **kwargs: solves.append(kwargs.get("basis"))
                        or original(*args, **kwargs))
    result = clear(wide_market)
    assert len(solves) >= 3 and solves[1] is not None, "no LP started again from a basis"
    same_optimum(result, expected)
    assert verify_certificate(wide_market, result).ok
