"""HiGHS through highspy: an LP from arrays, solved from scratch or from a starting basis.

SciPy's `linprog` runs HiGHS too but hides the basis, and the clearing needs it: its LPs are
solved in stages, each started from the optimal basis of the one before (`formulation`).
highspy is installed with cvxpy and distopf, both dependencies of the project.

The LP is ``minimize cost . x`` subject to ``row_lower <= A x <= row_upper`` and
``col_lower <= x <= col_upper`` (``np.inf`` for no bound). Basis statuses are small ints,
as HiGHS numbers them: `LOWER`, `BASIC`, `UPPER` (and `ZERO` for a free nonbasic column).
Duals follow HiGHS: ``col_dual = cost - A' row_dual`` (reduced costs of the minimization).
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
from scipy import sparse

LOWER, BASIC, UPPER, ZERO = 0, 1, 2, 3
"""Basis statuses, HiGHS's numbering (`highspy.HighsBasisStatus`)."""

_STATUS = {int(s.value): s for s in (highspy.HighsBasisStatus.kLower,
                                     highspy.HighsBasisStatus.kBasic,
                                     highspy.HighsBasisStatus.kUpper,
                                     highspy.HighsBasisStatus.kZero,
                                     highspy.HighsBasisStatus.kNonbasic)}


@dataclass(frozen=True, eq=False)
class Basis:
    """Status of every column and every row (int arrays, `LOWER` ... `ZERO`)."""

    columns: np.ndarray
    rows: np.ndarray


@dataclass(frozen=True, eq=False)
class Solution:
    """An optimal basic solution."""

    x: np.ndarray
    row_dual: np.ndarray
    col_dual: np.ndarray
    basis: Basis

    def bound_duals(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)``: each column's reduced cost where it is nonbasic at that bound,
        0 elsewhere (as `scipy.optimize.linprog` splits them into ``lower`` and ``upper``)."""
        status = self.basis.columns
        return (np.where(status == LOWER, self.col_dual, 0.0),
                np.where(status == UPPER, self.col_dual, 0.0))


def solve(cost: np.ndarray, matrix: sparse.csc_matrix, row_lower: np.ndarray,
          row_upper: np.ndarray, col_lower: np.ndarray, col_upper: np.ndarray, *,
          basis: Basis | None = None, primal: bool = False,
          devex: bool = False) -> Solution | None:
    """Solve the LP of the module doc by simplex (dual, or ``primal``), from ``basis`` if
    one is given (HiGHS then skips presolve); None unless HiGHS proves it optimal.
    ``devex``: Devex pricing in the dual simplex instead of HiGHS's choice."""
    matrix = sparse.csc_matrix(matrix)
    n_rows, n_cols = matrix.shape
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("simplex_strategy", 4 if primal else 1)
    if devex:
        highs.setOptionValue("simplex_dual_edge_weight_strategy", 1)
    # Column-wise matrix (1), minimize (1), no offset; all columns continuous (0).
    highs.passModel(n_cols, n_rows, matrix.nnz, 1, 1, 0.0, *(
        np.asarray(v, dtype=float) for v in (cost, col_lower, col_upper, row_lower, row_upper)),
        matrix.indptr[:-1].astype(np.int32), matrix.indices.astype(np.int32),
        matrix.data.astype(float), np.zeros(n_cols, dtype=np.int32))
    if basis is not None:
        start = highspy.HighsBasis()
        start.col_status = [_STATUS[s] for s in basis.columns.tolist()]
        start.row_status = [_STATUS[s] for s in basis.rows.tolist()]
        highs.setBasis(start)
    highs.run()
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    solution, final = highs.getSolution(), highs.getBasis()
    return Solution(
        x=np.array(solution.col_value), row_dual=np.array(solution.row_dual),
        col_dual=np.array(solution.col_dual),
        basis=Basis(columns=np.fromiter(map(int, final.col_status), int, n_cols),
                    rows=np.fromiter(map(int, final.row_status), int, n_rows)))
