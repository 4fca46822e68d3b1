"""The ledger on disk, the log operator's `Ledger`, and the offline `reverify`.

A ledger directory holds three files, one canonical JSON object per line:

- ``entries.jsonl``: the entries in log order (`LedgerEntry.to_json`, base64 fields). Each
  line's bytes, without the newline, are the Merkle leaf: ``leaf_hash(line)``.
- ``checkpoints.jsonl``: ``{"note": signed checkpoint note, "proof": [base64 hashes]}`` in
  the order they were signed; ``proof`` is the consistency proof from the previous record's
  size (empty for the first record, an equal size or a previous size of 0).
- ``disclosures.jsonl`` (optional, written for an audit): ``{"entry": index,
  "attestation": ..., "salt": ...}``, what attributes that entry to its entity.

`reverify` recomputes everything from those files alone and returns `Finding`s whose codes
are the keys of `FINDING_CODES`; a clean ledger gives none.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridsim.ledger.canonical import (
    CanonicalError,
    b64decode,
    b64encode,
    canonical_bytes,
    parse_canonical,
)
from gridsim.ledger.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    SignedNote,
    add_signature,
    open_checkpoint,
    parse_note,
    verified_by,
)
from gridsim.ledger.identity import (
    Disclosure,
    EntryError,
    LedgerEntry,
    attribute,
    check_entry,
    read_bid,
)
from gridsim.ledger.merkle import HASH_SIZE, MerkleLog, ProofError, verify_consistency

__all__ = ["CheckpointRecord", "FINDING_CODES", "Finding", "Ledger", "LedgerError",
           "load_ledger", "reverify", "save_ledger"]

ENTRIES = "entries.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
DISCLOSURES = "disclosures.jsonl"

FINDING_CODES: dict[str, str] = {
    "ledger.malformed_entry": "an entries.jsonl line is not a canonical, well-formed entry",
    "ledger.bad_signature": "an entry's signature does not verify with its ephemeral key",
    "ledger.duplicate_entry": "the same entry appears more than once (a replay)",
    "ledger.ephemeral_key_reused": "one ephemeral key signed bids of different intervals",
    "ledger.malformed_checkpoint": "a checkpoints.jsonl line or its note cannot be parsed",
    "ledger.bad_checkpoint_signature": "a checkpoint is not validly signed by the log's key",
    "ledger.bad_cosignature": "a known witness's cosignature on a checkpoint does not verify",
    "ledger.origin_mismatch": "a checkpoint names another origin than the log",
    "ledger.missing_entries": "a checkpoint covers more entries than entries.jsonl holds",
    "ledger.root_mismatch": "a checkpoint's root differs from the root of the stored entries",
    "ledger.inconsistent_checkpoints": "a checkpoint is not an append-only extension of the "
                                       "previous one (bad proof or smaller size)",
    "ledger.split_view": "two signed checkpoints give different roots for the same size",
    "ledger.uncheckpointed_entries": "entries after the last checkpoint are covered by none",
    "ledger.attribution_failed": "a disclosure does not attribute its entry to an entity",
}
"""Every finding code of `reverify` -> what it means."""


class LedgerError(Exception):
    """A ledger directory that cannot be written or read as asked."""


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: code (a key of FINDING_CODES), where (``file:line``) and detail."""

    code: str
    where: str
    detail: str


@dataclass(frozen=True)
class CheckpointRecord:
    """A signed checkpoint note and the consistency proof from the previous record."""

    note: str
    proof: tuple[bytes, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (proof hashes in base64)."""
        return {"note": self.note, "proof": [b64encode(h) for h in self.proof]}

    @classmethod
    def from_json(cls, data: Any) -> CheckpointRecord:
        """Parse `to_json`'s form; `LedgerError` if malformed."""
        try:
            if set(data) != {"note", "proof"} or not isinstance(data["note"], str):
                raise LedgerError("a checkpoint record has exactly note and proof")
            return cls(data["note"], tuple(b64decode(h, HASH_SIZE) for h in data["proof"]))
        except (TypeError, CanonicalError) as exc:
            raise LedgerError(f"checkpoint record: {exc}") from exc


def _write_lines(path: Path, rows: Iterable[bytes], mode: str = "wb") -> None:
    """Write canonical JSON lines (atomically when replacing the file)."""
    target = path.with_suffix(".tmp") if mode == "wb" else path
    with open(target, mode) as out:
        for row in rows:
            out.write(row + b"\n")
    if mode == "wb":
        os.replace(target, path)


def save_ledger(directory: Path | str, entries: Sequence[LedgerEntry],
                checkpoints: Sequence[CheckpointRecord],
                disclosures: Mapping[int, Disclosure] | None = None) -> None:
    """Write a ledger directory (created if needed; its files replaced)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_lines(directory / ENTRIES, (e.leaf_bytes() for e in entries))
    _write_lines(directory / CHECKPOINTS, (canonical_bytes(r.to_json()) for r in checkpoints))
    if disclosures:
        _write_lines(directory / DISCLOSURES, (
            canonical_bytes({"entry": i, **d.to_json()}) for i, d in sorted(disclosures.items())))


def _read_lines(path: Path) -> list[bytes]:
    """The lines of a JSON-lines file (none if it does not exist)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if not data:
        return []
    return data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")


def _load_rows(path: Path) -> list[Any]:
    """Parsed canonical JSON lines of a file; `LedgerError` naming file and line."""
    rows = []
    for number, line in enumerate(_read_lines(path), start=1):
        try:
            rows.append(parse_canonical(line))
        except CanonicalError as exc:
            raise LedgerError(f"{path}:{number}: {exc}") from exc
    return rows


@dataclass(frozen=True)
class StoredLedger:
    """A ledger directory's contents."""

    entries: list[LedgerEntry]
    checkpoints: list[CheckpointRecord]
    disclosures: dict[int, Disclosure]


def load_ledger(directory: Path | str) -> StoredLedger:
    """Read a ledger directory; `LedgerError` on anything malformed (use `reverify` to audit)."""
    directory = Path(directory)
    if not (directory / ENTRIES).exists():
        raise LedgerError(f"{directory}: no {ENTRIES}")
    try:
        entries = [LedgerEntry.from_json(r) for r in _load_rows(directory / ENTRIES)]
        disclosures = {r["entry"]: Disclosure.from_json(r)
                       for r in _load_rows(directory / DISCLOSURES)}
    except (EntryError, KeyError, TypeError) as exc:
        raise LedgerError(f"{directory}: {exc}") from exc
    checkpoints = [CheckpointRecord.from_json(r) for r in _load_rows(directory / CHECKPOINTS)]
    return StoredLedger(entries, checkpoints, disclosures)


class Ledger:
    """The log operator's ledger: entries, their Merkle log and signed checkpoints.

    With a `directory`, every entry and checkpoint is written as it is made (the directory
    must not already hold a ledger); without one, call `save`.
    """

    def __init__(self, signer: NoteSigner, directory: Path | str | None = None):
        self.signer = signer
        self.entries: list[LedgerEntry] = []
        self.checkpoints: list[CheckpointRecord] = []
        self.tree = MerkleLog()
        self._sizes: list[int] = []
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            if (self.directory / ENTRIES).exists():
                raise LedgerError(f"{self.directory} already holds a ledger")
            save_ledger(self.directory, [], [])

    @property
    def origin(self) -> str:
        """The log's origin: its signing key's name."""
        return self.signer.name

    def append(self, entry: LedgerEntry) -> int:
        """Add an entry (not checked here: the market checks bids before admitting them)."""
        leaf = entry.leaf_bytes()
        if self.directory is not None:
            _write_lines(self.directory / ENTRIES, [leaf], mode="ab")
        self.entries.append(entry)
        return self.tree.append(leaf)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Proof that entry `index` is in the tree of `size` entries (default: all)."""
        return self.tree.inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Proof that the tree of `new_size` entries extends that of `old_size`."""
        return self.tree.consistency_proof(old_size, new_size)

    def checkpoint(self) -> CheckpointRecord:
        """Sign the current log head, record it with the proof from the last one."""
        size = self.tree.size
        last = self._sizes[-1] if self._sizes else 0
        proof = tuple(self.tree.consistency_proof(last, size)) if last else ()
        text = Checkpoint(self.origin, size, self.tree.root()).text()
        record = CheckpointRecord(add_signature(text, self.signer).format(), proof)
        self.checkpoints.append(record)
        self._sizes.append(size)
        if self.directory is not None:
            _write_lines(self.directory / CHECKPOINTS, [canonical_bytes(record.to_json())],
                         mode="ab")
        return record

    def add_cosignatures(self, cosigned: str) -> None:
        """Merge the signatures of a cosigned copy of the latest checkpoint into it."""
        if not self.checkpoints:
            raise LedgerError("no checkpoint to cosign")
        latest = parse_note(self.checkpoints[-1].note)
        other = parse_note(cosigned)
        if other.text != latest.text:
            raise LedgerError("the cosigned note is not the latest checkpoint")
        have = {(s.name, s.key_id) for s in latest.signatures}
        extra = tuple(s for s in other.signatures if (s.name, s.key_id) not in have)
        merged = SignedNote(latest.text, latest.signatures + extra).format()
        self.checkpoints[-1] = CheckpointRecord(merged, self.checkpoints[-1].proof)
        if self.directory is not None:
            _write_lines(self.directory / CHECKPOINTS,
                         [canonical_bytes(r.to_json()) for r in self.checkpoints])

    def save(self, directory: Path | str,
             disclosures: Mapping[int, Disclosure] | None = None) -> None:
        """Write the whole ledger (and any disclosures) to `directory`."""
        save_ledger(directory, self.entries, self.checkpoints, disclosures)


class _Audit:
    """Collects findings while `reverify` walks a ledger directory."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, code: str, where: str, detail: str) -> None:
        """Record one finding (code from FINDING_CODES)."""
        self.findings.append(Finding(code, where, detail))


def _check_entries(lines: list[bytes], audit: _Audit) -> dict[int, LedgerEntry]:
    """Check each entry line; the parsed entries by index."""
    entries: dict[int, LedgerEntry] = {}
    first_seen: dict[bytes, int] = {}
    key_interval: dict[bytes, int] = {}
    for i, line in enumerate(lines):
        where = f"{ENTRIES}:{i + 1}"
        try:
            entry = LedgerEntry.from_json(parse_canonical(line))
        except (CanonicalError, EntryError) as exc:
            audit.add("ledger.malformed_entry", where, str(exc))
            continue
        entries[i] = entry
        if line in first_seen:
            audit.add("ledger.duplicate_entry", where, f"same as line {first_seen[line] + 1}")
        first_seen.setdefault(line, i)
        if check_entry(entry) == "bad_entry_signature":
            audit.add("ledger.bad_signature", where, "signature does not verify")
        try:
            interval = read_bid(entry)[0]
        except EntryError as exc:
            audit.add("ledger.malformed_entry", where, str(exc))
            continue
        earlier = key_interval.setdefault(entry.ephemeral_public, interval)
        if earlier != interval:
            audit.add("ledger.ephemeral_key_reused", where,
                      f"ephemeral key of interval {earlier} signs a bid of interval {interval}")
    return entries


def _open_record(line: bytes, where: str, log: NoteVerifier,
                 witnesses: Sequence[NoteVerifier],
                 audit: _Audit) -> tuple[Checkpoint, tuple[bytes, ...]] | None:
    """A checkpoint line's checkpoint and proof, or None (with a finding) if unusable."""
    try:
        record = CheckpointRecord.from_json(parse_canonical(line))
        checkpoint, note = open_checkpoint(record.note, log)
    except (CanonicalError, LedgerError) as exc:
        audit.add("ledger.malformed_checkpoint", where, str(exc))
        return None
    except NoteError as exc:
        code = {"malformed": "ledger.malformed_checkpoint",
                "origin_mismatch": "ledger.origin_mismatch"}.get(
                    exc.reason, "ledger.bad_checkpoint_signature")
        audit.add(code, where, str(exc))
        return None
    try:
        verified_by(note, witnesses)
    except NoteError as exc:
        audit.add("ledger.bad_cosignature", where, str(exc))
    return checkpoint, record.proof


def _check_pair(previous: Checkpoint, current: Checkpoint, proof: Sequence[bytes],
                where: str, audit: _Audit) -> None:
    """Whether `current` extends `previous` by the stored proof (equal sizes: split views
    are found separately)."""
    if current.size < previous.size:
        audit.add("ledger.inconsistent_checkpoints", where,
                  f"size {current.size} after {previous.size}")
        return
    if current.size == previous.size or previous.size == 0:
        return
    try:
        ok = verify_consistency(previous.size, current.size, previous.root, current.root, proof)
    except ProofError as exc:
        ok, detail = False, str(exc)
    else:
        detail = "the consistency proof does not verify"
    if not ok:
        audit.add("ledger.inconsistent_checkpoints", where,
                  f"{previous.size} -> {current.size}: {detail}")


def _check_checkpoints(lines: list[bytes], tree: MerkleLog, log: NoteVerifier,
                       witnesses: Sequence[NoteVerifier], audit: _Audit) -> int:
    """Check every checkpoint line; the largest size covered by a signed checkpoint.

    A record's proof is from the previous record: after an unusable record, the next one's
    consistency is not checked (its root is still checked against the entries).
    """
    previous: Checkpoint | None = None
    roots: dict[int, tuple[bytes, str]] = {}
    covered = 0
    for number, line in enumerate(lines, start=1):
        where = f"{CHECKPOINTS}:{number}"
        opened = _open_record(line, where, log, witnesses, audit)
        if opened is None:
            previous = None
            continue
        checkpoint, proof = opened
        covered = max(covered, checkpoint.size)
        if checkpoint.size > tree.size:
            audit.add("ledger.missing_entries", where,
                      f"size {checkpoint.size} but {tree.size} entries")
        elif tree.root(checkpoint.size) != checkpoint.root:
            audit.add("ledger.root_mismatch", where, f"root at size {checkpoint.size}")
        root, first = roots.setdefault(checkpoint.size, (checkpoint.root, where))
        if root != checkpoint.root:
            audit.add("ledger.split_view", where,
                      f"size {checkpoint.size} has another root at {first}")
        if previous is not None:
            _check_pair(previous, checkpoint, proof, where, audit)
        previous = checkpoint
    return covered


def _check_disclosures(lines: list[bytes], entries: Mapping[int, LedgerEntry],
                       registry: Mapping[str, bytes], audit: _Audit) -> None:
    """Attribute every disclosed entry."""
    for number, line in enumerate(lines, start=1):
        where = f"{DISCLOSURES}:{number}"
        try:
            row = parse_canonical(line)
            index = row["entry"]
            disclosure = Disclosure.from_json(row)
        except (CanonicalError, EntryError, KeyError, TypeError) as exc:
            audit.add("ledger.attribution_failed", where, f"malformed disclosure: {exc}")
            continue
        entry = entries.get(index) if type(index) is int else None
        if entry is None:
            audit.add("ledger.attribution_failed", where, f"no well-formed entry {index!r}")
            continue
        result = attribute(entry, disclosure.attestation, disclosure.salt, registry)
        if not result.ok:
            audit.add("ledger.attribution_failed", where, f"entry {index}: {result.reason}")


def reverify(directory: Path | str, registry: Mapping[str, bytes], log: NoteVerifier,
             witnesses: Sequence[NoteVerifier] = ()) -> list[Finding]:
    """Re-check a ledger directory offline; the findings (none for a clean ledger).

    Recomputes every leaf hash and the root at each checkpoint's size, checks each
    checkpoint's signature by `log` (whose name is the origin) and any cosignature by the
    `witnesses`, the stored consistency proof between successive checkpoints, roots of
    equal sizes, every entry's signature, and attributes disclosed entries with `registry`
    (entity id -> long-term public key).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise LedgerError(f"{directory} is not a directory")
    audit = _Audit()
    lines = _read_lines(directory / ENTRIES)
    tree = MerkleLog.from_leaves(lines)
    entries = _check_entries(lines, audit)
    covered = _check_checkpoints(_read_lines(directory / CHECKPOINTS), tree, log, witnesses,
                                 audit)
    if covered < tree.size:
        audit.add("ledger.uncheckpointed_entries", f"{ENTRIES}:{covered + 1}",
                  f"{tree.size - covered} entries after the last checkpoint")
    _check_disclosures(_read_lines(directory / DISCLOSURES), entries, registry, audit)
    return audit.findings
