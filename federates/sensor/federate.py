"""The sensor federate's loop: the feeder's ground truth in, what a utility sees out.

Timing: periodic at the scenario step with offset 1 s, after the feeder has published step
``k`` (offset 0) and before the estimator (offset 2). At each granted time it keeps the
latest message of every input (the topology arrives only when it changes), reads the meters
of step ``k`` with `gridsim.federates.sensor.sensing` and publishes every output, empty
arrays included. The meters are chosen at the first step, from the first topology and
the first true voltages (no meter on a de-energized node).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel

from gridsim import messages as m
from gridsim.federates.sensor.sensing import (
    DeviceState,
    Readings,
    Sensor,
    SensorConfig,
    SensorConfigError,
    Truth,
)
from gridsim.runtime import FederateRuntime

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


def run(rt: FederateRuntime) -> dict:
    """Measure every step of the scenario; returns the summary part."""
    config = SensorConfig.from_parameters(rt.parameters)
    check_inputs(config, rt.connected, rt.name)
    if config.pseudo_loads and not rt.connected("pv_states"):
        log.warning("pv_states is not linked: pseudo-measurements ignore PV generation")
    ports = [*REQUIRED, *TELEMETRY, *(port for _, port in config.needed_inputs())]
    rng = np.random.default_rng(rt.seed)
    latest: dict[str, BaseModel] = {}
    sensor: Sensor | None = None
    first = False
    rt.enter()
    for k, t in rt.step_times():
        for port in ports:
            for _, message in rt.updates(port):
                latest[port] = message
        missing = [port for port in REQUIRED if port not in latest]
        if missing:
            raise RuntimeError(f"step {k}: nothing received yet on {missing}")
        if sensor is None:
            sensor = start_sensor(config, rng, latest)
            first = True
        time_s = latest["voltages_magnitude"].time_s
        time_s = t - rt.offset_s if time_s is None else time_s
        readings = sensor.measure(rt.step_index(time_s), truth_of(latest))
        if first and sensor.unmapped:
            log.warning("%d device nodes map to no load, PV system, generator or storage unit "
                        "(e.g. %s): pseudo-measured 0 with the floor sigma%s",
                        len(sensor.unmapped), sorted(sensor.unmapped)[0],
                        "" if rt.connected("generator_states") else
                        "; generator_states is not linked")
        first = False
        for quantity, (port, cls, units) in OUTPUTS.items():
            rt.publish(port, message_of(cls, readings[quantity], units, time_s,
                                        flags=cls in (m.PowersReal, m.PowersImaginary)))
    return sensor.summary() if sensor else {"steps": 0}


def check_inputs(config: SensorConfig, connected: Callable[[str], bool], name: str) -> None:
    """Refuse a configuration that reads an input nobody feeds (before the run starts)."""
    for parameter, port in config.needed_inputs():
        if not connected(port):
            raise SensorConfigError(
                f"parameter {parameter} needs input {port!r}, which is not linked; add a "
                f"link such as 'feeder.{port} -> {name}.{port}'")


def start_sensor(config: SensorConfig, rng: np.random.Generator,
                 latest: dict[str, BaseModel]) -> Sensor:
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


def truth_of(latest: dict[str, BaseModel]) -> Truth:
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
            loads.delta or [False] * len(loads.ids))],
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
