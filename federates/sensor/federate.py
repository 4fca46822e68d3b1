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

import numpy as np

from gridsim.federates.sensor.adapter import (
    REQUIRED,
    check_inputs,
    input_ports,
    reading_messages,
    start_sensor,
    truth_of,
)
from gridsim.federates.sensor.sensing import Sensor, SensorConfig
from gridsim.loop import Inputs, Runtime

log = logging.getLogger("gridsim.sensor")


def run(rt: Runtime) -> dict:
    """Measure every step of the scenario; returns the summary part."""
    config = SensorConfig.from_parameters(rt.config.parameters)
    check_inputs(config, rt.connected, rt.config.name)
    if config.pseudo_loads and not rt.connected("pv_states"):
        log.warning("pv_states is not linked: pseudo-measurements ignore PV generation")
    rng = np.random.default_rng(rt.config.seed)
    inputs = Inputs(rt, input_ports(config))
    sensor: Sensor | None = None
    rt.enter()
    for step in rt.step_times():
        inputs.read()
        if missing := inputs.missing(REQUIRED):
            inputs.skip(step, missing)
            continue
        first = sensor is None
        if sensor is None:
            sensor = start_sensor(config, rng, inputs.messages)
        time_s = inputs["voltages_magnitude"].time_s
        time_s = step.time_s if time_s is None else time_s
        readings = sensor.measure(rt.config.clock.step_index(time_s), truth_of(inputs.messages))
        if first and sensor.unmapped:
            log.warning("%d device nodes map to no load, PV system, generator or storage unit "
                        "(e.g. %s): pseudo-measured 0 with the floor sigma%s",
                        len(sensor.unmapped), sorted(sensor.unmapped)[0],
                        "" if rt.connected("generator_states") else
                        "; generator_states is not linked")
        for port, message in reading_messages(readings, time_s).items():
            rt.publish(port, message)
    summary = sensor.summary() if sensor else {"steps": 0}
    return {**summary, "skipped_steps": inputs.skipped}
