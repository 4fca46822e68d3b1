"""Signed checkpoints of the ledger (C2SP signed-note and tlog-checkpoint) and a witness.

A checkpoint is the log head as note text, three lines each ending in a newline: the origin
(the log's name), the tree size in decimal without leading zeros, and the base64 RFC 9162
root hash. A signed note is that text, a blank line, then one line per signature::

    — <key name> <base64(4-byte key ID || 64-byte Ed25519 signature of the note text)>

with ``key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]`` (signature type
0x01, Ed25519). The market signs as log operator under a key named by the log's origin.

A `Witness` cosigns a checkpoint only if the log signed it and it extends the last
checkpoint the witness cosigned (verified with a consistency proof); it refuses a different
root at the same size (a split view), a smaller size (a rollback) and an inconsistent
extension. Its cosignature is an ordinary Ed25519 note signature added to the same note
(C2SP's timestamped tlog-cosignature, type 0x04, is not used). It trusts the first
checkpoint it sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridsim.ledger.canonical import CanonicalError, b64decode, b64encode, sha256
from gridsim.ledger.identity import public_bytes, verify_signature
from gridsim.ledger.merkle import EMPTY_ROOT, HASH_SIZE, ProofError, verify_consistency

__all__ = ["Checkpoint", "NoteError", "NoteSignature", "NoteSigner", "NoteVerifier",
           "SignedNote", "WITNESS_REFUSALS", "Witness", "WitnessRefusal", "add_signature",
           "key_id", "open_checkpoint", "parse_note", "verified_by"]

ED25519_TYPE = b"\x01"
MAX_SIGNATURES = 100
DASH = "\u2014"

WITNESS_REFUSALS: dict[str, str] = {
    "malformed": "the note or its checkpoint text cannot be parsed",
    "bad_log_signature": "the note is not validly signed by the log's key",
    "origin_mismatch": "the checkpoint's origin is not the log's name",
    "rollback": "the tree is smaller than the last cosigned one",
    "split_view": "another root was cosigned for the same tree size",
    "malformed_proof": "the consistency proof has malformed hashes",
    "inconsistent": "the consistency proof does not show an append-only extension",
}
"""Why a `Witness` refused to cosign: reason code -> description."""


class NoteError(ValueError):
    """A note that is malformed or not validly signed; `reason` is ``malformed``,
    ``bad_signature`` (a known key's signature fails), ``unsigned`` (no signature by the
    required key) or ``origin_mismatch``."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(f"{reason}: {message}")


def _check_name(name: str) -> None:
    """Key names are non-empty, without Unicode spaces or ``+``."""
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError("malformed", f"bad key name {name!r}")


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte C2SP key ID of an Ed25519 key named `name`."""
    return sha256(name.encode("utf-8") + b"\n" + ED25519_TYPE + public_key)[:4]


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID, signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, with its newline."""
        return f"{DASH} {self.name} {b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class SignedNote:
    """Note text (ending in a newline) and its signatures."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def format(self) -> str:
        """The signed note as text."""
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def _check_text(text: str) -> None:
    """Note text: non-empty, ends in a newline, no control characters but newlines."""
    if not text.endswith("\n") or any(c < " " and c != "\n" for c in text):
        raise NoteError("malformed", "note text must end in a newline and hold no controls")


def _parse_signature(line: str) -> NoteSignature:
    """One signature line without its newline."""
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != DASH:
        raise NoteError("malformed", f"bad signature line {line!r}")
    _check_name(parts[1])
    try:
        raw = b64decode(parts[2])
    except CanonicalError as exc:
        raise NoteError("malformed", f"signature of {parts[1]}: {exc}") from exc
    if len(raw) < 5:
        raise NoteError("malformed", f"signature of {parts[1]} too short")
    return NoteSignature(parts[1], raw[:4], raw[4:])


def parse_note(data: str) -> SignedNote:
    """Parse a signed note; `NoteError` (``malformed``) if it breaks the format."""
    if not data.endswith("\n"):
        raise NoteError("malformed", "a signed note ends in a newline")
    split = data.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed", "no blank line before the signatures")
    text, block = data[:split + 1], data[split + 2:]
    _check_text(text)
    lines = block[:-1].split("\n") if block else []
    if not lines or len(lines) > MAX_SIGNATURES:
        raise NoteError("malformed", f"{len(lines)} signature lines")
    return SignedNote(text, tuple(_parse_signature(line) for line in lines))


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted public key under its name."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        """The key's 4-byte ID."""
        return key_id(self.name, self.public_key)

    def verify(self, text: str, signature: NoteSignature) -> bool:
        """Whether `signature` is this key's valid signature of `text`."""
        return (signature.name == self.name and signature.key_id == self.key_id
                and verify_signature(self.public_key, signature.signature,
                                     text.encode("utf-8")))


class NoteSigner:
    """A private key under its name (the log's origin, or a witness's name)."""

    def __init__(self, name: str, key: Ed25519PrivateKey):
        _check_name(name)
        self.name = name
        self._key = key
        self.verifier = NoteVerifier(name, public_bytes(key))

    def sign(self, text: str) -> NoteSignature:
        """This key's signature of note text `text`."""
        _check_text(text)
        return NoteSignature(self.name, self.verifier.key_id,
                             self._key.sign(text.encode("utf-8")))


def add_signature(note: SignedNote | str, signer: NoteSigner) -> SignedNote:
    """`note` (or bare note text) with `signer`'s signature added (replacing its own)."""
    if isinstance(note, str):
        note = SignedNote(note, ())
    mine = (signer.name, signer.verifier.key_id)
    kept = tuple(s for s in note.signatures if (s.name, s.key_id) != mine)
    return SignedNote(note.text, kept + (signer.sign(note.text),))


def verified_by(note: SignedNote, verifiers: Iterable[NoteVerifier]) -> set[str]:
    """Names of the `verifiers` whose signatures on `note` verify; unknown keys are ignored.

    Raises:
        NoteError: ``bad_signature`` if a known key's signature (name and ID match) fails.
    """
    known = {(v.name, v.key_id): v for v in verifiers}
    names: set[str] = set()
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(note.text, sig):
            raise NoteError("bad_signature", f"signature of {sig.name} does not verify")
        names.add(sig.name)
    return names


@dataclass(frozen=True)
class Checkpoint:
    """A log head: origin, tree size, root hash (and optional opaque extension lines)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The checkpoint as note text."""
        lines = [self.origin, str(self.size), b64encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text; `NoteError` (``malformed``) if it breaks the format."""
        _check_text(text)
        lines = text[:-1].split("\n")
        if len(lines) < 3 or not all(lines):
            raise NoteError("malformed", "a checkpoint has at least three non-empty lines")
        origin, size, root = lines[:3]
        if not size.isascii() or not size.isdigit() or (size != "0" and size[0] == "0"):
            raise NoteError("malformed", f"bad tree size {size!r}")
        try:
            return cls(origin, int(size), b64decode(root, HASH_SIZE), tuple(lines[3:]))
        except CanonicalError as exc:
            raise NoteError("malformed", f"root hash: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (root in base64; extensions omitted)."""
        return {"origin": self.origin, "root": b64encode(self.root), "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """Parse `to_json`'s form."""
        return cls(data["origin"], int(data["size"]), b64decode(data["root"], HASH_SIZE))


def open_checkpoint(data: str, log: NoteVerifier) -> tuple[Checkpoint, SignedNote]:
    """Parse a signed checkpoint that the log's key must have signed, for the log's origin.

    Raises:
        NoteError: ``malformed``, ``bad_signature``, ``unsigned`` or ``origin_mismatch``.
    """
    note = parse_note(data)
    if log.name not in verified_by(note, [log]):
        raise NoteError("unsigned", f"no signature by the log key {log.name}")
    checkpoint = Checkpoint.parse(note.text)
    if checkpoint.origin != log.name:
        raise NoteError("origin_mismatch", f"origin {checkpoint.origin!r} is not {log.name!r}")
    return checkpoint, note


class WitnessRefusal(Exception):
    """A witness declined to cosign; `reason` is a key of `WITNESS_REFUSALS`."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(f"{reason}: {message}")


class Witness:
    """Cosigns the checkpoints of one log that extend the last one it cosigned.

    `state` (the last cosigned checkpoint) is all it keeps; save it with
    ``state.to_json()`` and pass it back to the constructor to resume.
    """

    def __init__(self, signer: NoteSigner, log: NoteVerifier, state: Checkpoint | None = None):
        self.signer = signer
        self.log = log
        self.state = state

    def cosign(self, note: str, proof: Sequence[bytes] = ()) -> str:
        """The note with this witness's signature added.

        `proof` is the consistency proof from ``state.size`` to the new size (empty for
        the first checkpoint, an equal size, or a last size of 0).

        Raises:
            WitnessRefusal: see `WITNESS_REFUSALS`; the state is then unchanged.
        """
        try:
            checkpoint, signed = open_checkpoint(note, self.log)
        except NoteError as exc:
            reason = {"bad_signature": "bad_log_signature", "unsigned": "bad_log_signature",
                      "origin_mismatch": "origin_mismatch"}.get(exc.reason, "malformed")
            raise WitnessRefusal(reason, str(exc)) from exc
        if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
            raise WitnessRefusal("inconsistent", "the root of size 0 is not the empty root")
        if self.state is not None:
            self._check_extends(self.state, checkpoint, proof)
        self.state = checkpoint
        return add_signature(signed, self.signer).format()

    @staticmethod
    def _check_extends(last: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
        """Raise `WitnessRefusal` unless `new` is an append-only extension of `last`."""
        if new.size < last.size:
            raise WitnessRefusal("rollback", f"size {new.size} after {last.size}")
        if new.size == last.size:
            if new.root != last.root:
                raise WitnessRefusal("split_view", f"two roots for size {new.size}")
            return
        if last.size == 0:
            return
        try:
            ok = verify_consistency(last.size, new.size, last.root, new.root, proof)
        except ProofError as exc:
            raise WitnessRefusal("malformed_proof", str(exc)) from exc
        if not ok:
            raise WitnessRefusal("inconsistent", f"no extension from {last.size} to {new.size}")
