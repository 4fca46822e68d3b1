"""The regulator's loop: publish the policy at the first step and whenever it changes.

Timing: periodic at offset 0.5 s, so the policy of step k reaches the market and the DOPF
(later offsets) within the same step.
"""

from __future__ import annotations

from gridsim.federates.regulator.policy import initial_policy, parse_changes, policy_at
from gridsim.runtime import FederateRuntime


def run(rt: FederateRuntime) -> dict:
    """Publish the policy in force; returns the summary part (every revision published)."""
    changes = parse_changes(rt.parameters["changes"])  # checked before the run started
    initial = initial_policy(rt.parameters)
    published: list[dict] = []
    current = -1
    rt.enter()
    for _, granted in rt.step_times():
        t = rt.step_index(granted) * rt.step_s
        policy = policy_at(initial, changes, t)
        if policy.revision != current:
            rt.publish("policy", policy)
            current = policy.revision
            published.append(policy.model_dump(exclude={"time_s"}) | {"from_s": t})
    return {"revisions": published}
