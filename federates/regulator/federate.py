"""The regulator's loop: publish the policy at the first step and whenever it changes.

Timing: periodic at offset 0.5 s, so the policy of step k reaches the market and the DOPF
(later offsets) within the same step.
"""

from __future__ import annotations

from gridsim.federates.regulator.policy import RegulatorSettings
from gridsim.loop import Runtime


def run(rt: Runtime) -> dict:
    """Publish the policy in force; returns the summary part (every revision published)."""
    settings = RegulatorSettings.from_parameters(rt.config.parameters)
    published: list[dict] = []
    current = -1
    rt.enter()
    for step in rt.step_times():
        policy = settings.policy_at(step.time_s)
        if policy.revision != current:
            rt.publish("policy", policy)
            current = policy.revision
            published.append(policy.model_dump(exclude={"time_s"}) | {"from_s": step.time_s})
    return {"revisions": published}
