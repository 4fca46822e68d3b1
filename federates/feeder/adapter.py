"""The feeder's messages: commands in, ground truth out (no HELICS).

What the feeder loop (`federate.py`) and the offline chain (`federates/chain.py`)
share: its settings, how each command message reaches the model, and every output
message of a solved step. Output messages are built with ``model_construct``: the feeder
makes them aligned by construction, and validating 2,000 floats a step again would cost
more than the solve.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from gridsim import messages as m
from gridsim.federates.feeder.model import FeederModel, Rejected
from gridsim.feeders import FeederSource

COMMAND_PORTS = ("pv_setpoints", "load_caps", "capacitor_commands", "tap_commands")
"""Command inputs, in the order their messages are applied before a solve."""


@dataclass(frozen=True)
class FeederSettings:
    """The feeder's parameters (component definition), parsed."""

    mode: str = "daily"
    max_control_iter: int = 30
    load_scale: float = 1.0
    pv_scale: float = 1.0

    @classmethod
    def from_parameters(cls, parameters: Mapping) -> FeederSettings:
        return cls(mode=parameters["mode"], max_control_iter=parameters["max_control_iter"],
                   load_scale=parameters["load_scale"], pv_scale=parameters["pv_scale"])

    def model(self, source: FeederSource, start: datetime, step_s: float) -> FeederModel:
        """The OpenDSS model these settings describe, compiled and at its first step."""
        return FeederModel(source, start, step_s, mode=self.mode,
                           max_control_iter=self.max_control_iter,
                           load_scale=self.load_scale, pv_scale=self.pv_scale)


def apply_command(model: FeederModel, port: str, msg: m.Message,
                  source: str = "") -> tuple[int, list[Rejected]]:
    """Hand one command message from `source` (its link's topic) to the model: (accepted
    count, rejected commands). Load caps from several sources combine by their minimum."""
    if port == "pv_setpoints":
        return model.set_pv(port, msg.ids, msg.p_max_kw, msg.q_kvar)
    if port == "load_caps":
        return model.set_load_caps(port, msg.ids, msg.cap_kw, source)
    if port == "capacitor_commands":
        return model.set_capacitors(port, msg.ids, msg.states)
    if port == "tap_commands":
        return model.set_taps(port, msg.ids, msg.taps)
    raise KeyError(f"not a command port: {port!r}")


def command_report(t: float, accepted: int, rejected: list[Rejected]) -> m.CommandReport:
    """What became of the commands applied before a step."""
    return m.CommandReport(time_s=t, accepted=accepted, rejected=[
        m.RejectedCommand(port=r.port, name=r.name, reason=r.reason) for r in rejected])


_ARRAYS = {"voltages_magnitude": (m.VoltagesMagnitude, "pu"),
           "voltages_angle": (m.VoltagesAngle, "deg"),
           "voltages_real": (m.VoltagesReal, "V"),
           "voltages_imag": (m.VoltagesImaginary, "V")}


def step_messages(model: FeederModel, t: float, v_pu: np.ndarray, topology_changed: bool,
                  wanted: Callable[[str], bool]) -> dict[str, m.Message]:
    """Every `wanted` output of a solved step, by port, in publishing order. The topology
    is included only when the network changed (and at the first step)."""
    out: dict[str, m.Message] = {}
    node_ports = [port for port in (*_ARRAYS, "powers_real", "powers_imag") if wanted(port)]
    v = model.voltages() if node_ports else None
    values = {"voltages_magnitude": lambda: v_pu,
              "voltages_angle": lambda: np.degrees(np.angle(v)),
              "voltages_real": lambda: v.real, "voltages_imag": lambda: v.imag}
    for port in node_ports:
        if port in _ARRAYS:
            cls, units = _ARRAYS[port]
            out[port] = cls.model_construct(time_s=t, ids=model.node_ids,
                                            values=values[port]().tolist(), units=units)
    if wanted("powers_real") or wanted("powers_imag"):
        net_ids, s = model.injections(v)
        for port, cls, part, units in (("powers_real", m.PowersReal, s.real, "kW"),
                                       ("powers_imag", m.PowersImaginary, s.imag, "kvar")):
            if wanted(port):
                out[port] = cls.model_construct(time_s=t, ids=net_ids, values=part.tolist(),
                                                units=units)
    if topology_changed and wanted("topology"):
        out["topology"] = topology_message(model, t)
    out.update(device_messages(model, t, wanted))
    return out


def device_messages(model: FeederModel, t: float,
                    wanted: Callable[[str], bool]) -> dict[str, m.Message]:
    """The device states (PV, generators, loads, regulators, branch flows, capacitors)."""
    builders = {
        "pv_states": lambda: m.PVStates.model_construct(time_s=t, **model.pv_states()),
        "generator_states": lambda: m.GeneratorStates.model_construct(
            time_s=t, **model.generator_states()),
        "load_states": lambda: m.LoadStates.model_construct(time_s=t, **model.load_states()),
        "regulator_states": lambda: m.RegulatorStates.model_construct(
            time_s=t, **model.regulator_states()),
        "branch_flows": lambda: m.BranchFlows.model_construct(time_s=t,
                                                               **model.branch_flows()),
        "capacitor_states": lambda: _capacitor_states(model, t),
    }
    return {port: build() for port, build in builders.items() if wanted(port)}


def _capacitor_states(model: FeederModel, t: float) -> m.CapacitorStates:
    states = model.capacitor_states()
    return m.CapacitorStates.model_construct(time_s=t, ids=list(states),
                                             states=list(states.values()),
                                             **model.capacitor_ratings())


def topology_message(model: FeederModel, t: float) -> m.Topology:
    """The network model as a Topology message.

    Only the admittance changes from one revision to the next (taps, capacitors); the rest
    is built once per model and reused, and nothing is validated again (the feeder makes
    every array aligned by construction): republishing cost 8 ms a time before.
    """
    net = model.network
    static = getattr(model, "_topology_parts", None)
    if static is None:
        ids = net.ids
        static = model._topology_parts = {
            "ids": ids,
            "base_voltage_magnitudes": m.VoltagesMagnitude.model_construct(
                ids=ids, values=[net.base_v[n] for n in ids], units="V"),
            "base_voltage_angles": m.VoltagesAngle.model_construct(
                ids=ids, values=[float(net.noload_angle_deg[n]) for n in ids], units="deg"),
            "slack_bus": net.slack_nodes,
            "branches": [m.BranchAdmittance(**b, switch=b["name"] in model.catalog.switches)
                         for b in net.branches],
            "device_nodes": net.device_nodes,
        }
    y = net.y.tocoo()
    ids = static["ids"]
    admittance = m.AdmittanceSparse.model_construct(
        from_equipment=[ids[i] for i in y.row], to_equipment=[ids[j] for j in y.col],
        admittance_list=list(zip(y.data.real.tolist(), y.data.imag.tolist())), units="S")
    return m.Topology.model_construct(time_s=t, admittance=admittance, revision=net.revision,
                                      **static)


class FeederRecord:
    """Deterministic key figures of the feeder's run, for summary.json."""

    def __init__(self):
        self.steps = 0
        self.v_max: list[float] = []
        self.v_min: list[float] = []
        self.rejected = 0

    def add(self, v_pu: np.ndarray, rejected: list[Rejected]) -> None:
        energized = v_pu[v_pu > 0.1]
        self.steps += 1
        self.v_max.append(float(energized.max()))
        self.v_min.append(float(energized.min()))
        self.rejected += len(rejected)

    def summary(self, model: FeederModel) -> dict:
        return {
            "steps": self.steps,
            "nodes": len(model.node_ids),
            "v_max_pu": max(self.v_max, default=None),
            "v_min_pu": min(self.v_min, default=None),
            "v_max_pu_per_step": self.v_max,
            "v_min_pu_per_step": self.v_min,
            "rejected_commands": self.rejected,
        }
