"""Conformance kit: the properties every payment rule in `payments.RULES` must have.

`check_case` runs the whole market on one case (decision guidance, clearing, settlement),
twice, and lists every property that fails (an empty list: the rule conforms); `check` runs
every hand-made and random case, `run_kit` every registered rule (the shape of the DOPF and
estimator kits too):

- deterministic: the same input twice gives identical bids, clearing and payments (bitwise);
- Pareto optimal: the clearing's certificate verifies (`clearing.verify_certificate`), so no
  other clearing raises the total value of the bids;
- budget balanced: payments add up to 0;
- individually rational: no entity ends below its stand-alone value (gain >= 0);
- the rule's declared `payments.PaymentRule.guarantees`.

Tolerance: ``RTOL`` times ``1 + sum of stand-alone losses``, $. Properties are about the bids:
an entity with a battery is valued by its cut model, which can overstate its true value
between cut points (`guidance`), so its true gain can fall short by that error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from gridsim.federates.market.clearing import clear, verify_certificate
from gridsim.federates.market.entities import (
    Battery,
    Entity,
    LoadBlock,
    LocalGenerator,
    default_bounds,
    demand_matrix,
    generate_entities,
)
from gridsim.federates.market.guidance import guidance
from gridsim.federates.market.payments import RULES, make_rule, settle

RTOL = 1e-6


@dataclass(frozen=True, eq=False)
class Case:
    """Entities and their import bounds (n_entities x n_intervals, kW)."""

    name: str
    entities: list[Entity]
    ub_kw: np.ndarray


def simple_entity(entity_id: str, demand_kw: float | list[float], value_usd_per_kwh: float,
                  **resources) -> Entity:
    """An entity with one load block (same value in every interval) and optional resources."""
    demand = np.atleast_1d(np.asarray(demand_kw, dtype=float))
    return Entity(entity_id, entity_id, (LoadBlock("load", demand, value_usd_per_kwh),),
                  **resources)


def two_entities(low: float, high: float) -> Case:
    """The paper's case: 40 MW each, 20 MW supplied each, one interval of 1 h."""
    entities = [simple_entity("low", 40_000.0, low), simple_entity("high", 40_000.0, high)]
    return Case(f"paper {low} vs {high} $/kWh", entities, np.full((2, 1), 20_000.0))


def three_entities() -> Case:
    """100 kW each at 2, 5 and 20 $/kWh, half supplied."""
    entities = [simple_entity(f"v{v}", 100.0, v) for v in (2.0, 5.0, 20.0)]
    return Case("three entities", entities, np.full((3, 1), 50.0))


def battery_shift() -> Case:
    """Two 1 h intervals. ``store``: 100 kW at 10 $/kWh in both, a lossless 50 kWh / 50 kW
    battery, empty; allowed (100, 50) kW. ``spare``: 100 kW at 1 $/kWh in the first interval
    only; allowed (100, 0) kW. The market moves 50 kW of the first interval to ``store``,
    which stores it for the second."""
    store = simple_entity("store", [100.0, 100.0], 10.0, battery=Battery(50.0, 50.0, 1.0, 1.0))
    spare = simple_entity("spare", [100.0, 0.0], 1.0)
    return Case("battery shift", [store, spare], np.array([[100.0, 50.0], [100.0, 0.0]]))


def mixed_resources() -> Case:
    """Four entities over three intervals with a generator, PV and a lossy battery."""
    entities = [
        simple_entity("gen", [80.0, 80.0, 80.0], 12.0,
                      generator=LocalGenerator(30.0, 3.0)),
        simple_entity("pv", [60.0, 60.0, 60.0], 4.0, pv_kw=np.array([0.0, 40.0, 10.0])),
        simple_entity("bat", [50.0, 50.0, 50.0], 8.0,
                      battery=Battery.from_round_trip(60.0, 30.0, 0.9, 30.0)),
        simple_entity("cheap", [100.0, 100.0, 100.0], 1.5),
    ]
    return Case("mixed resources", entities,
                default_bounds(demand_matrix(entities), [0.7, 0.4, 0.55]))


HAND_MADE: list[Callable[[], Case]] = [
    lambda: two_entities(1.5, 7.5), lambda: two_entities(1.5, 50.0), three_entities,
    battery_shift, mixed_resources]


def random_case(rng: np.random.Generator, n_entities: int, n_intervals: int) -> Case:
    """Entities from `generate_entities` on random loads of 5-100 kW, 30-90% supplied."""
    loads = [(f"load{i}", f"bus{i}", float(rng.uniform(5.0, 100.0)))
             for i in range(n_entities)]
    entities = generate_entities(loads, n_intervals, rng, start_hour=float(rng.uniform(0, 24)))
    fraction = rng.uniform(0.3, 0.9, n_intervals)
    return Case(f"random {n_entities}x{n_intervals}", entities,
                default_bounds(demand_matrix(entities), fraction))


def random_cases(count: int = 3, seed: int = 1) -> list[Case]:
    """`count` random cases of 5 entities over 3 intervals, case i drawn with seed
    ``seed + i`` (each can be drawn again alone)."""
    cases = [random_case(np.random.default_rng(seed + i), 5, 3) for i in range(count)]
    return [replace(case, name=f"{case.name} (seed {seed + i})") for i, case in enumerate(cases)]


def names() -> list[str]:
    """The registered payment rules, which the kit covers."""
    return sorted(RULES)


def _run(rule: str, case: Case):
    bids = [guidance(entity, ub).bid for entity, ub in zip(case.entities, case.ub_kw)]
    clearing = clear(bids)
    return bids, clearing, settle(rule, bids, clearing)


def _same(first, second) -> bool:
    bids_a, clear_a, settle_a = first
    bids_b, clear_b, settle_b = second
    arrays = [(a.intercept_usd, b.intercept_usd) for a, b in zip(bids_a, bids_b)]
    arrays += [(a.slope_usd_per_kw, b.slope_usd_per_kw) for a, b in zip(bids_a, bids_b)]
    arrays += [(getattr(clear_a, name), getattr(clear_b, name))
               for name in ("kw", "price_usd_per_kw", "cut_dual", "upper_dual_usd_per_kw")]
    arrays.append((settle_a.payment_usd, settle_b.payment_usd))
    return all(a.shape == b.shape and np.array_equal(a, b) for a, b in arrays)


def _guarantees(rule: str, clearing, settlement, tol: float) -> list[str]:
    problems = []
    guarantees = make_rule(rule).guarantees
    if "no-profiteering" in guarantees and np.any(settlement.loss_usd < -tol):
        problems.append(f"an entity profits: losses {settlement.loss_usd}")
    if "equal-relative-saving" in guarantees:
        saving = settlement.relative_saving[settlement.standalone_loss_usd > tol]
        if len(saving) and np.ptp(saving) > RTOL * 10:
            problems.append(f"relative savings differ: {saving}")
    if "price-linear" in guarantees and not np.allclose(
            settlement.payment_usd, clearing.kw @ clearing.price_usd_per_kw, atol=tol):
        problems.append("payments are not prices times rights")
    return problems


def check_case(rule: str, case: Case) -> list[str]:
    """Every property of the module doc that ``rule`` fails on ``case`` (empty: none)."""
    first, second = _run(rule, case), _run(rule, case)
    bids, clearing, settlement = first
    tol = RTOL * (1.0 + settlement.standalone_loss_usd.sum())
    problems = [] if _same(first, second) else ["not deterministic"]
    certificate = verify_certificate(bids, clearing)
    if not certificate.ok:
        problems.append(f"certificate does not verify: {certificate}")
    if abs(settlement.payment_usd.sum()) > tol:
        problems.append(f"payments add up to {settlement.payment_usd.sum()}, not 0")
    if np.any(settlement.gain_usd < -tol):
        problems.append(f"not individually rational: gains {settlement.gain_usd}")
    return problems + _guarantees(rule, clearing, settlement, tol)


check_rule = check_case
"""The former name of `check_case`."""


def check(rule: str, cases: Sequence[Case] | None = None) -> list[str]:
    """The whole kit for ``rule`` on `cases` (default: every hand-made and random case);
    each failure names its case."""
    cases = [build() for build in HAND_MADE] + random_cases() if cases is None else cases
    return [f"{case.name}: {problem}" for case in cases for problem in check_case(rule, case)]


def run_kit() -> dict[str, list[str]]:
    """`check` for every registered payment rule."""
    return {rule: check(rule) for rule in names()}
