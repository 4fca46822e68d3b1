"""The auditor's messages and its checks, either way (no HELICS): what arrives from the
market and the feeder goes to `checks`, the findings come back as `AuditReport`s, and the
counts become the summary part.

Each market message is checked once, when it arrives: the registration first (nothing can be
attributed without it; later ones are ignored), then the disclosures of a round, its ledger
update (the auditor cosigns the checkpoint as the log's witness) and its clearing. Every
metered step is checked against every clearing whose horizon it falls in.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridsim import messages as m
from gridsim.federates.auditor.checks import Auditor, check_metering, interval_of
from gridsim.ledger.checkpoint import NoteSigner
from gridsim.ledger.identity import derive_secret


def witness_signer(seed: int, name: str) -> NoteSigner:
    """The auditor's own key (derived from its seed) under the name ``gridsim-auditor/NAME``."""
    key = Ed25519PrivateKey.from_private_bytes(derive_secret(seed, "witness", name))
    return NoteSigner(f"gridsim-auditor/{name}", key)


class AuditLog:
    """What the auditor keeps between steps: the checks' state once registered, the
    clearings to meter against, each round's disclosures, the findings by code."""

    def __init__(self, signer: NoteSigner):
        self.signer = signer
        self.auditor: Auditor | None = None
        self.clearings: list[m.MarketClearing] = []
        self.disclosures: dict[int, m.Disclosures] = {}
        self.counts: dict[str, int] = {}
        self.cosigned = 0
        self.metering_checks = 0

    def registration(self, registration: m.Registration) -> None:
        """The entities' and the log's keys; the first registration stands."""
        self.auditor = self.auditor or Auditor(registration, self.signer)

    def disclosed(self, disclosures: m.Disclosures) -> None:
        """A round's disclosures, used when its ledger update arrives."""
        self.disclosures[disclosures.round] = disclosures

    def ledger(self, update: m.LedgerUpdate, t: float) -> list[m.AuditReport]:
        """The log and the bids of one update, and the checkpoint cosigned if it holds."""
        if self.auditor is None:
            return []
        findings, note = self.auditor.check_update(update, self.disclosures.get(update.round))
        self.cosigned += note is not None
        return [self._report(m.AuditReport(time_s=t, round=update.round,
                                           checks=self.auditor.checks, findings=findings,
                                           cosigned_checkpoint=note))]

    def clearing(self, clearing: m.MarketClearing, t: float) -> list[m.AuditReport]:
        """The bids used, the certificate and the payments of one clearing."""
        if self.auditor is None:
            return []
        self.clearings.append(clearing)
        return [self._report(m.AuditReport(time_s=t, round=clearing.round,
                                           checks=self.auditor.checks,
                                           findings=self.auditor.check_clearing(clearing)))]

    def metering(self, loads: m.LoadStates, t: float) -> list[m.AuditReport]:
        """One metered step against every clearing whose horizon holds it."""
        reports = []
        for clearing in self.clearings:
            checks, findings = check_metering(clearing, loads, t)
            self.metering_checks += checks
            if checks:
                reports.append(self._report(m.AuditReport(time_s=t, checks=checks,
                                                          findings=findings)))
        return reports

    def meters_at(self, t: float) -> bool:
        """Whether some clearing's horizon holds time `t` (a step that needs metering)."""
        return any(interval_of(clearing, t) is not None for clearing in self.clearings)

    def _report(self, report: m.AuditReport) -> m.AuditReport:
        for f in report.findings:
            self.counts[f.code] = self.counts.get(f.code, 0) + 1
        return report

    def summary(self) -> dict:
        """Rounds, cosigned checkpoints, checks and findings by code."""
        return {"rounds": len(self.clearings), "cosigned_checkpoints": self.cosigned,
                "metering_checks": self.metering_checks,
                "checks": (self.auditor.checks if self.auditor else 0) + self.metering_checks,
                "findings": sum(self.counts.values()), "findings_by_code": self.counts}
