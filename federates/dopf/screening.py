"""Exact screening of the DOPF's voltage limits: solve with the few that can matter.

On IEEE 9500 a `DOPFProblem` has 9,501 nodes, each with two limits, against 356
variables, and at the optimum a few dozen limits bind. Both algorithms pay for every row
(the central QP's factorization grows with the square of the rows, the primal-dual
iteration linearly), so both solve a reduced problem, in two steps, each exact:

1. **Box screening** (`bindable`). Over the box ``lo <= x <= hi`` the highest |V| a node
   can reach is ``v(x0) + sum_j max(a_j (lo_j - x0_j), a_j (hi_j - x0_j))`` (``a`` its
   row of sensitivities, ``x0`` any point); if that is within the upper limit, the limit
   cannot bind for any ``x`` and is dropped; likewise the lower limit. A node without a
   limit (``inf``) is always dropped.
2. **Row generation** (`RowGeneration`). The problem is solved with the limits of a set S
   of nodes only. That is a relaxation: its optimum is a lower bound, and if every other
   node's limits hold there (within a tolerance), it is feasible, hence the optimum of the
   full problem (the objective is strictly convex: the same point). Otherwise the violated
   nodes join S and it is solved again. An infeasible relaxation proves the full problem
   infeasible. S starts from the nodes outside their limits with no action (no
   curtailment, no shedding, reactive output as it is) or at the warm start's ``x``, and
   the nodes near a limit at the previous optimum of a problem of the same size.

Measured on IEEE 9500 at noon (PV x3, ``bench/dopf.py``; 9,427 nodes with limits, 139 of
them outside with no action): box screening keeps 7,684 nodes (7,124 upper limits, 920
lower: curtailing every PV and absorbing every kvar moves voltages a long way) in 30 ms;
row generation solves with 136-152, in one round (two at some steps). The same on IEEE
123's noon problem: 245 of 274 nodes, then 5 (central: 16, its smallest size). What it
saves each algorithm is in its own doc.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from gridsim.federates.dopf.problem import DOPFProblem, Solution

NEAR_PU = 2e-3
"""A node within this margin (p.u.) of a limit at the previous optimum or at the warm start
is in the first set S (it saves rounds; exactness does not depend on it)."""
MAX_ROUNDS = 20
"""Rounds of row generation before it falls back to every node that box screening kept."""

ReducedSolve = Callable[[DOPFProblem, Solution | None], Solution]
"""An algorithm's solve of a reduced problem, with a warm start mapped to its rows."""


def bindable(problem: DOPFProblem) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the nodes whose upper (first) and lower (second) limit can bind for some
    ``x`` in the box (module doc, step 1)."""
    lo, hi = problem.bounds
    x0 = np.clip(no_action(problem), lo, hi)
    v = problem.voltages_pu(x0)
    down, up = lo - x0, hi - x0
    rise, fall = np.zeros_like(v), np.zeros_like(v)
    for matrix, sign, block in ((problem.vp_pu_per_kw, -1.0, slice(0, problem.n_pv)),
                                (problem.vq_pu_per_kvar, 1.0,
                                 slice(problem.n_pv, 2 * problem.n_pv)),
                                (problem.vs_pu_per_kw, 1.0, slice(2 * problem.n_pv, None))):
        pos, neg = np.clip(sign * matrix, 0.0, None), np.clip(sign * matrix, None, 0.0)
        rise += pos @ up[block] + neg @ down[block]
        fall += pos @ down[block] + neg @ up[block]
    return v + rise > problem.v_max_pu, v + fall < problem.v_min_pu


def no_action(problem: DOPFProblem) -> np.ndarray:
    """``x`` with no curtailment, no shedding and the reactive output as it is."""
    return np.concatenate([np.zeros(problem.n_pv), problem.q0_kvar, np.zeros(problem.n_load)])


def margins(problem: DOPFProblem, x: np.ndarray) -> np.ndarray:
    """Distance of each node's |V| at ``x`` to its nearer limit, p.u. (< 0: violated)."""
    v = problem.voltages_pu(x)
    return np.minimum(problem.v_max_pu - v, v - problem.v_min_pu)


def full_rows(nodes: np.ndarray, problem: DOPFProblem) -> np.ndarray:
    """Standard-form rows of the full problem that the problem restricted to `nodes` keeps,
    in the restricted problem's order."""
    n = problem.n_node
    extra = [2 * n] if problem.p_sub_max_kw is not None else []
    return np.concatenate([nodes, n + nodes, extra]).astype(int)


class RowGeneration:
    """Row generation (module doc, step 2) around an algorithm's solve of a reduced problem.

    ``tolerance`` (p.u.): how far a left-out limit may be exceeded at the relaxation's
    optimum and still count as holding (the algorithm's own feasibility tolerance).
    ``rounds`` and ``nodes`` describe the last solve.
    """

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.rounds = 0
        self.nodes = np.zeros(0, dtype=int)
        self._near: dict[int, np.ndarray] = {}

    def solve(self, problem: DOPFProblem, solve_reduced: ReducedSolve,
              warm_start: Solution | None = None,
              size: Callable[[int], int] = lambda k: k) -> Solution:
        """Solve `problem` through `solve_reduced`. Each round's set is filled up to
        ``size(len(S))`` nodes with the next nearest to a limit (an algorithm whose cost
        is per built size pads with real nodes, which may save a round, not dummies)."""
        start = time.perf_counter()
        upper, lower = bindable(problem)
        candidates = np.flatnonzero(upper | lower)
        first, nearest = self._start(problem, candidates, warm_start)
        nodes = np.union1d(first, np.intersect1d(
            self._near.get(problem.n_node, np.zeros(0, dtype=int)), candidates))
        iterations, self.rounds = 0, 0
        while True:
            self.rounds += 1
            if self.rounds > MAX_ROUNDS:
                nodes = candidates
            nodes = _filled(nodes, nearest, size(len(nodes)))
            reduced, rows = problem.restrict_nodes(nodes), full_rows(nodes, problem)
            solution = solve_reduced(reduced, _mapped(warm_start, problem, rows))
            iterations += solution.iterations
            if solution.status != "optimal":
                break
            violated = candidates[margins(problem, solution.x)[candidates] < -self.tolerance]
            missing = np.setdiff1d(violated, nodes)
            if missing.size == 0:
                self._near[problem.n_node] = nodes[
                    margins(problem, solution.x)[nodes] < NEAR_PU]
                break
            nodes = np.union1d(nodes, missing)
        self.nodes = nodes
        duals = None
        if solution.duals is not None:
            duals = np.zeros(_n_rows(problem))
            duals[rows] = solution.duals
        return Solution.from_x(problem, solution.x, solution.status, iterations,
                               time.perf_counter() - start, duals)

    @staticmethod
    def _start(problem: DOPFProblem, candidates: np.ndarray,
               warm_start: Solution | None) -> tuple[np.ndarray, np.ndarray]:
        """The first set S among `candidates` (violated with no action, or near a limit at
        the warm start), and every candidate, nearest to a limit first."""
        lo, hi = problem.bounds
        margin = margins(problem, np.clip(no_action(problem), lo, hi))[candidates]
        first = margin < 0.0
        if warm_start is not None and warm_start.x.shape == lo.shape \
                and np.all(np.isfinite(warm_start.x)):
            at_warm = margins(problem, np.clip(warm_start.x, lo, hi))[candidates]
            first |= at_warm < NEAR_PU
            margin = np.minimum(margin, at_warm)
        return candidates[first], candidates[np.argsort(margin, kind="stable")]


def _n_rows(problem: DOPFProblem) -> int:
    """Rows of the problem's standard form."""
    return 2 * problem.n_node + (problem.p_sub_max_kw is not None)


def _filled(nodes: np.ndarray, nearest: np.ndarray, size: int) -> np.ndarray:
    """`nodes` and then the first of `nearest` not in them, up to `size` nodes in all."""
    if size <= len(nodes):
        return nodes
    extra = nearest[~np.isin(nearest, nodes)][:size - len(nodes)]
    return np.union1d(nodes, extra)


def _mapped(warm_start: Solution | None, problem: DOPFProblem,
            rows: np.ndarray) -> Solution | None:
    """The warm start (a solution of the full `problem`) with its duals on the `rows` the
    reduced problem keeps."""
    if warm_start is None:
        return None
    duals = None
    if warm_start.duals is not None and warm_start.duals.size == _n_rows(problem):
        duals = warm_start.duals[rows]
    return replace(warm_start, duals=duals)
