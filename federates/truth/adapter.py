"""The truth estimator's messages: the feeder's true voltages as an estimate (no HELICS)."""

from __future__ import annotations

from collections.abc import Mapping

from gridsim import messages as m

NEEDED = ("truth_voltages_magnitude", "truth_voltages_angle")
"""The true voltages it passes through (`gridsim.loop`'s rule for missing inputs)."""


def estimate_messages(latest: Mapping[str, m.Message], t: float) -> dict[str, m.Message]:
    """The true voltages under the estimator's ports, with its diagnostics, by port."""
    magnitude, angle = latest["truth_voltages_magnitude"], latest["truth_voltages_angle"]
    return {
        "voltages_magnitude": m.VoltagesMagnitude(time_s=t, ids=magnitude.ids,
                                                  values=magnitude.values, units="pu"),
        "voltages_angle": m.VoltagesAngle(time_s=t, ids=angle.ids, values=angle.values,
                                          units="deg"),
        "diagnostics": m.EstimatorDiagnostics(time_s=t, algorithm="truth", converged=True,
                                              iterations=0, measurements=len(magnitude.ids)),
    }


def skipped_diagnostics(t: float, reason: str) -> m.EstimatorDiagnostics:
    """Diagnostics of a step whose true voltages never arrived."""
    return m.EstimatorDiagnostics(time_s=t, algorithm="truth", converged=False, iterations=0,
                                  error=f"skipped: {reason}")
