"""The market's audit ledger: signed pseudonymous bids in an append-only, witnessed log.

Pure functions and small classes, no HELICS; the market federate (log operator) and the
auditor federate call them. Formats and finding codes: ``docs/ledger.md``.

Modules:

- `gridsim.ledger.canonical`: canonical JSON bytes (what is signed or hashed), strict
  base64, SHA-256.
- `gridsim.ledger.merkle`: RFC 9162 Merkle tree hashes, inclusion and consistency proofs and
  their verification; `MerkleLog`, an append-only log of leaf hashes.
- `gridsim.ledger.identity`: long-term and per-interval Ed25519 keys derived from the
  scenario seed, attestations, salted commitments, signed bids (`LedgerEntry`) and their
  attribution after disclosure.
- `gridsim.ledger.checkpoint`: C2SP signed notes and checkpoints (log heads), and the
  `Witness` that cosigns only append-only extensions.
- `gridsim.ledger.store`: the ledger directory on disk, the operator's `Ledger`, and
  `reverify`, the offline audit with its `FINDING_CODES`.
"""
