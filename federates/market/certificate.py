"""The clearing's optimality certificate, checked with arithmetic only (no solver).

A `clearing.Clearing` carries a primal point (``kw``, ``s_j``) and a dual point (``p``,
``mu``, ``beta+``, ``beta-``) of the epigraph LP written in `clearing`'s module doc. Primal
feasibility, dual feasibility and a zero gap between the two objectives prove the clearing
optimal; `verify_certificate` checks the three on the bids as signed, so the auditor can
repeat it without trusting the market's solver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gridsim.federates.market.book import OrderBook
from gridsim.federates.market.guidance import Bid

if TYPE_CHECKING:
    from gridsim.federates.market.clearing import Clearing


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

    ``clearing`` is a `clearing.Clearing` or anything with its ``kw``, ``group_value_usd``,
    ``price_usd_per_kw``, ``cut_dual``, ``upper_dual_usd_per_kw`` and
    ``lower_dual_usd_per_kw``. Tolerances are ``rtol`` times the problem's scale:
    ``1 + max |bound|`` kW, ``1 + max |g|`` $ per kW, and
    ``1 + sum |s_j| + sum |mu_k a_k| + sum |beta * bound|`` $.
    """
    market = OrderBook(bids)
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
