"""The WLS estimator federate's loop: latest measurements in, one estimate out per step.

Timing: periodic every step at offset 2 s, after the feeder (0 s) and the sensor (1 s) of
the same step. The network model is rebuilt when a new topology revision arrives, warm
starting from the previous estimate node by node.

A numerical failure of one estimate (`EstimationError`: a singular system, a non-finite
step) does not stop the federate: that step publishes diagnostics with ``converged`` false
and the reason in ``error``, and no voltages (nothing trustworthy to publish); the next
step starts again from the no-load voltages.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from gridsim.federates.wls.adapter import (
    NEEDED,
    PORTS,
    EstimatorRecord,
    WLSSettings,
    estimate_messages,
    failure_diagnostics,
    measurement_set,
    rebuild_estimator,
)
from gridsim.federates.wls.estimator import EstimationError, WLSEstimator
from gridsim.loop import Inputs, Runtime
from gridsim.scoring import Score, phasors

log = logging.getLogger("gridsim.wls")


def run(rt: Runtime) -> dict:
    """Estimate every step; returns the summary part."""
    settings = WLSSettings.from_parameters(rt.config.parameters)
    inputs = Inputs(rt, PORTS)
    estimator: WLSEstimator | None = None
    score, record = Score(), EstimatorRecord()
    solve_times: list[float] = []
    rt.enter()
    for step in rt.step_times():
        t = step.time_s
        inputs.read()
        if missing := inputs.missing(NEEDED):
            rt.publish("diagnostics",
                       failure_diagnostics(t, f"skipped: {inputs.skip(step, missing)}"))
            continue
        topology = inputs["topology"]
        if estimator is None or estimator.net.revision != topology.revision:
            estimator = rebuild_estimator(estimator, topology, settings.s_base_kva,
                                          settings.estimator)
        t0 = time.perf_counter()
        ms = measurement_set(estimator.net, inputs.messages)
        try:
            result = estimator.estimate(ms)
        except EstimationError as exc:
            solve_times.append(time.perf_counter() - t0)
            log.warning("t=%gs: estimate failed: %s", t, exc)
            record.fail()
            rt.publish("diagnostics", failure_diagnostics(t, str(exc), len(ms),
                                                          solve_times[-1]))
            continue
        solve_times.append(time.perf_counter() - t0)
        messages = estimate_messages(estimator.net, result, t, solve_times[-1])
        for port, message in messages.items():
            rt.publish(port, message)
        record.add(result)
        if "truth_voltages_magnitude" in inputs and "truth_voltages_angle" in inputs:
            score.add(phasors(messages["voltages_magnitude"], messages["voltages_angle"]),
                      phasors(inputs["truth_voltages_magnitude"],
                              inputs["truth_voltages_angle"]))
    rt.timing["solve_s_per_step"] = solve_times
    if solve_times:
        rt.timing["solve_s_median"] = float(np.median(solve_times))
    return {"algorithm": "wls", **record.summary(), **score.summary(),
            "skipped_steps": inputs.skipped}
