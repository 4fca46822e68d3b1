"""Every DOPF algorithm in the registry passes the conformance kit (`dopf.conformance`), and
the kit fails an algorithm with one of the bugs it exists to catch.

The cases, their hand-derived answers and the properties live in the kit; here they are run
per algorithm and case, so a failure names both. The random cases and each algorithm's
solutions of them are computed once per module.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from gridsim.federates.dopf import central, conformance, primal_dual
from gridsim.federates.dopf.algorithms import ALGORITHMS, make
from gridsim.federates.dopf.instances import random_instance

NAMES = conformance.names()


@pytest.fixture(scope="module")
def random_cases() -> list[conformance.Case]:
    return conformance.random_cases()


@pytest.fixture(scope="module")
def random_solutions(random_cases) -> dict:
    return {name: [conformance.solve(name, case.problem) for case in random_cases]
            for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("build", conformance.HAND_MADE, ids=lambda build: build.__name__)
def test_hand_made_case(name, build):
    """Known optimum, objective and multipliers; exactly "infeasible" where no point is."""
    assert conformance.check_case(name, build()) == []


@pytest.mark.parametrize("name", NAMES)
def test_random_cases(name, random_cases, random_solutions):
    """Optimal, feasible, the reference's objective within `OBJECTIVE_RTOL`, KKT duals."""
    failures = [f"{case.name}: {failure}"
                for case, solution in zip(random_cases, random_solutions[name])
                for failure in conformance.check_solution(case, solution)]
    assert failures == []


@pytest.mark.parametrize("name", NAMES)
def test_warm_start(name, random_cases, random_solutions):
    assert conformance.check_warm_start(name, random_cases, random_solutions[name]) == []


def test_random_cases_exercise_every_control(random_cases):
    """The kit is only as good as its instances: some curtail, shed, absorb, or do nothing;
    the reference solves every one."""
    reference = [case.reference for case in random_cases]
    assert len(reference) == 100
    assert all(case.objective is not None for case in random_cases)
    assert sum(s.curt.sum() > 1.0 for s in reference) >= 10
    assert sum(s.shed.sum() > 1.0 for s in reference) >= 5
    assert sum(s.objective < 1.0 for s in reference) >= 5
    assert sum(np.max(s.duals) > 0.0 for s in reference) >= 50


def test_every_case_demands_the_exact_status():
    statuses = [build().status for build in conformance.HAND_MADE]
    assert statuses.count("infeasible") == 2 and statuses.count("optimal") == 4


# -- the kit catches the bugs it is there for ------------------------------------------------


def test_kit_catches_duals_off_by_the_row_scale(monkeypatch):
    """The central QP's rows are divided by their norm; multipliers handed back in those
    scaled units (the row scale applied twice, or not at all) are not the standard form's."""
    original = central._Scaled.duals
    for wrong in (lambda self, *args: original(self, *args) * self.row_scale,
                  lambda self, *args: original(self, *args) / self.row_scale):
        monkeypatch.setattr(central._Scaled, "duals", wrong)
        failures = conformance.check_case("central", conformance.curtailment_only())
        assert any(f.startswith("duals [") for f in failures), failures
        assert any("not stationary" in f for f in failures), failures


def test_kit_catches_an_algorithm_without_infeasibility_test(monkeypatch):
    """Primal-dual with both of its infeasibility tests disabled runs to its iteration limit
    (here 2,000): a status that is not "optimal", but not "infeasible" either."""
    real_of = primal_dual._Dual.of

    def blind(sf):
        dual = real_of(sf)
        dual.least_violation = 0.0
        dual.objective_bound = lambda: np.inf
        return dual

    monkeypatch.setattr(primal_dual._Dual, "of", staticmethod(blind))
    monkeypatch.setitem(ALGORITHMS, "primal-dual",
                        functools.partial(primal_dual.PrimalDualDOPF, max_iterations=2_000))
    failures = conformance.check_case("primal-dual", conformance.jointly_infeasible())
    assert failures == ["status 'max_iterations', expected 'infeasible'"]


def test_kit_catches_a_loose_stopping_rule(random_cases):
    """A duality gap of 1e-3 instead of 1e-5 as primal-dual's stopping rule: every random
    case stays feasible and within 1e-3 of the reference, so only a tolerance tighter than
    1e-3 sees it."""
    loose = primal_dual.PrimalDualDOPF(gap_tol=1e-3)
    gaps = [conformance.relative_gap(loose.solve(case.problem).objective, case.objective)
            for case in random_cases]
    assert max(gaps) <= 1e-3
    assert sum(gap > conformance.OBJECTIVE_RTOL for gap in gaps) >= 10


# -- the problem model and the registry --------------------------------------------------------


def test_standard_form_is_the_physical_model():
    """Rows of A x <= b are v <= v_max, -v <= -v_min and p_sub <= p_sub_max."""
    problem = random_instance(np.random.default_rng(1), 30, 3, 8, substation=True)
    sf = problem.standard_form
    x = np.random.default_rng(2).uniform(sf.lo, sf.hi)
    v = problem.voltages_pu(x)
    np.testing.assert_allclose(sf.A[sf.rows_v_max] @ x - sf.b[sf.rows_v_max], v - 1.05)
    np.testing.assert_allclose(sf.A[sf.rows_v_min] @ x - sf.b[sf.rows_v_min], 0.95 - v)
    curt, q, shed = problem.split(x)
    p_sub = (problem.p_sub0_kw - problem.ps_p_kw_per_kw @ curt
             + problem.ps_q_kw_per_kvar @ (q - problem.q0_kvar) + problem.ps_s_kw_per_kw @ shed)
    assert sf.A[sf.row_p_sub] @ x - sf.b[sf.row_p_sub] == pytest.approx(
        p_sub - problem.p_sub_max_kw)
    expected = (curt.sum() + 5e-4 * curt @ curt + 10 * shed.sum() + 5e-3 * shed @ shed
                + 5e-3 * (q - problem.q0_kvar) @ (q - problem.q0_kvar) + problem.loss @ x)
    assert problem.objective(x) == pytest.approx(expected)


def test_reactive_box_lies_inside_the_inverter_circle():
    problem = random_instance(np.random.default_rng(3), 30, 6, 8)
    for share in np.linspace(0.0, 1.0, 11):
        p_kw = problem.available_kw * (1.0 - share)
        assert np.all(p_kw**2 + problem.q_limit_kvar**2 <= problem.kva_rating**2 + 1e-9)


def test_registry_by_name():
    assert set(NAMES) == {"central", "primal-dual"}
    for name, cls in ALGORITHMS.items():
        assert cls.name == name
    with pytest.raises(ValueError, match="central, primal-dual"):
        make("newton")


@pytest.mark.parametrize("screen", [True, False])
def test_central_solvers_agree(random_cases, screen):
    """CLARABEL and OSQP, each through its own interface, reach the same optimum and the
    same multipliers, screened or not; a warm start (OSQP uses it) changes nothing."""
    for case in random_cases[:4]:
        problem = case.problem
        reference = make("central", screen=screen).solve(problem)
        assert reference.status == "optimal"
        for other in (make("central", solver="OSQP", screen=screen).solve(problem),
                      make("central", solver="OSQP", screen=screen).solve(
                          problem, warm_start=reference)):
            assert other.status == "optimal"
            scale = np.maximum(problem.standard_form.hi - problem.standard_form.lo, 1.0)
            assert np.max(np.abs(other.x - reference.x) / scale) < 1e-5
            assert abs(problem.standard_form.objective(other.x)
                       - problem.standard_form.objective(reference.x)) <= 1e-6 * max(
                1.0, abs(problem.standard_form.objective(reference.x)))
