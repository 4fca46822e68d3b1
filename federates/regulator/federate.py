"""The regulator's loop: publish the policy at the first step and whenever it changes.

Timing: periodic at offset 0.5 s, so the policy of step k reaches the market and the DOPF
(later offsets) within the same step. It is granted only the steps at which the policy
changes (`publishing_steps`) and leaves after the last: it costs nothing in between.
"""

from __future__ import annotations

from gridsim.federates.regulator.policy import RegulatorSettings
from gridsim.loop import Clock, Runtime


def publishing_steps(settings: RegulatorSettings, clock: Clock) -> list[int]:
    """Indices of the grants at which a new revision of the policy is in force."""
    steps, current = [], -1
    for k, t in enumerate(clock.grants()):
        revision = settings.policy_at(clock.data_time(t)).revision
        if revision != current:
            steps.append(k)
            current = revision
    return steps


def run(rt: Runtime) -> dict:
    """Publish the policy in force; returns the summary part (every revision published)."""
    settings = RegulatorSettings.from_parameters(rt.config.parameters)
    published: list[dict] = []
    rt.enter()
    for step in rt.step_times(only=publishing_steps(settings, rt.config.clock)):
        policy = settings.policy_at(step.time_s)  # a new revision at every step granted
        rt.publish("policy", policy)
        published.append(policy.model_dump(exclude={"time_s"}) | {"from_s": step.time_s})
    return {"revisions": published}
