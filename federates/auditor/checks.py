"""The auditor's checks of the market, with stable finding codes (pure, no HELICS).

Per round, from what the market published (`LedgerUpdate`, `Disclosures`, `MarketClearing`)
and the registration (entities' long-term keys, the log's key):

- the log: the checkpoint is signed by the log key and extends the last one this auditor
  cosigned (a witness, `gridsim.ledger.checkpoint.Witness`), and the entries received hash
  to its root;
- every logged bid: its signature, its attestation (the disclosure attributes it to a
  registered entity), that it was signed for this round with a key never used before;
- the clearing: every bid it used is the logged entry at the index it names, and no logged
  bid of the round was left out; its optimality certificate (primal and dual feasibility,
  zero gap) against those bids, with arithmetic only; payments that sum to zero and leave
  every entity at least as well off as without the market;
- every step of the horizon, the feeder's metering: each entity's consumption within its
  cleared right (default allocation plus rights received).

Each problem is reported once, under the most specific code: a split view is not also a
root mismatch, an altered bid not also a bad certificate (the certificate is checked
against the bids the clearing says it used; the alteration is what the log shows).

Bids, the certificate and its check come from the market contract (`gridsim.contracts`),
never from the market federate's code: the auditor loads neither its solver nor its LP.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import numpy as np

from gridsim import messages as m
from gridsim.contracts.bid import Bid, bid_of_entry
from gridsim.contracts.certificate import PrimalDual, verify_certificate
from gridsim.ledger.checkpoint import Checkpoint, NoteSigner, NoteVerifier, Witness, WitnessRefusal
from gridsim.ledger.identity import (
    Disclosure,
    EntryError,
    LedgerEntry,
    attribute,
    read_bid,
    verify_entry,
)
from gridsim.ledger.merkle import MerkleLog, leaf_hash

FINDING_CODES: dict[str, str] = {
    "log.bad_checkpoint": "the checkpoint is malformed or not signed by the log's key",
    "log.split_view": "two different checkpoints of the same tree size",
    "log.inconsistent": "the checkpoint does not extend the last cosigned one",
    "log.root_mismatch": "the entries received do not hash to the checkpoint's root",
    "bid.bad_signature": "a logged bid's signature does not verify",
    "bid.bad_attestation": "a logged bid is not attributed to a registered entity",
    "bid.replayed": "a logged bid signed for another round, or with a key used before",
    "clearing.bid_not_logged": "the clearing used a bid at an index the log does not have",
    "clearing.bid_altered": "a bid the clearing used differs from the logged entry",
    "clearing.bid_omitted": "a logged bid of the round was left out of the clearing",
    "clearing.certificate": "the optimality certificate does not verify",
    "payments.not_balanced": "payments do not sum to zero",
    "payments.not_rational": "an entity is worse off than without the market",
    "physical.over_right": "an entity consumed more than its cleared right",
}
"""Every finding code and what it means (docs/audit.md lists the same)."""

REFUSAL_CODES = {"split_view": "log.split_view", "inconsistent": "log.inconsistent",
                 "malformed_proof": "log.inconsistent", "rollback": "log.inconsistent",
                 "malformed": "log.bad_checkpoint", "bad_log_signature": "log.bad_checkpoint",
                 "origin_mismatch": "log.bad_checkpoint"}
"""Witness refusal reason -> finding code."""

METER_RTOL = 1e-3
"""Relative tolerance of the metering check (the feeder holds caps within 1e-4)."""


def finding(code: str, where: str, detail: str) -> m.AuditFinding:
    """A finding; the code must be one of `FINDING_CODES`."""
    assert code in FINDING_CODES, code
    return m.AuditFinding(code=code, where=where, detail=detail)


@dataclass
class Auditor:
    """What the auditor keeps between rounds: the registration, its witness, the log."""

    registration: m.Registration
    signer: NoteSigner
    witness: Witness = field(init=False)
    log: MerkleLog = field(default_factory=MerkleLog)
    used_keys: set[bytes] = field(default_factory=set)
    round_indices: dict[int, list[int]] = field(default_factory=dict)
    checks: int = 0

    def __post_init__(self) -> None:
        log_key = NoteVerifier(self.registration.log_name,
                               base64.b64decode(self.registration.log_public_key))
        self.witness = Witness(self.signer, log_key)
        self.registry = {e: base64.b64decode(k) for e, k in
                         zip(self.registration.entities, self.registration.public_keys)}

    # -- the log and the bids -------------------------------------------------------------

    def check_update(self, update: m.LedgerUpdate,
                     disclosures: m.Disclosures | None) -> tuple[list[m.AuditFinding], str | None]:
        """Check one ledger update; returns the findings and the cosigned checkpoint (None
        if the witness refused)."""
        where = f"round {update.round}"
        proof = [base64.b64decode(h) for h in update.consistency_proof]
        self.checks += 1
        try:
            cosigned = self.witness.cosign(update.checkpoint, proof)
        except WitnessRefusal as refusal:
            return [finding(REFUSAL_CODES[refusal.reason], where, str(refusal))], None
        findings: list[m.AuditFinding] = []
        entries = [LedgerEntry.from_json(e) for e in update.entries]
        for entry in entries:
            self.log.append(entry.leaf_bytes())
        checkpoint: Checkpoint = self.witness.state
        self.checks += 1
        if self.log.size != checkpoint.size or self.log.root() != checkpoint.root:
            findings.append(finding("log.root_mismatch", where,
                                    f"{self.log.size} entries received, checkpoint of "
                                    f"{checkpoint.size} with another root"))
        indices = list(range(update.first_index, update.first_index + len(entries)))
        self.round_indices[update.round] = indices
        disclosed = _disclosed(disclosures)
        for index, entry in zip(indices, entries):
            findings += self._check_entry(index, entry, update.round, disclosed.get(index))
        return findings, cosigned

    def _check_entry(self, index: int, entry: LedgerEntry, round_: int,
                     disclosure: Disclosure | None) -> list[m.AuditFinding]:
        """Signature, attribution and replay of one logged entry. With a disclosure,
        `attribute` verifies the signature itself (one Ed25519 verification saved)."""
        where = f"log index {index}"
        self.checks += 3
        attribution = (attribute(entry, disclosure.attestation, disclosure.salt, self.registry)
                       if disclosure is not None else None)
        signed = (attribution.reason not in ("bad_entry_signature", "malformed_entry")
                  if attribution is not None else verify_entry(entry))
        if not signed:
            return [finding("bid.bad_signature", where, "signature does not verify")]
        out = []
        signed_round, _ = read_bid(entry)
        if signed_round != round_ or entry.ephemeral_public in self.used_keys:
            out.append(finding("bid.replayed", where,
                               f"signed for round {signed_round}, logged in round {round_}"
                               if signed_round != round_ else "ephemeral key used before"))
        self.used_keys.add(entry.ephemeral_public)
        if attribution is None:
            out.append(finding("bid.bad_attestation", where, "no disclosure"))
        elif not attribution.ok:
            out.append(finding("bid.bad_attestation", where, attribution.reason))
        return out

    # -- the clearing ---------------------------------------------------------------------

    def check_clearing(self, clearing: m.MarketClearing) -> list[m.AuditFinding]:
        """Bids used against the log, the certificate, the payments."""
        findings: list[m.AuditFinding] = []
        used = set()
        for entity, index, raw in zip(clearing.entities, clearing.bid_indices, clearing.bids):
            self.checks += 1
            where = f"entity {entity}, log index {index}"
            leaf = leaf_hash(LedgerEntry.from_json(raw).leaf_bytes())
            if not 0 <= index < self.log.size:
                findings.append(finding("clearing.bid_not_logged", where, "no such index"))
            elif self.log.leaf_hash(index) != leaf:
                findings.append(finding("clearing.bid_altered", where,
                                        "differs from the logged entry"))
            used.add(index)
        for index in self.round_indices.get(clearing.round, []):
            self.checks += 1
            if index not in used:
                findings.append(finding("clearing.bid_omitted", f"log index {index}",
                                        f"logged in round {clearing.round}, not cleared"))
        bids = bids_of(clearing)
        self.checks += 3
        problem = certificate_problem(clearing, bids)
        if problem is not None:
            findings.append(finding("clearing.certificate", f"round {clearing.round}", problem))
        findings += check_payments(clearing, bids)
        return findings


def _disclosed(disclosures: m.Disclosures | None) -> dict[int, Disclosure]:
    if disclosures is None:
        return {}
    out = {}
    for index, raw in zip(disclosures.indices, disclosures.disclosures):
        try:
            out[index] = Disclosure.from_json(raw)
        except EntryError:
            continue
    return out


def bids_of(clearing: m.MarketClearing) -> list[Bid] | None:
    """The bids the clearing says it used, as `Bid`s (None if one cannot be read)."""
    try:
        return [bid_of_entry(entity, LedgerEntry.from_json(raw))
                for entity, raw in zip(clearing.entities, clearing.bids)]
    except ValueError:  # EntryError included
        return None


def certificate_problem(clearing: m.MarketClearing, bids: list[Bid] | None) -> str | None:
    """Why the clearing's certificate does not prove it optimal for `bids`, None if it does
    (`gridsim.contracts.certificate`: arithmetic only)."""
    if bids is None:
        return "a bid the clearing used cannot be read"
    try:
        solution = PrimalDual.from_message(clearing.certificate, bids)
    except ValueError as exc:
        return str(exc)
    if not verify_certificate(bids, solution).ok:
        return "primal, dual or gap check fails"
    return None


def check_payments(clearing: m.MarketClearing, bids: list[Bid] | None) -> list[m.AuditFinding]:
    """Budget balance and individual rationality, values recomputed from the bids."""
    payments = np.asarray(clearing.payments)
    where = f"round {clearing.round}"
    scale = max(1.0, float(np.abs(payments).sum()))
    out = []
    if abs(payments.sum()) > 1e-6 * scale:
        out.append(finding("payments.not_balanced", where, f"sum {payments.sum():.6g} $"))
    if bids is not None:
        kw = np.asarray(clearing.kw)
        for entity, bid, rights, pay in zip(clearing.entities, bids, kw, payments):
            gain = bid.value_usd(rights) - pay
            if gain < -1e-6 * scale:
                out.append(finding("payments.not_rational", f"entity {entity}",
                                   f"gain {gain:.6g} $ below stand-alone"))
    return out


def interval_of(clearing: m.MarketClearing, t: float) -> int | None:
    """The clearing's interval that time `t` (s) falls in, None outside its horizon."""
    k = int((t - clearing.horizon_start_s) // clearing.interval_s)
    return k if 0 <= k < len(clearing.prices_per_kwh) else None


def check_metering(clearing: m.MarketClearing, loads: m.LoadStates,
                   t: float) -> tuple[int, list[m.AuditFinding]]:
    """Each entity's consumption at time `t` (s) within its right; (checks, findings)."""
    k = interval_of(clearing, t)
    if k is None:
        return 0, []
    drawn = dict(zip(loads.ids, loads.p_kw))
    out, checks = [], 0
    for entity, bound, rights in zip(clearing.entities, clearing.bounds_kw, clearing.kw):
        if entity not in drawn:
            continue
        checks += 1
        right = bound[k] + rights[k]
        if drawn[entity] > right * (1 + METER_RTOL) + 1e-6:
            out.append(finding("physical.over_right", f"entity {entity} at {t:.0f} s",
                               f"{drawn[entity]:.3f} kW drawn, right {right:.3f} kW"))
    return checks, out
