"""Ledger benchmark: signed-bid verification rate, Merkle appends and proofs, offline audit.

Run: ``.venv/bin/python bench/ledger.py [--entries N] [--append M] [--big B] [--repeat R]
[--json OUT]``.

One process, one thread (the rates are for one core). Set-up makes N signed bids (N/50
entities over 50 intervals, keys derived from a fixed seed). Each repetition then times, in
this order:

1. ``verify_entry`` on all N entries (Ed25519 verification plus parsing the canonical bid
   document), and the bare Ed25519 verification of the same signatures for comparison;
2. appending M entries to a fresh `MerkleLog` (leaf hash of each entry's canonical bytes),
   then the inclusion proof of every one of them at size M, then verifying those proofs;
3. appending B leaf hashes to a `MerkleLog` and computing its root (the scale of a long run);
4. `reverify` of the N entries written as a ledger directory with a checkpoint every
   interval.

Figures are medians over the repetitions with min and max. Target: at least 5,000 verified
bids per second.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cryptography
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridsim.ledger.checkpoint import NoteSigner
from gridsim.ledger.identity import (
    LedgerEntry,
    derive_secret,
    make_keys,
    make_registry,
    sign_bid,
    verify_entry,
    verify_signature,
)
from gridsim.ledger.merkle import MerkleLog, leaf_hash, verify_inclusion
from gridsim.ledger.store import Ledger, reverify

SEED = 2024
INTERVALS = 50
TARGET_PER_S = 5_000


def make_entries(n: int) -> list[LedgerEntry]:
    """N signed bids: N / INTERVALS entities, each bidding once per interval."""
    entities = [f"entity-{e}" for e in range(max(1, n // INTERVALS))]
    entries: list[LedgerEntry] = []
    for interval in range(INTERVALS):
        for e, entity in enumerate(entities):
            if len(entries) == n:
                return entries
            keys = make_keys(SEED, entity, interval)
            entries.append(sign_bid(keys, {"kw_max": 10.0 + e, "usd_per_kwh": 1.5 + interval}))
    return entries


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call, in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def verify_all(entries: list[LedgerEntry]) -> None:
    """verify_entry on every entry; all must pass."""
    if not all(verify_entry(e) for e in entries):
        raise SystemExit("an entry failed verification")


def signatures_only(entries: list[LedgerEntry]) -> None:
    """Bare Ed25519 verification of every entry's signature."""
    if not all(verify_signature(e.ephemeral_public, e.signature, e.bid) for e in entries):
        raise SystemExit("a signature failed verification")


def merkle_round(leaves: list[bytes]) -> dict[str, float]:
    """Append `leaves`, prove every one, verify every proof; seconds per phase."""
    log = MerkleLog()
    t_append = timed(lambda: [log.append(x) for x in leaves])
    proofs: list[list[bytes]] = []
    t_prove = timed(lambda: proofs.extend(log.inclusion_proof(i) for i in range(len(leaves))))
    root, size = log.root(), log.size

    def check() -> None:
        if not all(verify_inclusion(log.leaf_hash(i), i, size, p, root)
                   for i, p in enumerate(proofs)):
            raise SystemExit("an inclusion proof failed")

    return {"append": t_append, "prove": t_prove, "verify_proofs": timed(check)}


def big_log(n: int) -> float:
    """Seconds to append `n` leaf hashes and compute the root."""
    hashes = [leaf_hash(b"%d" % i) for i in range(n)]
    log = MerkleLog()

    def run() -> None:
        for h in hashes:
            log.append_hash(h)
        log.root()

    return timed(run)


def write_ledger(entries: list[LedgerEntry], directory: Path) -> NoteSigner:
    """The entries as a ledger directory, checkpointed after each interval's bids."""
    signer = NoteSigner("bench.gridsim.example/ledger", Ed25519PrivateKey.from_private_bytes(
        derive_secret(SEED, "bench", "log")))
    ledger = Ledger(signer)
    per_interval = max(1, len(entries) // INTERVALS)
    for i, entry in enumerate(entries, start=1):
        ledger.append(entry)
        if i % per_interval == 0 or i == len(entries):
            ledger.checkpoint()
    ledger.save(directory)
    return signer


def stats(values: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5_000)
    parser.add_argument("--append", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    entries = make_entries(args.entries)
    make_s = time.perf_counter() - start
    leaves = [e.leaf_bytes() for e in entries[:args.append]]
    registry = make_registry(SEED, [f"entity-{e}" for e in range(args.entries // INTERVALS)])
    raw: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        signer = write_ledger(entries, Path(tmp))
        for r in range(args.repeat):
            print(f"repetition {r + 1}/{args.repeat}", file=sys.stderr)
            rows = {"verify_entry": timed(lambda: verify_all(entries)),
                    "ed25519_only": timed(lambda: signatures_only(entries)),
                    **merkle_round(leaves), "big_log": big_log(args.big),
                    "reverify": timed(lambda: reverify(tmp, registry, signer.verifier))}
            for k, v in rows.items():
                raw.setdefault(k, []).append(v)
    report(args, make_s, raw)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "make_s": make_s, "raw_s": raw}, indent=1))


def report(args: argparse.Namespace, make_s: float, raw: dict[str, list[float]]) -> None:
    """Print the table."""
    n, m, b = args.entries, args.append, args.big
    print(f"gridsim ledger benchmark: {n} signed bids, {args.repeat} repetitions, one thread; "
          f"Python {platform.python_version()}, cryptography {cryptography.__version__}")
    print(f"set-up: making {n} signed bids (keys, attestation, signature) took {make_s:.2f} s "
          f"({1e6 * make_s / n:.0f} us each)")
    print()
    print(f"| {'operation':<46} | {'median':>10} | {'min':>10} | {'max':>10} | unit  |")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 12}|{'-' * 12}|-------|")
    lines = [
        (f"verify_entry, {n} entries", "verify_entry", n, "1/s"),
        (f"Ed25519 verify alone, {n} signatures", "ed25519_only", n, "1/s"),
        (f"MerkleLog append, {m} entries", "append", m, "us/op"),
        (f"inclusion proofs of all {m} entries", "prove", m, "us/op"),
        (f"verify those {m} inclusion proofs", "verify_proofs", m, "us/op"),
        (f"MerkleLog append {b} hashes + root", "big_log", b, "us/op"),
        (f"reverify ledger of {n} entries", "reverify", n, "1/s"),
    ]
    for label, key, count, unit in lines:
        if unit == "1/s":
            s = stats([count / t for t in raw[key]])
        else:
            s = stats([1e6 * t / count for t in raw[key]])
        print(f"| {label:<46} | {s['median']:>10,.1f} | {s['min']:>10,.1f} | "
              f"{s['max']:>10,.1f} | {unit:<5} |")
    rate = statistics.median(n / t for t in raw["verify_entry"])
    verdict = "met" if rate >= TARGET_PER_S else "NOT met"
    print(f"\ntarget {TARGET_PER_S:,} verified bids/s on one core: {verdict} "
          f"({rate:,.0f}/s median)")


if __name__ == "__main__":
    main()
