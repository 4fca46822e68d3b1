"""RFC 9162 Merkle trees: known answers, the RFC's worked example, properties over 1..64 leaves.

The reference functions below are straight transcriptions of the RFC's recursive
definitions (MTH, PATH, PROOF/SUBPROOF) and of what a proof means (rebuild the root(s) by
following the same recursion), written independently of `gridsim.ledger.merkle`, whose
verifiers follow the RFC's iterative algorithms instead.
"""

from __future__ import annotations

import hashlib

import pytest

from gridsim.ledger import merkle
from gridsim.ledger.merkle import (
    EMPTY_ROOT,
    MerkleLog,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 64


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split(n: int) -> int:
    """Largest power of two strictly below n, by counting up."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return sha(b"")
    if len(d) == 1:
        return sha(b"\x00" + d[0])
    k = split(len(d))
    return sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = split(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = split(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


def ref_inclusion_ok(leaf: bytes, index: int, size: int, proof: list[bytes],
                     root_hash: bytes) -> bool:
    """Rebuild the root along PATH's recursion, consuming the proof from its end."""
    items = list(proof)

    def up(i: int, n: int) -> bytes:
        if n == 1:
            return leaf
        k = split(n)
        sibling = items.pop()
        return sha(b"\x01" + up(i, k) + sibling) if i < k else \
            sha(b"\x01" + sibling + up(i - k, n - k))

    try:
        rebuilt = up(index, size)
    except IndexError:
        return False
    return not items and rebuilt == root_hash


def ref_consistency_ok(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    """Rebuild both roots along SUBPROOF's recursion, consuming the proof from its end."""
    items = list(proof)

    def up(m: int, n: int, b: bool) -> tuple[bytes, bytes]:
        if m == n:
            h = old if b else items.pop()
            return h, h
        k = split(n)
        sibling = items.pop()
        if m <= k:
            o, w = up(m, k, b)
            return o, sha(b"\x01" + w + sibling)
        o, w = up(m - k, n - k, False)
        return sha(b"\x01" + sibling + o), sha(b"\x01" + sibling + w)

    try:
        rebuilt = up(m, n, True)
    except IndexError:
        return False
    return not items and rebuilt == (old, new)


def flipped(h: bytes, bit: int = 0) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


LEAVES = [b"leaf %d" % i for i in range(MAX_SIZE)]


@pytest.fixture(scope="module")
def log() -> MerkleLog:
    return MerkleLog.from_leaves(LEAVES)


# --- known answers ---------------------------------------------------------------------------

def test_empty_tree_and_empty_leaf():
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root([]) == EMPTY_ROOT
    assert MerkleLog().root() == EMPTY_ROOT
    assert leaf_hash(b"") == sha(b"\x00")
    assert leaf_hash(b"").hex() == \
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


def test_small_trees_by_hand():
    a, b, c = b"a", b"b", b"c"
    la, lb, lc = sha(b"\x00a"), sha(b"\x00b"), sha(b"\x00c")
    assert root([a]) == la
    assert root([a, b]) == sha(b"\x01" + la + lb)
    assert root([a, b, c]) == sha(b"\x01" + sha(b"\x01" + la + lb) + lc)
    assert node_hash(la, lb) == sha(b"\x01" + la + lb)


def test_certificate_transparency_vectors():
    """Roots of the first 1..8 of the eight leaves used by CT's reference test suite."""
    leaves = [bytes.fromhex(x) for x in ["", "00", "10", "2021", "3031", "40414243",
                                         "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f"]]
    expected = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
                "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
                "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
                "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
    for n in range(1, 9):
        assert root(leaves[:n]).hex() == expected[n - 1]


def test_rfc_example_seven_leaves():
    """RFC 6962 section 2.1.3 (RFC 9162 section 2.1.5): the tree of d0..d6::

                   hash
                  /    \\
                 k      l
                / \\    / \\
               g   h  i   j
              / \\ / \\ / \\  |
              a b c d e f  d6
    """
    d = [b"d%d" % i for i in range(7)]
    a, b, c, dd, e, f, j = (leaf_hash(x) for x in d)
    g, h, i = node_hash(a, b), node_hash(c, dd), node_hash(e, f)
    k, l_ = node_hash(g, h), node_hash(i, j)
    top = node_hash(k, l_)
    assert root(d) == top
    for index, path in [(0, [b, h, l_]), (3, [c, g, l_]), (4, [f, j, k]), (6, [i, k])]:
        assert inclusion_proof(d, index) == path
        assert verify_inclusion(leaf_hash(d[index]), index, 7, path, top)
    hash0, hash1, hash2 = root(d[:3]), root(d[:4]), root(d[:6])
    assert hash0 == node_hash(g, c) and hash1 == k and hash2 == node_hash(k, i)
    for old_size, old_root, proof in [(3, hash0, [c, dd, g, l_]), (4, hash1, [l_]),
                                      (6, hash2, [i, j, k])]:
        assert consistency_proof(d, old_size) == proof
        assert verify_consistency(old_size, 7, old_root, top, proof)


# --- properties over every tree of 1..64 leaves ----------------------------------------------

def test_roots_and_proofs_match_the_definitions(log):
    for n in range(1, MAX_SIZE + 1):
        d = LEAVES[:n]
        assert log.root(n) == ref_mth(d)
        for m in range(n):
            assert log.inclusion_proof(m, n) == ref_path(m, d)
        for m in range(1, n + 1):
            assert log.consistency_proof(m, n) == ref_proof(m, d)


def test_module_functions_agree_with_the_log(log):
    for n in (1, 2, 5, 8, 13):
        d = LEAVES[:n]
        assert root(d) == log.root(n)
        assert inclusion_proof(d, n - 1) == log.inclusion_proof(n - 1, n)
        assert consistency_proof(d, 1) == log.consistency_proof(1, n)


def inclusion_variants(leaf, index, n, proof, top):
    """Altered claims: (description, leaf, index, size, proof, root)."""
    yield "leaf", flipped(leaf), index, n, proof, top
    yield "root", leaf, index, n, proof, flipped(top)
    for pos in range(len(proof)):
        yield f"proof[{pos}]", leaf, index, n, [*proof[:pos], flipped(proof[pos], 3),
                                               *proof[pos + 1:]], top
    if n > 1:
        yield "index", leaf, (index + 1) % n, n, proof, top
    if proof:
        yield "truncated", leaf, index, n, proof[:-1], top
        yield "first dropped", leaf, index, n, proof[1:], top
    yield "extended", leaf, index, n, [*proof, top], top


def test_every_inclusion_proof_verifies_and_alterations_fail(log):
    checked = 0
    for n in range(1, MAX_SIZE + 1):
        top = log.root(n)
        for index in range(n):
            leaf, proof = log.leaf_hash(index), log.inclusion_proof(index, n)
            assert verify_inclusion(leaf, index, n, proof, top)
            for what, *claim in inclusion_variants(leaf, index, n, proof, top):
                assert not verify_inclusion(*claim), (n, index, what)
                checked += 1
    assert checked > 10_000


def test_inclusion_with_a_wrong_size_matches_the_definition(log):
    """A proof does not fix the tree size: the signed checkpoint binds size and root. With
    another size the verdict is what rebuilding the root along that size's PATH gives (True
    when both sizes give the leaf the same path shape, as 3 and 4 do for leaf 0)."""
    rejected = 0
    for n in range(1, MAX_SIZE + 1):
        top = log.root(n)
        for index in range(n):
            leaf, proof = log.leaf_hash(index), log.inclusion_proof(index, n)
            for size in (n - 1, n + 1):
                if size > index:
                    verdict = verify_inclusion(leaf, index, size, proof, top)
                    assert verdict == ref_inclusion_ok(leaf, index, size, proof, top)
                    rejected += not verdict
    assert rejected > 0
    assert verify_inclusion(leaf_hash(LEAVES[0]), 0, 4, log.inclusion_proof(0, 3), log.root(3))


def test_every_consistency_proof_verifies_and_alterations_fail(log):
    checked = 0
    for n in range(2, MAX_SIZE + 1):
        new = log.root(n)
        for m in range(1, n):
            old, proof = log.root(m), log.consistency_proof(m, n)
            assert verify_consistency(m, n, old, new, proof)
            bad = [(m, n, flipped(old), new, proof), (m, n, old, flipped(new), proof),
                   (m, n, old, new, proof[:-1]), (m, n, old, new, proof[1:]),
                   (m, n, old, new, [*proof, new])]
            bad += [(m, n, old, new, [*proof[:p], flipped(proof[p], 5), *proof[p + 1:]])
                    for p in range(len(proof))]
            for claim in bad:
                assert not verify_consistency(*claim), (m, n, claim[4])
                checked += 1
            for size_m, size_n in [(m + 1, n), (m - 1, n), (m, n + 1), (m, n - 1)]:
                if 0 < size_m <= size_n and (size_m, size_n) != (m, n):
                    verdict = verify_consistency(size_m, size_n, old, new, proof)
                    assert verdict == ref_consistency_ok(size_m, size_n, old, new, proof)
    assert checked > 10_000


def test_consistency_of_a_tree_with_itself(log):
    top = log.root(5)
    assert log.consistency_proof(5, 5) == []
    assert verify_consistency(5, 5, top, top, [])
    assert not verify_consistency(5, 5, top, flipped(top), [])
    assert not verify_consistency(5, 5, top, top, [top])


def test_incremental_log_matches_recomputation():
    log = MerkleLog()
    data = [b"entry %d" % i for i in range(300)]
    for i, item in enumerate(data):
        assert log.append(item) == i
        assert log.root() == ref_mth(data[: i + 1])
    assert len(log) == log.size == 300
    big = [b"%d" % i for i in range(3000)]
    assert MerkleLog.from_leaves(big).root() == ref_mth(big)


# --- malformed arguments ---------------------------------------------------------------------

def test_malformed_hashes_are_rejected(log):
    top, leaf, proof = log.root(8), log.leaf_hash(2), log.inclusion_proof(2, 8)
    for args in [(leaf[:31], 2, 8, proof, top), (leaf, 2, 8, proof, top + b"\x00"),
                 (leaf, 2, 8, [proof[0][:31], *proof[1:]], top), (leaf.hex(), 2, 8, proof, top)]:
        with pytest.raises(ProofError) as err:
            verify_inclusion(*args)
        assert err.value.reason == "hash_size"
    old, new, cproof = log.root(3), log.root(8), log.consistency_proof(3, 8)
    for args in [(3, 8, old[:16], new, cproof), (3, 8, old, new, [*cproof, b"x"])]:
        with pytest.raises(ProofError, match="hash_size"):
            verify_consistency(*args)
    with pytest.raises(ProofError, match="hash_size"):
        log.append_hash(b"short")


def test_out_of_range_indices_and_sizes_are_rejected(log):
    top, leaf = log.root(8), log.leaf_hash(2)
    for index, size in [(8, 8), (9, 8), (-1, 8), (0, 0)]:
        with pytest.raises(ProofError) as err:
            verify_inclusion(leaf, index, size, [], top)
        assert err.value.reason == "leaf_index"
    with pytest.raises(ProofError, match="leaf_index"):
        log.inclusion_proof(5, 5)
    with pytest.raises(ProofError, match="tree_size"):
        log.root(MAX_SIZE + 1)
    with pytest.raises(ProofError, match="tree_size"):
        verify_consistency(9, 8, top, top, [top])
    with pytest.raises(ProofError, match="tree_size"):
        log.consistency_proof(9, 8)


def test_consistency_from_the_empty_tree_is_rejected(log):
    with pytest.raises(ProofError) as err:
        verify_consistency(0, 8, EMPTY_ROOT, log.root(8), [])
    assert err.value.reason == "consistency_from_empty"
    with pytest.raises(ProofError, match="consistency_from_empty"):
        log.consistency_proof(0, 8)
    with pytest.raises(ProofError, match="consistency_from_empty"):
        merkle.consistency_proof(LEAVES[:4], 0)
