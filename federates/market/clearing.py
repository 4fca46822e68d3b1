"""Market clearing: the LP of the paper's (3), its optimality certificate and the prices.

With bids ``v_i(kw) = sum_j min_{k in j} (a_k + g_k . kw)`` (`guidance.Bid`), the clearing
LP, with one epigraph variable ``s_j`` per group of cuts, is::

    maximize  sum_j s_j
    s.t.      s_j - g_k . kw_i <= a_k         for every cut k of group j of entity i  (mu_k)
              sum_i kw_i,t = 0                for every interval t (the supply is fixed) (p_t)
              -UB_i,t <= kw_i,t <= max_kw_i,t                             (beta+, beta-)

Its dual: minimize ``sum mu_k a_k + sum beta+ max_kw - sum beta- min_kw`` subject to
``mu, beta >= 0``, ``sum_{k in j} mu_k = 1`` for every group and, for every entity and
interval, ``sum_k mu_k g_k,t - p_t - beta+_i,t + beta-_i,t = 0``. A primal point, a dual
point and a zero gap prove optimality; `verify_certificate` checks the three with arithmetic
only, on this formulation. ``p_t`` is the price of one kW of rights over the whole interval
t, $ per kW (divide by the interval's hours for $/kWh). Every bid is 0 at ``kw = 0``, so the
objective is the cooperation benefit.

How it is solved (the same optimum, written so that HiGHS finds it faster): an entity whose
groups each depend on one interval is a one-dimensional concave function per interval; its
cuts become segments between breakpoints (and at 0), one bounded variable each, in the
balance rows only, and segments full (or empty) whatever the coupled entities do are
constants. Coupled entities (batteries) keep their cuts, each written relative to the
group's componentwise median slope ``m_j``: with ``s_j = u_j + m_j . kw`` the row is
``u_j - (g_k - m_j) . kw <= a_k``, about 4 nonzeros instead of n + 1. Measured on 1,000
entities over 24 intervals (a third with batteries): the plain epigraph LP took 18 s, this
one 1.1-3.2 s, nearly all of it the coupled entities' cuts (see docs/market.md).

Tie-breaking of ``kw``: a second LP takes, among optimal clearings (the optimal face,
written exactly by complementary slackness with the first LP's dual), the least total
transfer ``sum |kw|``, so rights no one values are not moved; the result is the vertex
HiGHS returns for LPs built in input order: the same bids give the same clearing.

Price rule: the optimal prices form a polytope; ``p`` is chosen in it interval by interval,
in order: ``p_t`` is the midpoint of its optimal range given ``p_0 .. p_t-1`` (the lowest
end when the range has no upper end; prices below 0 are excluded, as every bid is
nondecreasing). The range follows from complementary slackness at the cleared ``kw``:
one-dimensional groups, and coupled entities with one active cut, bound ``p_t`` directly (a
box); every other coupled entity confines the prices to the affine hull of its active
slopes, and a coordinate those hulls leave no freedom is fixed without an LP. Only for the
others two LPs (min and max ``p_t`` over the dual's optimal set) are solved. The multipliers
going with the chosen prices are then computed per entity (closed form for one-dimensional
groups, non-negative least squares for coupled ones). Should any of this fail numerically,
HiGHS's dual of the first LP is used and ``price_rule`` says ``"solver-dual"``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace

import numpy as np
from gridsim.federates.market.guidance import Bid
from scipy import sparse
from scipy.optimize import linprog, nnls

ACTIVE_RTOL = 1e-7
"""A cut or bound is active when its slack is below this fraction of its scale."""
FACE_RTOL = 1e-9
"""A first-LP multiplier above this fraction of the largest slope fixes its row or bound."""


class Market:
    """All bids as flat arrays: the cuts of every entity stacked in input order, and the
    derived views the LPs need (groups, segments of one-dimensional groups, coupled rows).
    ``coupled`` marks the entities not made of exactly one group per interval (batteries)."""

    def __init__(self, bids: Sequence[Bid]) -> None:
        self.bids = tuple(bids)
        if not self.bids or len({b.n_intervals for b in self.bids}) != 1:
            raise ValueError("need at least one bid, all over the same intervals")
        self.n = self.bids[0].n_intervals
        self.lo = np.array([b.min_kw for b in self.bids])
        self.hi = np.array([b.max_kw for b in self.bids])
        if np.any(self.lo > 0) or np.any(self.hi < 0):
            raise ValueError("every bid must allow kw = 0 (min_kw <= 0 <= max_kw)")
        self.a = np.concatenate([b.intercept_usd for b in self.bids])
        self.g = np.vstack([b.slope_usd_per_kw for b in self.bids])
        self.cut_entity = np.repeat(np.arange(len(self.bids)),
                                    [len(b.intercept_usd) for b in self.bids])
        self.group_offsets = np.cumsum([0] + [len(b.group_interval) for b in self.bids])
        self.cut_group = np.concatenate([b.group + offset for b, offset
                                         in zip(self.bids, self.group_offsets)])
        self.group_interval = np.concatenate([b.group_interval for b in self.bids])
        self.group_starts = np.flatnonzero(np.r_[True, np.diff(self.cut_group) != 0])
        self.group_entity = self.cut_entity[self.group_starts]
        self.coupled = np.array([bool(np.any(np.sort(b.group_interval) != np.arange(self.n)))
                                 for b in self.bids])

    def cut_values(self, kw: np.ndarray) -> np.ndarray:
        """``a_k + g_k . kw_i`` of every cut, $."""
        return self.a + np.einsum("kn,kn->k", self.g, kw[self.cut_entity])

    def group_values(self, kw: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(self.cut_values(kw), self.group_starts)

    def entity_values(self, group_values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(group_values, self.group_offsets[:-1])

    def plain_slopes(self) -> np.ndarray:
        """Slope of every cut in its group's interval (meaningless for coupled groups)."""
        return self.g[np.arange(len(self.a)), self.group_interval[self.cut_group]]

    def segments(self):
        """Segments of the one-dimensional groups: ``(entity, interval, start_kw,
        length_kw, slope)``, each group's in increasing ``kw`` from ``min_kw`` to ``max_kw``.

        Breakpoints are every crossing of two of the group's lines inside the domain, its
        ends and 0; the slope of a segment is that of the line lowest at its middle.
        """
        plain = np.flatnonzero(~self.coupled[self.group_entity])
        counts = np.diff(np.r_[self.group_starts, len(self.a)])[plain]
        width = int(counts.max(initial=1))
        index = self.group_starts[plain][:, None] + np.minimum(np.arange(width),
                                                               counts[:, None] - 1)
        a, s = self.a[index], self.plain_slopes()[index]
        entity, t = self.group_entity[plain], self.group_interval[plain]
        lo, hi = self.lo[entity, t][:, None], self.hi[entity, t][:, None]
        i, j = np.triu_indices(width, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = (a[:, j] - a[:, i]) / (s[:, i] - s[:, j])
        cross = np.where(np.isfinite(cross), cross, lo)
        points = np.sort(np.clip(np.hstack([lo, np.zeros_like(lo), hi, cross]), lo, hi), axis=1)
        start, length = points[:, :-1], np.diff(points, axis=1)
        middle = (start + length / 2)[:, :, None]
        lowest = np.argmin(a[:, None, :] + s[:, None, :] * middle, axis=2)
        slope = np.take_along_axis(s, lowest, axis=1)
        keep = length > 1e-12 * (1.0 + np.abs(lo) + np.abs(hi))
        rows = np.nonzero(keep)[0]
        return entity[rows], t[rows], start[keep], length[keep], slope[keep]

    def coupled_rows(self):
        """Coupled cuts relative to their group's median slope ``m_j``: ``(cuts, m (per
        coupled group), sparse -(g_k - m_j) on kw columns of the coupled entities)``."""
        entities = np.flatnonzero(self.coupled)
        cuts = np.flatnonzero(self.coupled[self.cut_entity])
        groups = np.unique(self.cut_group[cuts])
        ends = np.r_[self.group_starts[1:], len(self.a)]
        median = np.array([np.median(self.g[self.group_starts[j]:ends[j]], axis=0)
                           for j in groups]).reshape(-1, self.n)
        position = np.searchsorted(groups, self.cut_group[cuts])
        delta = self.g[cuts] - median[position]
        delta[np.abs(delta) <= 1e-12 * (1.0 + np.abs(self.g[cuts]))] = 0.0
        column_of = np.full(len(self.bids), -1)
        column_of[entities] = np.arange(len(entities)) * self.n
        r, c = np.nonzero(delta)
        rows = sparse.csr_matrix((-delta[r, c], (r, column_of[self.cut_entity[cuts]][r] + c)),
                                 shape=(len(cuts), len(entities) * self.n))
        return cuts, groups, median, rows


@dataclass(frozen=True, eq=False)
class Clearing:
    """The cleared market, with a dual solution that certifies it (module doc)."""

    entity_ids: tuple[str, ...]
    kw: np.ndarray
    """Rights received (> 0) or given up (< 0), kW (n_entities x n_intervals)."""
    group_value_usd: np.ndarray
    """``s_j`` of every group (all entities, in order), $."""
    value_usd: np.ndarray
    """``v_i(kw_i)`` of every entity, $."""
    objective_usd: float
    """``sum_i v_i(kw_i)``: the cooperation benefit by the bids, $."""
    price_usd_per_kw: np.ndarray
    """``p_t``, $ per kW of rights over interval t (n)."""
    price_range_usd_per_kw: np.ndarray
    """Optimal range of each ``p_t`` given the earlier prices (n x 2; nan if not computed)."""
    cut_dual: np.ndarray
    """``mu_k`` of every cut (all entities, in order)."""
    upper_dual_usd_per_kw: np.ndarray
    """``beta+`` of ``kw <= max_kw`` (n_entities x n_intervals)."""
    lower_dual_usd_per_kw: np.ndarray
    """``beta-`` of ``kw >= min_kw`` (n_entities x n_intervals)."""
    price_rule: str
    """``"midpoint"`` or ``"solver-dual"`` (module doc)."""
    solve_time_s: float


class _Formulation:
    """The LP as solved (module doc): segment columns, coupled kw columns, ``u`` columns."""

    def __init__(self, market: Market) -> None:
        self.market = market
        n = market.n
        self.seg_entity, self.seg_t, self.seg_start, self.seg_length, self.seg_slope = \
            market.segments()
        self.entities = np.flatnonzero(market.coupled)
        self.cuts, self.groups, self.median, self.rows = market.coupled_rows()
        self.n_seg, self.n_kw, self.n_u = len(self.seg_t), len(self.entities) * n, \
            len(self.groups)
        self.group_columns = sparse.csr_matrix(
            (np.ones(len(self.cuts)),
             (np.arange(len(self.cuts)), np.searchsorted(self.groups,
                                                         market.cut_group[self.cuts]))),
            shape=(len(self.cuts), self.n_u))
        self.seg_balance = sparse.csr_matrix(
            (np.ones(self.n_seg), (self.seg_t, np.arange(self.n_seg))), shape=(n, self.n_seg))
        self.kw_balance = sparse.csr_matrix(
            (np.ones(self.n_kw), (np.arange(self.n_kw) % n, np.arange(self.n_kw))),
            shape=(n, self.n_kw))
        self.balance_rhs = -market.lo[~market.coupled].sum(axis=0)
        self.kw_lo = market.lo[self.entities].ravel()
        self.kw_hi = market.hi[self.entities].ravel()
        weights = np.zeros((len(self.entities), n))
        np.add.at(weights, np.searchsorted(self.entities, market.group_entity[self.groups]),
                  self.median)
        self.kw_weight = weights.ravel()

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

    def first(self) -> SimpleNamespace:
        """The first LP (maximum total value): ``delta`` (segment fills), ``kw`` (coupled),
        ``price``, ``mu`` (coupled cuts), ``upper`` and ``lower`` (coupled bound duals).

        Settled segments are constants; if the dual found prices one of them wrongly
        (its slope on the wrong side of the price), it is freed and the LP solved again.
        """
        n, tol = self.market.n, FACE_RTOL * (1.0 + np.abs(self.market.g).max(initial=0.0))
        full, empty = self._settled_segments()
        while True:
            free = ~full & ~empty
            n_free = int(free.sum())
            a_ub = sparse.hstack([sparse.csr_matrix((len(self.cuts), n_free)), self.rows,
                                  self.group_columns], format="csr")
            a_eq = sparse.hstack([self.seg_balance[:, free], self.kw_balance,
                                  sparse.csr_matrix((n, self.n_u))], format="csr")
            rhs = self.balance_rhs - np.bincount(self.seg_t[full], self.seg_length[full],
                                                 minlength=n)
            bounds = np.vstack([np.c_[np.zeros(n_free), self.seg_length[free]],
                                np.c_[self.kw_lo, self.kw_hi],
                                np.tile([-np.inf, np.inf], (self.n_u, 1))])
            cost = -np.r_[self.seg_slope[free], self.kw_weight, np.ones(self.n_u)]
            result = linprog(cost, A_ub=a_ub if len(self.cuts) else None,
                             b_ub=self.market.a[self.cuts] if len(self.cuts) else None,
                             A_eq=a_eq, b_eq=rhs, bounds=bounds, method="highs")
            if result.status != 0:
                raise RuntimeError(f"clearing LP failed: {result.message}")
            price = -result.eqlin.marginals
            reduced = self.seg_slope - price[self.seg_t]
            wrong = (full & (reduced < -tol)) | (empty & (reduced > tol))
            if not wrong.any():
                break
            full, empty = full & ~wrong, empty & ~wrong
        delta = np.where(full, self.seg_length, 0.0)
        delta[free] = result.x[:n_free]
        x = result.x[n_free:]
        size = self.n_kw
        return SimpleNamespace(
            delta=delta, kw=x[:size], price=price,
            mu=-result.ineqlin.marginals if len(self.cuts) else np.zeros(0),
            upper=-result.upper.marginals[n_free:n_free + size],
            lower=result.lower.marginals[n_free:n_free + size])

    def least_transfer(self, first) -> np.ndarray | None:
        """Among optimal clearings, the least ``sum |kw|`` (module doc); None if it fails.

        Segments the first LP's dual fixes (full or empty) become constants, so only the
        marginal ones remain; coupled ``kw = up - down`` with both parts >= 0. Segments lie
        on one side of 0, so ``|kw|`` is linear in their fills.
        """
        tol = FACE_RTOL * (1.0 + np.abs(self.market.g).max(initial=0.0))
        n_kw, n = self.n_kw, self.market.n
        reduced = self.seg_slope - first.price[self.seg_t]
        seg_full = reduced > tol
        free = ~seg_full & ~(reduced < -tol)
        kw_up, kw_down, tight = first.upper > tol, first.lower > tol, first.mu > tol
        hi, lo = self.kw_hi, -self.kw_lo
        bounds = np.vstack([
            np.c_[np.zeros(free.sum()), self.seg_length[free]],
            np.c_[np.where(kw_up, hi, 0.0), np.where(kw_down, 0.0, hi)],
            np.c_[np.where(kw_down, lo, 0.0), np.where(kw_up, 0.0, lo)],
            np.tile([-np.inf, np.inf], (self.n_u, 1))])
        n_free = int(free.sum())
        rows = sparse.hstack([sparse.csr_matrix((len(self.cuts), n_free)), self.rows, -self.rows,
                              self.group_columns], format="csr")
        balance = sparse.hstack([self.seg_balance[:, free], self.kw_balance, -self.kw_balance,
                                 sparse.csr_matrix((n, self.n_u))], format="csr")
        rhs = self.balance_rhs - np.bincount(self.seg_t[seg_full], self.seg_length[seg_full],
                                             minlength=n)
        cost = np.r_[np.where(self.seg_start[free] >= 0, 1.0, -1.0), np.ones(2 * n_kw),
                     np.zeros(self.n_u)]
        b = self.market.a[self.cuts]
        result = linprog(cost, A_ub=rows[~tight] if (~tight).any() else None,
                         b_ub=b[~tight] if (~tight).any() else None,
                         A_eq=sparse.vstack([balance, rows[tight]], format="csr"),
                         b_eq=np.r_[rhs, b[tight]], bounds=bounds, method="highs")
        if result.status != 0:
            return None
        delta = np.where(seg_full, self.seg_length, 0.0)
        delta[free] = result.x[:n_free]
        x = result.x[n_free:]
        return self.kw(delta, x[:n_kw] - x[n_kw:2 * n_kw])


def _active(market: Market, kw: np.ndarray, groups: np.ndarray):
    """Active cuts (slack within tolerance of the group's value) and active bounds."""
    scale = 1.0 + np.abs(market.a) + np.einsum("kn,kn->k", np.abs(market.g),
                                              np.abs(kw[market.cut_entity]))
    slack = market.cut_values(kw) - groups[market.cut_group]
    at_upper = kw >= market.hi - ACTIVE_RTOL * (1.0 + np.abs(market.hi))
    at_lower = kw <= market.lo + ACTIVE_RTOL * (1.0 + np.abs(market.lo))
    return slack <= ACTIVE_RTOL * scale, at_upper, at_lower


class _PriceSet:
    """The optimal prices at the cleared ``kw``, by complementary slackness (module doc):
    a box from one-dimensional groups and single-cut coupled entities, plus an LP system
    ``A [p, mu, beta+, beta-] = b`` for the other coupled entities."""

    def __init__(self, market: Market, form: _Formulation, kw: np.ndarray) -> None:
        self.market, n = market, market.n
        self.active, self.at_upper, self.at_lower = _active(market, kw,
                                                            market.group_values(kw))
        starts, group = market.group_starts, market.cut_group
        slope = market.plain_slopes()
        self.by_min = np.lexsort((np.where(self.active, slope, np.inf), group))[starts]
        self.by_max = np.lexsort((np.where(self.active, -slope, np.inf), group))[starts]
        self.plain = ~market.coupled[market.group_entity]
        e, t = market.group_entity[self.plain], market.group_interval[self.plain]
        self.low, self.high = np.full(n, -np.inf), np.full(n, np.inf)
        np.maximum.at(self.low, t, np.where(self.at_upper[e, t], -np.inf,
                                            slope[self.by_min][self.plain]))
        np.minimum.at(self.high, t, np.where(self.at_lower[e, t], np.inf,
                                             slope[self.by_max][self.plain]))
        n_active = np.add.reduceat(self.active.astype(int), starts)
        several = np.add.reduceat((n_active != 1).astype(int), market.group_offsets[:-1]) > 0
        self.simple = market.coupled & ~several
        self.q = np.zeros_like(kw)
        chosen = self.active & self.simple[market.cut_entity]
        np.add.at(self.q, market.cut_entity[chosen], market.g[chosen])
        for at, bound, fill, reduce in ((self.at_upper, self.low, -np.inf, np.maximum),
                                        (self.at_lower, self.high, np.inf, np.minimum)):
            limits = np.where(at, fill, self.q)[self.simple]
            if len(limits):
                bound[:] = reduce(bound, reduce.reduce(limits, axis=0))
        self.hard = np.flatnonzero(market.coupled & several)
        self.form = form

    @cached_property
    def system(self):
        """``(A, b, cuts, (entity, t) of beta+, (entity, t) of beta-)`` of the hard entities."""
        market, n, form = self.market, self.market.n, self.form
        entities = self.hard
        cuts = np.flatnonzero(self.active & np.isin(market.cut_entity, entities))
        position = np.searchsorted(form.entities, entities)
        columns = (position[:, None] * n + np.arange(n)).ravel()
        delta_t = (-form.rows[np.searchsorted(form.cuts, cuts)][:, columns]).T.tocsr()
        groups, group_row = np.unique(market.cut_group[cuts], return_inverse=True)
        up_e, up_t = np.nonzero(self.at_upper[entities])
        lo_e, lo_t = np.nonzero(self.at_lower[entities])
        n_rows, n_mu, n_up, n_lo = len(entities) * n, len(cuts), len(up_e), len(lo_e)
        prices = sparse.csr_matrix((-np.ones(n_rows), (np.arange(n_rows), np.arange(n_rows) % n)),
                                   shape=(n_rows, n))
        up = sparse.csr_matrix((-np.ones(n_up), (up_e * n + up_t, np.arange(n_up))),
                               shape=(n_rows, n_up))
        lo = sparse.csr_matrix((np.ones(n_lo), (lo_e * n + lo_t, np.arange(n_lo))),
                               shape=(n_rows, n_lo))
        sums = sparse.csr_matrix((np.ones(n_mu), (group_row, np.arange(n_mu))),
                                 shape=(len(groups), n_mu))
        a_eq = sparse.vstack([sparse.hstack([prices, delta_t, up, lo]),
                              sparse.hstack([sparse.csr_matrix((len(groups), n)), sums,
                                             sparse.csr_matrix((len(groups), n_up + n_lo))])],
                             format="csr")
        b_eq = np.r_[-form.kw_weight.reshape(-1, n)[position].ravel(), np.ones(len(groups))]
        return a_eq, b_eq, cuts, (entities[up_e], up_t), (entities[lo_e], lo_t)

    def _solve(self, cost: np.ndarray, price_bounds: np.ndarray):
        a_eq, b_eq = self.system[:2]
        bounds = np.vstack([price_bounds, np.tile([0.0, np.inf], (a_eq.shape[1] - len(cost), 1))])
        return linprog(np.r_[cost, np.zeros(a_eq.shape[1] - len(cost))], A_eq=a_eq, b_eq=b_eq,
                       bounds=bounds, method="highs")

    def midpoints(self, start: np.ndarray):
        """``(p, ranges)`` by the sequential midpoint rule, or None if an LP fails.

        ``start`` is any optimal price vector (HiGHS's). Two LPs are run for ``p_t`` only
        if neither the box nor `_free_directions` fixes it: every optimal price lies in
        ``start + span(free directions)``, and a coordinate those directions do not move
        is fixed at ``start``'s value.
        """
        n = self.market.n
        bounds = np.c_[np.maximum(self.low, 0.0), self.high]
        ranges = np.zeros((n, 2))
        tol = ACTIVE_RTOL * (1.0 + np.abs(self.market.g).max(initial=0.0))
        base, free = start.astype(float), None
        if len(self.hard):
            free = _free_directions(self.market, self.active, self.at_upper | self.at_lower,
                                    self.hard, bounds[:, 1] - bounds[:, 0] <= tol)
        for t in range(n):
            low, high = bounds[t]
            if free is not None and np.abs(free[t]).max(initial=0.0) <= 1e-8:
                low = high = base[t]
            elif free is not None and high - low > tol:
                ends = []
                for sign in (1.0, -1.0):
                    result = self._solve(sign * np.eye(n)[t], bounds)
                    if result.status not in (0, 3):
                        return None
                    ends.append(sign * result.fun if result.status == 0 else np.inf)
                low, high = ends
            if low > high + tol or not bounds[t, 0] - tol <= low <= bounds[t, 1] + tol:
                return None
            ranges[t] = low, high
            price = low if np.isinf(high) else 0.5 * (low + high)
            bounds[t] = price, price
            if free is not None:
                base, free = _restrict(base, free, t, price)
        return bounds[:, 0], ranges

    def _entity_dual(self, e: int, price: np.ndarray, mu, upper, lower) -> bool:
        """Multipliers of hard entity ``e`` giving ``price`` (non-negative least squares);
        False if none do (residual above tolerance)."""
        market, n = self.market, self.market.n
        cuts = np.flatnonzero(self.active & (market.cut_entity == e))
        _, group = np.unique(market.cut_group[cuts], return_inverse=True)
        up_t, lo_t = np.flatnonzero(self.at_upper[e]), np.flatnonzero(self.at_lower[e])
        m, n_up = len(cuts), len(up_t)
        matrix = np.zeros((n + group.max() + 1, m + n_up + len(lo_t)))
        matrix[:n, :m] = market.g[cuts].T
        matrix[n + group, np.arange(m)] = 1.0
        matrix[up_t, m + np.arange(n_up)] = -1.0
        matrix[lo_t, m + n_up + np.arange(len(lo_t))] = 1.0
        x, residual = nnls(matrix, np.r_[price, np.ones(group.max() + 1)])
        mu[cuts], upper[e, up_t], lower[e, lo_t] = x[:m], x[m:m + n_up], x[m + n_up:]
        return residual <= ACTIVE_RTOL * (1.0 + np.abs(price).max(initial=0.0)) * np.sqrt(n)

    def dual(self, price: np.ndarray, coupled: bool = True):
        """``(mu, beta+, beta-)`` going with ``price``, or None if a hard entity has none
        (``coupled=False``: hard entities left at 0)."""
        market = self.market
        mu = np.zeros(len(market.a))
        upper, lower = np.zeros_like(self.q), np.zeros_like(self.q)
        plain, slope = self.plain, market.plain_slopes()
        e, t = market.group_entity[plain], market.group_interval[plain]
        p = price[t]
        g_min, g_max = slope[self.by_min][plain], slope[self.by_max][plain]
        theta = np.clip((p - g_min) / np.where(g_max > g_min, g_max - g_min, 1.0), 0.0, 1.0)
        np.add.at(mu, self.by_min[plain], 1.0 - theta)
        np.add.at(mu, self.by_max[plain], theta)
        upper[e, t] = np.maximum(g_min - p, 0.0)
        lower[e, t] = np.maximum(p - g_max, 0.0)
        mu[self.active & self.simple[market.cut_entity]] = 1.0
        upper[self.simple] = np.maximum(self.q[self.simple] - price, 0.0)
        lower[self.simple] = np.maximum(price - self.q[self.simple], 0.0)
        if coupled:
            for e in self.hard:
                if not self._entity_dual(e, price, mu, upper, lower):
                    return None
        return mu, upper, lower


def _free_directions(market: Market, active: np.ndarray, at_bound: np.ndarray,
                     entities: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Orthonormal basis (n x d) of the directions optimal prices can move in.

    An entity's allowed prices lie in the affine hull of its active cuts' slopes (per
    group) plus the axes of its active bounds; every optimal price lies in all of them
    and has the ``fixed`` coordinates pinned. The normals of those hulls are stacked and the
    basis is what they leave free.
    """
    n = market.n
    normals = [np.eye(n)[fixed]]
    for e in entities:
        cuts = np.flatnonzero(active & (market.cut_entity == e))
        leaders = cuts[np.r_[True, np.diff(market.cut_group[cuts]) != 0]]
        lead = leaders[np.searchsorted(market.cut_group[leaders], market.cut_group[cuts])]
        span = np.vstack([market.g[cuts] - market.g[lead], np.eye(n)[at_bound[e]]]).T
        u, sv, _ = np.linalg.svd(span, full_matrices=True)
        rank = int(np.sum(sv > 1e-9 * max(1.0, sv.max(initial=0.0))))
        normals.append(u[:, rank:].T)
    stacked = np.vstack(normals)
    if len(stacked) > n:
        stacked = np.linalg.qr(stacked, mode="r")
    _, sv, vt = np.linalg.svd(stacked, full_matrices=True)
    rank = int(np.sum(sv > 1e-9 * max(1.0, sv.max(initial=0.0))))
    return vt[rank:].T


def _restrict(base: np.ndarray, free: np.ndarray, t: int, price: float):
    """The affine set ``base + span(free)`` cut by ``p_t = price``."""
    row = free[t]
    norm2 = float(row @ row)
    if norm2 <= 1e-16:
        return base, free
    base = base + free @ (row * (price - base[t]) / norm2)
    base[t] = price
    _, _, vt = np.linalg.svd(row[None, :], full_matrices=True)
    return base, free @ vt[1:].T


def _solver_dual(prices: _PriceSet, form: _Formulation, first):
    """HiGHS's dual of the first LP, completed for the one-dimensional groups."""
    n = form.market.n
    price = first.price
    mu, upper, lower = prices.dual(price, coupled=False)
    mu[form.cuts] = first.mu
    upper[form.entities] = first.upper.reshape(-1, n)
    lower[form.entities] = first.lower.reshape(-1, n)
    return price, np.full((n, 2), np.nan), mu, upper, lower


def clear(bids: Sequence[Bid], *, tie_break: bool = True,
          price_rule: str = "midpoint") -> Clearing:
    """Clear the market: rights, values, prices and the dual certificate.

    ``price_rule``: ``"midpoint"`` (module doc) or ``"solver-dual"`` (HiGHS's dual as is).
    """
    if price_rule not in ("midpoint", "solver-dual"):
        raise ValueError(f"unknown price rule {price_rule!r}; known: midpoint, solver-dual")
    start = time.perf_counter()
    market = Market(bids)
    form = _Formulation(market)
    first = form.first()
    kw = form.kw(first.delta, first.kw)
    if tie_break:
        second = form.least_transfer(first)
        kw = kw if second is None else second
    groups = market.group_values(kw)
    prices = _PriceSet(market, form, kw)
    dual, rule = None, "solver-dual"
    if price_rule == "midpoint":
        chosen = prices.midpoints(first.price)
        found = prices.dual(chosen[0]) if chosen is not None else None
        if found is not None:
            dual, rule = (chosen[0], chosen[1], *found), "midpoint"
    if dual is None:
        dual = _solver_dual(prices, form, first)
    price, price_range, mu, upper, lower = dual
    return Clearing(
        entity_ids=tuple(b.entity_id for b in market.bids), kw=kw, group_value_usd=groups,
        value_usd=market.entity_values(groups), objective_usd=float(groups.sum()),
        price_usd_per_kw=price, price_range_usd_per_kw=price_range, cut_dual=mu,
        upper_dual_usd_per_kw=upper, lower_dual_usd_per_kw=lower, price_rule=rule,
        solve_time_s=time.perf_counter() - start)


def best_total_value(bids: Sequence[Bid]) -> float:
    """Optimal ``sum_i v_i`` under the clearing's constraints (first LP only), $."""
    form = _Formulation(Market(bids))
    first = form.first()
    kw = form.kw(first.delta, first.kw)
    return float(form.market.group_values(kw).sum())


@dataclass(frozen=True)
class CertificateCheck:
    """What `verify_certificate` found; each violation is >= 0 and 0 if exactly met."""

    primal_violation_kw: float
    """Worst bound or balance violation, kW."""
    cut_violation_usd: float
    """Worst ``s_j - (a_k + g_k . kw)`` over cuts, $."""
    dual_violation_usd_per_kw: float
    """Worst negative multiplier or stationarity residual, $ per kW."""
    group_sum_violation: float
    """Worst ``|sum_{k in j} mu_k - 1|``."""
    gap_usd: float
    """Dual objective minus primal objective, $ (>= 0 up to rounding)."""
    tolerances: tuple[float, float, float, float]
    """(kW, $, $ per kW, unitless) limits used for ``ok``."""

    @property
    def ok(self) -> bool:
        kw_tol, usd_tol, price_tol, sum_tol = self.tolerances
        return (self.primal_violation_kw <= kw_tol and self.cut_violation_usd <= usd_tol
                and self.dual_violation_usd_per_kw <= price_tol
                and self.group_sum_violation <= sum_tol and abs(self.gap_usd) <= usd_tol)


def verify_certificate(bids: Sequence[Bid], clearing: Clearing,
                       rtol: float = 1e-6) -> CertificateCheck:
    """Check primal feasibility, dual feasibility and a zero gap, with arithmetic only.

    Tolerances are ``rtol`` times the problem's scale: ``1 + max |bound|`` kW,
    ``1 + max |g|`` $ per kW, and ``1 + sum |s_j| + sum |mu_k a_k| + sum |beta * bound|`` $.
    """
    market = Market(bids)
    kw, s, mu = clearing.kw, clearing.group_value_usd, clearing.cut_dual
    up, down = clearing.upper_dual_usd_per_kw, clearing.lower_dual_usd_per_kw
    primal = max(np.max(market.lo - kw, initial=0.0), np.max(kw - market.hi, initial=0.0),
                 np.max(np.abs(kw.sum(axis=0)), initial=0.0))
    cuts = np.max(s[market.cut_group] - market.cut_values(kw), initial=0.0)
    weighted = np.zeros_like(kw)
    np.add.at(weighted, market.cut_entity, mu[:, None] * market.g)
    stationarity = weighted - clearing.price_usd_per_kw[None, :] - up + down
    dual = max(np.max(-mu, initial=0.0), np.max(-up, initial=0.0), np.max(-down, initial=0.0),
               np.max(np.abs(stationarity), initial=0.0))
    sums = np.add.reduceat(mu, market.group_starts)
    dual_objective = mu @ market.a + np.sum(up * market.hi) - np.sum(down * market.lo)
    scale_usd = (1.0 + np.abs(s).sum() + np.abs(mu * market.a).sum()
                 + np.abs(up * market.hi).sum() + np.abs(down * market.lo).sum())
    bound_scale = max(np.abs(market.lo).max(), np.abs(market.hi).max())
    tolerances = (rtol * (1.0 + bound_scale), rtol * scale_usd,
                  rtol * (1.0 + np.abs(market.g).max(initial=0.0)), rtol)
    return CertificateCheck(
        primal_violation_kw=float(primal), cut_violation_usd=float(cuts),
        dual_violation_usd_per_kw=float(dual),
        group_sum_violation=float(np.max(np.abs(sums - 1.0), initial=0.0)),
        gap_usd=float(dual_objective - s.sum()), tolerances=tolerances)
