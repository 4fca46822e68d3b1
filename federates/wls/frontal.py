"""Blocks of the inverse of a sparse symmetric matrix, group by group (pure numerics).

What `uncertainty` needs: the 2x2 blocks of ``K^-1`` at each node's two state rows, ``K`` the
estimator's augmented matrix (40,585 rows on IEEE 9500). A solve through its LU factors per
node passes through all of them (2 to 3 ms there: 20 s for 9,267 nodes), and SciPy has no
selected inversion. This module computes the inverse only where it is needed, multifrontally,
with the network as the elimination tree:

- every row of ``K`` belongs to a *group* (`uncertainty`: the bus of its node; a state, its
  zero-injection constraint, the measurements at it). Groups that share an entry of ``K`` are
  neighbours; on a radial feeder they form a tree (IEEE 9500: 5,196 buses, 5,195 edges);
- groups are eliminated leaves first (farthest from the root first, the root being the slack's
  bus). Eliminating a group joins its later neighbours, its *separator*: the parent alone on a
  tree; a loop adds fill, and IEEE 123's two closed ties give separators of up to 3 buses;
- chains of small groups are merged up to `max_rows` rows: fewer, larger dense blocks, and a
  shorter tree. Fronts of one height and of similar size (own rows within a power of 2) are
  padded to one size and processed together, one batch of dense NumPy operations each: IEEE
  123's 122 buses make 97 groups in 37 batches, IEEE 9500's 5,196 make 2,985 in 235.

Upward, each front ``[[A, B], [B^T, D]]`` (its own rows, then its separator's) leaves the
update ``D - B^T A^-1 B`` to its parent's front. Downward, from ``Z_T``, the inverse on the
separator (in the parent's front), the block inverse gives ``Z_RT = -A^-1 B Z_T`` and
``Z_R = A^-1 - Z_RT (A^-1 B)^T``: the inverse on the whole front, whose separator part the
children take theirs from.

Pivoting is within a group's own rows (LU with partial pivoting of the symmetrically scaled
dense block), where SuperLU pivots over the whole matrix, and blocks are inverted
explicitly: the |V| sigmas agree with refined solves to 4e-5 (IEEE 123) and 1.6e-4 (IEEE
9500) relative at worst, at the substation's nodes (a plain solve through SuperLU's factors
is off by 3e-4 there), and `uncertainty` checks a few nodes against refined solves every
time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

SCALING_PASSES = 2
"""Passes of symmetric scaling (each row and column by 1/sqrt of its largest entry) before a
block is inverted: IEEE 9500's substation blocks span admittances of 1e-3 to 1e7 p.u. Worst
|V| sigma against refined solves, relative, IEEE 9500: 3.6e-4 with one pass, 6e-5 to 1.6e-4
with two or three (rounding: the order of operations moves it); IEEE 123: 6e-6 to 4e-5."""


@dataclass
class _Batch:
    """Fronts of one height and size class: ``k`` fronts of ``r + t`` rows, row-major at
    ``offset`` of the flat front buffer."""

    k: int
    r: int
    t: int
    offset: int
    pad: np.ndarray
    """Flat positions of the diagonal of padded own rows (set to 1: a regular block)."""
    send: np.ndarray
    """Positions in this batch's updates (k x t x t) that go to a parent front..."""
    recv: np.ndarray
    """...and where in the flat buffer, sorted (an update of a front to its parent)."""
    recv_unique: np.ndarray
    recv_start: np.ndarray


class FrontalInverse:
    """The symbolic part for one symmetric sparsity pattern and a grouping of its rows
    (`group`; `root_row`'s group is eliminated last); `invert` then fills in the numbers for
    any matrix of that pattern. The symbolic part costs 13 ms on IEEE 123 and 0.16 s on IEEE
    9500 (with `uncertainty`'s own), the numbers 3 and 75 ms: the estimator's pattern is the
    same from step to step until the meter plan or the topology changes, and `uncertainty`
    keeps the symbolic part."""

    def __init__(self, pattern: sp.spmatrix, group: np.ndarray, root_row: int,
                 max_rows: int = 24):
        self.pattern = _canonical(pattern)
        n_rows = self.pattern.shape[0]
        group = np.unique(np.asarray(group), return_inverse=True)[1]
        group = _merge_chains(group, _bfs_parent(self._graph(group), int(group[root_row])),
                              max_rows)
        order, parent = _eliminate(self._graph(group), int(group[root_row]))[:2]
        self.group, self.n_rows = group, n_rows
        g = int(group.max()) + 1
        rows = np.argsort(group, kind="stable")
        count = np.bincount(group, minlength=g)
        start = np.concatenate([[0], np.cumsum(count)])
        sep_rows = _row_separators(self.pattern, group, order, parent)
        height = np.zeros(g, dtype=np.int64)
        for b in order:
            if parent[b] >= 0:
                height[parent[b]] = max(height[parent[b]], height[b] + 1)
        t_len = np.array([len(s) for s in sep_rows])
        # batches: by height, then by size class of the own rows (powers of 2)
        size_class = np.ceil(np.log2(np.maximum(count, 1))).astype(np.int64)
        keyorder = np.lexsort((np.arange(g), size_class, height))
        self.batch_of = np.empty(g, dtype=np.int64)
        self.width = np.empty(g, dtype=np.int64)
        self.offset = np.empty(g, dtype=np.int64)
        self.r_pad = np.empty(g, dtype=np.int64)
        in_batch = np.empty(g, dtype=np.int64)
        members: list[np.ndarray] = []
        cuts = np.flatnonzero(np.diff(height[keyorder]) | np.diff(size_class[keyorder])) + 1
        total = 0
        for batch, buses in enumerate(np.split(keyorder, cuts)):
            r, t = int(count[buses].max()), int(t_len[buses].max())
            self.batch_of[buses] = batch
            in_batch[buses] = np.arange(len(buses))
            self.width[buses] = r + t
            self.r_pad[buses] = r
            self.offset[buses] = total + np.arange(len(buses)) * (r + t) ** 2
            members.append(buses)
            total += len(buses) * (r + t) ** 2
        self.size = total
        # where each row sits in each front that holds it: own rows first, then separator's
        sep_all = np.concatenate(sep_rows) if g else np.zeros(0, dtype=np.int64)
        sep_start = np.concatenate([[0], np.cumsum(t_len)])
        sep_front = np.repeat(np.arange(g), t_len)
        key_front = np.concatenate([group[rows], sep_front])
        key_row = np.concatenate([rows, sep_all])
        key_local = np.concatenate([np.arange(n_rows) - start[group[rows]],
                                    self.r_pad[sep_front] + np.arange(len(sep_all))
                                    - sep_start[sep_front]])
        key = key_front * n_rows + key_row
        o = np.argsort(key)
        self._key, self._local = key[o], key_local[o]
        # each entry of the pattern goes to the front of whichever of its groups goes first
        coo = self.pattern.tocoo()
        pos = np.empty(g, dtype=np.int64)
        pos[order] = np.arange(g)
        gu, gv = group[coo.row], group[coo.col]
        front = np.where(pos[gu] <= pos[gv], gu, gv)
        self._assemble = self.position(front, coo.row, coo.col)
        # each front's update goes to its parent: every pair of its separator rows
        child = np.flatnonzero((parent >= 0) & (t_len > 0))
        length = t_len[child]
        pair_owner = np.repeat(np.arange(len(child)), length ** 2)
        k = np.arange(len(pair_owner)) - np.repeat(np.cumsum(length ** 2) - length ** 2,
                                                   length ** 2)
        a, b = np.divmod(k, length[pair_owner])
        c = child[pair_owner]
        t_pad = self.width[c] - self.r_pad[c]
        send = in_batch[c] * t_pad ** 2 + a * t_pad + b
        p = parent[c]
        first = sep_start[c]
        at_a = self.local(p, sep_all[first + a])
        at_b = self.local(p, sep_all[first + b])
        recv = self.offset[p] + at_a * self.width[p] + at_b
        batch = self.batch_of[c]
        o = np.lexsort((recv, batch))
        send, recv, batch = send[o], recv[o], batch[o]
        cut = np.searchsorted(batch, np.arange(len(members) + 1))
        self.batches = []
        for i, buses in enumerate(members):
            r, w = int(self.r_pad[buses[0]]), int(self.width[buses[0]])
            pad = np.concatenate([self.offset[x] + (w + 1) * np.arange(count[x], r)
                                  for x in buses])
            s_, r_ = send[cut[i]:cut[i + 1]], recv[cut[i]:cut[i + 1]]
            unique, first_at = np.unique(r_, return_index=True)
            self.batches.append(_Batch(len(buses), r, w - r, int(self.offset[buses[0]]), pad,
                                       s_, r_, unique, first_at))

    def _graph(self, group: np.ndarray) -> sp.csr_matrix:
        """Which groups share an entry of the pattern."""
        coo = self.pattern.tocoo()
        gu, gv = group[coo.row], group[coo.col]
        off = gu != gv
        g = int(group.max()) + 1
        graph = sp.csr_matrix((np.ones(int(off.sum())), (gu[off], gv[off])), shape=(g, g))
        return (graph + graph.T).tocsr()

    def local(self, front: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Index of each `row` within front `front` (the row must be in it)."""
        key = np.asarray(front) * self.n_rows + np.asarray(row)
        at = np.searchsorted(self._key, key)
        if not np.array_equal(self._key[np.minimum(at, len(self._key) - 1)], key):
            raise ValueError("a row is not in the front asked for")
        return self._local[at]

    def position(self, front: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Flat buffer positions of entries (u, v) of the fronts `front`."""
        return (self.offset[front] + self.local(front, u) * self.width[front]
                + self.local(front, v))

    def matches(self, matrix: sp.spmatrix) -> bool:
        """Whether `matrix` has exactly the pattern this structure was built for."""
        m = _canonical(matrix)
        return (m.shape == self.pattern.shape and np.array_equal(m.indptr, self.pattern.indptr)
                and np.array_equal(m.indices, self.pattern.indices))

    def invert(self, matrix: sp.spmatrix | np.ndarray) -> np.ndarray:
        """The inverse of `matrix` on every front, as a flat buffer (see `position`).

        `matrix` may also be the values of the pattern's entries, in its CSR order. Raises
        `numpy.linalg.LinAlgError` when a group's block is singular.
        """
        values = matrix if isinstance(matrix, np.ndarray) else _canonical(matrix).data
        buf = np.zeros(self.size)
        buf[self._assemble] = values
        kept = []
        for b in self.batches:
            buf[b.pad] = 1.0
            p = b.r + b.t
            front = buf[b.offset:b.offset + b.k * p * p].reshape(b.k, p, p)
            a, cross = front[:, :b.r, :b.r], front[:, :b.r, b.r:]
            s, even = None, a
            for _ in range(SCALING_PASSES):
                peak = np.abs(even).max(axis=2)
                peak[peak == 0] = 1.0
                step = peak ** -0.5
                s = step if s is None else s * step
                even = step[:, :, None] * even * step[:, None, :]
            a_inv = np.linalg.inv(even)
            if s is not None:
                a_inv *= s[:, :, None] * s[:, None, :]
            f = a_inv @ cross
            if len(b.send):
                update = front[:, b.r:, b.r:] - np.swapaxes(cross, 1, 2) @ f
                buf[b.recv_unique] += np.add.reduceat(update.reshape(-1)[b.send],
                                                      b.recv_start)
            kept.append((a_inv, f))
        z = np.zeros(self.size)
        for b, (a_inv, f) in zip(reversed(self.batches), reversed(kept)):
            p = b.r + b.t
            front = z[b.offset:b.offset + b.k * p * p].reshape(b.k, p, p)
            if b.t == 0:
                front[:, :b.r, :b.r] = a_inv
                continue
            z_t = np.zeros(b.k * b.t * b.t)
            z_t[b.send] = z[b.recv]
            z_t = z_t.reshape(b.k, b.t, b.t)
            z_rt = -f @ z_t
            front[:, :b.r, :b.r] = a_inv - z_rt @ np.swapaxes(f, 1, 2)
            front[:, :b.r, b.r:] = z_rt
            front[:, b.r:, :b.r] = np.swapaxes(z_rt, 1, 2)
            front[:, b.r:, b.r:] = z_t
        return z


def _canonical(matrix: sp.spmatrix) -> sp.csr_matrix:
    """CSR with sorted, summed entries (explicit zeros kept: they are part of the pattern)."""
    m = sp.csr_matrix(matrix, copy=True)
    m.sum_duplicates()
    return m


def _eliminate(graph: sp.csr_matrix, root: int):
    """Elimination order (farthest from `root` first), the parent of each group and its
    position in the order.

    Eliminating a group joins its later neighbours (with the fill of earlier eliminations);
    its parent is the first of them to be eliminated.
    """
    g = graph.shape[0]
    n_comp, comp = csgraph.connected_components(graph, directed=False)
    depth = np.zeros(g)
    for c in range(n_comp):
        members = np.flatnonzero(comp == c)
        start = root if comp[root] == c else int(members[0])
        depth[members] = csgraph.shortest_path(graph, directed=False, unweighted=True,
                                               indices=start)[members]
    order = np.lexsort((np.arange(g), -depth))
    pos = np.empty(g, dtype=np.int64)
    pos[order] = np.arange(g)
    later = [set(graph.indices[graph.indptr[b]:graph.indptr[b + 1]].tolist()) for b in range(g)]
    parent = np.full(g, -1, dtype=np.int64)
    for b in order.tolist():
        s = sorted((x for x in later[b] if pos[x] > pos[b]), key=lambda x: pos[x])
        if s:
            parent[b] = s[0]
            later[s[0]].update(s[1:])
    return order, parent, pos


def _bfs_parent(graph: sp.csr_matrix, root: int) -> np.ndarray:
    """Each group's neighbour on its way to `root` (or to the first group of its component),
    -1 at the roots: the elimination tree where the graph is a tree, and a cheap guide to
    which groups form chains where it is not (`_merge_chains` only groups rows)."""
    n_comp, comp = csgraph.connected_components(graph, directed=False)
    parent = np.full(graph.shape[0], -1, dtype=np.int64)
    for c in range(n_comp):
        members = np.flatnonzero(comp == c)
        start = root if comp[root] == c else int(members[0])
        parent[members] = csgraph.breadth_first_order(graph, start, directed=False)[1][members]
    parent[parent < 0] = -1
    return parent


def _row_separators(pattern: sp.csr_matrix, group: np.ndarray, order: np.ndarray,
                    parent: np.ndarray) -> list[np.ndarray]:
    """The rows of later groups each group is coupled to once its children are eliminated:
    its own entries into them, and what its children's separators bring (the fill). Only
    these rows enter its front, not every row of the groups they belong to."""
    g = len(parent)
    pos = np.empty(g, dtype=np.int64)
    pos[order] = np.arange(g)
    coo = pattern.tocoo()
    gu, gv = group[coo.row], group[coo.col]
    later = pos[gv] > pos[gu]
    key = np.unique(gu[later].astype(np.int64) * pattern.shape[0] + coo.col[later])
    owner, row = np.divmod(key, pattern.shape[0])
    cut = np.searchsorted(owner, np.arange(g + 1))
    sep: list[set] = [set(row[cut[b]:cut[b + 1]].tolist()) for b in range(g)]
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * g
    for b in order.tolist():
        rows = np.array(sorted(sep[b], key=lambda v: (pos[group[v]], v)), dtype=np.int64)
        out[b] = rows
        p = parent[b]
        if p >= 0:
            sep[p].update(v for v in sep[b] if group[v] != p)
    return out


def _merge_chains(group: np.ndarray, parent: np.ndarray, max_rows: int) -> np.ndarray:
    """Merge each group into its parent when it is the parent's only child and the two have
    at most `max_rows` rows together (a chain of buses along a line)."""
    g = len(parent)
    size = np.bincount(group, minlength=g)
    children = np.bincount(parent[parent >= 0], minlength=g)
    into = np.arange(g)

    def find(b: int) -> int:
        while into[b] != b:
            into[b] = into[into[b]]
            b = into[b]
        return b

    for b in range(g):
        p = parent[b]
        if p >= 0 and children[p] == 1:
            rb, rp = find(b), find(int(p))
            if rb != rp and size[rb] + size[rp] <= max_rows:
                into[rb] = rp
                size[rp] += size[rb]
    roots = np.array([find(b) for b in range(g)])
    return np.unique(roots[group], return_inverse=True)[1]
