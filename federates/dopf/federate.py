"""The DOPF federate's loop: operating point in, linear model, solve, setpoints out.

Timing: periodic (every ``timing.period_steps`` steps) at offset 3 s, after the feeder (0 s),
sensor (1 s) and estimator (2 s) of the same step; the feeder applies the setpoints at its
next step. Each solve re-linearizes at the latest operating point (`adapter.solve_step`),
which is how a closed loop corrects the linear model's error from one step to the next.

A solve that fails or is infeasible leaves the setpoints in force unchanged and says why in
``diagnostics``; it never stops the federation. A ``policy`` input (the regulator)
replaces the voltage limits while it is in force.
"""

from __future__ import annotations

import logging

import numpy as np

from gridsim.federates.dopf.adapter import (
    DOPFRecord,
    DOPFSettings,
    diagnostics,
    failed_diagnostics,
    skipped_diagnostics,
    solve_step,
    step_messages,
)
from gridsim.federates.dopf.algorithms import make
from gridsim.federates.dopf.forecast import pv_availability
from gridsim.federates.dopf.problem import Solution
from gridsim.loop import Inputs, Runtime
from gridsim.network import Network

log = logging.getLogger("gridsim.dopf")

NUMERICAL_FAILURES = (ArithmeticError, RuntimeError, np.linalg.LinAlgError)
"""What the linear model can raise on a bad operating point (a singular Jacobian: SuperLU
raises RuntimeError): reported, the setpoints in force kept, the federate goes on."""


def run(rt: Runtime) -> dict:
    """Solve every period; returns the summary part."""
    settings = DOPFSettings.from_parameters(rt.config.parameters)
    algorithm = make(settings.algorithm)
    needed = settings.state_ports
    inputs = Inputs(rt, (*needed, "policy", "planned_caps"))
    net: Network | None = None
    previous: Solution | None = None
    pv_before = None
    record = DOPFRecord(rt.config.clock.step_s)
    rt.enter()
    for step in rt.step_times():
        t = step.time_s
        if "policy" in inputs.read():
            settings = settings.with_policy(inputs["policy"])
        if missing := inputs.missing(needed):
            rt.publish("diagnostics", skipped_diagnostics(t, algorithm.name,
                                                          inputs.skip(step, missing)))
            continue
        if net is None or net.revision != inputs["topology"].revision:
            net = Network.from_topology(inputs["topology"])
        pv = inputs["pv_states"]
        try:
            solved = solve_step(net, inputs.messages, settings, algorithm, previous,
                                pv_availability(pv, pv_before, settings.pv_forecast))
        except NUMERICAL_FAILURES as exc:
            log.warning("t=%.0f s: linear model failed (%s); setpoints in force kept", t, exc)
            rt.publish("diagnostics", failed_diagnostics(t, algorithm.name, str(exc)))
            record.fail()
            continue
        finally:
            pv_before = pv
        applied = solved.solution.status == "optimal"
        if applied:
            for port, message in step_messages(t, solved, pv, inputs["load_states"],
                                               settings.flexible_loads).items():
                rt.publish(port, message)
            previous = solved.solution
        else:
            log.warning("t=%.0f s: %s solve %s; setpoints in force kept", t, algorithm.name,
                        solved.solution.status)
        if solved.unestimated:
            log.warning("t=%.0f s: the estimate lacks %d nodes (e.g. %s): not limited",
                        t, len(solved.unestimated), solved.unestimated[0])
        rt.publish("diagnostics", diagnostics(t, algorithm.name, solved, applied))
        record.add(solved, applied, settings.v_max)
    rt.timing["solve_s_per_step"] = record.solve_s
    return {"algorithm": algorithm.name, **record.summary(), "skipped_steps": inputs.skipped}
