"""The sensor's messages: the feeder's ground truth in, meter readings out (no HELICS).

What the sensor loop (`federate.py`) and the offline chain (`federates/chain.py`)
share: which inputs a configuration reads, the ground truth of a step from the feeder's
messages, the sensor built on the first of them, and the output messages of a step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np

from gridsim import messages as m
from gridsim.federates.sensor.sensing import (
    DeviceState,
    Readings,
    Sensor,
    SensorConfig,
    SensorConfigError,
    Truth,
)

log = logging.getLogger("gridsim.sensor")

REQUIRED = ("topology", "voltages_magnitude", "powers_real", "powers_imag", "load_states")
"""Inputs every configuration reads (``required`` in the component definition)."""

TELEMETRY = ("pv_states", "generator_states")
"""Optional inputs: DER telemetry, used in the pseudo-measurements when linked."""

OUTPUTS = {  # quantity -> (output port, message type, units)
    "v": ("voltages_magnitude", m.VoltagesMagnitude, "pu"),
    "angle": ("voltages_angle", m.VoltagesAngle, "deg"),
    "p": ("powers_real", m.PowersReal, "kW"),
    "q": ("powers_imag", m.PowersImaginary, "kvar"),
    "p_flow": ("branch_powers_real", m.PowersReal, "kW"),
    "q_flow": ("branch_powers_imag", m.PowersImaginary, "kvar"),
}

_NODE_ARRAYS = (("v", "voltages_magnitude"), ("angle", "voltages_angle"),
                ("p", "powers_real"), ("q", "powers_imag"))


def input_ports(config: SensorConfig) -> list[str]:
    """Every input this configuration reads."""
    return [*REQUIRED, *TELEMETRY, *(port for _, port in config.needed_inputs())]


def check_inputs(config: SensorConfig, connected: Callable[[str], bool], name: str) -> None:
    """Refuse a configuration that reads an input nobody feeds (before the run starts)."""
    for parameter, port in config.needed_inputs():
        if not connected(port):
            raise SensorConfigError(
                f"parameter {parameter} needs input {port!r}, which is not linked; add a "
                f"link such as 'feeder.{port} -> {name}.{port}'")


def start_sensor(config: SensorConfig, rng: np.random.Generator,
                 latest: Mapping[str, m.Message]) -> Sensor:
    """The sensor with its meters chosen on the first topology (and branch ids, if any)."""
    topology: m.Topology = latest["topology"]
    flows = latest.get("branch_flows")
    vm = latest.get("voltages_magnitude")
    sensor = Sensor(config, rng, topology.ids, topology.slack_bus, topology.device_nodes,
                    flows.ids if flows else (),
                    dict(zip(topology.ids, topology.base_voltage_angles.values)),
                    dict(zip(vm.ids, vm.values)) if vm is not None else None)
    summary = sensor.summary()
    log.info("meters %s on %d nodes; pseudo-measurements %s", summary["meters"],
             summary["metered_nodes"], summary["pseudo"])
    return sensor


def truth_of(latest: Mapping[str, m.Message]) -> Truth:
    """The ground truth of this step from the latest input messages."""
    values = {quantity: dict(zip(latest[port].ids, latest[port].values))
              for quantity, port in _NODE_ARRAYS if port in latest}
    if "branch_flows" in latest:
        flows: m.BranchFlows = latest["branch_flows"]
        values["p_flow"] = dict(zip(flows.ids, flows.p_kw))
        values["q_flow"] = dict(zip(flows.ids, flows.q_kvar))
    loads: m.LoadStates = latest["load_states"]
    pvs: m.PVStates | None = latest.get("pv_states")
    gens: m.GeneratorStates | None = latest.get("generator_states")
    return Truth(
        values,
        loads=[DeviceState(*row) for row in zip(
            loads.ids, loads.bus, loads.p_kw, loads.q_kvar, loads.demand_kw,
            loads.delta or [False] * len(loads.ids), loads.cap_kw)],
        pvs=[DeviceState(*row) for row in zip(pvs.ids, pvs.bus, pvs.p_kw, pvs.q_kvar)]
        if pvs else [],
        generators=[DeviceState(f"{kind}.{name}", bus, p, q, delta=delta)
                    for name, kind, bus, p, q, delta in zip(
                        gens.ids, gens.kind, gens.bus, gens.p_kw, gens.q_kvar,
                        gens.delta or [False] * len(gens.ids))] if gens else [])


def message_of(cls: type[m.MeasurementArray], readings: Readings, units: str,
               time_s: float, flags: bool) -> m.MeasurementArray:
    """One output message: values with their one-sigma accuracy (and pseudo flags)."""
    return cls(time_s=time_s, ids=readings.ids, values=readings.values, units=units,
               accuracy=readings.sigma, pseudo=readings.pseudo if flags else None)


def reading_messages(readings: dict[str, Readings], time_s: float) -> dict[str, m.Message]:
    """Every output message of one step, by port (empty arrays included)."""
    return {port: message_of(cls, readings[quantity], units, time_s,
                             flags=cls in (m.PowersReal, m.PowersImaginary))
            for quantity, (port, cls, units) in OUTPUTS.items()}
