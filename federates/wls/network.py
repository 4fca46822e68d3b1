"""The estimator's view of the grid and of one step's measurements, in per unit.

`Network` is built from a `Topology` message: node order, base voltages, the admittance
matrix in per unit (``Y_pu = diag(b) Y diag(b) / S_base`` with ``b`` the line-to-neutral base
of each node), the slack nodes with their reference angles, the zero-injection nodes (every
node that is neither slack nor a device node) and the lines' primitive admittances.

Nodes joined by switch-like lines (series admittance above ``merge_above_pu``; IEEE 123's
switches reach 5.8e6 p.u. against a median of 50) share one state: with them separate, the
flow through a switch hangs on voltage differences below rounding, and Gauss-Newton stalls
at steps of 1e-6 p.u. Merging is exact for the voltages (a closed switch's two ends are
at the same voltage); the admittance becomes ``T^T Y T`` and injections add up.

`MeasurementSet` holds one step's measurements as flat arrays, each with its kind, where it
applies, its value and sigma in per unit, and a label ``"<port>:<id>"`` for reports. Power
measurements (node injections and line flows alike) are rows ``(own node, admittance row)``:
``S = V[own] * conj(A @ V)``, which is what makes one Jacobian serve both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from gridsim.messages import Topology

VMAG, VANG, P, Q = 0, 1, 2, 3
"""Measurement kinds: voltage magnitude, voltage angle, active power, reactive power."""


@dataclass
class Network:
    """Network model in per unit, one complex state per group of merged nodes."""

    ids: list[str]
    """Every node of the topology."""
    index: dict[str, int]
    state_of: np.ndarray
    """The state of each node (merged nodes share one)."""
    base_v: np.ndarray
    """Base voltage of each state, V."""
    y: sp.csr_matrix
    """Admittance between states, p.u."""
    slack: np.ndarray
    slack_angle: np.ndarray
    zero_injection: np.ndarray
    """States with no device at any of their nodes (and not slack)."""
    v_start: np.ndarray
    s_base_kva: float
    t: sp.csr_matrix
    """Node-to-state incidence: node voltages = T @ state voltages."""
    device_nodes: set[str] = field(default_factory=set)
    revision: int = 0
    lines: dict[str, tuple[list[int], sp.csr_matrix]] = field(default_factory=dict)
    """Line name -> (state of each terminal-1 conductor, rows of its flow admittance)."""

    @property
    def n(self) -> int:
        """Number of states (complex)."""
        return self.y.shape[0]

    @classmethod
    def from_topology(cls, topology: Topology, s_base_kva: float = 1000.0,
                      merge_above_pu: float = 1e3) -> Network:
        """The per-unit model of a Topology message."""
        ids = list(topology.ids)
        index = {node: i for i, node in enumerate(ids)}
        base = np.asarray(topology.base_voltage_magnitudes.values, dtype=float)
        s_base = s_base_kva * 1000.0
        adm = topology.admittance
        rows = np.array([index[a] for a in adm.from_equipment])
        cols = np.array([index[b] for b in adm.to_equipment])
        vals = np.array([complex(re, im) for re, im in adm.admittance_list])
        y_nodes = sp.csr_matrix((vals * base[rows] * base[cols] / s_base, (rows, cols)),
                                shape=(len(ids), len(ids)))
        slack_nodes = [index[s] for s in topology.slack_bus]
        state_of = _merge_groups(topology, index, base, s_base, merge_above_pu, slack_nodes)
        n_states = int(state_of.max()) + 1
        t = sp.csr_matrix((np.ones(len(ids)), (np.arange(len(ids)), state_of)),
                          shape=(len(ids), n_states))
        y = (t.T @ y_nodes @ t).tocsr()
        first = np.full(n_states, -1)
        for node in range(len(ids) - 1, -1, -1):
            first[state_of[node]] = node
        angles = np.radians(np.asarray(topology.base_voltage_angles.values, dtype=float))
        slack = np.unique(state_of[slack_nodes])
        devices = {int(state_of[index[d]]) for d in topology.device_nodes if d in index}
        zero = np.array(sorted(set(range(n_states)) - devices - set(slack.tolist())), dtype=int)
        net = cls(ids, index, state_of, base[first], y, slack, angles[first][slack], zero,
                  np.exp(1j * angles[first]), s_base_kva, t, set(topology.device_nodes))
        net.lines = {b.name: net._line_rows(b.from_nodes, b.to_nodes, b.yprim, s_base)
                     for b in topology.branches}
        return net

    def node_voltages(self, v_states: np.ndarray) -> np.ndarray:
        """Voltage of every node (in `ids` order) from the state voltages."""
        return v_states[self.state_of]

    def nodes_of(self, states) -> list[str]:
        """Every node id belonging to the given states, in node order."""
        wanted = set(int(s) for s in states)
        return [n for n, s in zip(self.ids, self.state_of) if int(s) in wanted]

    def _line_rows(self, from_nodes, to_nodes, yprim, s_base):
        """Flow rows of one line (current into its terminal-1 conductors), over states."""
        k = len(from_nodes)
        nodes = list(from_nodes) + list(to_nodes)
        ymat = np.array([complex(re, im) for re, im in yprim]).reshape(2 * k, 2 * k)
        own, data, r_idx, c_idx = [], [], [], []
        for r in range(k):
            own.append(int(self.state_of[self.index[from_nodes[r]]])
                       if from_nodes[r] in self.index else -1)
            for c, node in enumerate(nodes):
                if node and node in self.index and ymat[r, c] != 0 and own[-1] >= 0:
                    j = int(self.state_of[self.index[node]])
                    data.append(ymat[r, c] * self.base_v[own[-1]] * self.base_v[j] / s_base)
                    r_idx.append(r)
                    c_idx.append(j)
        return own, sp.csr_matrix((data, (r_idx, c_idx)), shape=(k, self.n))


def _merge_groups(topology: Topology, index: dict[str, int], base: np.ndarray, s_base: float,
                  merge_above_pu: float, slack_nodes: list[int]) -> np.ndarray:
    """State index of every node: nodes joined by switch-like lines share one.

    States are numbered in node order; a group's state is that of its first node.
    """
    parent = list(range(len(index)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for branch in topology.branches:
        k = len(branch.from_nodes)
        for c in range(k):
            a, b = branch.from_nodes[c], branch.to_nodes[c]
            if not a or not b or a not in index or b not in index:
                continue
            re, im = branch.yprim[c * 2 * k + k + c]
            series_pu = abs(complex(re, im)) * base[index[a]] * base[index[b]] / s_base
            if series_pu > merge_above_pu:
                parent[find(index[a])] = find(index[b])
    roots = [find(i) for i in range(len(index))]
    for s in slack_nodes:  # keep the slack nodes' own states distinct
        if roots.count(roots[s]) > 1 and any(roots[o] == roots[s] for o in slack_nodes if o != s):
            raise ValueError("two slack nodes are joined by a switch")
    numbering: dict[int, int] = {}
    return np.array([numbering.setdefault(r, len(numbering)) for r in roots], dtype=int)


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
    """Collects measurements for one step, converting units to per unit and node ids to
    states. Injection measurements of merged nodes are added up per state (sigmas in
    quadrature); a state with a device node left unmeasured gets no injection measurement.
    """

    def __init__(self, net: Network):
        self.net = net
        self.devices = net.device_nodes
        self.kind: list[int] = []
        self.node: list[int] = []
        self.value: list[float] = []
        self.sigma: list[float] = []
        self.label: list[str] = []
        self.pseudo: list[bool] = []
        self.rows: list[sp.csr_matrix] = []
        self.skipped: list[str] = []
        self._injections: dict[tuple[int, int], list] = defaultdict(list)

    def _add(self, kind, state, value, sigma, label, pseudo, row=None):
        self.kind.append(kind)
        self.node.append(state)
        self.value.append(value)
        self.sigma.append(sigma)
        self.label.append(label)
        self.pseudo.append(pseudo)
        if row is not None:
            self.rows.append(row)

    def _state(self, port: str, node: str) -> int | None:
        if node not in self.net.index:
            self.skipped.append(f"{port}:{node}")
            return None
        return int(self.net.state_of[self.net.index[node]])

    def voltages(self, port: str, ids, values_pu, sigmas_pu) -> None:
        """|V| measurements, p.u. of node base."""
        for node, v, s in zip(ids, values_pu, sigmas_pu):
            state = self._state(port, node)
            if state is not None:
                self._add(VMAG, state, v, s, f"{port}:{node}", False)

    def angles(self, port: str, ids, values_deg, sigmas_deg) -> None:
        """Voltage angle measurements (PMU), degrees."""
        for node, a, s in zip(ids, values_deg, sigmas_deg):
            state = self._state(port, node)
            if state is not None:
                self._add(VANG, state, np.radians(a), np.radians(s), f"{port}:{node}", False)

    def injections(self, port: str, kind: int, ids, values_kw, sigmas_kw, pseudo) -> None:
        """Node injection measurements (kW or kvar into the network)."""
        pseudo = pseudo if pseudo is not None else [False] * len(ids)
        for node, v, s, ps in zip(ids, values_kw, sigmas_kw, pseudo):
            state = self._state(port, node)
            if state is not None:
                self._injections[(kind, state)].append((port, node, v, s, bool(ps)))

    def flows(self, port: str, kind: int, ids, values_kw, sigmas_kw) -> None:
        """Line flow measurements, ids ``"line:fromnode"`` (kW or kvar into the line)."""
        for bid, v, s in zip(ids, values_kw, sigmas_kw):
            line, _, node = bid.partition(":")
            spec = self.net.lines.get(line)
            state = self.net.state_of[self.net.index[node]] if node in self.net.index else -1
            if spec is None or state not in spec[0] or spec[1][spec[0].index(state)].nnz == 0:
                self.skipped.append(f"{port}:{bid}")
                continue
            row = spec[1][spec[0].index(state)]
            self._add(kind, int(state), v / self.net.s_base_kva, s / self.net.s_base_kva,
                      f"{port}:{bid}", False, row)

    def _add_injections(self) -> None:
        members: dict[int, list[str]] = defaultdict(list)
        for node, state in zip(self.net.ids, self.net.state_of):
            members[int(state)].append(node)
        for (kind, state), readings in sorted(self._injections.items()):
            measured = {r[1] for r in readings}
            missing = [n for n in members[state] if n in self.devices and n not in measured]
            if missing:
                self.skipped += [f"{r[0]}:{r[1]}" for r in readings]
                continue
            value = sum(r[2] for r in readings) / self.net.s_base_kva
            sigma = np.sqrt(sum(r[3] ** 2 for r in readings)) / self.net.s_base_kva
            label = "+".join(f"{r[0]}:{r[1]}" for r in readings)
            self._add(kind, state, value, sigma, label, any(r[4] for r in readings),
                      self.net.y[state])

    def build(self) -> MeasurementSet:
        """The collected measurements."""
        self._add_injections()
        rows = sp.vstack(self.rows, format="csr") if self.rows else \
            sp.csr_matrix((0, self.net.n), dtype=complex)
        return MeasurementSet(np.array(self.kind, dtype=int), np.array(self.node, dtype=int),
                              np.array(self.value, dtype=float),
                              np.array(self.sigma, dtype=float), self.label,
                              np.array(self.pseudo, dtype=bool), rows)
