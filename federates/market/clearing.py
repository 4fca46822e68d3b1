"""Market clearing: the LP of the paper's (3), its optimality certificate and the prices.

With bids ``v_i(kw) = sum_j min_{k in j} (a_k + g_k . kw)`` (`gridsim.contracts.bid.Bid`),
the clearing LP, with one epigraph variable ``s_j`` per group of cuts, is::

    maximize  sum_j s_j
    s.t.      s_j - g_k . kw_i <= a_k         for every cut k of group j of entity i  (mu_k)
              sum_i kw_i,t = 0                for every interval t (the supply is fixed) (p_t)
              -UB_i,t <= kw_i,t <= max_kw_i,t                             (beta+, beta-)

Its dual: minimize ``sum mu_k a_k + sum beta+ max_kw - sum beta- min_kw`` subject to
``mu, beta >= 0``, ``sum_{k in j} mu_k = 1`` for every group and, for every entity and
interval, ``sum_k mu_k g_k,t - p_t - beta+_i,t + beta-_i,t = 0``. A primal point, a dual
point and a zero gap prove optimality (`gridsim.contracts.certificate.verify_certificate`,
which the auditor runs too). ``p_t`` is the price of one kW of rights over the whole
interval t, $ per kW (divide by the interval's hours for $/kWh). Every bid is 0 at
``kw = 0``, so the objective is the cooperation benefit.

`clear` runs the steps, each in its own module: the bids as flat arrays
(`gridsim.contracts.book.OrderBook`), the LP as solved and the tie-break to the least
transfer (`formulation`), the prices and their multipliers (`prices`). `OrderBook` and
`verify_certificate` are re-exported here, where callers have always found them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gridsim.contracts.bid import Bid
from gridsim.contracts.book import OrderBook
from gridsim.contracts.certificate import CertificateCheck, verify_certificate
from gridsim.federates.market.formulation import Formulation
from gridsim.federates.market.prices import PriceSet, solver_dual

__all__ = ["CertificateCheck", "Clearing", "OrderBook", "best_total_value", "clear",
           "verify_certificate"]


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
    """``"midpoint"`` or ``"solver-dual"`` (`prices`)."""
    solve_time_s: float


def clear(bids: Sequence[Bid], *, tie_break: bool = True,
          price_rule: str = "midpoint") -> Clearing:
    """Clear the market: rights, values, prices and the dual certificate.

    ``price_rule``: ``"midpoint"`` (`prices`) or ``"solver-dual"`` (HiGHS's dual as is).
    """
    if price_rule not in ("midpoint", "solver-dual"):
        raise ValueError(f"unknown price rule {price_rule!r}; known: midpoint, solver-dual")
    start = time.perf_counter()
    market = OrderBook(bids)
    form = Formulation(market)
    first = form.first()
    kw = form.kw(first.delta, first.kw)
    if tie_break:
        second = form.least_transfer(first)
        kw = kw if second is None else second
    groups = market.group_values(kw)
    prices = PriceSet(market, form, kw)
    dual, rule = None, "solver-dual"
    if price_rule == "midpoint":
        chosen = prices.midpoints(first.price)
        found = prices.dual(chosen[0]) if chosen is not None else None
        if found is not None:
            dual, rule = (chosen[0], chosen[1], *found), "midpoint"
    if dual is None:
        dual = solver_dual(prices, form, first)
    price, price_range, mu, upper, lower = dual
    return Clearing(
        entity_ids=tuple(b.entity_id for b in market.bids), kw=kw, group_value_usd=groups,
        value_usd=market.entity_values(groups), objective_usd=float(groups.sum()),
        price_usd_per_kw=price, price_range_usd_per_kw=price_range, cut_dual=mu,
        upper_dual_usd_per_kw=upper, lower_dual_usd_per_kw=lower, price_rule=rule,
        solve_time_s=time.perf_counter() - start)


def best_total_value(bids: Sequence[Bid]) -> float:
    """Optimal ``sum_i v_i`` under the clearing's constraints (first LP only), $."""
    form = Formulation(OrderBook(bids))
    first = form.first()
    kw = form.kw(first.delta, first.kw)
    return float(form.market.group_values(kw).sum())
