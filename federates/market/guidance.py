"""Decision guidance: an entity's microgrid as an LP, its value and its bid (the paper's (4)).

The microgrid LP over the n intervals of the horizon, for import caps ``cap = UB + kw``::

    maximize  h * sum_t ( sum_b value_b * served_b,t - cost_gen * gen_t )
    s.t.      import_t + gen_t + pv_t + discharge_t - charge_t - sum_b served_b,t = 0
              soc_t = soc_t-1 + eta_c * h * charge_t - h / eta_d * discharge_t   (soc_-1 given)
              import_t <= cap_t                     (the row whose dual prices the bound)
              0 <= served_b,t <= p_b,t;  0 <= gen_t <= G;  0 <= pv_t <= pv available
              0 <= charge_t, discharge_t <= P_bat;  soc_min <= soc_t <= E;
              soc_n-1 >= soc_final_min;  import_t >= 0 (no export: rights bound consumption)

Its optimal value ``V(cap)`` is concave in ``cap`` and the dual of each cap row is a
supergradient, in $ per kW of bound over that interval. The bid is relative to the
allocation: ``v(kw) = V(UB + kw) - V(UB)`` (so ``v(0) = 0``), on ``-UB <= kw <= max_kw`` with
``max_kw = max(max_import - UB, 0)`` (`Entity.max_import_kw`: demand plus battery charging).

A `Bid` (`gridsim.contracts.bid`, the market's contract with the auditor; exposed here too)
is a sum of groups of cuts, ``v(kw) = sum_j min_{k in j} (a_k + g_k . kw)``:

- separable entity (no battery): one group per interval, exact everywhere. Along an
  interval's cap ``x``, ``V_t`` bends only where the free supply (PV plus import) or the
  free supply plus the generator crosses a cumulative block size (blocks by decreasing
  value); a point in the middle of every piece between candidate bends gives that piece's
  slope (the dual is unique there). All intervals share the points, so an entity costs
  ``1 + max pieces`` points (at most ``2 * blocks + 4``).
- coupled entity (battery): one group of joint cuts ``V(UB + kw) + g . (kw' - kw)``, exact
  at its points and an upper bound elsewhere (concavity). The ``9 + 2n`` points: kw = 0;
  receiving 25, 50, 75, 100% of ``max_kw`` in every interval; giving up 25, 50, 75, 100%
  of ``UB`` in every interval (the whole allowed range along the uniform direction, where
  a shortage moves everyone together); and, per interval alone, receiving all of
  ``max_kw_t`` and giving up half of ``UB_t`` (how much the battery can shift one interval's
  change to the others). Duplicate points are solved once.

All of an entity's points are solved as one block-diagonal LP (`MicrogridLP.solve_many`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from gridsim.contracts.bid import Bid
from gridsim.federates.market.entities import Entity

__all__ = ["Bid", "Guidance", "MicrogridLP", "guidance", "value"]

RECEIVE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
GIVE_UP_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True, eq=False)
class MicrogridLP:
    """The LP of the module doc in ``linprog`` form (minimizing minus the value)."""

    entity: Entity
    cost: np.ndarray
    a_ub: sparse.csr_matrix
    a_eq: sparse.csr_matrix
    b_eq: np.ndarray
    bounds: np.ndarray
    columns: dict[str, slice]
    """Column ranges: ``served`` (blocks x intervals, block-major), ``gen``, ``pv``,
    ``charge``, ``discharge``, ``soc``, ``import`` (present components only)."""

    @classmethod
    def build(cls, entity: Entity) -> MicrogridLP:
        n, h = entity.n_intervals, entity.interval_h
        sizes = {"served": len(entity.blocks) * n, "gen": n if entity.generator else 0,
                 "pv": n if entity.pv_kw is not None else 0}
        if entity.battery is not None:
            sizes.update(charge=n, discharge=n, soc=n)
        sizes["import"] = n
        columns, start = {}, 0
        for name, size in sizes.items():
            if size:
                columns[name] = slice(start, start + size)
                start += size
        cost = np.zeros(start)
        bounds = np.zeros((start, 2))
        bounds[:, 1] = np.inf
        eye = sparse.identity(n, format="csr")
        blocks = sparse.hstack([-eye] * len(entity.blocks))
        parts = {"served": blocks, "gen": eye, "pv": eye, "charge": -eye, "discharge": eye,
                 "import": eye}
        balance = sparse.hstack([parts.get(name, sparse.csr_matrix((n, size)))
                                 for name, size in sizes.items() if size])
        cost[columns["served"]] = -h * np.concatenate(
            [np.full(n, block.value_usd_per_kwh) for block in entity.blocks])
        bounds[columns["served"], 1] = np.concatenate([block.p_kw for block in entity.blocks])
        if entity.generator is not None:
            cost[columns["gen"]] = h * entity.generator.cost_usd_per_kwh
            bounds[columns["gen"], 1] = entity.generator.capacity_kw
        if entity.pv_kw is not None:
            bounds[columns["pv"], 1] = entity.pv_kw
        rows, rhs = [balance], [np.zeros(n)]
        if entity.battery is not None:
            bat = entity.battery
            for name in ("charge", "discharge"):
                bounds[columns[name], 1] = bat.power_kw
            bounds[columns["soc"]] = (bat.soc_min_kwh, bat.energy_kwh)
            bounds[columns["soc"].stop - 1, 0] = bat.soc_final_min_kwh
            shift = sparse.eye(n, k=-1, format="csr")
            soc_parts = {"charge": -bat.charge_efficiency * h * eye,
                         "discharge": h / bat.discharge_efficiency * eye, "soc": eye - shift}
            rows.append(sparse.hstack([soc_parts.get(name, sparse.csr_matrix((n, size)))
                                       for name, size in sizes.items() if size]))
            rhs.append(np.r_[bat.soc_initial_kwh, np.zeros(n - 1)])
        a_ub = sparse.csr_matrix((np.ones(n), (np.arange(n), np.arange(start - n, start))),
                                 shape=(n, start))
        return cls(entity=entity, cost=cost, a_ub=a_ub, a_eq=sparse.vstack(rows, format="csr"),
                   b_eq=np.concatenate(rhs), bounds=bounds, columns=columns)

    def solve(self, cap_kw: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``(V(cap) in $, dV/dcap in $ per kW per interval, x)`` for caps >= 0 (kW)."""
        values, duals, xs = self.solve_many(np.asarray(cap_kw, dtype=float)[None, :])
        return float(values[0]), duals[0], xs[0]

    def solve_many(self, caps_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`solve` for every row of ``caps_kw`` (m x n) at once: one LP of m independent
        blocks (one HiGHS call instead of m: about 5 times faster for the cut points)."""
        caps = np.asarray(caps_kw, dtype=float)
        if np.any(caps < -1e-9):
            raise ValueError(f"{self.entity.entity_id}: import caps must be >= 0")
        m = len(caps)
        result = linprog(np.tile(self.cost, m), A_ub=sparse.block_diag([self.a_ub] * m, "csr"),
                         b_ub=np.maximum(caps, 0.0).ravel(),
                         A_eq=sparse.block_diag([self.a_eq] * m, "csr"),
                         b_eq=np.tile(self.b_eq, m), bounds=np.tile(self.bounds, (m, 1)),
                         method="highs")
        if result.status != 0:
            raise RuntimeError(f"{self.entity.entity_id}: microgrid LP failed: {result.message}")
        xs = result.x.reshape(m, -1)
        return -xs @ self.cost, -result.ineqlin.marginals.reshape(m, -1), xs

    def interval_value_usd(self, x: np.ndarray) -> np.ndarray:
        """Value earned in each interval by the solution ``x``, $."""
        n = self.entity.n_intervals
        terms = -self.cost * x
        value = terms[self.columns["served"]].reshape(-1, n).sum(axis=0)
        if "gen" in self.columns:
            value = value + terms[self.columns["gen"]]
        return value


def value(entity: Entity, ub_kw: np.ndarray, kw: np.ndarray | None = None) -> float:
    """Best value the entity reaches with import bounds ``ub_kw + kw`` (exact, one LP), $."""
    ub = np.asarray(ub_kw, dtype=float)
    return MicrogridLP.build(entity).solve(ub if kw is None else ub + kw)[0]


@dataclass(frozen=True, eq=False)
class Guidance:
    """An entity's bid and the private figures behind it."""

    bid: Bid
    ub_kw: np.ndarray
    standalone_usd: float
    """``V(UB)``: the best value without the market, $."""
    full_usd: float
    """Value with all demand served (`Entity.full_value_usd`), $."""
    points_kw: np.ndarray
    """Every ``kw`` solved exactly to make the cuts (m x n)."""
    points_value_usd: np.ndarray
    """``v`` at those points, exact (m)."""


def _bends_kw(entity: Entity, t: int, x_max: float) -> np.ndarray:
    """Caps of interval ``t`` where ``V_t`` may bend, with 0 and ``x_max`` (sorted, unique)."""
    order = np.argsort([-b.value_usd_per_kwh for b in entity.blocks], kind="stable")
    cumulative = np.r_[0.0, np.cumsum([entity.blocks[b].p_kw[t] for b in order])]
    free = cumulative - (entity.pv_kw[t] if entity.pv_kw is not None else 0.0)
    if entity.generator is not None:
        free = np.r_[free, free - entity.generator.capacity_kw]
    points = np.unique(np.clip(np.r_[0.0, free, x_max], 0.0, x_max))
    keep = np.r_[True, np.diff(points) > 1e-9 * (1.0 + x_max)]
    return points[keep]


def _separable_cuts(lp: MicrogridLP, ub: np.ndarray, x_max: np.ndarray):
    """Exact per-interval cuts (module doc); returns cut arrays and the solved points."""
    n = len(ub)
    mids = []
    for t in range(n):
        bends = _bends_kw(lp.entity, t, x_max[t])
        mids.append((bends[:-1] + bends[1:]) / 2 if len(bends) > 1 else bends)
    count = max(len(m) for m in mids)
    caps = np.array([ub] + [[m[min(j, len(m) - 1)] for m in mids] for j in range(count)])
    totals, duals, xs = lp.solve_many(caps)
    base, base_t = totals[0], lp.interval_value_usd(xs[0])
    a, g, group, points, values = [], [], [], [], []
    per_t = [[] for _ in range(n)]
    for j, (cap, total, dual, x) in enumerate(zip(caps, totals, duals, xs)):
        points.append(cap - ub)
        values.append(total - base)
        gain_t = lp.interval_value_usd(x) - base_t
        for t in range(n):
            if 0 < j <= len(mids[t]):
                slope = dual[t] if x_max[t] > 0 else 0.0
                per_t[t].append((gain_t[t] - slope * (cap[t] - ub[t]), slope))
    for t in range(n):
        for intercept, slope in per_t[t]:
            row = np.zeros(n)
            row[t] = slope
            a.append(intercept)
            g.append(row)
            group.append(t)
    return (a, g, group, np.arange(n), points, values), base


def _joint_points(ub: np.ndarray, max_kw: np.ndarray) -> list[np.ndarray]:
    """The ``9 + 2n`` points of the module doc, duplicates removed, in a fixed order."""
    candidates = [np.zeros_like(ub)]
    candidates += [f * max_kw for f in RECEIVE_FRACTIONS]
    candidates += [-f * ub for f in GIVE_UP_FRACTIONS]
    for t in range(len(ub)):
        for amount in (max_kw[t], -0.5 * ub[t]):
            point = np.zeros_like(ub)
            point[t] = amount
            candidates.append(point)
    unique: dict[bytes, np.ndarray] = {}
    for point in candidates:
        point = point + 0.0
        unique.setdefault(point.tobytes(), point)
    return list(unique.values())


def _joint_cuts(lp: MicrogridLP, ub: np.ndarray, max_kw: np.ndarray):
    """One group of joint cuts at `_joint_points`; the first point is kw = 0."""
    points = _joint_points(ub, max_kw)
    totals, duals, _ = lp.solve_many(ub + np.array(points))
    base = totals[0]
    a = [total - base - dual @ kw for total, dual, kw in zip(totals, duals, points)]
    g = list(duals)
    values = list(totals - base)
    return (a, g, [0] * len(a), np.array([-1]), points, values), base


def _unique_cuts(a, g, group, group_interval, points, values):
    """The cuts without repeats within a group (tangent planes taken in the same linear
    piece of ``V`` coincide: about a quarter of a battery entity's cuts), first kept."""
    a, g, group = np.array(a, dtype=float), np.array(g, dtype=float), np.array(group)
    grid = 1e-9 * (1.0 + np.abs(a).max(initial=0.0) + np.abs(g).max(initial=0.0))
    key = np.round(np.c_[group, a / grid, g / grid])
    _, first = np.unique(key, axis=0, return_index=True)
    keep = np.sort(first)
    return a[keep], g[keep], group[keep], group_interval, points, values


def guidance(entity: Entity, ub_kw: np.ndarray) -> Guidance:
    """The entity's bid for allocation ``ub_kw`` (kW per interval), and its private figures."""
    ub = np.asarray(ub_kw, dtype=float)
    if ub.shape != (entity.n_intervals,) or np.any(ub < 0):
        raise ValueError(f"{entity.entity_id}: ub_kw must be {entity.n_intervals} values >= 0")
    lp = MicrogridLP.build(entity)
    x_max = np.maximum(entity.max_import_kw, ub)
    max_kw = x_max - ub
    if entity.separable:
        cuts, standalone = _separable_cuts(lp, ub, x_max)
    else:
        cuts, standalone = _joint_cuts(lp, ub, max_kw)
    a, g, group, group_interval, points, values = _unique_cuts(*cuts)
    bid = Bid(entity_id=entity.entity_id, min_kw=-ub, max_kw=max_kw,
              intercept_usd=a, slope_usd_per_kw=g, group=group,
              group_interval=np.asarray(group_interval))
    return Guidance(bid=bid, ub_kw=ub, standalone_usd=standalone, full_usd=entity.full_value_usd,
                    points_kw=np.array(points), points_value_usd=np.array(values))
