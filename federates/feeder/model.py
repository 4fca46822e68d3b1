"""The feeder's physics: an OpenDSS time-series power flow with commands applied.

No HELICS here: `FeederModel` compiles the circuit, steps it through the scenario's clock,
reads its state and applies commands, so it is testable (and benchmarkable) on its own.

Time stepping follows OpenDSS's own daily (or yearly) mode with ``number=1``: each
``Solve`` advances the clock by one step and solves, so step ``k`` is solved at
``start + k * step`` with the feeder's load shapes. A direct OpenDSS script doing the same
gives the same voltages to the last bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import opendssdirect as dss

from gridsim.federates.feeder import commands
from gridsim.federates.feeder.admittance import NetworkModel, compile_into
from gridsim.federates.feeder.commands import LoadCapper, Rejected
from gridsim.feeders import FeederSource


class SolveError(RuntimeError):
    """The power flow did not converge."""


def start_hour(start: datetime, mode: str) -> float:
    """Hour of the day (daily mode) or of the year (yearly mode) at `start`."""
    hour = start.hour + start.minute / 60 + start.second / 3600
    if mode == "yearly":
        return (start.timetuple().tm_yday - 1) * 24 + hour
    return hour


class FeederModel:
    """One OpenDSS circuit stepped through time."""

    def __init__(self, source: FeederSource, start: datetime, step_s: float, *,
                 mode: str = "daily", max_control_iter: int = 30,
                 load_scale: float = 1.0, pv_scale: float = 1.0):
        self.step_s = step_s
        self.mode = mode
        compile_into(dss, source)
        if load_scale != 1.0:
            dss.Text.Command(f"set loadmult={load_scale}")
        if pv_scale != 1.0:
            for name in dss.PVsystems.AllNames():
                dss.PVsystems.Name(name)
                dss.PVsystems.Pmpp(dss.PVsystems.Pmpp() * pv_scale)
                dss.PVsystems.kVARated(dss.PVsystems.kVARated() * pv_scale)
        dss.Text.Command(f"set mode={mode} stepsize={step_s}s number=1 "
                         f"maxcontroliter={max_control_iter}")
        dss.Solution.DblHour(start_hour(start, mode) - step_s / 3600)
        self.node_ids = [n.lower() for n in dss.Circuit.AllNodeNames()]
        self.network = NetworkModel(source)
        self._net_index: np.ndarray | None = None
        self._cap_ratings: dict[str, list] | None = None
        self._device_key: tuple | None = None
        self._line_powers: np.ndarray | None = None
        self.catalog = Catalog.read(mode)
        self.capper = LoadCapper(dict(zip(self.catalog.loads, self.catalog.load_base_kw)))

    # -- stepping -------------------------------------------------------------------------

    def solve(self) -> None:
        """Advance one step and solve; raises `SolveError` if it does not converge.

        With load caps in force, a step whose capped loads draw more than their caps, or
        less than both their caps and their uncapped draw, is solved again with their
        nominal kW rescaled (see `LoadCapper`).
        """
        step_h = self.step_s / 3600
        next_hour = dss.Solution.DblHour() + step_h
        mult = dss.Solution.LoadMult()
        multiplier = lambda load: self.catalog.multiplier(load, next_hour) * mult  # noqa: E731
        self.capper.prepare(multiplier)
        self._solve_once()
        for _ in range(self.capper.max_rounds if self.capper.caps else 0):
            rescaled = self.capper.off_cap(multiplier)
            if not rescaled:
                break
            self.capper.rescale(rescaled)
            dss.Solution.DblHour(next_hour - step_h)
            self._solve_once()

    def _solve_once(self) -> None:
        dss.Solution.Solve()
        if not dss.Solution.Converged():
            raise SolveError(f"power flow did not converge at hour {dss.Solution.DblHour():.4f}")

    def sync_network(self) -> bool:
        """Bring the network model up to the current taps and capacitor states.

        Returns True when the network changed (the topology must be republished); most
        steps change nothing, and then nothing is rebuilt.
        """
        ratios, caps = self.tap_ratios(), self.capacitor_states()
        key = (tuple(ratios), tuple(map(tuple, caps.values())))
        if key == self._device_key:
            return False
        self._device_key = key
        ids = self.network.ids
        self.network.update(dict(zip(self.catalog.reg_transformers, ratios)), caps)
        if self._net_index is None or self.network.ids is not ids:
            index = {n: i for i, n in enumerate(self.node_ids)}
            self._net_index = np.array([index[n] for n in self.network.ids])
        return True

    # -- state ----------------------------------------------------------------------------

    def voltages(self) -> np.ndarray:
        """Complex node voltages (V, line to ground), in `node_ids` order."""
        return np.asarray(dss.Circuit.AllBusVolts()).view(complex)

    def voltages_pu(self) -> np.ndarray:
        """Node voltage magnitudes in p.u. of each node's base, in `node_ids` order."""
        return np.asarray(dss.Circuit.AllBusMagPu())

    def injections(self, voltages: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
        """Node ids and complex power injected into the network there, kVA.

        `voltages` are this step's `voltages()`, if the caller has them already.
        """
        v = (self.voltages() if voltages is None else voltages)[self._net_index]
        return self.network.ids, self.network.injections(v) / 1000.0

    def pv_states(self) -> dict[str, list]:
        """Every PV system's output, availability and rating."""
        cat = self.catalog
        p_kw, q_kvar, available, rating = [], [], [], []
        more = dss.PVsystems.First()
        while more:
            powers = dss.CktElement.Powers()
            p_kw.append(-sum(powers[0::2]))
            q_kvar.append(-sum(powers[1::2]))
            available.append(dss.PVsystems.Pmpp() * dss.PVsystems.IrradianceNow())
            rating.append(dss.PVsystems.kVARated())
            more = dss.PVsystems.Next()
        return {"ids": cat.pvs, "bus": cat.pv_buses, "p_kw": p_kw, "q_kvar": q_kvar,
                "available_kw": available, "kva_rating": rating}

    def generator_states(self) -> dict[str, list]:
        """Every generator's and storage unit's output (DER telemetry) and rating."""
        p_kw, q_kvar = [], []
        for iface in (dss.Generators, dss.Storages):  # the catalog's order
            more = iface.First()
            while more:
                powers = dss.CktElement.Powers()
                p_kw.append(-sum(powers[0::2]))
                q_kvar.append(-sum(powers[1::2]))
                more = iface.Next()
        cat = self.catalog
        return {"ids": [name for _, name in cat.generators],
                "kind": [kind for kind, _ in cat.generators], "bus": cat.generator_buses,
                "p_kw": p_kw, "q_kvar": q_kvar, "kva_rating": cat.generator_kva,
                "delta": cat.generator_delta}

    def load_states(self) -> dict[str, list]:
        """Every load's consumption, uncapped demand and cap."""
        cat = self.catalog
        p_kw, q_kvar = [], []
        more = dss.Loads.First()
        while more:
            powers = dss.CktElement.Powers()
            p_kw.append(sum(powers[0::2]))
            q_kvar.append(sum(powers[1::2]))
            more = dss.Loads.Next()
        demand = cat.demand_kw(dss.Solution.DblHour()) * dss.Solution.LoadMult()
        return {"ids": cat.loads, "bus": cat.load_buses, "p_kw": p_kw, "q_kvar": q_kvar,
                "demand_kw": demand.tolist(),
                "cap_kw": [self.capper.caps.get(n) for n in cat.loads],
                "delta": cat.load_delta}

    def branch_flows(self) -> dict[str, list]:
        """Power into every line at its first terminal, per conductor (ids 'line:node').

        One call for every power-delivery element (``PDElements.AllPowers``), then the lines'
        first-terminal conductors picked out: a tenth of the cost of asking line by line.
        """
        if self._line_powers is None:
            self._line_powers = _line_power_positions()
        powers = np.asarray(dss.PDElements.AllPowers())
        return {"ids": self.catalog.branch_ids, "p_kw": powers[2 * self._line_powers].tolist(),
                "q_kvar": powers[2 * self._line_powers + 1].tolist()}

    def tap_ratios(self) -> list[float]:
        """Winding-2 tap (p.u.) of each regulated transformer, in regulator order."""
        ratios = []
        for transformer in self.catalog.reg_transformers:
            dss.Transformers.Name(transformer)
            dss.Transformers.Wdg(2)
            ratios.append(dss.Transformers.Tap())
        return ratios

    def _tap_numbers(self) -> list[int]:
        """Tap position of each regulator, read from its transformer.

        Read from the transformer, not the control: a control disabled by a tap command is
        skipped by OpenDSS's iteration over controls, but its transformer keeps its tap.
        """
        return [int(round((ratio - neutral) / step)) for (neutral, step, _), ratio
                in zip(self.catalog.tap_ranges, self.tap_ratios())]

    def regulator_states(self) -> dict[str, list]:
        """Tap position and ratio of every regulator control, with its windings' buses."""
        c = self.catalog
        return {"ids": c.regulators, "transformer": c.reg_transformers,
                "tap": self._tap_numbers(), "tap_ratio": self.tap_ratios(),
                "primary": [w[0] for w in c.reg_windings],
                "secondary": [w[1] for w in c.reg_windings],
                "tap_step": [step for _, step, _ in c.tap_ranges],
                "tap_limit": [half for _, _, half in c.tap_ranges]}

    def capacitor_states(self) -> dict[str, list[int]]:
        """Step states (1 closed) of every capacitor bank."""
        states = {}
        more = dss.Capacitors.First()
        while more:
            states[dss.Capacitors.Name()] = list(dss.Capacitors.States())
            more = dss.Capacitors.Next()
        return states

    def capacitor_ratings(self) -> dict[str, list]:
        """Rated kvar, bus (with phases) and rated kV of every capacitor bank (read once:
        commands switch steps, never ratings)."""
        if self._cap_ratings is None:
            out: dict[str, list] = {"kvar": [], "bus": [], "kv": []}
            for cap in dss.Capacitors.AllNames():
                dss.Capacitors.Name(cap)
                out["kvar"].append(dss.Capacitors.kvar())
                out["bus"].append(dss.CktElement.BusNames()[0].lower())
                out["kv"].append(dss.Capacitors.kV())
            self._cap_ratings = out
        return {key: list(values) for key, values in self._cap_ratings.items()}

    # -- commands (see commands.py) -----------------------------------------------------

    def set_pv(self, port: str, ids, p_max_kw, q_kvar) -> tuple[int, list[Rejected]]:
        """PV curtailment limits and reactive setpoints, from the next solve."""
        return commands.set_pv(port, ids, p_max_kw, q_kvar)

    def set_load_caps(self, port: str, ids, caps, source: str = "") -> tuple[int, list[Rejected]]:
        """Caps on what loads draw, kW (None removes), from the next solve; several sources
        combine by the least cap (`commands.LoadCapper`)."""
        return self.capper.set_caps(port, ids, caps, source)

    def set_capacitors(self, port: str, ids, states) -> tuple[int, list[Rejected]]:
        """Capacitor bank states (1 closed, 0 open), from the next solve."""
        return commands.set_capacitors(port, ids, states)

    def set_taps(self, port: str, ids, taps) -> tuple[int, list[Rejected]]:
        """Regulator tap positions, held from the next solve."""
        transformers = dict(zip((r.lower() for r in self.catalog.regulators),
                                self.catalog.reg_transformers))
        return commands.set_taps(port, ids, taps, transformers)


def _line_power_positions() -> np.ndarray:
    """Positions in ``PDElements.AllPowers`` (complex values) of every line's first-terminal
    conductors, in line order."""
    names = dss.PDElements.AllNames()
    sizes = np.asarray(dss.PDElements.AllNumConductors()) * np.asarray(
        dss.PDElements.AllNumTerminals())
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    conductors = dss.PDElements.AllNumConductors()
    return np.array([offsets[i] + c for i, name in enumerate(names)
                     if name.lower().startswith("line.") for c in range(conductors[i])],
                    dtype=int)


@dataclass
class Catalog:
    """What does not change during a run: element names, buses, ratings, load shapes."""

    loads: list[str]
    load_buses: list[str]
    load_base_kw: np.ndarray
    load_shapes: list[str]
    load_delta: list[bool]
    shapes: dict[str, tuple[float, np.ndarray]]
    pvs: list[str]
    pv_buses: list[str]
    regulators: list[str]
    reg_transformers: list[str]
    tap_ranges: list[tuple[float, float, int]]
    reg_windings: list[tuple[str, str]]
    """Bus (with phases) of winding 1 and winding 2 of each regulator's transformer."""
    branch_ids: list[str]
    generators: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name) of every generator ('generator') then storage unit ('storage')."""
    generator_buses: list[str] = field(default_factory=list)
    generator_kva: list[float] = field(default_factory=list)
    generator_delta: list[bool] = field(default_factory=list)
    switches: set[str] = field(default_factory=set)
    """Names of the lines OpenDSS marks as switches (``switch=yes``)."""

    @classmethod
    def read(cls, mode: str) -> Catalog:
        """Read the compiled circuit's elements (in OpenDSS's own iteration order)."""
        loads, buses, base, shape_names, delta = [], [], [], [], []
        more = dss.Loads.First()
        while more:
            loads.append(dss.Loads.Name())
            delta.append(bool(dss.Loads.IsDelta()))
            buses.append(dss.CktElement.BusNames()[0].lower())
            base.append(dss.Loads.kW())
            shape_names.append((dss.Loads.Yearly() if mode == "yearly" else dss.Loads.Daily())
                               .lower())
            more = dss.Loads.Next()
        shapes = {}
        for name in set(shape_names) - {""}:
            dss.LoadShape.Name(name)
            shapes[name] = (dss.LoadShape.HrInterval(), np.asarray(dss.LoadShape.PMult()))
        pvs, pv_buses = [], []
        more = dss.PVsystems.First()
        while more:
            pvs.append(dss.PVsystems.Name())
            pv_buses.append(dss.CktElement.BusNames()[0].lower())
            more = dss.PVsystems.Next()
        regs, transformers, windings = list(dss.RegControls.AllNames()), [], []
        for reg in regs:
            dss.RegControls.Name(reg)
            transformers.append(dss.RegControls.Transformer().lower())
            dss.Transformers.Name(transformers[-1])
            winding_buses = [b.lower() for b in dss.CktElement.BusNames()]
            windings.append((winding_buses[0], winding_buses[1]))
        branch_ids, switches = [], set()
        more = dss.Lines.First()
        while more:
            line, bus = dss.Lines.Name().lower(), dss.CktElement.BusNames()[0].split(".")[0]
            if dss.Lines.IsSwitch():
                switches.add(line)
            order = list(dss.CktElement.NodeOrder())
            branch_ids += [f"{line}:{bus.lower()}.{n}" for n in order[:len(order) // 2]]
            more = dss.Lines.Next()
        generators, gen_buses, gen_kva, gen_delta = [], [], [], []
        for kind, iface in (("generator", dss.Generators), ("storage", dss.Storages)):
            more = iface.First()
            while more:
                generators.append((kind, iface.Name().lower()))
                gen_buses.append(dss.CktElement.BusNames()[0].lower())
                if kind == "generator":
                    gen_kva.append(dss.Generators.kVARated())
                    gen_delta.append(bool(dss.Generators.IsDelta()))
                else:
                    gen_kva.append(float(dss.Properties.Value("kVA")))
                    gen_delta.append(dss.Properties.Value("conn").lower().startswith("d"))
                more = iface.Next()
        return cls(loads, buses, np.asarray(base), shape_names, delta, shapes, pvs, pv_buses, regs,
                   transformers, [commands.tap_range(t) for t in transformers], windings,
                   branch_ids,
                   generators, gen_buses, gen_kva, gen_delta, switches)

    def multiplier(self, load: str, hour: float) -> float:
        """A load's shape multiplier at `hour` (1 without a shape)."""
        shape = self.load_shapes[self.loads.index(load)]
        return shape_multiplier(*self.shapes[shape], hour) if shape else 1.0

    def demand_kw(self, hour: float) -> np.ndarray:
        """Every load's base kW times its shape multiplier at `hour`."""
        mults = {name: shape_multiplier(*spec, hour) for name, spec in self.shapes.items()}
        return self.load_base_kw * np.array([mults.get(s, 1.0) for s in self.load_shapes])


def shape_multiplier(interval_h: float, mults: np.ndarray, hour: float) -> float:
    """A fixed-interval load shape's multiplier at `hour`, as OpenDSS reads it.

    Point i of a shape with interval h stands for time (i + 1) * h, repeating over the
    shape's length; between points OpenDSS takes the nearest one.
    """
    if interval_h <= 0 or not len(mults):
        return 1.0
    index = int(math.floor(hour / interval_h + 0.5)) - 1
    return float(mults[index % len(mults)])
