"""The price rule: deterministic prices among the optimal ones, and the multipliers that go
with them (the dual half of the clearing's certificate).

The optimal prices form a polytope; ``p`` is chosen in it interval by interval, in order:
``p_t`` is the midpoint of its optimal range given ``p_0 .. p_t-1`` (the lowest end when the
range has no upper end; prices below 0 are excluded, as every bid is nondecreasing). The
range follows from complementary slackness at the cleared ``kw``: one-dimensional groups,
and coupled entities with one active cut, bound ``p_t`` directly (a box); every other coupled
entity confines the prices to the affine hull of its active slopes, and a coordinate those
hulls leave no freedom is fixed without an LP. Only for the others two LPs (min and max
``p_t`` over the dual's optimal set) are solved. The multipliers going with the chosen prices
are then computed per entity (closed form for one-dimensional groups, non-negative least
squares for coupled ones). Should any of this fail numerically, HiGHS's dual of the first LP
is used (`solver_dual`) and the clearing's ``price_rule`` says ``"solver-dual"``.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from scipy import sparse
from scipy.optimize import linprog, nnls

from gridsim.contracts.book import OrderBook
from gridsim.federates.market.formulation import Formulation

ACTIVE_RTOL = 1e-7
"""A cut or bound is active when its slack is below this fraction of its scale."""


def active(market: OrderBook, kw: np.ndarray, groups: np.ndarray):
    """Active cuts (slack within tolerance of the group's value) and active bounds."""
    scale = 1.0 + np.abs(market.a) + np.einsum("kn,kn->k", np.abs(market.g),
                                              np.abs(kw[market.cut_entity]))
    slack = market.cut_values(kw) - groups[market.cut_group]
    at_upper = kw >= market.hi - ACTIVE_RTOL * (1.0 + np.abs(market.hi))
    at_lower = kw <= market.lo + ACTIVE_RTOL * (1.0 + np.abs(market.lo))
    return slack <= ACTIVE_RTOL * scale, at_upper, at_lower


class PriceSet:
    """The optimal prices at the cleared ``kw``, by complementary slackness (module doc):
    a box from one-dimensional groups and single-cut coupled entities, plus an LP system
    ``A [p, mu, beta+, beta-] = b`` for the other coupled entities."""

    def __init__(self, market: OrderBook, form: Formulation, kw: np.ndarray) -> None:
        self.market, n = market, market.n
        self.active, self.at_upper, self.at_lower = active(market, kw, market.group_values(kw))
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
        if neither the box nor `free_directions` fixes it: every optimal price lies in
        ``start + span(free directions)``, and a coordinate those directions do not move
        is fixed at ``start``'s value.
        """
        n = self.market.n
        bounds = np.c_[np.maximum(self.low, 0.0), self.high]
        ranges = np.zeros((n, 2))
        tol = ACTIVE_RTOL * (1.0 + np.abs(self.market.g).max(initial=0.0))
        base, free = start.astype(float), None
        if len(self.hard):
            free = free_directions(self.market, self.active, self.at_upper | self.at_lower,
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
                base, free = restrict(base, free, t, price)
        return bounds[:, 0], ranges

    def _entity_dual(self, e: int, price: np.ndarray, mu, upper, lower) -> bool:
        """Multipliers of hard entity ``e`` giving ``price`` (non-negative least squares);
        False if none do (residual above tolerance)."""
        market, n = self.market, self.market.n
        span = market.entity_cuts(e)
        cuts = span.start + np.flatnonzero(self.active[span])
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


def free_directions(market: OrderBook, active: np.ndarray, at_bound: np.ndarray,
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
        span = market.entity_cuts(e)
        cuts = span.start + np.flatnonzero(active[span])
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


def restrict(base: np.ndarray, free: np.ndarray, t: int, price: float):
    """The affine set ``base + span(free)`` cut by ``p_t = price``."""
    row = free[t]
    norm2 = float(row @ row)
    if norm2 <= 1e-16:
        return base, free
    base = base + free @ (row * (price - base[t]) / norm2)
    base[t] = price
    _, _, vt = np.linalg.svd(row[None, :], full_matrices=True)
    return base, free @ vt[1:].T


def solver_dual(prices: PriceSet, form: Formulation, first):
    """HiGHS's dual of the first LP, completed for the one-dimensional groups:
    ``(p, ranges (nan), mu, beta+, beta-)``."""
    n = form.market.n
    price = first.price
    mu, upper, lower = prices.dual(price, coupled=False)
    mu[form.cuts] = first.mu
    upper[form.entities] = first.upper.reshape(-1, n)
    lower[form.entities] = first.lower.reshape(-1, n)
    return price, np.full((n, 2), np.nan), mu, upper, lower
