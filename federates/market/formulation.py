"""The clearing LP as solved: the same optimum as `clearing`'s epigraph LP, written so that
HiGHS finds it faster, and the tie-break among optimal clearings.

An entity whose groups each depend on one interval is a one-dimensional concave function per
interval; its cuts become segments between breakpoints (and at 0), one bounded variable each,
in the balance rows only. Coupled entities (batteries) keep their cuts, each written relative
to the group's componentwise median slope ``m_j``: with ``s_j = u_j + m_j . kw`` the row is
``u_j - (g_k - m_j) . kw <= a_k``, about 4 nonzeros instead of n + 1.

Segments are *settled* (constants, full or empty) where an optimal price puts them: a segment
whose slope is above ``p_t`` is full in every optimal clearing, one below it empty. The LP is
solved over a *window* of free segments and checked: a settled segment the final prices put
on the wrong side is freed and the LP solved again, from the basis it ended with, until none
is; the optimum is then that of the LP with every segment free (same reduced costs). Windows:

1. segments settled whatever the coupled entities do (from the range of their total rights);
2. with coupled cuts and many segments, a *coarse* LP first: each interval's free segments, by
   decreasing slope, in chunks of `CHUNK_SEGMENTS`, each chunk one column (total length, mean
   slope). Chunks whose segments all lie on one side of its prices are settled, unless next
   to one that does not; the others form the window. The LP over it starts from the coarse
   basis, the chunks' fills spread over their segments (the same point, so the start is
   primal feasible), and runs primal simplex: a few hundred iterations.

Measured on 1,000 entities over 24 intervals (289 batteries): the plain epigraph LP took 18 s,
one LP over every free segment 1.9-2.6 s; the coarse LP takes 0.45-0.85 s (6,000-7,800 dual
simplex iterations, nearly all for the batteries' cuts: no HiGHS option or starting basis
tried did much better), the window LP 0.05-0.1 s (docs/market.md).

Tie-breaking of ``kw``: a second LP takes, among optimal clearings (the optimal face,
written exactly by complementary slackness with the first LP's dual), the least total
transfer ``sum |kw|``, so rights no one values are not moved. The columns its bounds fix are
left out and HiGHS presolves the rest (starting from the first LP's basis was slower: the
face is large, 2,000-3,000 iterations either way). Everything is built in input order and
HiGHS is deterministic: the same bids give the same clearing.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from scipy import sparse

from gridsim.contracts.book import OrderBook
from gridsim.federates.market import highs
from gridsim.federates.market.highs import BASIC, LOWER, UPPER, Basis

FACE_RTOL = 1e-9
"""A first-LP multiplier above this fraction of the largest slope fixes its row or bound."""
CHUNK_SEGMENTS = 12
"""Segments per column of the coarse LP."""
COARSE_MIN_SEGMENTS = 4 * CHUNK_SEGMENTS
"""The coarse LP runs only if some interval has more free segments than this."""


class Formulation:
    """The LP as solved (module doc): segment columns, coupled kw columns, ``u`` columns."""

    def __init__(self, market: OrderBook) -> None:
        self.market = market
        n = market.n
        self.seg_entity, self.seg_t, self.seg_start, self.seg_length, self.seg_slope = \
            market.segments()
        self.entities = np.flatnonzero(market.coupled)
        self.cuts, self.groups, self.median, self.rows = market.coupled_rows()
        self.n_seg, self.n_kw, self.n_u = len(self.seg_t), len(self.entities) * n, \
            len(self.groups)
        group_columns = sparse.csr_matrix(
            (np.ones(len(self.cuts)),
             (np.arange(len(self.cuts)), np.searchsorted(self.groups,
                                                         market.cut_group[self.cuts]))),
            shape=(len(self.cuts), self.n_u))
        kw_balance = sparse.csr_matrix(
            (np.ones(self.n_kw), (np.arange(self.n_kw) % n, np.arange(self.n_kw))),
            shape=(n, self.n_kw))
        self.coupled_columns = sparse.vstack([
            sparse.hstack([self.rows, group_columns]),
            sparse.hstack([kw_balance, sparse.csr_matrix((n, self.n_u))])], format="csc")
        """Columns ``kw`` (coupled) and ``u`` of the LP; rows: coupled cuts, then balance."""
        self.balance_rhs = -market.lo[~market.coupled].sum(axis=0)
        self.kw_lo = market.lo[self.entities].ravel()
        self.kw_hi = market.hi[self.entities].ravel()
        weights = np.zeros((len(self.entities), n))
        np.add.at(weights, np.searchsorted(self.entities, market.group_entity[self.groups]),
                  self.median)
        self.kw_weight = weights.ravel()
        self.tol = FACE_RTOL * (1.0 + np.abs(market.g).max(initial=0.0))

    def kw(self, delta: np.ndarray, kw_coupled: np.ndarray) -> np.ndarray:
        """Rights of every entity from segment fills and coupled kw, kW (k x n)."""
        market = self.market
        kw = np.where(market.coupled[:, None], 0.0, market.lo)
        np.add.at(kw, (self.seg_entity, self.seg_t), delta)
        kw[self.entities] = kw_coupled.reshape(-1, market.n)
        return np.clip(kw, market.lo, market.hi) + 0.0

    def _settled_segments(self) -> tuple[np.ndarray, np.ndarray]:
        """Segments full, or empty, in some optimal clearing whatever the coupled entities do.

        In interval t the segments' total fill is the balance minus the coupled rights,
        so it lies in ``[rhs_t - sum max_kw, rhs_t - sum min_kw]`` over coupled entities; an
        optimal fill takes segments by decreasing slope, so those whose cumulative end is
        below the lowest fill are full, those starting beyond the highest are empty (with a
        margin, so that the segments at the fill stay free and every row keeps a column).
        """
        full, empty = np.zeros(self.n_seg, bool), np.zeros(self.n_seg, bool)
        coupled = self.market.coupled
        lowest = self.balance_rhs - self.market.hi[coupled].sum(axis=0)
        highest = self.balance_rhs - self.market.lo[coupled].sum(axis=0)
        order = np.lexsort((-self.seg_slope, self.seg_t))
        t = self.seg_t[order]
        end = np.cumsum(self.seg_length[order])
        first = np.searchsorted(t, np.arange(self.market.n))
        end -= np.r_[0.0, end][first][t]
        margin = 1e-9 * (1.0 + np.abs(self.market.lo).sum() + np.abs(self.market.hi).sum())
        full[order] = end < lowest[t] - margin
        empty[order] = end - self.seg_length[order] > highest[t] + margin
        return full, empty

    def _solve_value_lp(self, seg_t: np.ndarray, seg_slope: np.ndarray,
                        seg_length: np.ndarray, full: np.ndarray,
                        basis: Basis | None) -> highs.Solution | None:
        """Maximum total value with the given segment columns (one per entry of ``seg_t``)
        and the ``full`` segments as constants; rows: coupled cuts, then balance."""
        n, k, n_cuts = self.market.n, len(seg_t), len(self.cuts)
        rhs = self.balance_rhs - np.bincount(self.seg_t[full], self.seg_length[full],
                                             minlength=n)
        return highs.solve(
            -np.r_[seg_slope, self.kw_weight, np.ones(self.n_u)],
            self._with_segments(seg_t, self.coupled_columns),
            np.r_[np.full(n_cuts, -np.inf), rhs], np.r_[self.market.a[self.cuts], rhs],
            np.r_[np.zeros(k), self.kw_lo, np.full(self.n_u, -np.inf)],
            np.r_[seg_length, self.kw_hi, np.full(self.n_u, np.inf)], basis=basis,
            primal=basis is not None, devex=True)

    def _with_segments(self, seg_t: np.ndarray, columns: sparse.csc_matrix) -> sparse.csc_matrix:
        """``columns`` after one column per segment (1 in the balance row of its interval)."""
        k = len(seg_t)
        return sparse.csc_matrix(
            (np.r_[np.ones(k), columns.data], np.r_[len(self.cuts) + seg_t, columns.indices],
             np.r_[np.arange(k), k + columns.indptr]),
            shape=(columns.shape[0], k + columns.shape[1]))

    def _window_statuses(self, basis: Basis, window: np.ndarray, full: np.ndarray):
        """Status of every segment: from ``basis`` in the window, else full or empty."""
        status = np.where(full, UPPER, LOWER)
        status[window] = basis.columns[:int(window.sum())]
        return status

    def _chunks(self, window: np.ndarray):
        """The window's segments by interval and decreasing slope (``order``), the chunk of
        each (``chunk``, numbered in that order) and each chunk's first position."""
        index = np.flatnonzero(window)
        order = index[np.lexsort((-self.seg_slope[index], self.seg_t[index]))]
        t = self.seg_t[order]
        counts = np.bincount(t, minlength=self.market.n)
        rank = np.arange(len(order)) - np.r_[0, np.cumsum(counts)][t]
        offsets = np.r_[0, np.cumsum(-(-counts // CHUNK_SEGMENTS))]
        chunk = offsets[t] + rank // CHUNK_SEGMENTS
        return order, chunk, np.flatnonzero(np.r_[True, np.diff(chunk) != 0])

    def _coarse(self, full: np.ndarray, empty: np.ndarray, window: np.ndarray):
        """The coarse stage (module doc): ``(full, empty, window, basis)`` for the window
        LP, or the arguments unchanged and no basis if the coarse LP fails."""
        order, chunk, starts = self._chunks(window)
        length, slope = self.seg_length[order], self.seg_slope[order]
        chunk_length = np.add.reduceat(length, starts)
        chunk_t = self.seg_t[order][starts]
        coarse = self._solve_value_lp(chunk_t, np.add.reduceat(length * slope, starts)
                                      / chunk_length, chunk_length, full, None)
        if coarse is None:
            return full, empty, window, None
        price = -coarse.row_dual[len(self.cuts):][chunk_t]
        status, fill = coarse.basis.columns[:len(starts)], coarse.x[:len(starts)]
        one_side = (((status == UPPER) & (np.minimum.reduceat(slope, starts) > price + self.tol))
                    | ((status == LOWER) & (np.maximum.reduceat(slope, starts) < price - self.tol)))
        same_t = chunk_t[1:] == chunk_t[:-1]
        near = ~one_side
        near[1:] |= ~one_side[:-1] & same_t
        near[:-1] |= ~one_side[1:] & same_t
        full, empty, window = full.copy(), empty.copy(), window.copy()
        full[order] = (~near & (status == UPPER))[chunk]
        empty[order] = (~near & (status == LOWER))[chunk]
        window[order] = near[chunk]
        statuses = np.zeros(self.n_seg, dtype=int)
        statuses[order] = self._spread(chunk, starts, status, fill, length)
        basis = Basis(columns=np.r_[statuses[window], coarse.basis.columns[len(starts):]],
                      rows=coarse.basis.rows)
        return full, empty, window, basis

    @staticmethod
    def _spread(chunk: np.ndarray, starts: np.ndarray, status: np.ndarray, fill: np.ndarray,
                length: np.ndarray) -> np.ndarray:
        """Statuses of the segments (in chunk order) for the chunks' statuses and fills: a
        basic chunk's fill goes to its segments by decreasing slope, and the one it ends in
        is basic (the first one not full if it ends on a boundary)."""
        ends = np.cumsum(length)
        before = ends - length - np.r_[0.0, ends][starts][chunk]
        filled = np.clip(fill[chunk] - before, 0.0, length)
        spread = np.where(filled >= length, UPPER, np.where(filled <= 0.0, LOWER, BASIC))
        spread = np.where(status[chunk] == BASIC, spread, status[chunk])
        for c in np.flatnonzero(status == BASIC):
            members = np.flatnonzero(chunk == c)
            if not np.any(spread[members] == BASIC):
                open_ = members[spread[members] != UPPER]
                spread[open_[0] if len(open_) else members[-1]] = BASIC
        return spread

    def first(self) -> SimpleNamespace:
        """The first LP (maximum total value): ``delta`` (segment fills), ``kw`` (coupled),
        ``price``, ``mu`` (coupled cuts), ``upper`` and ``lower`` (coupled bound duals).

        Windows, settling and the check are in the module doc.
        """
        n, tol = self.market.n, self.tol
        full, empty = self._settled_segments()
        window = ~full & ~empty
        basis = None
        if len(self.cuts) and np.bincount(self.seg_t[window], minlength=n).max(
                initial=0) > COARSE_MIN_SEGMENTS:
            full, empty, window, basis = self._coarse(full, empty, window)
        while True:
            solution = self._solve_value_lp(self.seg_t[window], self.seg_slope[window],
                                            self.seg_length[window], full, basis)
            if solution is None and basis is not None:
                basis = None
                continue
            if solution is None:
                raise RuntimeError("clearing LP failed")
            price = -solution.row_dual[len(self.cuts):]
            reduced = self.seg_slope - price[self.seg_t]
            wrong = (full & (reduced < -tol)) | (empty & (reduced > tol))
            if not wrong.any():
                break
            status = self._window_statuses(solution.basis, window, full)
            coupled = solution.basis.columns[int(window.sum()):]
            full, empty, window = full & ~wrong, empty & ~wrong, window | wrong
            basis = Basis(columns=np.r_[status[window], coupled], rows=solution.basis.rows)
        n_window = int(window.sum())
        delta = np.where(full, self.seg_length, 0.0)
        delta[window] = solution.x[:n_window]
        columns = slice(n_window, n_window + self.n_kw)
        lower, upper = solution.bound_duals()
        return SimpleNamespace(
            delta=delta, kw=solution.x[columns], price=price,
            mu=-solution.row_dual[:len(self.cuts)], upper=-upper[columns],
            lower=lower[columns])

    def least_transfer(self, first) -> np.ndarray | None:
        """Among optimal clearings, the least ``sum |kw|`` (module doc); None if it fails.

        Segments the first LP's dual fixes (full or empty) become constants, so only the
        marginal ones remain; coupled ``kw = up - down`` with both parts >= 0. Segments lie
        on one side of 0, so ``|kw|`` is linear in their fills. The coupled cuts with a
        positive multiplier hold with equality; columns the bounds fix are left out.
        """
        tol, n_kw, n = self.tol, self.n_kw, self.market.n
        reduced = self.seg_slope - first.price[self.seg_t]
        seg_full = reduced > tol
        free = ~seg_full & ~(reduced < -tol)
        kw_up, kw_down, tight = first.upper > tol, first.lower > tol, first.mu > tol
        hi, lo = self.kw_hi, -self.kw_lo
        n_free = int(free.sum())
        kw_columns = self.coupled_columns[:, :n_kw]
        matrix = self._with_segments(self.seg_t[free], sparse.hstack(
            [kw_columns, -kw_columns, self.coupled_columns[:, n_kw:]], format="csc"))
        rhs = self.balance_rhs - np.bincount(self.seg_t[seg_full], self.seg_length[seg_full],
                                             minlength=n)
        b = self.market.a[self.cuts]
        col_lower = np.r_[np.zeros(n_free), np.where(kw_up, hi, 0.0), np.where(kw_down, lo, 0.0),
                          np.full(self.n_u, -np.inf)]
        col_upper = np.r_[self.seg_length[free], np.where(kw_down, 0.0, hi),
                          np.where(kw_up, 0.0, lo), np.full(self.n_u, np.inf)]
        fixed = col_lower == col_upper
        x = np.where(fixed, col_lower, 0.0)
        shift = matrix[:, fixed] @ x[fixed]
        cost = np.r_[np.where(self.seg_start[free] >= 0, 1.0, -1.0), np.ones(2 * n_kw),
                     np.zeros(self.n_u)]
        result = highs.solve(cost[~fixed], matrix[:, ~fixed],
                             np.r_[np.where(tight, b, -np.inf), rhs] - shift,
                             np.r_[b, rhs] - shift, col_lower[~fixed], col_upper[~fixed])
        if result is None:
            return None
        x[~fixed] = result.x
        delta = np.where(seg_full, self.seg_length, 0.0)
        delta[free] = x[:n_free]
        x = x[n_free:]
        return self.kw(delta, x[:n_kw] - x[n_kw:2 * n_kw])
