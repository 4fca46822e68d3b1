"""Conformance kit: every DOPF algorithm in the registry passes the same problems.

No broker, no OpenDSS: problems are plain arrays (`DOPFProblem`). The kit has

- hand-made instances whose optimum is computed by hand (in each docstring below);
- 100 seeded random instances of IEEE 123's size (280 nodes, 14 PV, 90 loads): every
  algorithm solves them to optimality, feasibly, and within 0.1% of the central reference;
- infeasible instances: a status, never an exception;
- warm starts: same optimum, and fewer primal-dual iterations after a random change.
"""

from __future__ import annotations

import numpy as np
import pytest

from gridsim.federates.dopf.algorithms import ALGORITHMS, make
from gridsim.federates.dopf.instances import perturb, random_instance
from gridsim.federates.dopf.problem import DOPFProblem

NAMES = sorted(ALGORITHMS)
REFERENCE = "central"
FEASIBILITY_PU = 1e-5
OBJECTIVE_RTOL = 1e-3
OBJECTIVE_FLOOR = 1e-2


def one_node(**fields) -> DOPFProblem:
    """One node; PV and loads as given (defaults: none)."""
    n_pv = len(fields.get("available_kw", []))
    n_load = len(fields.get("shed_max_kw", []))
    base = {"vp_pu_per_kw": np.zeros((1, n_pv)), "vq_pu_per_kvar": np.zeros((1, n_pv)),
            "vs_pu_per_kw": np.zeros((1, n_load)), "available_kw": np.zeros(n_pv),
            "kva_rating": np.zeros(n_pv), "q0_kvar": np.zeros(n_pv),
            "shed_max_kw": np.zeros(n_load)}
    return DOPFProblem(**{**base, **fields})


def curtailment_only() -> tuple[DOPFProblem, np.ndarray, float]:
    """v0 = 1.06, v_max = 1.05, Vp = 1e-4 p.u./kW, no reactive range (kVA = available):
    curtail 0.01 / 1e-4 = 100 kW; cost 1 * 100 + 1e-3 / 2 * 100^2 = 105."""
    problem = one_node(v0_pu=[1.06], vp_pu_per_kw=[[1e-4]], vq_pu_per_kvar=[[1e-4]],
                       available_kw=[500.0], kva_rating=[500.0])
    return problem, np.array([100.0, 0.0]), 105.0


def reactive_at_limit() -> tuple[DOPFProblem, np.ndarray, float]:
    """Vq = 2e-4 p.u./kvar, reactive range 30 kvar: absorbing 30 kvar removes 0.006 p.u.
    (its marginal cost 1e-2 * 30 = 0.3 per kvar is below the price 1.04 / 1e-4 * 2e-4),
    curtailment the remaining 0.004 p.u. = 40 kW; cost 40 + 0.8 + 4.5 = 45.3."""
    problem = one_node(v0_pu=[1.06], vp_pu_per_kw=[[1e-4]], vq_pu_per_kvar=[[2e-4]],
                       available_kw=[200.0], kva_rating=[np.hypot(200.0, 30.0)])
    return problem, np.array([40.0, -30.0]), 45.3


def import_limit() -> tuple[DOPFProblem, np.ndarray, float]:
    """Import 1000 kW, limit 950 kW, two loads at 5 and 10 per kW: shed 50 kW of the
    cheap one (its marginal cost 5 + 1e-2 * 50 stays below 10); cost 250 + 12.5."""
    problem = one_node(v0_pu=[1.0], vs_pu_per_kw=[[1e-5, 1e-5]], shed_max_kw=[100.0, 100.0],
                       c_shed=np.array([5.0, 10.0]), p_sub0_kw=1000.0,
                       ps_p_kw_per_kw=np.zeros(0), ps_q_kw_per_kvar=np.zeros(0),
                       ps_s_kw_per_kw=[-1.0, -1.0], p_sub_max_kw=950.0)
    return problem, np.array([50.0, 0.0]), 262.5


def undervoltage() -> tuple[DOPFProblem, np.ndarray, float]:
    """v0 = 0.94, v_min = 0.95, Vs = 2e-4 p.u./kW: shed 50 kW; cost 10 * 50 + 12.5."""
    problem = one_node(v0_pu=[0.94], vs_pu_per_kw=[[2e-4]], shed_max_kw=[100.0])
    return problem, np.array([50.0]), 512.5


HAND_MADE = [curtailment_only, reactive_at_limit, import_limit, undervoltage]


@pytest.fixture(scope="module")
def random_problems() -> list[DOPFProblem]:
    rng = np.random.default_rng(2024)
    return [random_instance(rng, 280, 14, 90) for _ in range(100)]


@pytest.fixture(scope="module")
def random_solutions(random_problems) -> dict:
    return {name: [make(name).solve(p) for p in random_problems] for name in NAMES}


def relative_gap(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), OBJECTIVE_FLOOR)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", HAND_MADE, ids=lambda case: case.__name__)
def test_hand_made_optimum(name, case):
    problem, x_opt, objective = case()
    solution = make(name).solve(problem)
    assert solution.status == "optimal"
    np.testing.assert_allclose(solution.x, x_opt, atol=1e-2)
    assert relative_gap(solution.objective, objective) <= 1e-5
    assert solution.max_violation <= FEASIBILITY_PU


@pytest.mark.parametrize("name", NAMES)
def test_random_instances_solved_feasibly(name, random_solutions):
    solutions = random_solutions[name]
    assert [s.status for s in solutions] == ["optimal"] * len(solutions)
    assert max(s.max_violation for s in solutions) <= FEASIBILITY_PU


@pytest.mark.parametrize("name", NAMES)
def test_random_objectives_match_reference(name, random_solutions):
    gaps = [relative_gap(s.objective, ref.objective)
            for s, ref in zip(random_solutions[name], random_solutions[REFERENCE])]
    assert max(gaps) <= OBJECTIVE_RTOL


def test_random_instances_exercise_every_control(random_solutions):
    """The kit is only as good as its instances: some curtail, shed, absorb, or do nothing."""
    reference = random_solutions[REFERENCE]
    assert sum(s.curt.sum() > 1.0 for s in reference) >= 10
    assert sum(s.shed.sum() > 1.0 for s in reference) >= 5
    assert sum(s.objective < 1.0 for s in reference) >= 5


def single_row_infeasible() -> DOPFProblem:
    """v0 = 1.2 p.u. everywhere and 1 kW of PV: no action can reach 1.05."""
    n = 5
    return DOPFProblem(v0_pu=np.full(n, 1.2), vp_pu_per_kw=np.full((n, 1), 1e-4),
                       vq_pu_per_kvar=np.full((n, 1), 1e-4), vs_pu_per_kw=np.full((n, 1), 1e-4),
                       available_kw=[1.0], kva_rating=[1.0], q0_kvar=[0.0], shed_max_kw=[1.0])


def jointly_infeasible() -> DOPFProblem:
    """Voltage needs 100 kW of curtailment, the import limit allows 50: each constraint
    alone is satisfiable, both together are not."""
    return one_node(v0_pu=[1.06], vp_pu_per_kw=[[1e-4]], vq_pu_per_kvar=[[1e-4]],
                    available_kw=[500.0], kva_rating=[500.0], p_sub0_kw=0.0,
                    ps_p_kw_per_kw=[-1.0], ps_q_kw_per_kvar=[0.0],
                    ps_s_kw_per_kw=np.zeros(0), p_sub_max_kw=50.0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("build", [single_row_infeasible, jointly_infeasible],
                         ids=lambda build: build.__name__)
def test_infeasible_gives_a_status(name, build):
    solution = make(name).solve(build())
    assert solution.status != "optimal"
    if name == REFERENCE:
        assert solution.status == "infeasible"


@pytest.mark.parametrize("name", NAMES)
def test_warm_start_keeps_the_optimum(name, random_problems, random_solutions):
    rng = np.random.default_rng(5)
    algorithm = make(name)
    for problem, previous in list(zip(random_problems, random_solutions[name]))[:5]:
        changed = perturb(problem, rng)
        cold, warm = algorithm.solve(changed), algorithm.solve(changed, warm_start=previous)
        assert warm.status == cold.status == "optimal"
        assert relative_gap(warm.objective, cold.objective) <= OBJECTIVE_RTOL


def test_warm_start_saves_primal_dual_iterations(random_problems, random_solutions):
    rng = np.random.default_rng(6)
    algorithm = make("primal-dual")
    pairs = [(p, s) for p, s in zip(random_problems, random_solutions["primal-dual"])
             if s.iterations > 20][:10]
    cold, warm = [], []
    for problem, previous in pairs:
        changed = perturb(problem, rng)
        cold.append(algorithm.solve(changed).iterations)
        warm.append(algorithm.solve(changed, warm_start=previous).iterations)
    assert len(pairs) == 10
    assert sum(warm) < 0.7 * sum(cold)
    assert np.median(warm) < np.median(cold)


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


def test_central_builds_once_per_shape(random_problems):
    """Unscreened, one cvxpy problem per problem shape; screened, one per size of the row
    set, and a problem solved again reuses them."""
    central = make("central", screen=False)
    for problem in random_problems[:3]:
        central.solve(problem)
    assert len(central._built) == len({p.shape_key for p in random_problems[:3]})
    screened = make("central")
    problem = random_problems[0]
    for _ in range(2):
        screened.solve(problem)
    built = dict(screened._built)
    screened.solve(problem)
    assert all(screened._built[key] is value for key, value in built.items())
    assert len(screened._built) == len(built)
