"""Conformance kit: the properties every DOPF algorithm in `algorithms.ALGORITHMS` must have.

No broker, no OpenDSS: a case is a plain `DOPFProblem` and what is known of its answer.
`check_case` solves one case and lists every property that fails (an empty list: the
algorithm conforms on it); `check` runs the whole kit, `run_kit` every registered algorithm:

- status: exactly the case's (``"optimal"``, or ``"infeasible"`` for a problem without a
  feasible point: an algorithm that runs to its iteration limit instead does not conform);
  a solver in trouble gives a status, never an exception;
- an optimum is feasible (`FEASIBILITY_PU`) and matches the known ``x`` (`X_ATOL`), the known
  objective (`HAND_MADE_RTOL` for an objective derived by hand, `OBJECTIVE_RTOL` against the
  reference) and the known multipliers (`DUAL_RTOL`);
- multipliers, when an algorithm returns them (`problem.Solution.duals`), are those of the
  standard-form rows ``A x <= b``: non-negative, with the Lagrangian stationary over the box
  (`KKT_RTOL`) and complementary to the rows (`COMPLEMENTARITY_RTOL`);
- warm starts (`check_warm_start`): the same optimum as a cold start after a random change,
  and, for the algorithms in `WARM_START_SAVINGS`, fewer iterations.

Cases: hand-made ones whose optimum, objective and multipliers are derived by hand (each
docstring), two infeasible ones, and 100 seeded random instances of IEEE 123's size (280
nodes, 14 PV, 90 loads) whose objective is the reference's, the central QP with every row
(no screening). Against it the primal-dual algorithm stays within 1e-5 (relative); a
stopping rule loosened to a duality gap of 1e-3 (the primal-dual docstring's regression)
drifts to 1e-3, which a tolerance of 1e-3 would let through, and `OBJECTIVE_RTOL` does not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gridsim.federates.dopf.algorithms import ALGORITHMS, make
from gridsim.federates.dopf.instances import perturb, random_instance
from gridsim.federates.dopf.problem import DOPFProblem, Solution, Status

REFERENCE = "central"
REFERENCE_SETTINGS = {"screen": False}
FEASIBILITY_PU = 1e-5
X_ATOL = 1e-2
HAND_MADE_RTOL = 1e-5
OBJECTIVE_RTOL = 1e-4
OBJECTIVE_FLOOR = 1e-2
"""Relative gaps are taken against ``max(|objective|, OBJECTIVE_FLOOR)``."""
DUAL_RTOL = 1e-5
"""Of ``1 + max |known multiplier|``."""
KKT_RTOL = 1e-3
"""Stationarity, relative to each gradient's size (`kkt_failures`). Measured on the random
cases: 3e-5 for the central QP, 1e-16 for primal-dual; multipliers off by the central
solver's row scale give 2e-2 or more."""
COMPLEMENTARITY_RTOL = 1e-4
"""``sum |mu_j (A x - b)_j|`` relative to ``1 + |objective|``."""
WARM_START_SAVINGS = {"primal-dual": 0.7}
"""Algorithms whose warm start must save iterations: warm ones below this share of cold."""


@dataclass(frozen=True, eq=False)
class Case:
    """One problem and what every algorithm must give on it (None: not known)."""

    name: str
    problem: DOPFProblem
    status: Status = "optimal"
    x: np.ndarray | None = None
    objective: float | None = None
    objective_rtol: float = HAND_MADE_RTOL
    duals: np.ndarray | None = None
    """Multipliers of the standard-form rows: ``v <= v_max``, ``-v <= -v_min``, ``p_sub``."""
    reference: Solution | None = None
    """The reference's solution, for a random case."""


def one_node(**fields) -> DOPFProblem:
    """One node; PV and loads as given (defaults: none)."""
    n_pv = len(fields.get("available_kw", []))
    n_load = len(fields.get("shed_max_kw", []))
    base = {"vp_pu_per_kw": np.zeros((1, n_pv)), "vq_pu_per_kvar": np.zeros((1, n_pv)),
            "vs_pu_per_kw": np.zeros((1, n_load)), "available_kw": np.zeros(n_pv),
            "kva_rating": np.zeros(n_pv), "q0_kvar": np.zeros(n_pv),
            "shed_max_kw": np.zeros(n_load)}
    return DOPFProblem(**{**base, **fields})


def curtailment_only() -> Case:
    """v0 = 1.06, v_max = 1.05, Vp = 1e-4 p.u./kW, no reactive range (kVA = available):
    curtail 0.01 / 1e-4 = 100 kW; cost 1 * 100 + 1e-3 / 2 * 100^2 = 105. The v_max row is
    ``-1e-4 curt <= -0.01``; stationarity in curt, ``1 + 1e-3 * 100 - 1e-4 mu = 0``, gives
    mu = 11,000 per p.u.; v_min does not bind."""
    problem = one_node(v0_pu=[1.06], vp_pu_per_kw=[[1e-4]], vq_pu_per_kvar=[[1e-4]],
                       available_kw=[500.0], kva_rating=[500.0])
    return Case("curtailment_only", problem, x=np.array([100.0, 0.0]), objective=105.0,
                duals=np.array([11_000.0, 0.0]))


def reactive_at_limit() -> Case:
    """Vq = 2e-4 p.u./kvar, reactive range 30 kvar: absorbing 30 kvar removes 0.006 p.u.
    (its marginal cost 1e-2 * 30 = 0.3 per kvar is below the price 1.04 / 1e-4 * 2e-4),
    curtailment the remaining 0.004 p.u. = 40 kW; cost 40 + 0.8 + 4.5 = 45.3. The v_max
    multiplier is the price of curtailment, (1 + 1e-3 * 40) / 1e-4 = 10,400 per p.u."""
    problem = one_node(v0_pu=[1.06], vp_pu_per_kw=[[1e-4]], vq_pu_per_kvar=[[2e-4]],
                       available_kw=[200.0], kva_rating=[np.hypot(200.0, 30.0)])
    return Case("reactive_at_limit", problem, x=np.array([40.0, -30.0]), objective=45.3,
                duals=np.array([10_400.0, 0.0]))


def import_limit() -> Case:
    """Import 1000 kW, limit 950 kW, two loads at 5 and 10 per kW: shed 50 kW of the
    cheap one (its marginal cost 5 + 1e-2 * 50 stays below 10); cost 250 + 12.5. The
    import row is ``-shed_1 - shed_2 <= -50``: its multiplier is the cheap load's marginal
    cost, 5.5 per kW; the voltage limits (1.0005 p.u. at most) do not bind."""
    problem = one_node(v0_pu=[1.0], vs_pu_per_kw=[[1e-5, 1e-5]], shed_max_kw=[100.0, 100.0],
                       c_shed=np.array([5.0, 10.0]), p_sub0_kw=1000.0,
                       ps_p_kw_per_kw=np.zeros(0), ps_q_kw_per_kvar=np.zeros(0),
                       ps_s_kw_per_kw=[-1.0, -1.0], p_sub_max_kw=950.0)
    return Case("import_limit", problem, x=np.array([50.0, 0.0]), objective=262.5,
                duals=np.array([0.0, 0.0, 5.5]))


def undervoltage() -> Case:
    """v0 = 0.94, v_min = 0.95, Vs = 2e-4 p.u./kW: shed 50 kW; cost 10 * 50 + 12.5. The
    v_min row is ``-2e-4 shed <= -0.01``: mu = (10 + 1e-2 * 50) / 2e-4 = 52,500 per p.u."""
    problem = one_node(v0_pu=[0.94], vs_pu_per_kw=[[2e-4]], shed_max_kw=[100.0])
    return Case("undervoltage", problem, x=np.array([50.0]), objective=512.5,
                duals=np.array([0.0, 52_500.0]))


def single_row_infeasible() -> Case:
    """v0 = 1.2 p.u. everywhere and 1 kW of PV: no action can reach 1.05."""
    n = 5
    problem = DOPFProblem(
        v0_pu=np.full(n, 1.2), vp_pu_per_kw=np.full((n, 1), 1e-4),
        vq_pu_per_kvar=np.full((n, 1), 1e-4), vs_pu_per_kw=np.full((n, 1), 1e-4),
        available_kw=[1.0], kva_rating=[1.0], q0_kvar=[0.0], shed_max_kw=[1.0])
    return Case("single_row_infeasible", problem, status="infeasible")


def jointly_infeasible() -> Case:
    """Voltage needs 100 kW of curtailment, the import limit allows 50: each constraint
    alone is satisfiable, both together are not."""
    problem = one_node(v0_pu=[1.06], vp_pu_per_kw=[[1e-4]], vq_pu_per_kvar=[[1e-4]],
                       available_kw=[500.0], kva_rating=[500.0], p_sub0_kw=0.0,
                       ps_p_kw_per_kw=[-1.0], ps_q_kw_per_kvar=[0.0],
                       ps_s_kw_per_kw=np.zeros(0), p_sub_max_kw=50.0)
    return Case("jointly_infeasible", problem, status="infeasible")


HAND_MADE: list[Callable[[], Case]] = [curtailment_only, reactive_at_limit, import_limit,
                                       undervoltage, single_row_infeasible, jointly_infeasible]


def random_cases(count: int = 100, seed: int = 2024) -> list[Case]:
    """`count` `random_instance`s of IEEE 123's size drawn from one generator seeded with
    `seed`, each with the solution and objective of the reference (the central QP, every
    row: screening is the algorithms' own business)."""
    rng = np.random.default_rng(seed)
    reference = make(REFERENCE, **REFERENCE_SETTINGS)
    cases = []
    for i in range(count):
        problem = random_instance(rng, 280, 14, 90)
        solution = reference.solve(problem)
        known = solution.objective if solution.status == "optimal" else None
        cases.append(Case(f"random {seed}/{i}", problem, objective=known,
                          objective_rtol=OBJECTIVE_RTOL, reference=solution))
    return cases


def names() -> list[str]:
    """The registered algorithms, which the kit covers."""
    return sorted(ALGORITHMS)


def relative_gap(a: float, b: float) -> float:
    """``|a - b|`` relative to ``max(|b|, OBJECTIVE_FLOOR)``."""
    return abs(a - b) / max(abs(b), OBJECTIVE_FLOOR)


def kkt_failures(problem: DOPFProblem, solution: Solution) -> list[str]:
    """Whether ``solution.duals`` are multipliers of the standard-form rows at ``x``.

    Stationarity over the box: with ``r = g + h x + A^T mu`` (the Lagrangian's gradient),
    each ``x_i`` must be where a projected step ``x_i - t_i r_i`` brings it back; the step
    ``t_i`` turns a gradient error of a share ``e`` of the gradient's size into a move of
    ``e`` times the variable's range, so the residual reads as a relative error.
    """
    sf, x, mu = problem.standard_form, solution.x, solution.duals
    if mu is None:
        return []
    if mu.shape != sf.b.shape or not np.all(np.isfinite(mu)):
        return [f"duals: shape {mu.shape} or values not finite, {sf.b.size} rows"]
    problems = [] if np.all(mu >= 0.0) else [f"duals: negative multiplier {mu.min():.3g}"]
    gradient = sf.g + sf.h * x + sf.A.T @ mu
    size = 1.0 + np.abs(sf.g) + sf.h * np.abs(x) + np.abs(sf.A.T) @ np.abs(mu)
    span = np.maximum(sf.hi - sf.lo, 1.0)
    moved = np.clip(x - span / size * gradient, sf.lo, sf.hi)
    stationarity = float(np.max(np.abs(x - moved) / span, initial=0.0))
    if stationarity > KKT_RTOL:
        problems.append(f"duals: the Lagrangian is not stationary ({stationarity:.3g})")
    slackness = float(np.abs(mu * (sf.A @ x - sf.b)).sum() / (1.0 + abs(solution.objective)))
    if slackness > COMPLEMENTARITY_RTOL:
        problems.append(f"duals: not complementary to the rows ({slackness:.3g})")
    return problems


def check_solution(case: Case, solution: Solution | str) -> list[str]:
    """Every property of the module doc that `solution` of `case` fails (empty: none); a
    string is what `solve` caught instead of a solution."""
    if isinstance(solution, str):
        return [solution]
    if solution.status != case.status:
        return [f"status {solution.status!r}, expected {case.status!r}"]
    if case.status != "optimal":
        return []
    problems = []
    if not solution.max_violation <= FEASIBILITY_PU:
        problems.append(f"infeasible: violation {solution.max_violation:.3g}")
    if case.x is not None and not np.allclose(solution.x, case.x, rtol=0.0, atol=X_ATOL):
        problems.append(f"x = {solution.x}, expected {case.x}")
    if case.objective is not None:
        gap = relative_gap(solution.objective, case.objective)
        if not gap <= case.objective_rtol:
            problems.append(f"objective {solution.objective:.9g}, expected "
                            f"{case.objective:.9g} (relative gap {gap:.3g})")
    if case.duals is not None and solution.duals is not None:
        error = np.max(np.abs(solution.duals - case.duals)) if \
            solution.duals.shape == case.duals.shape else np.inf
        if not error <= DUAL_RTOL * (1.0 + np.max(np.abs(case.duals))):
            problems.append(f"duals {solution.duals}, expected {case.duals}")
    return problems + kkt_failures(case.problem, solution)


def solve(name: str, problem: DOPFProblem,
          warm_start: Solution | None = None) -> Solution | str:
    """`name`'s solution of `problem` by a fresh instance, or what it raised (a conforming
    algorithm gives a status, never an exception)."""
    try:
        return make(name).solve(problem, warm_start=warm_start)
    except Exception as exc:
        return f"raised {exc!r}"


def check_case(name: str, case: Case) -> list[str]:
    """Every property that algorithm `name` fails on `case` (empty: it conforms)."""
    return check_solution(case, solve(name, case.problem))


def check_warm_start(name: str, cases: Sequence[Case],
                     solutions: Sequence[Solution | str]) -> list[str]:
    """Warm starts, from `name`'s own `solutions` of the random `cases` after a random
    change (`instances.perturb`): the first 5 keep the cold start's optimum; for the
    algorithms in `WARM_START_SAVINGS`, 10 that took over 20 iterations cold take fewer
    warm (in total and in the median)."""
    algorithm = make(name)
    pairs = [(c, s) for c, s in zip(cases, solutions)
             if c.reference is not None and isinstance(s, Solution)]
    problems = []
    rng = np.random.default_rng(5)
    for case, previous in pairs[:5]:
        changed = perturb(case.problem, rng)
        cold, warm = algorithm.solve(changed), algorithm.solve(changed, warm_start=previous)
        if not warm.status == cold.status == "optimal":
            problems.append(f"{case.name}: warm {warm.status!r}, cold {cold.status!r}")
        elif relative_gap(warm.objective, cold.objective) > OBJECTIVE_RTOL:
            problems.append(f"{case.name}: warm objective {warm.objective:.9g}, cold "
                            f"{cold.objective:.9g}")
    if name not in WARM_START_SAVINGS:
        return problems
    rng = np.random.default_rng(6)
    slow = [(c, s) for c, s in pairs if s.iterations > 20][:10]
    cold_its, warm_its = [], []
    for case, previous in slow:
        changed = perturb(case.problem, rng)
        cold_its.append(algorithm.solve(changed).iterations)
        warm_its.append(algorithm.solve(changed, warm_start=previous).iterations)
    if len(slow) < 10 or not (sum(warm_its) < WARM_START_SAVINGS[name] * sum(cold_its)
                              and np.median(warm_its) < np.median(cold_its)):
        problems.append(f"warm starts save too few iterations: {warm_its} against {cold_its}")
    return problems


def check(name: str, cases: Sequence[Case] | None = None) -> list[str]:
    """The whole kit for algorithm `name` on `cases` (default: every hand-made and random
    case), warm starts included; each failure names its case."""
    cases = [build() for build in HAND_MADE] + random_cases() if cases is None else cases
    solutions = [solve(name, case.problem) for case in cases]
    problems = [f"{case.name}: {problem}" for case, solution in zip(cases, solutions)
                for problem in check_solution(case, solution)]
    return problems + check_warm_start(name, cases, solutions)


def run_kit() -> dict[str, list[str]]:
    """`check` for every registered algorithm, on one set of cases."""
    cases = [build() for build in HAND_MADE] + random_cases()
    return {name: check(name, cases) for name in names()}
