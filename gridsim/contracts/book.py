"""The order book: every bid of a market as flat arrays, and the views the clearing needs.

The market's clearing (the market federate's `clearing` module) solves over it and
`gridsim.contracts.certificate.verify_certificate` checks over it, so both read the bids the
same way. Bids (`gridsim.contracts.bid.Bid`) are stacked in input order: cut ``k`` has
intercept ``a_k`` ($) and slope ``g_k`` ($ per kW in every interval), belongs to entity
``cut_entity[k]`` and to group ``cut_group[k]`` (numbered across all entities). An entity is
*coupled* (a battery) unless it is made of exactly one group per interval; the groups of the
others each depend on one interval and are one-dimensional concave functions, which
`OrderBook.segments` turns into segments between breakpoints. `OrderBook.coupled_rows` writes
the coupled cuts relative to their group's median slope (the market federate's `formulation`
module explains why).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gridsim.contracts.bid import Bid


class OrderBook:
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
        k = len(self.bids)
        self.cut_offsets = np.cumsum([0] + [len(b.intercept_usd) for b in self.bids])
        self.cut_entity = np.repeat(np.arange(k), np.diff(self.cut_offsets))
        self.group_offsets = np.cumsum([0] + [len(b.group_interval) for b in self.bids])
        self.cut_group = np.concatenate([b.group + offset for b, offset
                                         in zip(self.bids, self.group_offsets)])
        self.group_interval = np.concatenate([b.group_interval for b in self.bids])
        self.group_starts = np.flatnonzero(np.r_[True, np.diff(self.cut_group) != 0])
        self.group_entity = self.cut_entity[self.group_starts]
        counts = np.diff(self.group_offsets)
        owner = np.repeat(np.arange(k), counts)
        place = np.arange(len(owner)) - self.group_offsets[owner]
        misplaced = self.group_interval[np.lexsort((self.group_interval, owner))] != place
        self.coupled = (counts != self.n) | (np.bincount(owner, misplaced, minlength=k) > 0)
        """Entities not made of exactly one group per interval (batteries)."""

    def entity_cuts(self, entity: int) -> slice:
        """The cuts of one entity (they are contiguous)."""
        return slice(self.cut_offsets[entity], self.cut_offsets[entity + 1])

    def cut_values(self, kw: np.ndarray) -> np.ndarray:
        """``a_k + g_k . kw_i`` of every cut, $."""
        return self.a + np.einsum("kn,kn->k", self.g, kw[self.cut_entity])

    def group_values(self, kw: np.ndarray) -> np.ndarray:
        """``s_j = min_{k in j} (a_k + g_k . kw_i)`` of every group, $."""
        return np.minimum.reduceat(self.cut_values(kw), self.group_starts)

    def entity_values(self, group_values: np.ndarray) -> np.ndarray:
        """``v_i``: the sum of each entity's group values, $."""
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
        """Coupled cuts relative to their group's median slope ``m_j``: ``(cuts, coupled
        groups, m_j of each, sparse -(g_k - m_j) on the kw columns of the coupled entities)``.

        Only the market's LP needs this view; SciPy is loaded here, not with the module, so a
        checker that reads the book loads no SciPy."""
        from scipy import sparse

        entities = np.flatnonzero(self.coupled)
        cuts = np.flatnonzero(self.coupled[self.cut_entity])
        groups = np.unique(self.cut_group[cuts])
        median = self._group_medians(groups)
        position = np.searchsorted(groups, self.cut_group[cuts])
        delta = self.g[cuts] - median[position]
        delta[np.abs(delta) <= 1e-12 * (1.0 + np.abs(self.g[cuts]))] = 0.0
        column_of = np.full(len(self.bids), -1)
        column_of[entities] = np.arange(len(entities)) * self.n
        r, c = np.nonzero(delta)
        rows = sparse.csr_matrix((-delta[r, c], (r, column_of[self.cut_entity[cuts]][r] + c)),
                                 shape=(len(cuts), len(entities) * self.n))
        return cuts, groups, median, rows

    def _group_medians(self, groups: np.ndarray) -> np.ndarray:
        """Componentwise median slope of each of ``groups`` (as `numpy.median`), len x n."""
        starts = self.group_starts[groups]
        sizes = np.r_[self.group_starts[1:], len(self.a)][groups] - starts
        padded = np.full((len(groups), int(sizes.max(initial=1)), self.n), np.inf)
        row = np.repeat(np.arange(len(groups)), sizes)
        column = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        padded[row, column] = self.g[np.repeat(starts, sizes) + column]
        padded.sort(axis=1)
        rows = np.arange(len(groups))
        return (padded[rows, (sizes - 1) // 2] + padded[rows, sizes // 2]) / 2
