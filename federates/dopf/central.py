"""The central DOPF: the standard form handed to an off-the-shelf QP solver through cvxpy.

This is the reference every other algorithm is checked against. The cvxpy problem is built
once per size with a `cp.Parameter` for every number that changes between steps (``g``,
``sqrt(h)``, ``A``, ``b``, ``lo``, ``hi``: the operating point, the sensitivities, the
limits, the availabilities), in DPP form, so a step only copies numbers in and re-solves.

**Screening.** By default only the voltage limits that can matter are handed to the solver
(`gridsim.federates.dopf.screening`: box screening, then row generation; exact). It is what
makes IEEE 9500 solvable in a step: CLARABEL factorizes a dense block of rows x variables,
and its time grows with the square of the rows. Measured on the benchmark's IEEE 9500
problem (noon, PV x3: 9,427 limited nodes, 356 variables), per solve: 32 rows 16 ms,
64 rows 34 ms, 128 rows 84 ms, 256 rows 0.31 s, 512 rows 1.3 s. Before screening, with
every limit (9,501 nodes, neutrals and floating deltas still limited): 30 s to build, 30 s
per solve. Box screening alone keeps 7,684 nodes: 84 s for the first solve, 81 s for the next.
Row generation: 152 nodes, one round, 0.15 s, the same objective (0.70868039427 against
box screening's 0.70868039426). A whole DOPF step (linearize, build, solve) takes 0.45 s
median, 0.70 s with the 18 regulators and 10 banks (bench/README.md). On IEEE 123's noon
problem (274 nodes, 5 above 1.05) 16 nodes: 2.6-3.5 ms per solve against 11.3 ms.

**Sizes and the cache.** The row set changes from step to step, so the built problem is
kept per bucket of rows (`bucket`: 16, 24, 32, 40, 56, 72, 96, 120, 152, 192, ... 25% apart)
and variable count; a row set is filled up to its bucket with the next nearest nodes to a
limit (real rows rather than zero rows: they may save a round). A new bucket costs a
build: about 0.1 s at 152 rows (IEEE 9500's first step 0.55 s against 0.45 s). The last
`CentralDOPF.CACHED` built problems are kept. ``screen=False`` solves every row, one build
per `DOPFProblem.shape_key`.

Solver choice, measured on 200 random instances of IEEE 123's size (`random_instance`
seeds 2024 and 7: 280 nodes, 14 PV, 90 loads, so 118 variables and 560-561 rows), re-solving
the built problem without screening, wall time of `CentralDOPF.solve` on a 2-core machine:

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
`_Built`; unscaled, OSQP did not reach even 1e-5 on half of the instances. With screening
CLARABEL takes 42 ms median (p90 65 ms, max 89 ms) on the same instances: half their
nodes are above 1.05 with no action, so the rows fall only from 280 to 152 (median).
On IEEE 9500's rows faer took 0.50-0.60 s at 256 rows (qdldl 0.31 s) and 0.80-0.87 s at
512 (qdldl 1.38 s); row generation keeps the sets small, so qdldl stays.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict

import cvxpy as cp
import numpy as np

from gridsim.federates.dopf.problem import DOPFProblem, Solution, Status
from gridsim.federates.dopf.screening import RowGeneration

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
    """One cvxpy problem for ``rows`` nodes and one variable count, with its parameters, in
    scaled units; a smaller problem fills the first rows, the rest are zero rows.

    Variables ``y = x / s`` with ``s = max(hi - lo, 1)`` (every variable spans about [0, 1]),
    voltages as an auxiliary ``v = C y`` with two-sided bounds (the dense sensitivity block
    appears once, not twice: both solvers ran twice as fast), every row divided by its norm.
    Unscaled, OSQP reached its iteration limit on half of the instances even at 1e-5.
    """

    def __init__(self, rows: int, n: int, p_sub: bool) -> None:
        self.rows = rows
        self.y = cp.Variable(n)
        v = cp.Variable(rows)
        self.g = cp.Parameter(n)
        self.sqrt_h = cp.Parameter(n, nonneg=True)
        self.C = cp.Parameter((rows, n))
        self.v_lo, self.v_hi = cp.Parameter(rows), cp.Parameter(rows)
        self.lo, self.hi = cp.Parameter(n), cp.Parameter(n)
        self.v_upper, self.v_lower = v <= self.v_hi, v >= self.v_lo
        constraints = [v == self.C @ self.y, self.v_upper, self.v_lower,
                       self.y >= self.lo, self.y <= self.hi]
        self.p_row = self.p_max = self.p_upper = None
        if p_sub:
            self.p_row, self.p_max = cp.Parameter(n), cp.Parameter()
            self.p_upper = self.p_row @ self.y <= self.p_max
            constraints.append(self.p_upper)
        objective = self.g @ self.y + 0.5 * cp.sum_squares(cp.multiply(self.sqrt_h, self.y))
        self.problem = cp.Problem(cp.Minimize(objective), constraints)
        self.x_scale = np.ones(n)
        self.row_scale = np.ones(0)
        self.n_node = 0

    def load(self, problem: DOPFProblem) -> None:
        """Copy the problem's numbers into the parameters, scaled. A missing limit
        (``inf``) becomes ``sqrt(n) + 1``, which no row reaches: every ``|y_i| <= 1``
        (``lo <= 0 <= hi``) and every row has norm 1."""
        sf = problem.standard_form
        s = np.maximum(sf.hi - sf.lo, 1.0)
        rows = sf.A * s
        norms = np.linalg.norm(rows, axis=1)
        d = 1.0 / np.where(norms > 0, norms, 1.0)
        self.x_scale, self.row_scale, self.n_node = s, d, problem.n_node
        upper, far = sf.rows_v_max, np.sqrt(s.size) + 1.0
        self.g.value, self.sqrt_h.value = sf.g * s, np.sqrt(sf.h) * s
        self.C.value = _padded(d[upper, None] * rows[upper], self.rows)
        self.v_hi.value = _padded(np.minimum(d[upper] * sf.b[upper], far), self.rows, 1.0)
        self.v_lo.value = _padded(np.maximum(-d[upper] * sf.b[sf.rows_v_min], -far),
                                  self.rows, -1.0)
        self.lo.value, self.hi.value = sf.lo / s, sf.hi / s
        if self.p_row is not None:
            row = sf.row_p_sub
            self.p_row.value, self.p_max.value = d[row] * rows[row], d[row] * sf.b[row]

    def x(self) -> np.ndarray:
        return self.x_scale * self.y.value

    def duals(self) -> np.ndarray:
        """Multipliers of the standard-form rows ``A x <= b``, unscaled."""
        k = self.n_node
        parts = [self.v_upper.dual_value[:k], self.v_lower.dual_value[:k]]
        if self.p_upper is not None:
            parts.append(np.atleast_1d(self.p_upper.dual_value))
        return self.row_scale * np.maximum(np.concatenate(parts), 0.0)


def _padded(values: np.ndarray, rows: int, fill: float = 0.0) -> np.ndarray:
    """`values` (rows first) with ``fill`` rows appended up to `rows`."""
    out = np.full((rows,) + values.shape[1:], fill)
    out[:len(values)] = values
    return out


def bucket(n_node: int) -> int:
    """The number of rows of the built problem that holds `n_node` nodes: the first of
    16, 24, 32, 40, 56, 72, ... (25% apart, multiples of 8) not below it."""
    size = 16
    while size < n_node:
        size = 8 * int(np.ceil(size * 1.25 / 8))
    return size


class CentralDOPF:
    """Reference DOPF: one QP solve by `solver` (``"CLARABEL"``, the default, or ``"OSQP"``);
    ``options`` override the solver's tight tolerances in `SOLVER_OPTIONS`.

    With ``screen`` (the default) it solves only the voltage limits that matter
    (`gridsim.federates.dopf.screening`), exactly. ``iterations`` in the solution is the
    solver's own count (summed over rounds of row generation); ``duals`` are the
    multipliers of the standard-form rows (they can warm-start the primal-dual algorithm).
    """

    name = "central"
    SUPPORTED_SOLVERS = tuple(SOLVER_OPTIONS)
    CACHED = 6
    """Built problems kept (the least recently used is dropped)."""
    ROW_TOLERANCE_PU = 1e-8
    """A left-out limit exceeded by less than this holds (`RowGeneration`)."""

    def __init__(self, solver: str = "CLARABEL", screen: bool = True, **options) -> None:
        if solver not in SOLVER_OPTIONS:
            raise ValueError(f"central DOPF: solver {solver!r} not in {self.SUPPORTED_SOLVERS}")
        self.solver = solver
        self.options = {**SOLVER_OPTIONS[solver], **options}
        self.screen = screen
        self.rows = RowGeneration(self.ROW_TOLERANCE_PU)
        self._built: OrderedDict[tuple, _Built] = OrderedDict()

    def _get(self, problem: DOPFProblem, rows: int) -> _Built:
        key = (rows, 2 * problem.n_pv + problem.n_load, problem.p_sub_max_kw is not None)
        if key not in self._built:
            self._built[key] = _Built(*key)
            while len(self._built) > self.CACHED:
                self._built.popitem(last=False)
        self._built.move_to_end(key)
        return self._built[key]

    def solve(self, problem: DOPFProblem, warm_start: Solution | None = None) -> Solution:
        """Solve `problem`; a warm start's ``x`` seeds the solver (OSQP uses it)."""
        if not self.screen:
            return self._solve(problem, warm_start, problem.n_node)
        return self.rows.solve(problem, lambda reduced, warm: self._solve(
            reduced, warm, bucket(reduced.n_node)), warm_start, size=bucket)

    def _solve(self, problem: DOPFProblem, warm_start: Solution | None,
               rows: int) -> Solution:
        start = time.perf_counter()
        built = self._get(problem, rows)
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
