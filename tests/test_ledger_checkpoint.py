"""Signed notes and checkpoints, the witness, and the ledger directory with `reverify`.

The ledger used throughout: three entities bid in intervals 1..4 (entries 0..11, three per
interval); the market checkpoints after each interval (sizes 3, 6, 9, 12) and a witness
cosigns every checkpoint.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridsim.ledger.canonical import b64encode, canonical_bytes
from gridsim.ledger.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSignature,
    NoteSigner,
    SignedNote,
    Witness,
    WitnessRefusal,
    add_signature,
    open_checkpoint,
    parse_note,
    verified_by,
)
from gridsim.ledger.identity import (
    Disclosure,
    LedgerEntry,
    derive_secret,
    make_keys,
    make_registry,
    public_bytes,
    sign_bid,
)
from gridsim.ledger.merkle import EMPTY_ROOT
from gridsim.ledger.store import (
    FINDING_CODES,
    CheckpointRecord,
    Ledger,
    LedgerError,
    load_ledger,
    reverify,
    save_ledger,
)

SEED = 7
ENTITIES = ["hospital", "house-7", "water-plant"]
ORIGIN = "market.gridsim.example/shortage"


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(derive_secret(SEED, "test", name))


LOG = NoteSigner(ORIGIN, key("log"))
WITNESS = NoteSigner("auditor.gridsim.example", key("witness"))
REGISTRY = make_registry(SEED, ENTITIES)


def bids(interval: int, price: float = 1.5) -> list[tuple[LedgerEntry, Disclosure]]:
    out = []
    for n, entity in enumerate(ENTITIES):
        keys = make_keys(SEED, entity, interval)
        out.append((sign_bid(keys, {"kw": 10.0 * (n + 1), "usd_per_kwh": price}),
                    keys.disclosure))
    return out


def build(directory: Path | None = None, fork_at: int | None = None) -> Ledger:
    """The test ledger; `fork_at` replaces that entry with another valid bid."""
    ledger = Ledger(LOG, directory)
    for interval in range(1, 5):
        for entry, _ in bids(interval):
            if ledger.tree.size == fork_at:
                entry = bids(interval, price=99.0)[0][0]
            ledger.append(entry)
        ledger.checkpoint()
    return ledger


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """The witnessed ledger on disk, with disclosures of entries 0 and 4."""
    directory = tmp_path_factory.mktemp("clean")
    ledger = Ledger(LOG, directory)
    witness = Witness(WITNESS, LOG.verifier)
    for interval in range(1, 5):
        for entry, _ in bids(interval):
            ledger.append(entry)
        record = ledger.checkpoint()
        last = witness.state.size if witness.state else 0
        proof = ledger.consistency_proof(last) if last else []
        ledger.add_cosignatures(witness.cosign(record.note, proof))
    disclosures = {0: bids(1)[0][1], 4: bids(2)[1][1]}
    ledger.save(directory, disclosures)
    return directory


def audit(directory: Path) -> set[str]:
    return {f.code for f in reverify(directory, REGISTRY, LOG.verifier, [WITNESS.verifier])}


def records(directory: Path) -> list[dict]:
    return [json.loads(x) for x in (directory / "checkpoints.jsonl").read_text().splitlines()]


def write_records(directory: Path, rows: list[dict]) -> None:
    (directory / "checkpoints.jsonl").write_bytes(b"".join(canonical_bytes(r) + b"\n"
                                                           for r in rows))


def signed_checkpoint(size: int, root: bytes, origin: str = ORIGIN) -> str:
    return add_signature(Checkpoint(origin, size, root).text(), LOG).format()


# --- notes and checkpoints -------------------------------------------------------------------

def test_note_signature_matches_the_reference_implementation():
    """The example key, text and signature of golang.org/x/mod/sumdb/note."""
    seed = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
    signer = NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))
    text = ("If you think cryptography is the answer to your problem,\n"
            "then you don't know what your problem is.\n")
    expected = (text + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIu"
                "GUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")
    assert signer.verifier.key_id.hex() == "c74f20a3"
    assert add_signature(text, signer).format() == expected
    assert verified_by(parse_note(expected), [signer.verifier]) == {"PeterNeumann"}


def test_checkpoint_note_format_and_verification():
    root = bytes(range(32))
    text = Checkpoint(ORIGIN, 12, root).text()
    assert text == f"{ORIGIN}\n12\n{b64encode(root)}\n"
    note = signed_checkpoint(12, root)
    assert note.startswith(text + "\n\u2014 " + ORIGIN + " ")
    checkpoint, parsed = open_checkpoint(note, LOG.verifier)
    assert checkpoint == Checkpoint(ORIGIN, 12, root) and parsed.format() == note
    cosigned = add_signature(parsed, WITNESS)
    assert verified_by(cosigned, [LOG.verifier, WITNESS.verifier]) == {ORIGIN, WITNESS.name}
    assert verified_by(cosigned, [WITNESS.verifier]) == {WITNESS.name}
    bad = cosigned.format().replace(b64encode(root), b64encode(bytes(32)))
    with pytest.raises(NoteError) as err:
        open_checkpoint(bad, LOG.verifier)
    assert err.value.reason == "bad_signature"
    with pytest.raises(NoteError, match="unsigned"):
        open_checkpoint(add_signature(text, WITNESS).format(), LOG.verifier)


@pytest.mark.parametrize("note", [
    "a\n1\nAA==\n", "a\n\n\n", "a\n\n\u2014 k AAAAAAA=", "a\n\n- k AAAAAAAA\n",
    "a\n\n\u2014 k+x AAAAAAAA\n", "a\n\n\u2014 k AAAA\n", "a\tb\n\n\u2014 k AAAAAAAA\n",
    "a\n\n\u2014 k not-base64\n", "a\n\n\u2014 k AAAAAAAA extra\n"])
def test_malformed_notes_are_refused(note):
    with pytest.raises(NoteError) as err:
        parse_note(note)
    assert err.value.reason == "malformed"


@pytest.mark.parametrize("text", ["o\n12\n", "o\n012\nAA==\n", "o\n-1\n" + b64encode(bytes(32)),
                                  "o\n1\nAA==\n", "\n1\n" + b64encode(bytes(32)) + "\n",
                                  "o\n\u0661\n" + b64encode(bytes(32)) + "\n"])
def test_malformed_checkpoints_are_refused(text):
    with pytest.raises(NoteError):
        Checkpoint.parse(text)


# --- the witness -----------------------------------------------------------------------------

def test_witness_cosigns_consistent_checkpoints():
    ledger = build()
    witness = Witness(WITNESS, LOG.verifier)
    first = witness.cosign(ledger.checkpoints[0].note)
    assert verified_by(parse_note(first), [WITNESS.verifier]) == {WITNESS.name}
    witness.cosign(ledger.checkpoints[1].note, ledger.consistency_proof(3, 6))
    witness.cosign(ledger.checkpoints[1].note)
    resumed = Witness(WITNESS, LOG.verifier, Checkpoint.from_json(witness.state.to_json()))
    resumed.cosign(ledger.checkpoints[3].note, ledger.consistency_proof(6, 12))
    assert resumed.state.size == 12


def test_witness_refuses_split_views_rollbacks_and_inconsistent_extensions():
    honest, fork = build(), build(fork_at=4)
    witness = Witness(WITNESS, LOG.verifier)
    witness.cosign(honest.checkpoints[1].note)
    cases = [
        ("split_view", fork.checkpoints[1].note, []),
        ("rollback", honest.checkpoints[0].note, []),
        ("inconsistent", fork.checkpoints[2].note, fork.consistency_proof(6, 9)),
        ("inconsistent", honest.checkpoints[2].note, []),
        ("malformed_proof", honest.checkpoints[2].note, [b"short"]),
        ("bad_log_signature", add_signature(Checkpoint(ORIGIN, 9, honest.tree.root(9)).text(),
                                            WITNESS).format(), []),
        ("origin_mismatch", signed_checkpoint(9, honest.tree.root(9), "other.example"), []),
        ("malformed", "not a note\n", []),
    ]
    for reason, note, proof in cases:
        with pytest.raises(WitnessRefusal) as err:
            witness.cosign(note, proof)
        assert err.value.reason == reason
        assert witness.state.size == 6 and witness.state.root == honest.tree.root(6)
    witness.cosign(honest.checkpoints[2].note, honest.consistency_proof(6, 9))


def test_witness_refuses_a_nonempty_root_for_size_zero():
    with pytest.raises(WitnessRefusal, match="inconsistent"):
        Witness(WITNESS, LOG.verifier).cosign(signed_checkpoint(0, bytes(32)))
    Witness(WITNESS, LOG.verifier).cosign(signed_checkpoint(0, EMPTY_ROOT))


# --- the ledger on disk ----------------------------------------------------------------------

def test_store_round_trip(clean, tmp_path):
    stored = load_ledger(clean)
    ledger = build()
    assert stored.entries == ledger.entries
    assert [parse_note(r.note).text for r in stored.checkpoints] == \
        [parse_note(r.note).text for r in ledger.checkpoints]
    assert all(len(parse_note(r.note).signatures) == 2 for r in stored.checkpoints)
    assert set(stored.disclosures) == {0, 4}
    build(tmp_path / "live")
    ledger.save(tmp_path / "saved")
    for name in ("entries.jsonl", "checkpoints.jsonl"):
        assert (tmp_path / "live" / name).read_bytes() == (tmp_path / "saved" / name).read_bytes()
    with pytest.raises(LedgerError):
        Ledger(LOG, tmp_path / "live")


def test_clean_ledger_has_no_findings(clean):
    assert reverify(clean, REGISTRY, LOG.verifier, [WITNESS.verifier]) == []


def tamper_entries(directory: Path, change) -> None:
    lines = (directory / "entries.jsonl").read_bytes().splitlines()
    (directory / "entries.jsonl").write_bytes(b"".join(x + b"\n" for x in change(lines)))


def altered_bid(lines: list[bytes]) -> list[bytes]:
    row = json.loads(lines[5])
    bid = base64.b64decode(row["bid"]).replace(b"1.5", b"0.5")
    row["bid"] = b64encode(bid)
    return [*lines[:5], canonical_bytes(row), *lines[6:]]


def reused_key(lines: list[bytes]) -> list[bytes]:
    keys = make_keys(SEED, "hospital", 1)
    document = {"bid": {"kw": 1.0}, "commitment": b64encode(keys.commitment), "interval": 2,
                "kind": "bid"}
    bid = canonical_bytes(document)
    entry = LedgerEntry(bid, keys.ephemeral.sign(bid), public_bytes(keys.ephemeral),
                        keys.commitment)
    return [*lines, entry.leaf_bytes()]


ENTRY_CASES = {
    "altered bid": (altered_bid, {"ledger.bad_signature", "ledger.root_mismatch"}),
    "removed entry": (lambda x: x[:5] + x[6:], {"ledger.root_mismatch", "ledger.missing_entries"}),
    "swapped entries": (lambda x: [x[0], x[2], x[1], *x[3:]], {"ledger.root_mismatch"}),
    "disclosed entry swapped": (lambda x: [x[1], x[0], *x[2:]], {"ledger.root_mismatch",
                                                                 "ledger.attribution_failed"}),
    "replayed entry": (lambda x: [*x, x[0]], {"ledger.duplicate_entry",
                                              "ledger.uncheckpointed_entries"}),
    "not json": (lambda x: [*x[:5], b"{oops", *x[6:]], {"ledger.malformed_entry",
                                                        "ledger.root_mismatch"}),
    "reused key": (reused_key, {"ledger.ephemeral_key_reused", "ledger.uncheckpointed_entries"}),
}


@pytest.mark.parametrize("case", sorted(ENTRY_CASES))
def test_tampered_entries_are_found(clean, tmp_path, case):
    change, expected = ENTRY_CASES[case]
    shutil.copytree(clean, tmp_path / "l")
    tamper_entries(tmp_path / "l", change)
    assert audit(tmp_path / "l") == expected


def altered_root(rows: list[dict]) -> list[dict]:
    note = rows[1]["note"]
    root = note.split("\n")[2]
    rows[1]["note"] = note.replace(root, b64encode(bytes(32)))
    return rows


def forked_history(rows: list[dict]) -> list[dict]:
    fork = build(fork_at=4)
    return [*rows[:2], CheckpointRecord(fork.checkpoints[2].note,
                                        tuple(fork.consistency_proof(6, 9))).to_json()]


def split_view(rows: list[dict]) -> list[dict]:
    return [*rows, {"note": signed_checkpoint(6, build(fork_at=4).tree.root(6)), "proof": []}]


def bad_cosignature(rows: list[dict]) -> list[dict]:
    note = parse_note(rows[2]["note"])
    log_sig, witness_sig = note.signatures
    broken = NoteSignature(witness_sig.name, witness_sig.key_id, bytes(64))
    rows[2]["note"] = SignedNote(note.text, (log_sig, broken)).format()
    return rows


CHECKPOINT_CASES = {
    "root altered": (altered_root, {"ledger.bad_checkpoint_signature"}),
    "forked history": (forked_history, {"ledger.root_mismatch",
                                        "ledger.inconsistent_checkpoints",
                                        "ledger.uncheckpointed_entries"}),
    "split view": (split_view, {"ledger.split_view", "ledger.root_mismatch",
                                "ledger.inconsistent_checkpoints"}),
    "rollback": (lambda rows: [*rows, rows[1]], {"ledger.inconsistent_checkpoints"}),
    "bad cosignature": (bad_cosignature, {"ledger.bad_cosignature"}),
    "other origin": (lambda rows: [*rows, {"note": signed_checkpoint(3, bytes(32), "x.example"),
                                           "proof": []}], {"ledger.origin_mismatch"}),
    "not a record": (lambda rows: [*rows, {"note": 5}], {"ledger.malformed_checkpoint"}),
    "not a note": (lambda rows: [*rows, {"note": "x\n", "proof": []}],
                   {"ledger.malformed_checkpoint"}),
    "no checkpoints": (lambda rows: [], {"ledger.uncheckpointed_entries"}),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_tampered_checkpoints_are_found(clean, tmp_path, case):
    change, expected = CHECKPOINT_CASES[case]
    shutil.copytree(clean, tmp_path / "l")
    write_records(tmp_path / "l", change(records(tmp_path / "l")))
    assert audit(tmp_path / "l") == expected


def test_bad_disclosures_are_found(clean, tmp_path):
    shutil.copytree(clean, tmp_path / "l")
    right, wrong = bids(1)[0][1], bids(1)[1][1]
    save_ledger(tmp_path / "l", load_ledger(clean).entries, load_ledger(clean).checkpoints,
                {0: Disclosure(right.attestation, wrong.salt), 1: wrong, 2: right, 99: right})
    findings = reverify(tmp_path / "l", REGISTRY, LOG.verifier, [WITNESS.verifier])
    assert [(f.code, f.where) for f in findings] == [
        ("ledger.attribution_failed", f"disclosures.jsonl:{n}") for n in (1, 3, 4)]
    assert "commitment_mismatch" in findings[0].detail


def test_every_finding_code_is_exercised():
    seen = set().union(*(e for _, e in ENTRY_CASES.values()),
                       *(e for _, e in CHECKPOINT_CASES.values()))
    assert seen | {"ledger.attribution_failed"} == set(FINDING_CODES)


def test_finding_codes_are_documented():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "ledger.md").read_text()
    for code, meaning in FINDING_CODES.items():
        assert f"| `{code}` | {meaning} |" in doc
