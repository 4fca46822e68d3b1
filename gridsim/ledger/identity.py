"""Pseudonymous, non-repudiable bids: long-term keys, per-interval keys, attestations.

Each entity has a long-term Ed25519 key registered with the regulator (a registry maps
entity id -> 32-byte public key). For every market interval it makes a fresh ephemeral key
and an *attestation*: the long-term key's signature over the canonical bytes of
``{"entity", "ephemeral_public", "interval", "kind": "attestation"}``. A random *salt*
hides the attestation behind a *commitment* ``SHA-256(salt || attestation bytes)``, where
the attestation bytes include its signature.

A bid is signed by the ephemeral key only. Its signed bytes are the canonical bytes of
``{"bid": content, "commitment", "interval", "kind": "bid"}``: the bid binds the
commitment, so no one can re-attach the entry to another attestation. The ledger entry is
``{bid bytes, signature, ephemeral public key, commitment}``: no entity id, and no value
shared by two intervals of one entity (every key, salt and signature is fresh), so entries
are unlinkable across intervals unless the bid content itself says who made it.

When an audit needs it, the entity (or the market, which receives it at submission)
discloses the attestation and the salt; `attribute` then names the entity, or says why not.

Keys and salts are derived from the scenario seed so that a run is reproducible (same seed,
same bytes). The derivation, for ``purpose`` in ``long_term``, ``ephemeral``, ``salt``::

    secret = SHA-256(b"gridsim.ledger.kdf.v1\\n" || canonical_bytes(
        {"entity": entity, "interval": interval or null, "purpose": purpose,
         "seed": hex(seed bytes)}))

The 32-byte secret is the Ed25519 private key (RFC 8032 seed) or the salt. An integer
scenario seed is first written as its decimal digits in ASCII. Encoding the inputs as
canonical JSON rather than concatenating them keeps ("a1", 2) and ("a", 12) apart. Outside a
simulation, keys and salts would come from ``os.urandom``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gridsim.ledger.canonical import (
    CanonicalError,
    b64decode,
    b64encode,
    canonical_bytes,
    parse_canonical,
    sha256,
)

__all__ = ["ATTRIBUTION_REASONS", "Attestation", "Attribution", "Disclosure", "EntryError",
           "IntervalKeys", "LedgerEntry", "attribute", "check_entry", "derive_secret",
           "long_term_key", "make_keys", "make_registry", "public_bytes", "read_bid",
           "sign_bid", "verify_entry", "verify_signature"]

KDF_DOMAIN = b"gridsim.ledger.kdf.v1\n"
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SALT_SIZE = 32

ATTRIBUTION_REASONS: dict[str, str] = {
    "malformed_entry": "the entry's bid bytes are not a canonical bid document",
    "bad_entry_signature": "the entry's signature does not verify with its ephemeral key",
    "commitment_mismatch": "SHA-256(salt || attestation) is not the entry's commitment",
    "unknown_entity": "the attestation names an entity absent from the registry",
    "bad_attestation_signature": "the attestation is not signed by the entity's registered key",
    "ephemeral_key_mismatch": "the attestation certifies another ephemeral key",
    "interval_mismatch": "the attestation is for another interval than the bid",
}
"""Why `attribute` could not name an entity: reason code -> description."""


class EntryError(ValueError):
    """A ledger entry, attestation or disclosure that cannot be decoded."""


def _seed_bytes(seed: bytes | int) -> bytes:
    """The seed as bytes: integers as their decimal digits in ASCII."""
    if isinstance(seed, bool) or not isinstance(seed, (bytes, int)):
        raise TypeError(f"seed must be bytes or int, not {type(seed).__name__}")
    return str(seed).encode("ascii") if isinstance(seed, int) else seed


def derive_secret(seed: bytes | int, purpose: str, entity: str,
                  interval: int | None = None) -> bytes:
    """32 secret bytes for (`purpose`, `entity`, `interval`) from `seed` (module docstring)."""
    info = {"entity": entity, "interval": interval, "purpose": purpose,
            "seed": _seed_bytes(seed).hex()}
    return sha256(KDF_DOMAIN + canonical_bytes(info))


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key of an Ed25519 key pair or public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def long_term_key(seed: bytes | int, entity: str) -> Ed25519PrivateKey:
    """The entity's long-term key, derived from the scenario seed."""
    return Ed25519PrivateKey.from_private_bytes(derive_secret(seed, "long_term", entity))


def make_registry(seed: bytes | int, entities: Iterable[str]) -> dict[str, bytes]:
    """The regulator's registry for `entities`: entity id -> long-term public key."""
    return {e: public_bytes(long_term_key(seed, e)) for e in entities}


@dataclass(frozen=True)
class Attestation:
    """The long-term key's statement "this ephemeral key is mine for this interval"."""

    entity: str
    interval: int
    ephemeral_public: bytes
    signature: bytes

    def body(self) -> dict[str, Any]:
        """The signed fields, as a JSON-able dict."""
        return {"entity": self.entity, "ephemeral_public": b64encode(self.ephemeral_public),
                "interval": self.interval, "kind": "attestation"}

    def signed_bytes(self) -> bytes:
        """What the long-term key signs."""
        return canonical_bytes(self.body())

    def to_json(self) -> dict[str, Any]:
        """The attestation with its signature, as a JSON-able dict."""
        return {**self.body(), "signature": b64encode(self.signature)}

    def to_bytes(self) -> bytes:
        """Canonical bytes of `to_json`: what the commitment hashes."""
        return canonical_bytes(self.to_json())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attestation:
        """Parse `to_json`'s form; `EntryError` if anything is missing or malformed."""
        try:
            if set(data) != {"entity", "ephemeral_public", "interval", "kind", "signature"}:
                raise EntryError(f"attestation fields {sorted(data)}")
            if data["kind"] != "attestation" or not isinstance(data["entity"], str) \
                    or type(data["interval"]) is not int:
                raise EntryError("attestation kind, entity or interval malformed")
            return cls(data["entity"], data["interval"],
                       b64decode(data["ephemeral_public"], PUBLIC_KEY_SIZE),
                       b64decode(data["signature"], SIGNATURE_SIZE))
        except CanonicalError as exc:
            raise EntryError(f"attestation: {exc}") from exc


@dataclass(frozen=True)
class Disclosure:
    """What an audit needs to attribute one interval's entries: attestation and salt."""

    attestation: Attestation
    salt: bytes

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (salt in base64)."""
        return {"attestation": self.attestation.to_json(), "salt": b64encode(self.salt)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Disclosure:
        """Parse `to_json`'s form; `EntryError` if malformed."""
        try:
            return cls(Attestation.from_json(data["attestation"]),
                       b64decode(data["salt"], SALT_SIZE))
        except (KeyError, TypeError, CanonicalError) as exc:
            raise EntryError(f"disclosure: {exc}") from exc


def commitment(attestation: Attestation, salt: bytes) -> bytes:
    """``SHA-256(salt || attestation bytes)``."""
    return sha256(salt + attestation.to_bytes())


@dataclass(frozen=True, eq=False)
class IntervalKeys:
    """One entity's keys for one interval: ephemeral key, attestation, salt, commitment."""

    ephemeral: Ed25519PrivateKey
    attestation: Attestation
    salt: bytes
    commitment: bytes

    @property
    def disclosure(self) -> Disclosure:
        """The attestation and salt, for an audit."""
        return Disclosure(self.attestation, self.salt)


def make_keys(seed: bytes | int, entity: str, interval: int,
              long_term: Ed25519PrivateKey | None = None) -> IntervalKeys:
    """The entity's keys for `interval` (long-term key derived from the seed unless given)."""
    if long_term is None:
        long_term = long_term_key(seed, entity)
    ephemeral = Ed25519PrivateKey.from_private_bytes(
        derive_secret(seed, "ephemeral", entity, interval))
    unsigned = Attestation(entity, interval, public_bytes(ephemeral), b"")
    attestation = Attestation(entity, interval, unsigned.ephemeral_public,
                              long_term.sign(unsigned.signed_bytes()))
    salt = derive_secret(seed, "salt", entity, interval)
    return IntervalKeys(ephemeral, attestation, salt, commitment(attestation, salt))


@dataclass(frozen=True)
class LedgerEntry:
    """One bid as the ledger holds it: nothing here names the entity."""

    bid: bytes
    signature: bytes
    ephemeral_public: bytes
    commitment: bytes

    def to_json(self) -> dict[str, str]:
        """JSON-able form, every field in base64."""
        return {"bid": b64encode(self.bid), "commitment": b64encode(self.commitment),
                "ephemeral_public": b64encode(self.ephemeral_public),
                "signature": b64encode(self.signature)}

    def leaf_bytes(self) -> bytes:
        """Canonical bytes of `to_json`: the Merkle leaf, and one line of ``entries.jsonl``."""
        return canonical_bytes(self.to_json())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LedgerEntry:
        """Parse `to_json`'s form; `EntryError` on missing fields, bad base64 or sizes."""
        if not isinstance(data, Mapping) or \
                set(data) != {"bid", "commitment", "ephemeral_public", "signature"}:
            raise EntryError("entry must have exactly bid, commitment, ephemeral_public, "
                             "signature")
        try:
            return cls(b64decode(data["bid"]), b64decode(data["signature"], SIGNATURE_SIZE),
                       b64decode(data["ephemeral_public"], PUBLIC_KEY_SIZE),
                       b64decode(data["commitment"], 32))
        except CanonicalError as exc:
            raise EntryError(f"entry: {exc}") from exc


def sign_bid(keys: IntervalKeys, content: Mapping[str, Any]) -> LedgerEntry:
    """The ledger entry of bid `content` (a JSON-able dict) for the keys' interval."""
    document = {"bid": dict(content), "commitment": b64encode(keys.commitment),
                "interval": keys.attestation.interval, "kind": "bid"}
    bid = canonical_bytes(document)
    return LedgerEntry(bid, keys.ephemeral.sign(bid), keys.attestation.ephemeral_public,
                       keys.commitment)


def read_bid(entry: LedgerEntry) -> tuple[int, dict[str, Any]]:
    """(interval, bid content) of an entry; `EntryError` if the bid bytes are malformed."""
    try:
        document = parse_canonical(entry.bid)
    except CanonicalError as exc:
        raise EntryError(f"bid: {exc}") from exc
    if not isinstance(document, dict) or set(document) != {"bid", "commitment", "interval",
                                                           "kind"}:
        raise EntryError("bid document must have exactly bid, commitment, interval, kind")
    if document["kind"] != "bid" or type(document["interval"]) is not int \
            or not isinstance(document["bid"], dict):
        raise EntryError("bid document kind, interval or bid malformed")
    if document["commitment"] != b64encode(entry.commitment):
        raise EntryError("bid document commits to another attestation than the entry")
    return document["interval"], document["bid"]


def check_entry(entry: LedgerEntry) -> str | None:
    """None if the entry is well formed and its signature verifies, else a reason code
    (``malformed_entry``, ``bad_entry_signature``; see `ATTRIBUTION_REASONS`)."""
    if not verify_signature(entry.ephemeral_public, entry.signature, entry.bid):
        return "bad_entry_signature"
    try:
        read_bid(entry)
    except EntryError:
        return "malformed_entry"
    return None


def verify_entry(entry: LedgerEntry) -> bool:
    """Whether the entry is well formed and signed by its ephemeral key."""
    return check_entry(entry) is None


@dataclass(frozen=True)
class Attribution:
    """The result of `attribute`: the entity, or the reason (a key of ATTRIBUTION_REASONS)."""

    entity: str | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the entry was attributed."""
        return self.entity is not None


def attribute(entry: LedgerEntry, attestation: Attestation, salt: bytes,
              registry: Mapping[str, bytes]) -> Attribution:
    """Name the entity behind `entry` from its disclosed attestation and salt.

    Checks, in order: the entry itself, the commitment, the registry, the attestation's
    signature by the registered long-term key, the ephemeral key and the interval.
    """
    problem = check_entry(entry)
    if problem is not None:
        return Attribution(None, problem)
    if commitment(attestation, salt) != entry.commitment:
        return Attribution(None, "commitment_mismatch")
    registered = registry.get(attestation.entity)
    if registered is None:
        return Attribution(None, "unknown_entity")
    if not verify_signature(registered, attestation.signature, attestation.signed_bytes()):
        return Attribution(None, "bad_attestation_signature")
    if attestation.ephemeral_public != entry.ephemeral_public:
        return Attribution(None, "ephemeral_key_mismatch")
    if read_bid(entry)[0] != attestation.interval:
        return Attribution(None, "interval_mismatch")
    return Attribution(attestation.entity)
