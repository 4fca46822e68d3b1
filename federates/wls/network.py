"""The estimator's view of the grid and of one step's measurements, in per unit.

`Network` is built from a `Topology` message: node order, base voltages, the admittance
matrix in per unit (``Y_pu = diag(b) Y diag(b) / S_base`` with ``b`` the line-to-neutral base
of each node), the slack nodes with their reference angles, the zero-injection nodes (every
node that is neither slack nor a device node) and the lines' primitive admittances.

`MeasurementSet` holds one step's measurements as flat arrays, each with its kind, where it
applies, its value and sigma in per unit, and a label ``"<port>:<id>"`` for reports. Power
measurements (node injections and line flows alike) are rows ``(own node, admittance row)``:
``S = V[own] * conj(A @ V)``, which is what makes one Jacobian serve both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from gridsim.messages import Topology

VMAG, VANG, P, Q = 0, 1, 2, 3
"""Measurement kinds: voltage magnitude, voltage angle, active power, reactive power."""


@dataclass
class Network:
    """Node-level network model in per unit."""

    ids: list[str]
    index: dict[str, int]
    base_v: np.ndarray
    y: sp.csr_matrix
    slack: np.ndarray
    slack_angle: np.ndarray
    zero_injection: np.ndarray
    v_start: np.ndarray
    s_base_kva: float
    lines: dict[str, tuple[list[int], sp.csr_matrix]] = field(default_factory=dict)
    """Line name -> (own node of each terminal-1 conductor, rows of its flow admittance)."""

    @property
    def n(self) -> int:
        """Number of nodes (complex states)."""
        return len(self.ids)

    @classmethod
    def from_topology(cls, topology: Topology, s_base_kva: float = 1000.0) -> Network:
        """The per-unit model of a Topology message."""
        ids = list(topology.ids)
        index = {node: i for i, node in enumerate(ids)}
        base = np.asarray(topology.base_voltage_magnitudes.values, dtype=float)
        adm = topology.admittance
        rows = np.array([index[a] for a in adm.from_equipment])
        cols = np.array([index[b] for b in adm.to_equipment])
        vals = np.array([complex(re, im) for re, im in adm.admittance_list])
        s_base = s_base_kva * 1000.0
        y = sp.csr_matrix((vals * base[rows] * base[cols] / s_base, (rows, cols)),
                          shape=(len(ids), len(ids)))
        slack = np.array([index[s] for s in topology.slack_bus], dtype=int)
        angles = np.radians(np.asarray(topology.base_voltage_angles.values, dtype=float))
        devices = {index[d] for d in topology.device_nodes if d in index}
        zero = np.array(sorted(set(range(len(ids))) - devices - set(slack.tolist())), dtype=int)
        net = cls(ids, index, base, y, slack, angles[slack], zero, np.exp(1j * angles),
                  s_base_kva)
        net.lines = {b.name: net._line_rows(b.from_nodes, b.to_nodes, b.yprim, s_base)
                     for b in topology.branches}
        return net

    def _line_rows(self, from_nodes, to_nodes, yprim, s_base):
        """Flow rows of one line: current into terminal-1 conductors from all conductors."""
        k = len(from_nodes)
        nodes = list(from_nodes) + list(to_nodes)
        ymat = np.array([complex(re, im) for re, im in yprim]).reshape(2 * k, 2 * k)
        own, data, r_idx, c_idx = [], [], [], []
        for r in range(k):
            own.append(self.index.get(from_nodes[r], -1))
            for c, node in enumerate(nodes):
                if node and node in self.index and ymat[r, c] != 0:
                    j = self.index[node]
                    b_r = self.base_v[own[-1]] if own[-1] >= 0 else 0.0
                    data.append(ymat[r, c] * b_r * self.base_v[j] / s_base)
                    r_idx.append(r)
                    c_idx.append(j)
        return own, sp.csr_matrix((data, (r_idx, c_idx)), shape=(k, self.n))


@dataclass
class MeasurementSet:
    """One step's measurements, flat and in per unit."""

    kind: np.ndarray
    node: np.ndarray
    value: np.ndarray
    sigma: np.ndarray
    label: list[str]
    pseudo: np.ndarray
    power_rows: sp.csr_matrix
    """For P and Q measurements (in order of appearance): the admittance row of each."""

    def __len__(self) -> int:
        return len(self.value)

    def without(self, drop: set[int]) -> MeasurementSet:
        """The same set without the measurements at positions `drop`."""
        keep = np.array([i for i in range(len(self)) if i not in drop], dtype=int)
        power = np.flatnonzero(np.isin(self.kind, (P, Q)))
        keep_power = np.flatnonzero(np.isin(power, keep))
        return MeasurementSet(self.kind[keep], self.node[keep], self.value[keep],
                              self.sigma[keep], [self.label[i] for i in keep],
                              self.pseudo[keep], self.power_rows[keep_power])


class MeasurementBuilder:
    """Collects measurements for one step, converting units to per unit."""

    def __init__(self, net: Network):
        self.net = net
        self.kind: list[int] = []
        self.node: list[int] = []
        self.value: list[float] = []
        self.sigma: list[float] = []
        self.label: list[str] = []
        self.pseudo: list[bool] = []
        self.rows: list[sp.csr_matrix] = []
        self.skipped: list[str] = []

    def _add(self, kind, node, value, sigma, label, pseudo, row=None):
        self.kind.append(kind)
        self.node.append(node)
        self.value.append(value)
        self.sigma.append(sigma)
        self.label.append(label)
        self.pseudo.append(pseudo)
        if row is not None:
            self.rows.append(row)

    def voltages(self, port: str, ids, values_pu, sigmas_pu) -> None:
        """|V| measurements, p.u. of node base."""
        for node, v, s in zip(ids, values_pu, sigmas_pu):
            if node not in self.net.index:
                self.skipped.append(f"{port}:{node}")
                continue
            self._add(VMAG, self.net.index[node], v, s, f"{port}:{node}", False)

    def angles(self, port: str, ids, values_deg, sigmas_deg) -> None:
        """Voltage angle measurements (PMU), degrees."""
        for node, a, s in zip(ids, values_deg, sigmas_deg):
            if node not in self.net.index:
                self.skipped.append(f"{port}:{node}")
                continue
            self._add(VANG, self.net.index[node], np.radians(a), np.radians(s),
                      f"{port}:{node}", False)

    def injections(self, port: str, kind: int, ids, values_kw, sigmas_kw, pseudo) -> None:
        """Node injection measurements (kW or kvar into the network)."""
        pseudo = pseudo if pseudo is not None else [False] * len(ids)
        for node, v, s, ps in zip(ids, values_kw, sigmas_kw, pseudo):
            i = self.net.index.get(node)
            if i is None:
                self.skipped.append(f"{port}:{node}")
                continue
            self._add(kind, i, v / self.net.s_base_kva, s / self.net.s_base_kva,
                      f"{port}:{node}", bool(ps), self.net.y[i])

    def flows(self, port: str, kind: int, ids, values_kw, sigmas_kw) -> None:
        """Line flow measurements, ids ``"line:fromnode"`` (kW or kvar into the line)."""
        for bid, v, s in zip(ids, values_kw, sigmas_kw):
            line, _, node = bid.partition(":")
            spec = self.net.lines.get(line)
            i = self.net.index.get(node)
            if spec is None or i is None or i not in spec[0]:
                self.skipped.append(f"{port}:{bid}")
                continue
            row = spec[1][spec[0].index(i)]
            self._add(kind, i, v / self.net.s_base_kva, s / self.net.s_base_kva,
                      f"{port}:{bid}", False, row)

    def build(self) -> MeasurementSet:
        """The collected measurements."""
        rows = sp.vstack(self.rows, format="csr") if self.rows else \
            sp.csr_matrix((0, self.net.n), dtype=complex)
        return MeasurementSet(np.array(self.kind, dtype=int), np.array(self.node, dtype=int),
                              np.array(self.value, dtype=float),
                              np.array(self.sigma, dtype=float), self.label,
                              np.array(self.pseudo, dtype=bool), rows)
