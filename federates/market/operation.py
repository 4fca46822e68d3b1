"""Operation after clearing: each entity's microgrid schedule under its cleared rights.

Given the allocation ``UB`` and the cleared rights ``kw``, the entity runs the microgrid LP of
`guidance` with import caps ``UB + kw`` (the paper's step 3). Among schedules of equal value
the one used is the one with the least ``import + 2 * (charge + discharge)`` energy: a second
LP keeps the value to within 1e-9 of the optimum (relative, plus 1e-9 $) and minimizes that.
So the grid is drawn only when it adds value, and the battery cycles only when it adds value
(a kWh from the grid beats a kWh through the battery of the same value; charging and
discharging at once is never chosen). The import in each interval is what the feeder applies
as the entity's load cap (kW).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from gridsim.federates.market.entities import Entity
from gridsim.federates.market.guidance import MicrogridLP

THROUGHPUT_WEIGHT = 2.0
"""Weight of battery charge and discharge energy against grid import in the tie-break."""


@dataclass(frozen=True, eq=False)
class Operation:
    """One entity's schedule; arrays per interval (blocks x intervals for ``served_kw``),
    zeros for resources the entity does not have."""

    entity_id: str
    cap_kw: np.ndarray
    """Import bound ``UB + kw``, kW."""
    import_kw: np.ndarray
    """Planned grid import, kW: the feeder's load cap for this entity."""
    served_kw: np.ndarray
    """Load served per block, kW (n_blocks x n_intervals, in `Entity.blocks` order)."""
    generation_kw: np.ndarray
    pv_kw: np.ndarray
    """PV used (available minus curtailed), kW."""
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    soc_kwh: np.ndarray
    """State of charge at the end of each interval, kWh."""
    value_usd: float
    """Value of the schedule (service minus generation cost), $."""


def _column(x: np.ndarray, lp: MicrogridLP, name: str) -> np.ndarray:
    n = lp.entity.n_intervals
    return x[lp.columns[name]] if name in lp.columns else np.zeros(n)


def operate(entity: Entity, ub_kw: np.ndarray, kw: np.ndarray | None = None) -> Operation:
    """The entity's schedule for import caps ``ub_kw + kw`` (kW per interval)."""
    lp = MicrogridLP.build(entity)
    cap = np.asarray(ub_kw, dtype=float) + (0.0 if kw is None else np.asarray(kw, dtype=float))
    cap = np.maximum(cap, 0.0)
    best, _, x = lp.solve(cap)
    weight = np.zeros(len(lp.cost))
    weight[lp.columns["import"]] = entity.interval_h
    for name in ("charge", "discharge"):
        if name in lp.columns:
            weight[lp.columns[name]] = THROUGHPUT_WEIGHT * entity.interval_h
    floor = best - 1e-9 * abs(best) - 1e-9
    result = linprog(weight, A_ub=sparse.vstack([lp.a_ub, lp.cost[None, :]], format="csr"),
                     b_ub=np.r_[cap, -floor], A_eq=lp.a_eq, b_eq=lp.b_eq, bounds=lp.bounds,
                     method="highs")
    if result.status == 0:
        x = result.x
    n = entity.n_intervals
    return Operation(
        entity_id=entity.entity_id, cap_kw=cap, import_kw=_column(x, lp, "import"),
        served_kw=x[lp.columns["served"]].reshape(len(entity.blocks), n),
        generation_kw=_column(x, lp, "gen"), pv_kw=_column(x, lp, "pv"),
        charge_kw=_column(x, lp, "charge"), discharge_kw=_column(x, lp, "discharge"),
        soc_kwh=_column(x, lp, "soc"), value_usd=float(-lp.cost @ x))


def operate_all(entities: Sequence[Entity], ub_kw: np.ndarray,
                kw: np.ndarray) -> list[Operation]:
    """`operate` for every entity (rows of ``ub_kw`` and ``kw`` in the same order)."""
    return [operate(entity, ub, rights) for entity, ub, rights in zip(entities, ub_kw, kw)]


def load_caps_kw(operations: Sequence[Operation]) -> dict[str, np.ndarray]:
    """Planned import of every entity by id, kW per interval (what the feeder caps)."""
    return {operation.entity_id: operation.import_kw for operation in operations}
