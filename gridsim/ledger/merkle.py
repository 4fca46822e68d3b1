"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing, proofs and their verification.

Definitions (RFC 9162 section 2.1.1), with SHA-256 as HASH:

- ``MTH({}) = HASH()``; ``MTH({d0}) = HASH(0x00 || d0)`` (`leaf_hash`);
- for n > 1 and k the largest power of two smaller than n,
  ``MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` (`node_hash`).

Inclusion proofs are the PATH of section 2.1.3.1 and consistency proofs the PROOF/SUBPROOF of
section 2.1.4.1, listed from the leaf (or the old tree) upwards. `verify_inclusion` and
`verify_consistency` follow the algorithms of sections 2.1.3.2 and 2.1.4.2 step by step.

Errors: arguments that no proof could ever satisfy raise `ProofError` with a `reason`
(hashes that are not 32 bytes, negative sizes, ``leaf_index >= tree_size``, a consistency
proof from size 0 or to a smaller tree). A well-formed proof that does not prove the claim
makes the verifier return ``False``. Callers that check untrusted input should treat both
as failure; the exception says why.

Consistency of a tree with itself (``old_size == new_size``) is accepted with an empty proof
and equal roots, as RFC 9162 section 2.1.4.1 defines PROOF(n, D[n]) to be empty; the
verification algorithm of section 2.1.4.2 itself only covers ``old_size < new_size``.

`MerkleLog` is an append-only log of leaf hashes that keeps every complete, aligned subtree
(2n hashes for n leaves): appending costs O(1) amortized, a root O(log n), a proof
O(log^2 n) at most, for the current size or any earlier one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = ["HASH_SIZE", "EMPTY_ROOT", "MerkleLog", "ProofError", "consistency_proof",
           "inclusion_proof", "leaf_hash", "node_hash", "root", "verify_consistency",
           "verify_inclusion"]

HASH_SIZE = 32
"""Bytes in every hash (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH of the empty tree: SHA-256 of the empty string."""


class ProofError(ValueError):
    """Arguments no proof can satisfy; `reason` is a stable short code, e.g. ``hash_size``."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(f"{reason}: {message}")


def leaf_hash(data: bytes) -> bytes:
    """``HASH(0x00 || data)``: the hash of one leaf entry."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``HASH(0x01 || left || right)``: the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than `n` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: object, what: str) -> None:
    """Raise `ProofError` unless `value` is 32 bytes."""
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, bytes) else type(value).__name__
        raise ProofError("hash_size", f"{what} must be {HASH_SIZE} bytes, got {size}")


def _check_proof(proof: Sequence[bytes]) -> None:
    """Raise `ProofError` unless every proof element is 32 bytes."""
    for i, item in enumerate(proof):
        _check_hash(item, f"proof[{i}]")


class MerkleLog:
    """An append-only list of leaf hashes with its RFC 9162 tree, for any size up to its own.

    ``levels[h][i]`` is the root of the complete subtree of the 2**h leaves starting at
    ``i * 2**h``; every subtree the RFC's recursions ask for on the left is one of these.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()):
        self._levels: list[list[bytes]] = [[]]
        for item in leaf_hashes:
            self.append_hash(item)

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> MerkleLog:
        """A log of the given leaf entries (hashed with `leaf_hash`)."""
        return cls(leaf_hash(d) for d in leaves)

    def __len__(self) -> int:
        return len(self._levels[0])

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        """Append a leaf entry; its index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, leaf: bytes) -> int:
        """Append a leaf hash (already ``HASH(0x00 || data)``); its index."""
        _check_hash(leaf, "leaf hash")
        levels = self._levels
        levels[0].append(leaf)
        height = 0
        while len(levels[height]) % 2 == 0:
            row = levels[height]
            if height + 1 == len(levels):
                levels.append([])
            levels[height + 1].append(node_hash(row[-2], row[-1]))
            height += 1
        return len(levels[0]) - 1

    def leaf_hash(self, index: int) -> bytes:
        """The leaf hash at `index`."""
        return self._levels[0][index]

    def _size(self, size: int | None) -> int:
        """`size`, defaulting to the current size; `ProofError` if out of range."""
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ProofError("tree_size", f"tree size {size} outside 0..{self.size}")
        return size

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH of leaves ``lo..hi-1`` (``hi > lo``)."""
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            return self._levels[n.bit_length() - 1][lo // n]
        k = _split(n)
        return node_hash(self._subtree(lo, lo + k), self._subtree(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (default: all)."""
        size = self._size(size)
        return self._subtree(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 section 2.1.3.1, from the leaf upwards."""
        size = self._size(size)
        if not 0 <= index < size:
            raise ProofError("leaf_index", f"leaf index {index} outside 0..{size - 1}")
        lo, hi = 0, size
        path: list[bytes] = []
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._subtree(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) of RFC 9162 section 2.1.4.1 (empty if the sizes match).

        Raises:
            ProofError: ``old_size`` is 0 (``consistency_from_empty``) or above ``new_size``.
        """
        new_size = self._size(new_size)
        _check_sizes(old_size, new_size)
        m, lo, hi, complete = old_size, 0, new_size, True
        proof: list[bytes] = []
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._subtree(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            proof.append(self._subtree(lo, hi))
        proof.reverse()
        return proof


def _check_sizes(old_size: int, new_size: int) -> None:
    """Raise `ProofError` unless ``0 < old_size <= new_size``."""
    if old_size == 0:
        raise ProofError("consistency_from_empty",
                         "no consistency proof exists from the empty tree")
    if not 0 < old_size <= new_size:
        raise ProofError("tree_size", f"old size {old_size} not in 1..{new_size}")


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf entries."""
    return MerkleLog.from_leaves(leaves).root()


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) for the leaf entries `leaves`."""
    return MerkleLog.from_leaves(leaves).inclusion_proof(index)


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]) for the leaf entries `leaves`."""
    return MerkleLog.from_leaves(leaves).consistency_proof(old_size)


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes],
                     root_hash: bytes) -> bool:
    """Whether `proof` shows leaf hash `leaf` at `index` in the tree of `tree_size` leaves
    with root `root_hash` (RFC 9162 section 2.1.3.2).

    Raises:
        ProofError: a hash is not 32 bytes, or `index` is not in ``0..tree_size - 1``.
    """
    _check_hash(leaf, "leaf hash")
    _check_hash(root_hash, "root hash")
    _check_proof(proof)
    if not 0 <= index < tree_size:
        raise ProofError("leaf_index", f"leaf index {index} outside a tree of {tree_size}")
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """Whether `proof` shows the tree (`new_size`, `new_root`) extends (`old_size`,
    `old_root`) (RFC 9162 section 2.1.4.2; equal sizes need an empty proof and equal roots).

    Raises:
        ProofError: a hash is not 32 bytes, `old_size` is 0, or ``old_size > new_size``.
    """
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    _check_proof(proof)
    _check_sizes(old_size, new_size)
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
