"""The auditor's loop: check each market round when it is published, and the metering of
every step of its horizon.

Timing: periodic at offset 2.7 s, after the market (2.5 s) and the feeder (0 s) of the same
step. The auditor is also the log's witness: it cosigns a checkpoint only after checking
that it extends the last one it cosigned, and publishes the cosigned note.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridsim import messages as m
from gridsim.federates.auditor.checks import Auditor, check_metering
from gridsim.ledger.checkpoint import NoteSigner
from gridsim.ledger.identity import derive_secret
from gridsim.runtime import FederateRuntime


def witness_signer(seed: int, name: str) -> NoteSigner:
    """The auditor's own key (derived from its seed) under the name ``gridsim-auditor/NAME``."""
    key = Ed25519PrivateKey.from_private_bytes(derive_secret(seed, "witness", name))
    return NoteSigner(f"gridsim-auditor/{name}", key)


def run(rt: FederateRuntime) -> dict:
    """Audit every round and step; returns the summary part (findings by code)."""
    state = _State(witness_signer(rt.seed, rt.name))
    rt.enter()
    for _, granted in rt.step_times():
        t = rt.step_index(granted) * rt.step_s
        for report in state.step(rt, t):
            for f in report.findings:
                state.counts[f.code] = state.counts.get(f.code, 0) + 1
            rt.publish("findings", report)
    return {"rounds": len(state.clearings), "cosigned_checkpoints": state.cosigned,
            "metering_checks": state.metering_checks,
            "checks": (state.auditor.checks if state.auditor else 0) + state.metering_checks,
            "findings": sum(state.counts.values()), "findings_by_code": state.counts}


class _State:
    """What the loop keeps: the auditor (once registered), clearings, disclosures, counts."""

    def __init__(self, signer: NoteSigner):
        self.signer = signer
        self.auditor: Auditor | None = None
        self.clearings: list[m.MarketClearing] = []
        self.disclosures: dict[int, m.Disclosures] = {}
        self.counts: dict[str, int] = {}
        self.cosigned = 0
        self.metering_checks = 0

    def step(self, rt: FederateRuntime, t: float) -> list[m.AuditReport]:
        """Reports of one step: registration first, then log updates, clearings, metering."""
        for _, registration in rt.updates("registration"):
            self.auditor = self.auditor or Auditor(registration, self.signer)
        for _, msg in rt.updates("disclosures"):
            self.disclosures[msg.round] = msg
        reports = []
        for _, update in rt.updates("ledger"):
            if self.auditor is not None:
                findings, note = self.auditor.check_update(update,
                                                           self.disclosures.get(update.round))
                self.cosigned += note is not None
                reports.append(m.AuditReport(time_s=t, round=update.round,
                                             checks=self.auditor.checks, findings=findings,
                                             cosigned_checkpoint=note))
        for _, clearing in rt.updates("clearing"):
            if self.auditor is not None:
                self.clearings.append(clearing)
                reports.append(m.AuditReport(time_s=t, round=clearing.round,
                                             checks=self.auditor.checks,
                                             findings=self.auditor.check_clearing(clearing)))
        for _, loads in rt.updates("load_states"):
            for clearing in self.clearings:
                checks, findings = check_metering(clearing, loads, t)
                self.metering_checks += checks
                if checks:
                    reports.append(m.AuditReport(time_s=t, checks=checks, findings=findings))
        return reports
