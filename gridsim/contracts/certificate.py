"""The clearing's optimality certificate, checked with arithmetic only (no solver).

A clearing (the market federate's `clearing.Clearing`) carries a primal point (``kw``,
``s_j``) and a dual point (``p``, ``mu``, ``beta+``, ``beta-``) of the epigraph LP written in
docs/market.md. Primal feasibility, dual feasibility and a zero gap between the two
objectives prove the clearing optimal; `verify_certificate` checks the three on the bids as
signed, so the auditor can repeat it without trusting the market's solver.

On the wire the certificate is `gridsim.messages.Certificate`, with the same names as here;
`PrimalDual` converts both ways, and refuses a certificate whose shapes do not fit the bids
(so a malformed one is reported as failing, not as an arithmetic error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gridsim import messages as m
from gridsim.contracts.bid import Bid
from gridsim.contracts.book import OrderBook


class SupportsPrimalDual(Protocol):
    """What a certificate holds; the market's `Clearing` and `PrimalDual` both have it."""

    @property
    def kw(self) -> np.ndarray:
        """Rights per entity and interval, kW (n_entities x n_intervals)."""

    @property
    def group_value_usd(self) -> np.ndarray:
        """``s_j`` of every group (all entities, in order), $."""

    @property
    def price_usd_per_kw(self) -> np.ndarray:
        """``p_t``, $ per kW of rights over interval t."""

    @property
    def cut_dual(self) -> np.ndarray:
        """``mu_k`` of every cut (all entities, in order)."""

    @property
    def upper_dual_usd_per_kw(self) -> np.ndarray:
        """``beta+`` of ``kw <= max_kw`` (n_entities x n_intervals)."""

    @property
    def lower_dual_usd_per_kw(self) -> np.ndarray:
        """``beta-`` of ``kw >= min_kw`` (n_entities x n_intervals)."""

    @property
    def objective_usd(self) -> float:
        """``sum_j s_j``, $."""


@dataclass(frozen=True, eq=False)
class PrimalDual:
    """A certificate as arrays (`SupportsPrimalDual`), as read from a message."""

    kw: np.ndarray
    group_value_usd: np.ndarray
    price_usd_per_kw: np.ndarray
    cut_dual: np.ndarray
    upper_dual_usd_per_kw: np.ndarray
    lower_dual_usd_per_kw: np.ndarray
    objective_usd: float

    @classmethod
    def from_message(cls, certificate: m.Certificate, bids: Sequence[Bid]) -> PrimalDual:
        """The certificate of a `MarketClearing`, for `bids` (in its entity order); raises
        ValueError if its shapes are not those of the bids' market."""
        try:
            out = cls(
                kw=np.asarray(certificate.kw, dtype=float),
                group_value_usd=np.asarray(certificate.group_value_usd, dtype=float),
                price_usd_per_kw=np.asarray(certificate.price_usd_per_kw, dtype=float),
                cut_dual=np.asarray(certificate.cut_dual, dtype=float),
                upper_dual_usd_per_kw=np.asarray(certificate.upper_dual_usd_per_kw, dtype=float),
                lower_dual_usd_per_kw=np.asarray(certificate.lower_dual_usd_per_kw, dtype=float),
                objective_usd=float(certificate.objective_usd))
        except ValueError as exc:
            raise ValueError(f"certificate: ragged arrays ({exc})") from exc
        n_entities, n = len(bids), bids[0].n_intervals if bids else 0
        expected = {"kw": (n_entities, n), "upper_dual_usd_per_kw": (n_entities, n),
                    "lower_dual_usd_per_kw": (n_entities, n), "price_usd_per_kw": (n,),
                    "group_value_usd": (sum(len(b.group_interval) for b in bids),),
                    "cut_dual": (sum(len(b.intercept_usd) for b in bids),)}
        wrong = [name for name, shape in expected.items() if getattr(out, name).shape != shape]
        if wrong:
            raise ValueError(f"certificate: {', '.join(wrong)} not shaped for "
                             f"{n_entities} bids over {n} intervals")
        return out


def certificate_message(solution: SupportsPrimalDual) -> m.Certificate:
    """The message of a certificate (the market's side of `PrimalDual.from_message`)."""
    return m.Certificate(
        kw=np.asarray(solution.kw).tolist(),
        group_value_usd=np.asarray(solution.group_value_usd).tolist(),
        price_usd_per_kw=np.asarray(solution.price_usd_per_kw).tolist(),
        cut_dual=np.asarray(solution.cut_dual).tolist(),
        upper_dual_usd_per_kw=np.asarray(solution.upper_dual_usd_per_kw).tolist(),
        lower_dual_usd_per_kw=np.asarray(solution.lower_dual_usd_per_kw).tolist(),
        objective_usd=float(solution.objective_usd))


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


def verify_certificate(bids: Sequence[Bid], clearing: SupportsPrimalDual,
                       rtol: float = 1e-6) -> CertificateCheck:
    """Check primal feasibility, dual feasibility and a zero gap, with arithmetic only.

    ``clearing`` is the market's `Clearing`, a `PrimalDual`, or anything with their arrays
    (its ``objective_usd`` is not used: the gap is taken against ``sum s_j``). Tolerances
    are ``rtol`` times the problem's scale: ``1 + max |bound|`` kW, ``1 + max |g|`` $ per kW,
    and ``1 + sum |s_j| + sum |mu_k a_k| + sum |beta * bound|`` $.
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
