"""Canonical bytes, deterministic keys, signed pseudonymous bids and their attribution."""

from __future__ import annotations

import math

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridsim.ledger.canonical import (
    CanonicalError,
    b64decode,
    b64encode,
    canonical_bytes,
    parse_canonical,
    sha256,
)
from gridsim.ledger.identity import (
    ATTRIBUTION_REASONS,
    Attestation,
    Disclosure,
    EntryError,
    LedgerEntry,
    attribute,
    check_entry,
    derive_secret,
    make_keys,
    make_registry,
    public_bytes,
    read_bid,
    sign_bid,
    verify_entry,
)

SEED = 123
ENTITIES = ["hospital", "house-7", "water-plant"]
BID = {"cuts": [{"a_usd": 0.0, "g_usd_per_kw": [1.5]}], "kw_max": 40.0}


@pytest.fixture(scope="module")
def registry() -> dict[str, bytes]:
    return make_registry(SEED, ENTITIES)


def signed(ephemeral: Ed25519PrivateKey, document: dict, commitment: bytes) -> LedgerEntry:
    """An entry for an arbitrary bid document (to build the cases sign_bid never makes)."""
    bid = canonical_bytes(document)
    return LedgerEntry(bid, ephemeral.sign(bid), public_bytes(ephemeral), commitment)


# --- canonical bytes -------------------------------------------------------------------------

def test_canonical_bytes_are_sorted_compact_utf8():
    assert canonical_bytes({"b": 1, "a": [True, None, "é"], "c": 1.5}) == \
        '{"a":[true,null,"é"],"b":1,"c":1.5}'.encode()
    assert canonical_bytes((1, 2)) == b"[1,2]"
    assert parse_canonical(b'{"a":1,"b":[2]}') == {"a": 1, "b": [2]}


@pytest.mark.parametrize("value", [math.nan, math.inf, {"x": -math.inf}, {1: "a"}, b"raw",
                                   {"s": {1, 2}}, "\ud800"])
def test_canonical_bytes_refuse_what_json_cannot_say(value):
    with pytest.raises(CanonicalError):
        canonical_bytes(value)


@pytest.mark.parametrize("data", [b'{"b":1,"a":2}', b'{"a": 1}', b'{"a":1,"a":2}', b"NaN",
                                  b'"\\u00e9"', b"\xff", b"{",
                                  b'"\\ud800"'])
def test_non_canonical_bytes_are_refused(data):
    with pytest.raises(CanonicalError):
        parse_canonical(data)


def test_strict_base64():
    assert b64decode(b64encode(b"\x00\xff"), 2) == b"\x00\xff"
    for bad in ["AA", "AA==\n", "A A=", "AB==", "****"]:
        with pytest.raises(CanonicalError):
            b64decode(bad)
    with pytest.raises(CanonicalError):
        b64decode(b64encode(b"abc"), 4)


# --- deterministic keys ----------------------------------------------------------------------

def test_key_derivation_is_deterministic_and_separated():
    assert derive_secret(SEED, "salt", "a", 1) == derive_secret(b"123", "salt", "a", 1)
    secrets = {derive_secret(SEED, p, e, i) for p in ("ephemeral", "salt")
               for e, i in [("a1", 2), ("a", 12), ("a", 1), ("b", 1)]}
    assert len(secrets) == 8
    assert derive_secret(SEED, "salt", "a", 1) != derive_secret(124, "salt", "a", 1)
    first = sign_bid(make_keys(SEED, "house-7", 3), BID)
    again = sign_bid(make_keys(SEED, "house-7", 3), BID)
    assert first.leaf_bytes() == again.leaf_bytes()


# --- signatures ------------------------------------------------------------------------------

def test_signed_bid_round_trip():
    entry = sign_bid(make_keys(SEED, "hospital", 5), BID)
    assert verify_entry(entry)
    assert read_bid(entry) == (5, BID)
    assert LedgerEntry.from_json(entry.to_json()) == entry
    assert entry.leaf_bytes() == canonical_bytes(entry.to_json())


def test_forged_signature_is_rejected():
    entry = sign_bid(make_keys(SEED, "hospital", 5), BID)
    other = make_keys(SEED, "house-7", 5).ephemeral
    forged = LedgerEntry(entry.bid, other.sign(entry.bid), entry.ephemeral_public,
                         entry.commitment)
    assert check_entry(forged) == "bad_entry_signature"
    garbage = LedgerEntry(entry.bid, bytes(64), entry.ephemeral_public, entry.commitment)
    assert not verify_entry(garbage)


def test_altered_bid_is_rejected():
    entry = sign_bid(make_keys(SEED, "hospital", 5), BID)
    altered = entry.bid.replace(b"1.5", b"9.5")
    assert altered != entry.bid
    assert check_entry(LedgerEntry(altered, entry.signature, entry.ephemeral_public,
                                   entry.commitment)) == "bad_entry_signature"


def test_entry_must_carry_the_commitment_it_signed():
    keys = make_keys(SEED, "hospital", 5)
    entry = sign_bid(keys, BID)
    swapped = LedgerEntry(entry.bid, entry.signature, entry.ephemeral_public, sha256(b"x"))
    assert check_entry(swapped) == "malformed_entry"
    not_a_bid = signed(keys.ephemeral, {"anything": 1}, keys.commitment)
    assert check_entry(not_a_bid) == "malformed_entry"


@pytest.mark.parametrize("data", [{}, {"bid": "", "commitment": "", "ephemeral_public": ""},
                                  {"bid": "AA==", "commitment": "AA==", "ephemeral_public": "AA==",
                                   "signature": "AA=="}])
def test_malformed_entries_are_refused(data):
    with pytest.raises(EntryError):
        LedgerEntry.from_json(data)


# --- pseudo-anonymity and attribution --------------------------------------------------------

def test_two_intervals_of_one_entity_share_nothing():
    one = sign_bid(make_keys(SEED, "house-7", 3), BID)
    two = sign_bid(make_keys(SEED, "house-7", 4), BID)
    assert not set(one.to_json().values()) & set(two.to_json().values())
    for entry in (one, two):
        assert b"house-7" not in entry.leaf_bytes() and b"house-7" not in entry.bid
    assert not {one.signature, one.ephemeral_public, one.commitment} & \
        {two.signature, two.ephemeral_public, two.commitment}


def test_disclosure_attributes_both_intervals(registry):
    for interval in (3, 4):
        keys = make_keys(SEED, "house-7", interval)
        entry = sign_bid(keys, BID)
        result = attribute(entry, keys.attestation, keys.salt, registry)
        assert result.ok and result.entity == "house-7" and result.reason is None
        disclosed = Disclosure.from_json(keys.disclosure.to_json())
        assert attribute(entry, disclosed.attestation, disclosed.salt, registry).ok


def test_wrong_salt_or_another_attestation_does_not_attribute(registry):
    keys, other = make_keys(SEED, "house-7", 3), make_keys(SEED, "hospital", 3)
    entry = sign_bid(keys, BID)
    assert attribute(entry, keys.attestation, other.salt, registry).reason == \
        "commitment_mismatch"
    assert attribute(entry, other.attestation, other.salt, registry).reason == \
        "commitment_mismatch"
    assert attribute(entry, keys.attestation, keys.salt, {}).reason == "unknown_entity"


def test_attestation_forged_or_for_another_key_does_not_attribute(registry):
    keys = make_keys(SEED, "house-7", 3)
    impostor = make_keys(SEED, "mallory", 3, long_term=Ed25519PrivateKey.from_private_bytes(
        bytes(32)))
    claim = Attestation("house-7", 3, impostor.attestation.ephemeral_public,
                        impostor.attestation.signature)
    salt = bytes(32)
    forged_commitment = sha256(salt + claim.to_bytes())
    forged = signed(impostor.ephemeral, {"bid": BID, "commitment": b64encode(forged_commitment),
                                         "interval": 3, "kind": "bid"}, forged_commitment)
    assert verify_entry(forged)
    assert attribute(forged, claim, salt, registry).reason == "bad_attestation_signature"
    framed = signed(impostor.ephemeral, {"bid": BID, "commitment": b64encode(keys.commitment),
                                         "interval": 3, "kind": "bid"}, keys.commitment)
    assert attribute(framed, keys.attestation, keys.salt, registry).reason == \
        "ephemeral_key_mismatch"
    late = signed(keys.ephemeral, {"bid": BID, "commitment": b64encode(keys.commitment),
                                   "interval": 4, "kind": "bid"}, keys.commitment)
    assert attribute(late, keys.attestation, keys.salt, registry).reason == "interval_mismatch"


def test_reasons_are_documented():
    assert {"commitment_mismatch", "unknown_entity", "bad_attestation_signature",
            "ephemeral_key_mismatch", "interval_mismatch", "bad_entry_signature",
            "malformed_entry"} == set(ATTRIBUTION_REASONS)
