"""The truth estimator's loop: at offset 2 s each step, republish the feeder's voltages.

Same outputs as the `wls` estimator, so downstream federates cannot tell them apart; its
summary scores it against the truth like any estimator (all errors zero).
"""

from __future__ import annotations

from gridsim.federates.truth.adapter import NEEDED, estimate_messages, skipped_diagnostics
from gridsim.loop import Inputs, Runtime
from gridsim.scoring import Score, phasors


def run(rt: Runtime) -> dict:
    """Pass the true voltages through every step; returns the summary part."""
    inputs = Inputs(rt, NEEDED)
    score = Score()
    estimates = 0
    rt.enter()
    for step in rt.step_times():
        inputs.read()
        if missing := inputs.missing(NEEDED):
            rt.publish("diagnostics",
                       skipped_diagnostics(step.time_s, inputs.skip(step, missing)))
            continue
        messages = estimate_messages(inputs.messages, step.time_s)
        for port, message in messages.items():
            rt.publish(port, message)
        estimates += 1
        score.add(phasors(messages["voltages_magnitude"], messages["voltages_angle"]),
                  phasors(inputs["truth_voltages_magnitude"], inputs["truth_voltages_angle"]))
    return {"algorithm": "truth", "estimates": estimates, **score.summary(),
            "skipped_steps": inputs.skipped}
