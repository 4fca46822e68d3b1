"""The central DOPF: the standard form handed to an off-the-shelf QP solver through cvxpy.

This is the reference every other algorithm is checked against. The cvxpy problem is built
once per problem shape (`DOPFProblem.shape_key`) with a `cp.Parameter` for every number that
changes between steps (``g``, ``sqrt(h)``, ``A``, ``b``, ``lo``, ``hi``: the operating point,
the sensitivities, the limits, the availabilities), in DPP form, so a step only copies
numbers in and re-solves: canonicalization (20-60 ms) happens once.

Solver choice, measured on 200 random instances of IEEE 123's size (`random_instance`
seeds 2024 and 7: 280 nodes, 14 PV, 90 loads, so 118 variables and 560-561 rows), re-solving
the built problem, wall time of `CentralDOPF.solve` on a 2-core machine:

============================  ===========  =========  =========  ========================
solver                        median       p90        max        iterations (median)
============================  ===========  =========  =========  ========================
CLARABEL (qdldl, tol 1e-9)    59 ms        65 ms      93 ms      15
CLARABEL (default faer)       141 ms       166 ms     187 ms     15
OSQP (eps 1e-7, polish)       122-147 ms   0.3-0.4 s  1.7 s      1,400-1,600 (max 22,575)
============================  ===========  =========  =========  ========================

All three solve every instance; their objectives agree within 1e-7 (relative). CLARABEL
with the ``qdldl`` linear solver is the default: fastest and predictable (an interior
point method: 13-18 iterations whatever the instance; it ignores warm starts). OSQP stays
available (``CentralDOPF("OSQP")``) and uses warm starts. Both need the scaling of
`_Built`; unscaled, OSQP did not reach even 1e-5 on half of the instances.
"""

from __future__ import annotations

import time
import warnings

import cvxpy as cp
import numpy as np
from gridsim.federates.dopf.problem import DOPFProblem, Solution, Status

STATUS_MAP: dict[str, Status] = {
    cp.OPTIMAL: "optimal",
    cp.OPTIMAL_INACCURATE: "failed",
    cp.INFEASIBLE: "infeasible",
    cp.INFEASIBLE_INACCURATE: "infeasible",
    cp.UNBOUNDED: "failed",
    cp.UNBOUNDED_INACCURATE: "failed",
    cp.USER_LIMIT: "max_iterations",
    cp.SOLVER_ERROR: "failed",
}
"""cvxpy status -> ours. An inaccurate optimum is a failure: this is the reference."""

SOLVER_OPTIONS: dict[str, dict] = {
    "OSQP": {"eps_abs": 1e-7, "eps_rel": 1e-7, "polish": True, "max_iter": 100_000},
    "CLARABEL": {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9,
                 "direct_solve_method": "qdldl"},
}
"""Tight tolerances per supported solver, so the reference is trustworthy."""


class _Built:
    """One cvxpy problem for one shape, with its parameters, in scaled units.

    Variables ``y = x / s`` with ``s = max(hi - lo, 1)`` (every variable spans about [0, 1]),
    voltages as an auxiliary ``v = C y`` with two-sided bounds (the dense sensitivity block
    appears once, not twice: both solvers ran twice as fast), every row divided by its norm.
    Unscaled, OSQP reached its iteration limit on half of the instances even at 1e-5.
    """

    def __init__(self, problem: DOPFProblem) -> None:
        n, n_node = 2 * problem.n_pv + problem.n_load, problem.n_node
        self.y = cp.Variable(n)
        v = cp.Variable(n_node)
        self.g = cp.Parameter(n)
        self.sqrt_h = cp.Parameter(n, nonneg=True)
        self.C = cp.Parameter((n_node, n))
        self.v_lo, self.v_hi = cp.Parameter(n_node), cp.Parameter(n_node)
        self.lo, self.hi = cp.Parameter(n), cp.Parameter(n)
        self.v_upper, self.v_lower = v <= self.v_hi, v >= self.v_lo
        constraints = [v == self.C @ self.y, self.v_upper, self.v_lower,
                       self.y >= self.lo, self.y <= self.hi]
        self.p_row = self.p_max = self.p_upper = None
        if problem.p_sub_max_kw is not None:
            self.p_row, self.p_max = cp.Parameter(n), cp.Parameter()
            self.p_upper = self.p_row @ self.y <= self.p_max
            constraints.append(self.p_upper)
        objective = self.g @ self.y + 0.5 * cp.sum_squares(cp.multiply(self.sqrt_h, self.y))
        self.problem = cp.Problem(cp.Minimize(objective), constraints)
        self.x_scale = np.ones(n)
        self.row_scale = np.ones(2 * n_node + (self.p_row is not None))

    def load(self, problem: DOPFProblem) -> None:
        """Copy the problem's numbers into the parameters, scaled."""
        sf = problem.standard_form
        s = np.maximum(sf.hi - sf.lo, 1.0)
        rows = sf.A * s
        norms = np.linalg.norm(rows, axis=1)
        d = 1.0 / np.where(norms > 0, norms, 1.0)
        self.x_scale, self.row_scale = s, d
        upper = sf.rows_v_max
        self.g.value, self.sqrt_h.value = sf.g * s, np.sqrt(sf.h) * s
        self.C.value = d[upper, None] * rows[upper]
        self.v_hi.value = d[upper] * sf.b[upper]
        self.v_lo.value = -d[upper] * sf.b[sf.rows_v_min]
        self.lo.value, self.hi.value = sf.lo / s, sf.hi / s
        if self.p_row is not None:
            row = sf.row_p_sub
            self.p_row.value, self.p_max.value = d[row] * rows[row], d[row] * sf.b[row]

    def x(self) -> np.ndarray:
        return self.x_scale * self.y.value

    def duals(self) -> np.ndarray:
        """Multipliers of the standard-form rows ``A x <= b``, unscaled."""
        parts = [self.v_upper.dual_value, self.v_lower.dual_value]
        if self.p_upper is not None:
            parts.append(np.atleast_1d(self.p_upper.dual_value))
        return self.row_scale * np.maximum(np.concatenate(parts), 0.0)


class CentralDOPF:
    """Reference DOPF: one QP solve by `solver` (``"CLARABEL"``, the default, or ``"OSQP"``);
    ``options`` override the solver's tight tolerances in `SOLVER_OPTIONS`.

    ``iterations`` in the solution is the solver's own count; ``duals`` are the multipliers
    of the standard-form rows (they can warm-start the primal-dual algorithm).
    """

    name = "central"
    SUPPORTED_SOLVERS = tuple(SOLVER_OPTIONS)

    def __init__(self, solver: str = "CLARABEL", **options) -> None:
        if solver not in SOLVER_OPTIONS:
            raise ValueError(f"central DOPF: solver {solver!r} not in {self.SUPPORTED_SOLVERS}")
        self.solver = solver
        self.options = {**SOLVER_OPTIONS[solver], **options}
        self._built: dict[tuple, _Built] = {}

    def _get(self, problem: DOPFProblem) -> _Built:
        key = problem.shape_key
        if key not in self._built:
            self._built[key] = _Built(problem)
        return self._built[key]

    def solve(self, problem: DOPFProblem, warm_start: Solution | None = None) -> Solution:
        """Solve `problem`; a warm start's ``x`` seeds the solver (OSQP uses it)."""
        start = time.perf_counter()
        built = self._get(problem)
        built.load(problem)
        use_warm = (warm_start is not None and warm_start.x.shape == built.x_scale.shape
                    and bool(np.all(np.isfinite(warm_start.x))))
        if use_warm:
            built.y.value = warm_start.x / built.x_scale
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "may be inaccurate": a status
                built.problem.solve(solver=self.solver, warm_start=use_warm,
                                    **self.options)
        except (cp.error.SolverError, ValueError, ArithmeticError):
            return Solution.from_x(problem, None, "failed", 0, time.perf_counter() - start)
        status = STATUS_MAP.get(built.problem.status, "failed")
        stats = built.problem.solver_stats
        iterations = int(stats.num_iters or 0) if stats is not None else 0
        if status != "optimal":
            return Solution.from_x(problem, None, status, iterations,
                                   time.perf_counter() - start)
        return Solution.from_x(problem, built.x(), status, iterations,
                               time.perf_counter() - start, built.duals())
