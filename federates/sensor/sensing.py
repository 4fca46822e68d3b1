"""What a utility sees of the feeder: meter choice, noise, dropouts, bad data, pseudo-measurements.

No HELICS here: everything takes plain values and one ``numpy.random.Generator``, so the
sensor is testable without a broker and reproducible from a seed.

Readings are grouped by *quantity*, in this fixed order (`READING_ORDER`):

=========  ==========================  ======  ============================================
quantity   measured at                 units   one-sigma accuracy
=========  ==========================  ======  ============================================
``v``      metered, slack, PMU nodes   pu      ``sigma_v_pu``
``angle``  PMU nodes                   deg     ``sigma_angle_deg``
``p``      metered and slack nodes     kW      ``sigma_pq_pct`` of abs(truth), floored
``q``      metered and slack nodes     kvar    ``sigma_pq_pct`` of abs(truth), floored
``p_flow`` metered branches            kW      ``sigma_flow_pct`` of abs(truth), floored
``q_flow`` metered branches            kvar    ``sigma_flow_pct`` of abs(truth), floored
=========  ==========================  ======  ============================================

The floor is ``sigma_pq_floor_kw`` (kW or kvar) for every power reading, flows included: a
zero sigma would give a reading infinite weight in an estimator.

Metered nodes drawn at random (``metered_fraction``) are phase conductors of energized buses
(`meter_candidates`): never a neutral node (``.4``) nor a node whose true |V| at the first
step is at most 0.1 p.u. (IEEE 9500 has both); nodes listed in ``metered_nodes`` are
metered as listed.

Determinism: the meters are chosen once, first; then each step draws, for each quantity in
that order and its ids sorted, one standard normal per reading and then one uniform per
reading (the dropouts), whatever the dropout probability; then one standard normal per load
(sorted ids) for the pseudo-measurements. The same configuration and seed thus give the same
numbers, and changing the dropout probability drops readings without changing the others.

Pseudo-measurements (``pseudo_loads``) cover every non-slack device node without a meter of
that quantity (P and Q separately): the node's expected injection is its DER part (PV
systems, generators and storage units, from their telemetry) minus its load part (sign:
positive into the network). See `pseudo_injections` for the split rules. Dropouts and bad
data apply to meter readings only; pseudo-measurements are forecasts and DER telemetry,
always present. A two-node delta load's power is split with the -30/+30 degree
rotation a line-to-line connection gives (see `pseudo_injections`).

One module rather than several of 100-300 lines: configuration, meter plan, noise and pseudo-
measurements are the sensor's one model and are used together; `Sensor` at the end ties them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from gridsim.network import NodeIndex, share_factors

READING_ORDER = ("v", "angle", "p", "q", "p_flow", "q_flow")
"""Every quantity the sensor reads, in the order noise is drawn."""

NODE_QUANTITIES = ("v", "p", "q")
"""What the ``quantities`` parameter may list."""

BAD_DATA_QUANTITIES = ("v", "p", "q", "p_flow", "q_flow")
"""Quantities a bad-data entry may corrupt."""


class SensorConfigError(ValueError):
    """A sensor parameter that cannot be used; the message names the parameter."""


@dataclass(frozen=True)
class BadData:
    """A gross error: reading `quantity` at `id` is off by `offset` from `from_step` to
    `to_step` (inclusive; None = to the end), in the reading's units (pu, kW or kvar)."""

    id: str
    quantity: str
    offset: float
    from_step: int
    to_step: int | None = None

    def active(self, step: int) -> bool:
        """Whether the error applies at scenario step `step`."""
        return self.from_step <= step and (self.to_step is None or step <= self.to_step)

    @classmethod
    def parse(cls, index: int, raw: object) -> BadData:
        """One ``bad_data`` entry, checked; errors name ``bad_data[index]``."""
        where = f"parameter bad_data[{index}]"
        if not isinstance(raw, Mapping):
            raise SensorConfigError(f"{where}: expected a mapping, got {raw!r}")
        unknown = sorted(set(raw) - {"id", "quantity", "offset", "from_step", "to_step"})
        missing = sorted({"id", "quantity", "offset", "from_step"} - set(raw))
        if unknown or missing:
            raise SensorConfigError(f"{where}: unknown keys {unknown}, missing keys {missing}")
        if raw["quantity"] not in BAD_DATA_QUANTITIES:
            raise SensorConfigError(f"{where}.quantity: {raw['quantity']!r} is not one of "
                                    f"{list(BAD_DATA_QUANTITIES)}")
        to_step = raw.get("to_step")
        if not (_is_int(raw["from_step"]) and raw["from_step"] >= 0
                and (to_step is None or _is_int(to_step) and to_step >= raw["from_step"])):
            raise SensorConfigError(f"{where}: from_step must be an integer >= 0 and to_step "
                                    f"none or an integer >= from_step")
        if not _is_number(raw["offset"]):
            raise SensorConfigError(f"{where}.offset: expected a number, got {raw['offset']!r}")
        return cls(str(raw["id"]), raw["quantity"], float(raw["offset"]), raw["from_step"],
                   to_step)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SensorConfig:
    """The sensor's parameters, checked (see ``component_definition.json`` for each)."""

    metered_fraction: float = 0.37
    metered_nodes: tuple[str, ...] = ()
    substation_meter: bool = True
    quantities: tuple[str, ...] = ("v",)
    metered_branches: tuple[str, ...] = ()
    pmu_nodes: tuple[str, ...] = ()
    sigma_v_pu: float = 0.005
    sigma_pq_pct: float = 1.0
    sigma_pq_floor_kw: float = 0.1
    sigma_flow_pct: float = 1.0
    sigma_angle_deg: float = 0.01
    dropout_probability: float = 0.0
    bad_data: tuple[BadData, ...] = ()
    pseudo_loads: bool = True
    pseudo_rel_error: float = 0.3

    @classmethod
    def from_parameters(cls, params: Mapping[str, object]) -> SensorConfig:
        """Check the federate's parameters (types were checked by the wiring) and build one."""
        values = {name: params[name] for name in cls.__dataclass_fields__ if name in params}
        for name in ("metered_nodes", "quantities", "metered_branches", "pmu_nodes"):
            if name in values:
                items = values[name]
                if not all(isinstance(i, str) for i in items):
                    raise SensorConfigError(f"parameter {name}: expected a list of ids, "
                                            f"got {items!r}")
                values[name] = tuple(items)
        bad = [q for q in values.get("quantities", ()) if q not in NODE_QUANTITIES]
        if bad:
            raise SensorConfigError(f"parameter quantities: unknown {bad}; use any of "
                                    f"{list(NODE_QUANTITIES)}")
        for name in ("metered_fraction", "dropout_probability"):
            if name in values and not 0.0 <= values[name] <= 1.0:
                raise SensorConfigError(f"parameter {name}: must be in [0, 1], "
                                        f"got {values[name]!r}")
        for name in ("sigma_v_pu", "sigma_pq_pct", "sigma_pq_floor_kw", "sigma_flow_pct",
                     "sigma_angle_deg", "pseudo_rel_error"):
            if name in values and not values[name] >= 0.0:
                raise SensorConfigError(f"parameter {name}: must be >= 0, got {values[name]!r}")
        if "bad_data" in values:
            values["bad_data"] = tuple(BadData.parse(i, raw)
                                       for i, raw in enumerate(values["bad_data"]))
        return cls(**values)

    def needed_inputs(self) -> list[tuple[str, str]]:
        """(parameter, input port) for each optional input this configuration reads."""
        needed = []
        if self.pmu_nodes:
            needed.append(("pmu_nodes", "voltages_angle"))
        if self.metered_branches:
            needed.append(("metered_branches", "branch_flows"))
        return needed


@dataclass(frozen=True)
class MeterPlan:
    """Where the meters are: fixed for the whole run."""

    metered_nodes: tuple[str, ...]
    """The nodes chosen (or listed) for meters, sorted."""
    readings: dict[str, tuple[str, ...]]
    """Quantity -> the sorted ids it is read at (every quantity of `READING_ORDER`)."""

    def check_bad_data(self, bad_data: Iterable[BadData]) -> None:
        """Every bad-data entry must corrupt a reading that exists."""
        for i, entry in enumerate(bad_data):
            if entry.id not in self.readings[entry.quantity]:
                raise SensorConfigError(
                    f"parameter bad_data[{i}].id: {entry.id!r} has no {entry.quantity!r} "
                    f"meter ({len(self.readings[entry.quantity])} ids have one)")


PHASES = ("1", "2", "3")
"""Node numbers of phase conductors (OpenDSS: 1, 2, 3 the phases; 4 and up neutrals)."""

ENERGIZED_PU = 0.1
"""A node whose true |V| is at most this (p.u.) is de-energized: no meter is placed on it."""


def meter_candidates(node_ids: Iterable[str], slack_nodes: Iterable[str],
                     voltages_pu: Mapping[str, float] | None = None) -> list[str]:
    """The nodes a random meter choice draws from, sorted: what a utility meters.

    Phase conductors (node ``.1``, ``.2`` or ``.3``; on a split-phase secondary, ``.1`` and
    ``.2`` are its two 120 V legs) that are not slack and, when the true voltages of the first
    step are given, energized (|V| above `ENERGIZED_PU`). Neutral nodes (``.4``: the floating
    star points of IEEE 9500's wye windings, |V| near 0) and dead nodes (IEEE 9500's
    ``193-48013.3`` beyond an open switch, |V| exactly 0) are no place for a voltage meter.
    """
    slack = set(slack_nodes)
    return sorted(n for n in set(node_ids) - slack
                  if n.rsplit(".", 1)[-1] in PHASES
                  and (voltages_pu is None or voltages_pu.get(n, 0.0) > ENERGIZED_PU))


def plan_meters(config: SensorConfig, node_ids: Sequence[str], slack_nodes: Sequence[str],
                branch_ids: Sequence[str], rng: np.random.Generator,
                voltages_pu: Mapping[str, float] | None = None) -> MeterPlan:
    """Choose the meters: the listed nodes, or ``round(fraction * N)`` of the N candidates
    (`meter_candidates`: energized phase nodes, not slack; `voltages_pu` the true |V| of the
    first step, if known) drawn with `rng` (its first use). Unknown ids raise
    `SensorConfigError`."""
    known, slack = set(node_ids), set(slack_nodes)
    _check_known("metered_nodes", config.metered_nodes, known)
    _check_known("pmu_nodes", config.pmu_nodes, known)
    _check_known("metered_branches", config.metered_branches, set(branch_ids))
    if config.metered_nodes:
        metered = sorted(set(config.metered_nodes))
    else:
        candidates = meter_candidates(known, slack, voltages_pu)
        count = round(config.metered_fraction * len(candidates))
        chosen = rng.choice(len(candidates), size=count, replace=False)
        metered = sorted(candidates[i] for i in chosen)
    substation = slack if config.substation_meter else set()
    v_nodes = set(metered) if "v" in config.quantities else set()
    v_nodes |= set(config.pmu_nodes) | substation
    power = {q: (set(metered) if q in config.quantities else set()) | substation
             for q in ("p", "q")}
    readings = {
        "v": tuple(sorted(v_nodes)),
        "angle": tuple(sorted(set(config.pmu_nodes))),
        "p": tuple(sorted(power["p"])),
        "q": tuple(sorted(power["q"])),
        "p_flow": tuple(sorted(set(config.metered_branches))),
        "q_flow": tuple(sorted(set(config.metered_branches))),
    }
    plan = MeterPlan(tuple(metered), readings)
    plan.check_bad_data(config.bad_data)
    return plan


def _check_known(parameter: str, ids: Iterable[str], known: set[str]) -> None:
    unknown = sorted(set(ids) - known)
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise SensorConfigError(f"parameter {parameter}: unknown ids {shown}{more}")


def sigmas(quantity: str, truth: np.ndarray, config: SensorConfig) -> np.ndarray:
    """One-sigma accuracy of each reading of `quantity` whose true values are `truth`."""
    if quantity == "v":
        return np.full(truth.shape, config.sigma_v_pu)
    if quantity == "angle":
        return np.full(truth.shape, config.sigma_angle_deg)
    pct = config.sigma_pq_pct if quantity in ("p", "q") else config.sigma_flow_pct
    return np.maximum(pct / 100.0 * np.abs(truth), config.sigma_pq_floor_kw)


def noisy(truth: np.ndarray, sigma: np.ndarray, dropout_probability: float,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Readings ``truth + N(0, sigma)`` and the mask of those not dropped.

    Draws len(truth) standard normals, then len(truth) uniforms, always.
    """
    noise = rng.standard_normal(truth.shape)
    kept = rng.random(truth.shape) >= dropout_probability
    return truth + sigma * noise, kept


@dataclass(frozen=True)
class DeviceState:
    """One load, PV system, generator or storage unit: bus, true powers (device sense) and
    expected consumption."""

    id: str
    bus: str
    p_kw: float
    q_kvar: float
    demand_kw: float = 0.0
    """Loads: the profile's expected consumption, kW (unused for DER)."""
    delta: bool = False
    """Connected line to line: a two-node delta load's power is not shared equally."""
    cap_kw: float | None = None
    """Loads: the cap in force (commanded by the market or the DOPF, so the utility knows
    it), kW; None if uncapped."""


def capped_moments(mean: float, sigma: float, cap: float | None) -> tuple[float, float]:
    """Mean and standard deviation of ``min(D, cap)`` for ``D ~ N(mean, sigma^2)``.

    A capped load draws the lesser of its demand and its cap, so its expected draw and the
    spread around it shrink as the cap falls below the demand: a load capped far below its
    demand draws its cap, whatever the forecast error. With ``z = (cap - mean) / sigma``,
    ``E[min] = mean Phi(z) - sigma phi(z) + cap (1 - Phi(z))`` and
    ``E[min^2] = (mean^2 + sigma^2) Phi(z) - sigma (mean + cap) phi(z) + cap^2 (1 - Phi(z))``
    (the normal distribution truncated at the cap, plus the mass at it).
    """
    if cap is None:
        return mean, sigma
    if sigma <= 0.0:
        return min(mean, cap), 0.0
    z = (cap - mean) / sigma
    cdf = 0.5 * math.erfc(-z / math.sqrt(2.0))
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    first = mean * cdf - sigma * pdf + cap * (1.0 - cdf)
    second = (mean * mean + sigma * sigma) * cdf - sigma * (mean + cap) * pdf + cap * cap * (
        1.0 - cdf)
    return first, math.sqrt(max(second - first * first, 0.0))


@dataclass(frozen=True)
class NodePseudo:
    """A node's pseudo-measured injection and its one-sigma accuracy."""

    p_kw: float
    sigma_p_kw: float
    q_kvar: float
    sigma_q_kvar: float


def pseudo_injections(loads: Sequence[DeviceState], pvs: Sequence[DeviceState],
                      index: NodeIndex, e: Sequence[float], *, rel_error: float,
                      pv_sigma_pct: float, floor: float) -> dict[str, NodePseudo]:
    """Expected injection at every node a load or DER unit connects to.

    `pvs` are the units with telemetry: PV systems, generators and storage units alike.

    Load L (``e[i]`` its standard normal draw, r = `rel_error`, ``ratio = q_kvar / p_kw``
    of its true state, 0 if ``p_kw`` is 0): ``p = demand * (1 + r * e)``, ``q = p * ratio``,
    ``sigma_p = r * demand``, ``sigma_q = r * |demand * ratio|`` = ``sigma_p * |ratio|``.
    Both sigmas are of the noise-free expectation: q's error is ``demand * ratio * r * e``,
    so that is its standard deviation; a sigma of ``r * |q|`` would shrink with a low draw
    and make exactly the worst pseudo-measurements the most trusted. A load under a cap
    ``c`` (the utility commanded it): ``p = min(demand * (1 + r * e), c)`` and ``sigma_p``
    the spread of ``min(D, c)`` (`capped_moments`): without it, the pseudo-measurements of
    a shortage claim the uncapped demand, and the estimator rejects the true substation
    meters that disagree with their sum. DER unit (telemetry):
    its true ``p_kw``, ``q_kvar`` with sigma ``pv_sigma_pct`` percent of each.

    Split over a device's n nodes: each node gets value / n and sigma / n, i.e. the shares
    are fully correlated and add back up to the device's value and sigma. A delta load
    between two nodes a, b draws the current S / (V_a - V_b) from a and returns it at b, so
    at nominal voltages (the no-load angles) a's share is ``S V_a / (V_a - V_b)`` and b's
    ``-S V_b / (V_a - V_b)``: half of S each, rotated by -30 and +30 degrees; the sigmas follow
    the same factors. At a node, the devices' shares add (DER positive, loads negative) and
    their variances add (independent devices): ``sigma = max(sqrt(sum of squares), floor)``.
    """
    acc: dict[str, np.ndarray] = {}

    def add(device: DeviceState, p: float, sp: float, q: float, sq: float) -> None:
        nodes = index.nodes_of(device.bus)
        angles = [index.angles.get(node) for node in nodes]
        for node, factor in zip(nodes, share_factors(device.delta, angles)):
            s_share, err = factor * complex(p, q), factor * complex(sp, sq)
            share = np.array([s_share.real, err.real ** 2, s_share.imag, err.imag ** 2])
            if factor.imag == 0:
                share[[1, 3]] = [(sp * factor.real) ** 2, (sq * factor.real) ** 2]
            acc[node] = acc.get(node, np.zeros(4)) + share

    for load, e_load in zip(loads, e):
        q_per_p = load.q_kvar / load.p_kw if load.p_kw != 0 else 0.0
        p = load.demand_kw * (1.0 + rel_error * e_load)
        sigma_p = rel_error * abs(load.demand_kw)
        if load.cap_kw is not None:
            p = min(p, load.cap_kw)
            sigma_p = capped_moments(load.demand_kw, sigma_p, load.cap_kw)[1]
        add(load, -p, sigma_p, -p * q_per_p, sigma_p * abs(q_per_p))
    frac = pv_sigma_pct / 100.0
    for pv in pvs:
        add(pv, pv.p_kw, frac * abs(pv.p_kw), pv.q_kvar, frac * abs(pv.q_kvar))
    return {node: NodePseudo(float(a[0]), max(math.sqrt(a[1]), floor),
                             float(a[2]), max(math.sqrt(a[3]), floor))
            for node, a in acc.items()}


@dataclass
class Readings:
    """One output array: ids-aligned values, one-sigma accuracies and pseudo flags."""

    ids: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    sigma: list[float] = field(default_factory=list)
    pseudo: list[bool] = field(default_factory=list)


@dataclass
class Truth:
    """The ground truth of one step.

    ``values[quantity][id]`` is the true value of each quantity of `READING_ORDER` that is
    available (injections positive into the network; flows into the line).
    """

    values: dict[str, Mapping[str, float]]
    loads: Sequence[DeviceState] = ()
    pvs: Sequence[DeviceState] = ()
    generators: Sequence[DeviceState] = ()
    """Generators and storage units (telemetry, like PV)."""

    def at(self, quantity: str, ids: Sequence[str]) -> np.ndarray:
        """True values of `quantity` at `ids`; a missing one raises, naming it."""
        table = self.values.get(quantity, {})
        missing = [i for i in ids if i not in table]
        if missing:
            raise ValueError(f"no true {quantity!r} value for {missing[:5]} this step")
        return np.array([table[i] for i in ids], dtype=float)


class Sensor:
    """The sensor over a run: the meter plan (chosen at construction), noise and counts.

    `device_nodes` are the topology's nodes with a device; the non-slack ones without a P
    (or Q) meter get P (or Q) pseudo-measurements when ``pseudo_loads`` is on. A device node
    no load, PV system, generator or storage unit maps to gets 0 with the floor sigma, and
    is counted. `voltages_pu` (true |V| of the first step) keeps meters off dead nodes.
    """

    def __init__(self, config: SensorConfig, rng: np.random.Generator, node_ids: Sequence[str],
                 slack_nodes: Sequence[str], device_nodes: Sequence[str],
                 branch_ids: Sequence[str] = (), angles_deg: Mapping[str, float] | None = None,
                 voltages_pu: Mapping[str, float] | None = None):
        self.config = config
        self.rng = rng
        self.plan = plan_meters(config, node_ids, slack_nodes, branch_ids, rng, voltages_pu)
        self.index = NodeIndex(node_ids, angles_deg)
        devices = (sorted(set(device_nodes) - set(slack_nodes) - {""})
                   if config.pseudo_loads else [])
        self.pseudo_nodes = {q: [n for n in devices if n not in set(self.plan.readings[q])]
                             for q in ("p", "q")}
        self.unmapped: set[str] = set()
        self.counts = {"steps": 0, "readings": 0, "dropped_readings": 0,
                       "bad_data_injected": 0}

    def measure(self, step: int, truth: Truth) -> dict[str, Readings]:
        """Quantity -> this step's readings (meters, then pseudo-measurements merged into
        ``p`` and ``q``), each array sorted by id."""
        out = {quantity: self._read(quantity, step, truth) for quantity in READING_ORDER}
        if self.config.pseudo_loads:
            self._add_pseudo(truth, out)
        self.counts["steps"] += 1
        return out

    def _read(self, quantity: str, step: int, truth: Truth) -> Readings:
        ids = self.plan.readings[quantity]
        true = truth.at(quantity, ids)
        sigma = sigmas(quantity, true, self.config)
        values, kept = noisy(true, sigma, self.config.dropout_probability, self.rng)
        offsets = {}
        for entry in self.config.bad_data:
            if entry.quantity == quantity and entry.active(step):
                offsets[entry.id] = offsets.get(entry.id, 0.0) + entry.offset
        out = Readings()
        for i, node in enumerate(ids):
            if not kept[i]:
                continue
            out.ids.append(node)
            out.values.append(float(values[i]) + offsets.get(node, 0.0))
            out.sigma.append(float(sigma[i]))
            out.pseudo.append(False)
            self.counts["bad_data_injected"] += node in offsets
        self.counts["readings"] += len(out.ids)
        self.counts["dropped_readings"] += len(ids) - len(out.ids)
        return out

    def _add_pseudo(self, truth: Truth, out: dict[str, Readings]) -> None:
        loads = sorted(truth.loads, key=lambda d: d.id)
        e = self.rng.standard_normal(len(loads))
        c = self.config
        pseudo = pseudo_injections(loads, [*truth.pvs, *truth.generators], self.index, e,
                                   rel_error=c.pseudo_rel_error, pv_sigma_pct=c.sigma_pq_pct,
                                   floor=c.sigma_pq_floor_kw)
        unknown = NodePseudo(0.0, c.sigma_pq_floor_kw, 0.0, c.sigma_pq_floor_kw)
        for quantity, value_of, sigma_of in (("p", "p_kw", "sigma_p_kw"),
                                             ("q", "q_kvar", "sigma_q_kvar")):
            meters = out[quantity]
            merged = list(zip(meters.ids, meters.values, meters.sigma, meters.pseudo))
            for node in self.pseudo_nodes[quantity]:
                if node not in pseudo:
                    self.unmapped.add(node)
                value = pseudo.get(node, unknown)
                merged.append((node, getattr(value, value_of), getattr(value, sigma_of), True))
            merged.sort()
            out[quantity] = Readings(*map(list, zip(*merged))) if merged else Readings()

    def summary(self) -> dict:
        """Deterministic key figures of the run, for summary.json."""
        return {
            "meters": {quantity: len(ids) for quantity, ids in self.plan.readings.items()},
            "metered_nodes": len(self.plan.metered_nodes),
            "pseudo": {quantity: len(nodes) for quantity, nodes in self.pseudo_nodes.items()},
            "unmapped_device_nodes": len(self.unmapped),
            **self.counts,
        }
