"""The auditor's loop: check each market round when it is published, and the metering of
every step of its horizon.

Timing: periodic at offset 2.7 s, after the market (2.5 s) and the feeder (0 s) of the same
step. The auditor is also the log's witness: it cosigns a checkpoint only after checking
that it extends the last one it cosigned, and publishes the cosigned note. Market messages
come once per round and are checked when they arrive; a step inside a round's horizon needs
the feeder's metering, and is skipped while none has ever arrived (`gridsim.loop`).
"""

from __future__ import annotations

from gridsim.federates.auditor.adapter import AuditLog, witness_signer
from gridsim.loop import Inputs, Runtime

PORTS = ("registration", "disclosures", "ledger", "clearing", "load_states")


def run(rt: Runtime) -> dict:
    """Audit every round and step; returns the summary part (findings by code)."""
    log = AuditLog(witness_signer(rt.config.seed, rt.config.name))
    inputs = Inputs(rt, PORTS)
    rt.enter()
    for step in rt.step_times():
        t = step.time_s
        updated = inputs.read()
        reports = []
        if "registration" in updated:
            log.registration(inputs["registration"])
        if "disclosures" in updated:
            log.disclosed(inputs["disclosures"])
        if "ledger" in updated:
            reports += log.ledger(inputs["ledger"], t)
        if "clearing" in updated:
            reports += log.clearing(inputs["clearing"], t)
        if "load_states" in updated:
            reports += log.metering(inputs["load_states"], t)
        elif log.meters_at(t) and (missing := inputs.missing(["load_states"])):
            inputs.skip(step, missing)
        for report in reports:
            rt.publish("findings", report)
    return {**log.summary(), "skipped_steps": inputs.skipped}
