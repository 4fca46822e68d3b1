"""Measurement functions h(x) and their Jacobian H, with a structure fixed per set.

For a `MeasurementSet` the sparsity of H never changes, only its values do; `Functions`
lays the structure out once (CSR indices in measurement order) and each `evaluate(x)` fills
in the numbers with a few vector operations. State ``x = [e; f]``, voltages in p.u.

Power rows (injections and line flows alike): with ``I = A V = (G + jB)(e + jf)``,
``Ir = G e - B f``, ``Ii = G f + B e`` and the measurement's own node ``o``::

    P = e_o Ir + f_o Ii          Q = f_o Ir - e_o Ii
    dP/de = e_o G + f_o B + Ir 1_o     dP/df = f_o G - e_o B + Ii 1_o
    dQ/de = f_o G - e_o B - Ii 1_o     dQ/df = -e_o G - f_o B + Ir 1_o

|V| and angle rows divide by |V|: at a state of exactly 0 (a de-energized node, which its
zero-injection constraint holds at 0) they are not differentiable, and their derivative is
taken in the direction of the real axis, ``d|V|/de = 1``, ``d|V|/df = 0`` (angle: ``0, 1``),
instead of a NaN that would make the factorization singular.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from gridsim.federates.wls.measurements import VANG, VMAG, MeasurementSet, P


class Functions:
    """h(x) and H(x) for one measurement set on a network of `n` nodes."""

    def __init__(self, ms: MeasurementSet, n: int):
        self.n = n
        m = len(ms)
        self.m = m
        self.vpos = {kind: np.flatnonzero(ms.kind == kind) for kind in (VMAG, VANG)}
        self.vnode = {kind: ms.node[pos] for kind, pos in self.vpos.items()}
        self.ppos = np.flatnonzero(~np.isin(ms.kind, (VMAG, VANG)))
        self.own = ms.node[self.ppos]
        self.is_p = ms.kind[self.ppos] == P
        rows = ms.power_rows.tocsr()
        rows.sort_indices()
        self.g, self.b = rows.real.tocsr(), rows.imag.tocsr()
        counts = np.diff(rows.indptr)
        self.entry_row = np.repeat(np.arange(len(self.ppos)), counts)
        self.entry_col = rows.indices
        own_of_entry = self.own[self.entry_row]
        self.own_entry = np.flatnonzero(self.entry_col == own_of_entry)
        if len(self.own_entry) != len(self.ppos):
            raise ValueError("a power measurement's own node is not in its admittance row")
        # COO layout: voltage rows (e-part, f-part), then power rows (e-part, f-part).
        coo_rows, coo_cols = [], []
        for kind in (VMAG, VANG):
            pos, node = self.vpos[kind], self.vnode[kind]
            coo_rows += [pos, pos]
            coo_cols += [node, node + n]
        prow = self.ppos[self.entry_row]
        coo_rows += [prow, prow]
        coo_cols += [self.entry_col, self.entry_col + n]
        row, col = np.concatenate(coo_rows), np.concatenate(coo_cols)
        self._order = np.lexsort((col, row))
        self._indices = col[self._order].astype(np.int32)
        self._indptr = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=m))]).astype(
            np.int32)

    def evaluate(self, x: np.ndarray) -> tuple[np.ndarray, sp.csr_matrix]:
        """h(x) and H(x)."""
        n = self.n
        e, f = x[:n], x[n:]
        h = np.zeros(self.m)
        data = []
        for kind in (VMAG, VANG):
            i = self.vnode[kind]
            ei, fi = e[i], f[i]
            mag2 = ei ** 2 + fi ** 2
            zero = mag2 == 0.0
            if zero.any():  # a dead node's state is exactly 0 (see the module docstring)
                ei, fi, mag2 = np.where(zero, 1.0, ei), np.where(zero, 0.0, fi), \
                    np.where(zero, 1.0, mag2)
            if kind == VMAG:
                mag = np.sqrt(mag2)
                h[self.vpos[kind]] = np.where(zero, 0.0, mag)
                data += [ei / mag, fi / mag]
            else:
                h[self.vpos[kind]] = np.arctan2(f[i], e[i])
                data += [-fi / mag2, ei / mag2]
        if len(self.ppos):
            g, b = self.g, self.b
            ir, ii = g @ e - b @ f, g @ f + b @ e
            eo, fo = e[self.own], f[self.own]
            h[self.ppos] = np.where(self.is_p, eo * ir + fo * ii, fo * ir - eo * ii)
            gd, bd = g.data, b.data
            re, rf = eo[self.entry_row], fo[self.entry_row]
            is_p = self.is_p[self.entry_row]
            de = np.where(is_p, re * gd + rf * bd, rf * gd - re * bd)
            df = np.where(is_p, rf * gd - re * bd, -re * gd - rf * bd)
            own = self.own_entry
            de[own] += np.where(self.is_p, ir, -ii)
            df[own] += np.where(self.is_p, ii, ir)
            data += [de, df]
        values = np.concatenate(data)[self._order] if data else np.zeros(0)
        return h, sp.csr_matrix((values, self._indices, self._indptr), shape=(self.m, 2 * n))
