"""The central DOPF: the standard form handed to an off-the-shelf QP solver, CLARABEL (the
default) or OSQP, through their own Python interfaces.

This is the reference every other algorithm is checked against. Each solve assembles the
scaled problem as sparse matrices (`_Scaled`) and hands it to the solver; there is nothing
to build or cache between steps. (Through cvxpy, as it was first written, the problem had to
be built once per size with a parameter for every number, and importing cvxpy cost 0.47 s
of every run's start-up, more than the DOPF's own compute on a day of IEEE 123.)

**Screening.** By default only the voltage limits that can matter are handed to the solver
(`gridsim.federates.dopf.screening`: box screening, then row generation; exact). It is what
makes IEEE 9500 solvable in a step: CLARABEL factorizes a dense block of rows x variables,
and its time grows with the square of the rows. Measured on the benchmark's IEEE 9500
problem (noon, PV x3: 9,427 limited nodes, 356 variables), per solve: 32 rows 16 ms,
64 rows 34 ms, 128 rows 84 ms, 256 rows 0.31 s, 512 rows 1.3 s. Before screening, with
every limit (9,501 nodes, neutrals and floating deltas still limited): 30 s to build, 30 s
per solve. Box screening alone keeps 7,684 nodes: 84 s for the first solve, 81 s for the next.
Row generation: 152 nodes, one round, 0.15 s, the same objective (0.70868039427 against
box screening's 0.70868039426). On IEEE 123's noon problem (274 nodes, 5 above 1.05)
16 nodes: 2.6-3.5 ms per solve against 11.3 ms. (These figures were measured through
cvxpy; the solver's work is the same.)

**Row sets.** A row set is filled up to its `bucket` (16, 24, 32, 40, 56, 72, 96, 120, 152,
192, ... 25% apart) with the next nearest nodes to a limit: real rows that may save a round
of row generation.

Solver choice, measured on 200 random instances of IEEE 123's size (`random_instance`
seeds 2024 and 7: 280 nodes, 14 PV, 90 loads, so 118 variables and 560-561 rows), without
screening, wall time of a solve on a 2-core machine (through cvxpy):

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
`_Scaled`; unscaled, OSQP did not reach even 1e-5 on half of the instances. On IEEE 9500's
rows faer took 0.50-0.60 s at 256 rows (qdldl 0.31 s) and 0.80-0.87 s at 512 (qdldl
1.38 s); row generation keeps the sets small, so qdldl stays.
"""

from __future__ import annotations

import time

import clarabel
import numpy as np
import osqp
import scipy.sparse as sp

from gridsim.federates.dopf.problem import DOPFProblem, Solution, Status
from gridsim.federates.dopf.screening import RowGeneration

CLARABEL_STATUS: dict[str, Status] = {
    "Solved": "optimal",
    "PrimalInfeasible": "infeasible",
    "AlmostPrimalInfeasible": "infeasible",
    "MaxIterations": "max_iterations",
    "MaxTime": "max_iterations",
}
"""CLARABEL's status (by name) -> ours; any other is ``failed``. An inaccurate optimum
(``AlmostSolved``) is a failure: this is the reference."""

OSQP_STATUS: dict[int, Status] = {
    osqp.SolverStatus.OSQP_SOLVED: "optimal",
    osqp.SolverStatus.OSQP_PRIMAL_INFEASIBLE: "infeasible",
    osqp.SolverStatus.OSQP_PRIMAL_INFEASIBLE_INACCURATE: "infeasible",
    osqp.SolverStatus.OSQP_MAX_ITER_REACHED: "max_iterations",
    osqp.SolverStatus.OSQP_TIME_LIMIT_REACHED: "max_iterations",
}
"""OSQP's status -> ours; any other is ``failed``."""

SOLVER_OPTIONS: dict[str, dict] = {
    "OSQP": {"eps_abs": 1e-7, "eps_rel": 1e-7, "polishing": True, "max_iter": 100_000},
    "CLARABEL": {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9,
                 "direct_solve_method": "qdldl"},
}
"""Tight tolerances per supported solver, so the reference is trustworthy."""


class _Scaled:
    """The problem in scaled units, over ``z = (y, v)``.

    Variables ``y = x / s`` with ``s = max(hi - lo, 1)`` (every variable spans about [0, 1]),
    voltages as an auxiliary ``v = C y`` with two-sided bounds (the dense sensitivity block
    appears once, not twice: both solvers ran twice as fast), every row divided by its norm.
    A missing limit (``inf``) becomes ``sqrt(n) + 1``, which no row reaches: every
    ``|y_i| <= 1`` (``lo <= 0 <= hi``) and every row has norm 1.
    """

    def __init__(self, problem: DOPFProblem) -> None:
        sf = problem.standard_form
        s = np.maximum(sf.hi - sf.lo, 1.0)
        rows = sf.A * s
        norms = np.linalg.norm(rows, axis=1)
        d = 1.0 / np.where(norms > 0, norms, 1.0)
        upper, far = sf.rows_v_max, np.sqrt(s.size) + 1.0
        self.n, self.k = s.size, problem.n_node
        self.x_scale, self.row_scale = s, d
        self.g, self.h = sf.g * s, sf.h * s * s
        self.C = d[upper, None] * rows[upper]
        self.v_hi = np.minimum(d[upper] * sf.b[upper], far)
        self.v_lo = np.maximum(-d[upper] * sf.b[sf.rows_v_min], -far)
        self.lo, self.hi = sf.lo / s, sf.hi / s
        self.p_row = self.p_max = None
        if sf.row_p_sub is not None:
            row = sf.row_p_sub
            self.p_row, self.p_max = d[row] * rows[row], d[row] * sf.b[row]

    def objective(self) -> tuple[sp.csc_matrix, np.ndarray]:
        """``P`` (upper triangle, CSC) and ``q`` over ``z``."""
        size = self.n + self.k
        P = sp.csc_matrix((self.h, (np.arange(self.n), np.arange(self.n))), shape=(size, size))
        return P, np.concatenate([self.g, np.zeros(self.k)])

    def coupling(self) -> sp.csr_matrix:
        """``[-C, I]``: the rows of ``v - C y = 0``."""
        return sp.hstack([sp.csr_matrix(-self.C), sp.identity(self.k, format="csr")],
                         format="csr")

    def selectors(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``[0, I]`` (picks ``v``) and ``[I, 0]`` (picks ``y``)."""
        n, k = self.n, self.k
        pick_v = sp.hstack([sp.csr_matrix((k, n)), sp.identity(k, format="csr")], format="csr")
        pick_y = sp.hstack([sp.identity(n, format="csr"), sp.csr_matrix((n, k))], format="csr")
        return pick_v, pick_y

    def p_block(self) -> sp.csr_matrix:
        return sp.csr_matrix(np.concatenate([self.p_row, np.zeros(self.k)])[None, :])

    def x(self, z: np.ndarray) -> np.ndarray:
        return self.x_scale * z[:self.n]

    def duals(self, upper: np.ndarray, lower: np.ndarray, p: float | None) -> np.ndarray:
        """Multipliers of the standard-form rows ``A x <= b``, unscaled, from the scaled
        multipliers of ``v <= v_hi``, ``v >= v_lo`` and the substation row."""
        parts = [upper, lower] + ([np.atleast_1d(p)] if p is not None else [])
        return self.row_scale * np.maximum(np.concatenate(parts), 0.0)


def _solve_clarabel(scaled: _Scaled, options: dict) -> tuple[str, int, np.ndarray | None,
                                                               np.ndarray | None]:
    """CLARABEL on ``A z + s = b``: the coupling rows in the zero cone, every bound and the
    substation row in the nonnegative cone (their duals are the multipliers, >= 0)."""
    P, q = scaled.objective()
    pick_v, pick_y = scaled.selectors()
    blocks = [scaled.coupling(), pick_v, -pick_v, -pick_y, pick_y]
    b = [np.zeros(scaled.k), scaled.v_hi, -scaled.v_lo, -scaled.lo, scaled.hi]
    if scaled.p_row is not None:
        blocks.append(scaled.p_block())
        b.append(np.atleast_1d(scaled.p_max))
    A = sp.vstack(blocks, format="csc")
    b = np.concatenate(b)
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    for key, value in options.items():
        setattr(settings, key, value)
    result = clarabel.DefaultSolver(P, q, A, b, [clarabel.ZeroConeT(scaled.k),
                                                 clarabel.NonnegativeConeT(len(b) - scaled.k)],
                                    settings).solve()
    status = CLARABEL_STATUS.get(str(result.status), "failed")
    if status != "optimal":
        return status, int(result.iterations), None, None
    z, dual = np.asarray(result.x), np.asarray(result.z)
    k = scaled.k
    p = dual[-1] if scaled.p_row is not None else None
    return status, int(result.iterations), z, scaled.duals(dual[k:2 * k], dual[2 * k:3 * k], p)


def _solve_osqp(scaled: _Scaled, options: dict, warm_x: np.ndarray | None
                ) -> tuple[str, int, np.ndarray | None, np.ndarray | None]:
    """OSQP on ``l <= A z <= u``; a row's dual is positive at its upper bound, negative at
    its lower one."""
    P, q = scaled.objective()
    pick_v, pick_y = scaled.selectors()
    blocks = [scaled.coupling(), pick_v, pick_y]
    lower = [np.zeros(scaled.k), scaled.v_lo, scaled.lo]
    upper = [np.zeros(scaled.k), scaled.v_hi, scaled.hi]
    if scaled.p_row is not None:
        blocks.append(scaled.p_block())
        lower.append([-np.inf])
        upper.append(np.atleast_1d(scaled.p_max))
    solver = osqp.OSQP()
    solver.setup(P, q, sp.vstack(blocks, format="csc"), np.concatenate(lower),
                 np.concatenate(upper), verbose=False, **options)
    if warm_x is not None:
        y = warm_x / scaled.x_scale
        solver.warm_start(x=np.concatenate([y, scaled.C @ y]))
    result = solver.solve(raise_error=False)
    status = OSQP_STATUS.get(result.info.status_val, "failed")
    if status != "optimal":
        return status, int(result.info.iter), None, None
    dual, k = np.asarray(result.y), scaled.k
    v_dual = dual[k:2 * k]
    p = dual[-1] if scaled.p_row is not None else None
    return status, int(result.info.iter), np.asarray(result.x), scaled.duals(
        np.maximum(v_dual, 0.0), np.maximum(-v_dual, 0.0), p)


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
    ROW_TOLERANCE_PU = 1e-8
    """A left-out limit exceeded by less than this holds (`RowGeneration`)."""

    def __init__(self, solver: str = "CLARABEL", screen: bool = True, **options) -> None:
        if solver not in SOLVER_OPTIONS:
            raise ValueError(f"central DOPF: solver {solver!r} not in {self.SUPPORTED_SOLVERS}")
        self.solver = solver
        self.options = {**SOLVER_OPTIONS[solver], **options}
        self.screen = screen
        self.rows = RowGeneration(self.ROW_TOLERANCE_PU)

    def solve(self, problem: DOPFProblem, warm_start: Solution | None = None) -> Solution:
        """Solve `problem`; a warm start's ``x`` seeds the solver (OSQP uses it)."""
        if not self.screen:
            return self._solve(problem, warm_start)
        return self.rows.solve(problem, self._solve, warm_start, size=bucket)

    def _solve(self, problem: DOPFProblem, warm_start: Solution | None) -> Solution:
        start = time.perf_counter()
        scaled = _Scaled(problem)
        warm_x = None
        if (warm_start is not None and warm_start.x.shape == scaled.x_scale.shape
                and bool(np.all(np.isfinite(warm_start.x)))):
            warm_x = warm_start.x
        try:
            if self.solver == "OSQP":
                status, iterations, z, duals = _solve_osqp(scaled, self.options, warm_x)
            else:
                status, iterations, z, duals = _solve_clarabel(scaled, self.options)
        except (ValueError, ArithmeticError, RuntimeError):
            return Solution.from_x(problem, None, "failed", 0, time.perf_counter() - start)
        if z is None or not np.all(np.isfinite(z)):
            return Solution.from_x(problem, None, status if z is None else "failed",
                                   iterations, time.perf_counter() - start)
        return Solution.from_x(problem, scaled.x(z), status, iterations,
                               time.perf_counter() - start, duals)
