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
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import opendssdirect as dss
from gridsim.federates.feeder.network import NetworkModel, compile_into
from gridsim.feeders import FeederSource


class SolveError(RuntimeError):
    """The power flow did not converge."""


@dataclass
class Rejected:
    """A command that could not be applied."""

    port: str
    name: str
    reason: str


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
                 load_scale: float = 1.0, pv_scale: float = 1.0, with_network: bool = True):
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
        self.network = NetworkModel(source) if with_network else None
        self._net_index: np.ndarray | None = None
        self.load_caps: dict[str, float] = {}
        self._modified_loads: set[str] = set()
        self.catalog = Catalog.read(mode)
        self._load_base_kw = dict(zip(self.catalog.loads, self.catalog.load_base_kw))

    # -- stepping -------------------------------------------------------------------------

    def solve(self) -> None:
        """Advance one step and solve; raises `SolveError` if it does not converge."""
        self._apply_load_caps()
        dss.Solution.Solve()
        if not dss.Solution.Converged():
            raise SolveError(f"power flow did not converge at hour {dss.Solution.DblHour():.4f}")

    def sync_network(self) -> bool:
        """Bring the network model up to the current taps and capacitor states.

        Returns True when the network changed (the topology must be republished).
        """
        taps = dict(zip(self.catalog.reg_transformers, self.tap_ratios()))
        changed = self.network.update(taps, self.capacitor_states())
        if changed:
            index = {n: i for i, n in enumerate(self.node_ids)}
            self._net_index = np.array([index[n] for n in self.network.ids])
        return changed

    # -- state ----------------------------------------------------------------------------

    def voltages(self) -> np.ndarray:
        """Complex node voltages (V, line to ground), in `node_ids` order."""
        return np.asarray(dss.Circuit.AllBusVolts()).view(complex)

    def voltages_pu(self) -> np.ndarray:
        """Node voltage magnitudes in p.u. of each node's base, in `node_ids` order."""
        return np.asarray(dss.Circuit.AllBusMagPu())

    def injections(self) -> tuple[list[str], np.ndarray]:
        """Node ids and complex power injected into the network there, kVA."""
        v = self.voltages()[self._net_index]
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
                "cap_kw": [self.load_caps.get(n) for n in cat.loads]}

    def tap_ratios(self) -> list[float]:
        """Winding-2 tap (p.u.) of each regulated transformer, in regulator order."""
        ratios = []
        for transformer in self.catalog.reg_transformers:
            dss.Transformers.Name(transformer)
            dss.Transformers.Wdg(2)
            ratios.append(dss.Transformers.Tap())
        return ratios

    def regulator_states(self) -> dict[str, list]:
        """Tap position and ratio of every regulator control."""
        taps = []
        more = dss.RegControls.First()
        while more:
            taps.append(int(dss.RegControls.TapNumber()))
            more = dss.RegControls.Next()
        return {"ids": self.catalog.regulators, "transformer": self.catalog.reg_transformers,
                "tap": taps, "tap_ratio": self.tap_ratios()}

    def capacitor_states(self) -> dict[str, list[int]]:
        """Step states (1 closed) of every capacitor bank."""
        states = {}
        more = dss.Capacitors.First()
        while more:
            states[dss.Capacitors.Name()] = list(dss.Capacitors.States())
            more = dss.Capacitors.Next()
        return states

    def capacitor_kvar(self) -> list[float]:
        """Rated kvar of every capacitor bank."""
        out = []
        for cap in dss.Capacitors.AllNames():
            dss.Capacitors.Name(cap)
            out.append(dss.Capacitors.kvar())
        return out

    # -- commands -------------------------------------------------------------------------

    def set_pv(self, port: str, ids, p_max_kw, q_kvar) -> tuple[int, list[Rejected]]:
        """Curtailment limits and reactive setpoints for PV systems."""
        known = set(dss.PVsystems.AllNames())
        accepted, rejected = 0, []
        for name, p_max, q in zip(ids, p_max_kw, q_kvar):
            if name.lower() not in known:
                rejected.append(Rejected(port, name, "no such PV system"))
                continue
            dss.PVsystems.Name(name)
            if p_max is not None:
                pmpp = dss.PVsystems.Pmpp()
                dss.PVsystems.pctPmpp(100.0 * min(max(p_max, 0.0), pmpp) / pmpp)
            if q is not None:
                dss.PVsystems.kvar(q)
            accepted += 1
        return accepted, rejected

    def set_load_caps(self, port: str, ids, caps) -> tuple[int, list[Rejected]]:
        """Caps (kW) on load consumption; None removes a cap. Applied at the next solve."""
        known = set(self._load_base_kw)
        accepted, rejected = 0, []
        for name, cap in zip(ids, caps):
            key = name.lower()
            if key not in known:
                rejected.append(Rejected(port, name, "no such load"))
            elif cap is not None and cap < 0:
                rejected.append(Rejected(port, name, f"negative cap {cap}"))
            else:
                if cap is None:
                    self.load_caps.pop(key, None)
                else:
                    self.load_caps[key] = float(cap)
                accepted += 1
        return accepted, rejected

    def set_capacitors(self, port: str, ids, states) -> tuple[int, list[Rejected]]:
        """Open (0) or close (1) capacitor banks; their controls, if any, are disabled."""
        known = set(dss.Capacitors.AllNames())
        accepted, rejected = 0, []
        for name, state in zip(ids, states):
            if name.lower() not in known or state not in (0, 1):
                reason = "no such capacitor" if name.lower() not in known else f"state {state}"
                rejected.append(Rejected(port, name, reason))
                continue
            for ctrl in dss.CapControls.AllNames():
                dss.CapControls.Name(ctrl)
                if dss.CapControls.Capacitor().lower() == name.lower():
                    dss.Text.Command(f"CapControl.{ctrl}.enabled=no")
            dss.Capacitors.Name(name)
            dss.Capacitors.States([state] * dss.Capacitors.NumSteps())
            accepted += 1
        return accepted, rejected

    def set_taps(self, port: str, ids, taps) -> tuple[int, list[Rejected]]:
        """Move regulators to tap positions; their automatic control is disabled."""
        known = set(dss.RegControls.AllNames())
        accepted, rejected = 0, []
        for name, tap in zip(ids, taps):
            if name.lower() not in known:
                rejected.append(Rejected(port, name, "no such regulator control"))
                continue
            dss.RegControls.Name(name)
            dss.Transformers.Name(dss.RegControls.Transformer())
            high = dss.Transformers.NumTaps() // 2
            low = -high
            if not low <= tap <= high:
                rejected.append(Rejected(port, name, f"tap {tap} outside [{low}, {high}]"))
                continue
            dss.Text.Command(f"RegControl.{name}.enabled=no")
            self.tap_overrides.add(name.lower())
            dss.RegControls.TapNumber(int(tap))
            accepted += 1
        return accepted, rejected

    # -- load caps ------------------------------------------------------------------------

    def _apply_load_caps(self) -> None:
        """Set each capped load's kW so that its consumption at the next step is <= its cap.

        Only loads with a cap, or whose kW a cap changed before, are touched.
        """
        next_hour = dss.Solution.DblHour() + self.step_s / 3600
        for name in sorted(set(self.load_caps) | self._modified_loads):
            base, cap = self._load_base_kw[name], self.load_caps.get(name)
            mult = self.catalog.multiplier(name, next_hour) * dss.Solution.LoadMult()
            dss.Loads.Name(name)
            want = base if cap is None or base * mult <= cap else cap / mult
            dss.Loads.kW(want)
            if want == base:
                self._modified_loads.discard(name)
            else:
                self._modified_loads.add(name)


@dataclass
class Catalog:
    """What does not change during a run: element names, buses, ratings, load shapes."""

    loads: list[str]
    load_buses: list[str]
    load_base_kw: np.ndarray
    load_shapes: list[str]
    shapes: dict[str, tuple[float, np.ndarray]]
    pvs: list[str]
    pv_buses: list[str]
    regulators: list[str]
    reg_transformers: list[str]

    @classmethod
    def read(cls, mode: str) -> Catalog:
        """Read the compiled circuit's elements (in OpenDSS's own iteration order)."""
        loads, buses, base, shape_names = [], [], [], []
        more = dss.Loads.First()
        while more:
            loads.append(dss.Loads.Name())
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
        regs, transformers = [], []
        more = dss.RegControls.First()
        while more:
            regs.append(dss.RegControls.Name())
            transformers.append(dss.RegControls.Transformer().lower())
            more = dss.RegControls.Next()
        return cls(loads, buses, np.asarray(base), shape_names, shapes, pvs, pv_buses, regs,
                   transformers)

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
    shape's length.
    """
    if interval_h <= 0 or not len(mults):
        return 1.0
    index = int(math.floor(hour / interval_h + 1e-9)) - 1
    return float(mults[index % len(mults)])
