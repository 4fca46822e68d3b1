"""The feeder federate's loop: commands in, one OpenDSS step, ground truth out.

Timing: periodic at the scenario step with offset 0. At each granted time ``k * step`` it
applies the commands received since the last step, solves step ``k`` and publishes
(`adapter.step_messages`). Outputs nobody is linked to are not computed.
"""

from __future__ import annotations

import logging

from gridsim.federates.feeder.adapter import (
    COMMAND_PORTS,
    FeederRecord,
    FeederSettings,
    apply_command,
    command_report,
    step_messages,
)
from gridsim.loop import Runtime

log = logging.getLogger("gridsim.feeder")


def run(rt: Runtime) -> dict:
    """Step the feeder through the scenario; returns the summary part."""
    config = rt.config
    model = FeederSettings.from_parameters(config.parameters).model(
        config.feeder, config.clock.start, config.clock.step_s)
    record = FeederRecord()
    rt.enter()
    for step in rt.step_times():
        accepted, rejected = 0, []
        for port in COMMAND_PORTS:
            for source, msg in rt.link_updates(port):
                n_ok, bad = apply_command(model, port, msg, source)
                accepted, rejected = accepted + n_ok, rejected + bad
        model.solve()
        changed = model.sync_network()
        v_pu = model.voltages_pu()
        record.add(v_pu, rejected)
        for port, message in step_messages(model, step.time_s, v_pu, changed,
                                           rt.wanted).items():
            rt.publish(port, message)
        if accepted or rejected:
            for r in rejected:
                log.warning("step %d: rejected %s %r: %s", step.index, r.port, r.name, r.reason)
            rt.publish("command_report", command_report(step.time_s, accepted, rejected))
    return record.summary(model)
