"""The truth estimator's loop: at offset 2 s each step, republish the feeder's voltages.

Same outputs as the `wls` estimator, so downstream federates cannot tell them apart; its
summary scores it against the truth like any estimator (all errors zero).
"""

from __future__ import annotations

from gridsim import messages as m
from gridsim.runtime import FederateRuntime
from gridsim.scoring import Score, phasors


def run(rt: FederateRuntime) -> dict:
    """Pass the true voltages through every step; returns the summary part."""
    latest: dict[str, m.MeasurementArray] = {}
    score = Score()
    estimates = 0
    rt.enter()
    for _, granted in rt.step_times():
        t = rt.step_index(granted) * rt.step_s  # the time of the data estimated
        for port in ("truth_voltages_magnitude", "truth_voltages_angle"):
            for _, msg in rt.updates(port):
                latest[port] = msg
        if len(latest) < 2:
            continue
        magnitude = m.VoltagesMagnitude(time_s=t, ids=latest["truth_voltages_magnitude"].ids,
                                        values=latest["truth_voltages_magnitude"].values,
                                        units="pu")
        angle = m.VoltagesAngle(time_s=t, ids=latest["truth_voltages_angle"].ids,
                                values=latest["truth_voltages_angle"].values, units="deg")
        rt.publish("voltages_magnitude", magnitude)
        rt.publish("voltages_angle", angle)
        rt.publish("diagnostics", m.EstimatorDiagnostics(
            time_s=t, algorithm="truth", converged=True, iterations=0,
            measurements=len(magnitude.ids)))
        estimates += 1
        score.add(phasors(magnitude, angle), phasors(latest["truth_voltages_magnitude"],
                                                     latest["truth_voltages_angle"]))
    return {"algorithm": "truth", "estimates": estimates, **score.summary()}
