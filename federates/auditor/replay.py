"""`gridsim audit RUN`: everything the auditor checks, again, from the files of a run.

Reads ``RUN/ledger`` (the market's log: entries, signed checkpoints with consistency
proofs, disclosures, the registration and the clearings it published) and, if present, the
feeder's metering in ``RUN/results.sqlite``. Runs the ledger's own re-verification
(`gridsim.ledger.store.reverify`: every hash, root, signature, checkpoint and attribution)
and the auditor's round checks (`gridsim.federates.auditor.checks`) on the same data, and
the metering check on every recorded step.
"""

from __future__ import annotations

import base64
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from gridsim import messages as m
from gridsim.errors import InputError
from gridsim.federates.auditor.adapter import witness_signer
from gridsim.federates.auditor.checks import Auditor, check_metering
from gridsim.ledger.checkpoint import Checkpoint, NoteError, NoteVerifier, parse_note
from gridsim.ledger.identity import EntryError, read_bid
from gridsim.ledger.store import LedgerError, load_ledger, reverify


@dataclass
class OfflineAudit:
    """What `audit_run` found."""

    findings: list[tuple[str, str, str]] = field(default_factory=list)
    """(code, where, detail) of every finding, ledger ones first."""
    checks: int = 0
    rounds: int = 0
    metered_steps: int = 0


def _records(path: Path, model: type[m.Message]) -> list:
    if not path.is_file():
        return []
    return [model.model_validate_json(line) for line in path.read_text().splitlines() if line]


def audit_run(run_dir: Path) -> OfflineAudit:
    """Re-verify a run's ledger, rounds and metering (module doc)."""
    ledger_dir = run_dir / "ledger"
    registrations = _records(ledger_dir / "registration.jsonl", m.Registration)
    if not registrations:
        raise InputError(str(run_dir), "ledger", "no market ledger in this run directory")
    registration = registrations[0]
    registry = {e: base64.b64decode(k) for e, k in
                zip(registration.entities, registration.public_keys)}
    log = NoteVerifier(registration.log_name, base64.b64decode(registration.log_public_key))
    out = OfflineAudit()
    out.findings += [(f.code, f.where, f.detail) for f in reverify(ledger_dir, registry, log)]
    try:
        stored = load_ledger(ledger_dir)
    except LedgerError as exc:
        out.findings.append(("ledger.malformed_entry", str(ledger_dir), str(exc)))
        return out
    auditor = Auditor(registration, witness_signer(0, "offline"))
    start = 0
    for record in stored.checkpoints:
        try:
            size = Checkpoint.parse(parse_note(record.note).text).size
        except NoteError:
            break  # reverify has reported it (ledger.malformed_checkpoint)
        entries = stored.entries[start:size]
        update = m.LedgerUpdate(
            time_s=0.0, round=_round_of(entries), first_index=start,
            entries=[e.to_json() for e in entries], checkpoint=record.note,
            consistency_proof=[base64.b64encode(h).decode() for h in record.proof])
        disclosures = m.Disclosures(
            time_s=0.0, round=update.round, indices=list(range(start, size)),
            disclosures=[stored.disclosures[i].to_json() for i in range(start, size)
                         if i in stored.disclosures])
        if len(disclosures.disclosures) != size - start:
            disclosures = None
        findings, _ = auditor.check_update(update, disclosures)
        out.findings += [(f.code, f.where, f.detail) for f in findings]
        start = size
    clearings = _records(ledger_dir / "clearings.jsonl", m.MarketClearing)
    for clearing in clearings:
        out.findings += [(f.code, f.where, f.detail) for f in auditor.check_clearing(clearing)]
    out.rounds, out.checks = len(clearings), auditor.checks
    for t, loads in _metering(run_dir / "results.sqlite"):
        out.metered_steps += 1
        for clearing in clearings:
            checks, findings = check_metering(clearing, loads, t)
            out.checks += checks
            out.findings += [(f.code, f.where, f.detail) for f in findings]
    return out


def _round_of(entries) -> int:
    """The round the entries were signed for (the first readable one's), else -1."""
    for entry in entries:
        try:
            return read_bid(entry)[0]
        except EntryError:
            continue
    return -1


def _metering(db: Path) -> list[tuple[float, m.LoadStates]]:
    """(time, LoadStates) of every recorded feeder step, if the run recorded them."""
    if not db.is_file():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT m.time_s, m.payload FROM messages m JOIN topics t ON "
                            "m.topic_id = t.topic_id WHERE t.topic LIKE '%/load_states' "
                            "ORDER BY m.step").fetchall()
    return [(t, m.LoadStates.model_validate_json(payload)) for t, payload in rows]
