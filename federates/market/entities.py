"""Market participants: each entity is a microgrid behind one feeder load bus.

Units and signs, used by every module of the market: powers in kW (averages over a market
interval), energies in kWh, money in US dollars, ``interval_h`` the length of every interval
in hours. A load block's ``value_usd_per_kwh`` is the value of serving it (the loss avoided
when it is served); a generator's ``cost_usd_per_kwh`` is what running it costs. Grid
import is >= 0: entities do not export. ``ub_kw`` is the import bound the utility allocates
to an entity in each interval; a market right ``kw > 0`` raises it (the entity receives
rights), ``kw < 0`` lowers it (the entity gives rights up).

The shortage: in interval ``t`` the feeder can supply a fraction ``f_t`` of the demand; the
default allocation (`default_bounds`) gives every entity the same fraction of its own
demand, ``UB_i,t = f_t * demand_i,t``, where the demand is the feeder load's kW (what the
utility sees), whatever the entity has behind its meter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

FeederLoad = tuple[str, str, "float | Sequence[float]"]
"""``(load id, bus, kW)``: the kW is one figure for every interval or one per interval."""


def _profile(value: float | Sequence[float] | np.ndarray, n: int, name: str) -> np.ndarray:
    """``value`` as a finite, non-negative float array of length ``n`` (a scalar is repeated)."""
    array = np.array(value, dtype=float)
    array = np.full(n, float(array)) if array.ndim == 0 else array
    if array.shape != (n,) or not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name}: expected {n} finite values >= 0, got {value!r}")
    return array


@dataclass(frozen=True, eq=False)
class LoadBlock:
    """A part of the load served or shed as a whole kW amount (fractions allowed)."""

    name: str
    p_kw: np.ndarray
    """Demand in each interval, kW."""
    value_usd_per_kwh: float
    """Value of serving it (the loss avoided), $/kWh."""


@dataclass(frozen=True)
class LocalGenerator:
    """A dispatchable generator (e.g. diesel) between 0 and ``capacity_kw``."""

    capacity_kw: float
    cost_usd_per_kwh: float


@dataclass(frozen=True)
class Battery:
    """A battery; its state of charge is kept between ``soc_min_kwh`` and ``energy_kwh``.

    Charging ``c`` kW for an interval stores ``charge_efficiency * c * interval_h`` kWh;
    discharging ``d`` kW draws ``d * interval_h / discharge_efficiency`` kWh. At the end of
    the horizon at least ``soc_final_min_kwh`` must remain; it may not exceed the initial
    state, so that doing nothing is always feasible (even with zero import).
    """

    energy_kwh: float
    power_kw: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_initial_kwh: float = 0.0
    soc_min_kwh: float = 0.0
    soc_final_min_kwh: float = 0.0

    def __post_init__(self) -> None:
        if not (0 < self.charge_efficiency <= 1 and 0 < self.discharge_efficiency <= 1):
            raise ValueError("Battery efficiencies must be in (0, 1]")
        if min(self.energy_kwh, self.power_kw, self.soc_min_kwh) < 0:
            raise ValueError("Battery energy, power and minimum state must be >= 0")
        if not (self.soc_min_kwh <= self.soc_initial_kwh <= self.energy_kwh):
            raise ValueError("Battery: need soc_min_kwh <= soc_initial_kwh <= energy_kwh")
        if not (self.soc_min_kwh <= self.soc_final_min_kwh <= self.soc_initial_kwh):
            raise ValueError("Battery: need soc_min_kwh <= soc_final_min_kwh <= soc_initial_kwh")

    @classmethod
    def from_round_trip(cls, energy_kwh: float, power_kw: float, round_trip: float,
                        soc_initial_kwh: float = 0.0) -> Battery:
        """A battery whose round-trip efficiency is split evenly (square root each way)."""
        one_way = float(np.sqrt(round_trip))
        return cls(energy_kwh=energy_kwh, power_kw=power_kw, charge_efficiency=one_way,
                   discharge_efficiency=one_way, soc_initial_kwh=soc_initial_kwh)


@dataclass(frozen=True, eq=False)
class Entity:
    """A market participant: load blocks and optional generator, battery and PV."""

    entity_id: str
    bus: str
    blocks: tuple[LoadBlock, ...]
    interval_h: float = 1.0
    generator: LocalGenerator | None = None
    battery: Battery | None = None
    pv_kw: np.ndarray | None = None
    """PV power available in each interval, kW (curtailable); None: no PV."""

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ValueError(f"Entity {self.entity_id}: at least one load block")
        n = len(np.atleast_1d(self.blocks[0].p_kw))
        object.__setattr__(self, "blocks", tuple(
            replace(block, p_kw=_profile(block.p_kw, n, f"{block.name}.p_kw"))
            for block in self.blocks))
        if self.pv_kw is not None:
            object.__setattr__(self, "pv_kw", _profile(self.pv_kw, n, "pv_kw"))
        if self.interval_h <= 0:
            raise ValueError(f"Entity {self.entity_id}: interval_h must be > 0")

    @property
    def n_intervals(self) -> int:
        return len(self.blocks[0].p_kw)

    @property
    def demand_kw(self) -> np.ndarray:
        """Total demand of the load blocks in each interval, kW (the feeder load)."""
        return np.sum([block.p_kw for block in self.blocks], axis=0)

    @property
    def full_value_usd(self) -> float:
        """Value with every block served in every interval and nothing generated, $."""
        return float(sum(block.value_usd_per_kwh * block.p_kw.sum() for block in self.blocks)
                     * self.interval_h)

    @property
    def separable(self) -> bool:
        """True if nothing couples the intervals (no battery)."""
        return self.battery is None

    @property
    def max_import_kw(self) -> np.ndarray:
        """Import above which nothing improves: the demand plus the battery's charging power."""
        charge = self.battery.power_kw if self.battery is not None else 0.0
        return self.demand_kw + charge


def demand_matrix(entities: Sequence[Entity]) -> np.ndarray:
    """Demand of every entity in every interval, kW (n_entities x n_intervals)."""
    return np.array([entity.demand_kw for entity in entities])


def default_bounds(demand_kw: np.ndarray, available_fraction: float | np.ndarray) -> np.ndarray:
    """Import bounds ``UB = f_t * demand``: the supply shared in proportion to demand, kW.

    ``demand_kw`` is n_entities x n_intervals; ``available_fraction`` (in [0, 1]) is one
    figure or one per interval.
    """
    demand = np.asarray(demand_kw, dtype=float)
    fraction = np.broadcast_to(np.asarray(available_fraction, dtype=float), demand.shape[-1:])
    if np.any(fraction < 0) or np.any(fraction > 1):
        raise ValueError("available_fraction must be in [0, 1]")
    return demand * fraction


def pv_shape_pu(n_intervals: int, interval_h: float, start_hour: float = 0.0) -> np.ndarray:
    """Clear-sky PV output per unit of capacity: a half sine from 6 h to 18 h, at the middle
    of each interval (clock hours modulo 24)."""
    hour = (start_hour + (np.arange(n_intervals) + 0.5) * interval_h) % 24.0
    return np.clip(np.sin(np.pi * (hour - 6.0) / 12.0), 0.0, None)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def generate_entities(loads: Sequence[FeederLoad], n_intervals: int,
                      rng: np.random.Generator, *, interval_h: float = 1.0,
                      start_hour: float = 0.0, generator_share: float = 0.2,
                      battery_share: float = 0.3, pv_share: float = 0.3) -> list[Entity]:
    """One entity per feeder load, in the order given, drawn from ``rng`` only.

    Each load's demand is split into three blocks whose values of service span 1 to
    50 $/kWh (log-uniform): ``critical`` (10-40% of the demand, 15-50 $/kWh),
    ``essential`` (30-70% of the rest, 4-15 $/kWh) and ``deferrable`` (the remainder,
    1-4 $/kWh). Behind the meter, each with the stated probability: a generator of 10-50%
    of the peak demand at 0.3-3 $/kWh; a battery of 10-50% of the peak for 1-4 h, 85-95%
    round trip, 20-90% charged; PV of 20-80% of the peak with the `pv_shape_pu` profile.
    Every entity draws the same 15 numbers in the same order whatever it gets, so the
    shares change which resources exist but not their sizes.
    """
    shape = pv_shape_pu(n_intervals, interval_h, start_hour)
    entities = []
    for load_id, bus, p_kw in loads:
        demand = _profile(p_kw, n_intervals, f"load {load_id}")
        peak = float(demand.max()) if n_intervals else 0.0
        has_gen, has_battery, has_pv = rng.random(3) < (generator_share, battery_share,
                                                        pv_share)
        critical = rng.uniform(0.1, 0.4)
        essential = (1.0 - critical) * rng.uniform(0.3, 0.7)
        values = (_log_uniform(rng, 15, 50), _log_uniform(rng, 4, 15), _log_uniform(rng, 1, 4))
        shares = (critical, essential, 1.0 - critical - essential)
        blocks = tuple(LoadBlock(name, demand * share, value) for name, share, value
                       in zip(("critical", "essential", "deferrable"), shares, values))
        gen = LocalGenerator(peak * rng.uniform(0.1, 0.5), rng.uniform(0.3, 3.0))
        power = peak * rng.uniform(0.1, 0.5)
        energy = power * rng.uniform(1, 4)
        round_trip = rng.uniform(0.85, 0.95)
        battery = Battery.from_round_trip(energy, power, round_trip,
                                          energy * rng.uniform(0.2, 0.9))
        pv = peak * rng.uniform(0.2, 0.8) * shape
        entities.append(Entity(
            entity_id=str(load_id), bus=str(bus), blocks=blocks, interval_h=interval_h,
            generator=gen if has_gen else None, battery=battery if has_battery else None,
            pv_kw=pv if has_pv else None))
    return entities
