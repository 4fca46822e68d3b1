"""The per-unit network model of a feeder, from its `Topology` message (pure numerics).

Node order, base voltages, the admittance matrix in per unit (``Y_pu = diag(b) Y diag(b) /
S_base`` with ``b`` the line-to-neutral base of each node), the slack nodes with their
reference angles, the zero-injection nodes (every node that is neither slack nor a device
node) and the lines' primitive admittances. Shared by the estimator and the DOPF.

Nodes joined by switch-like lines (series admittance above ``merge_above_pu``; IEEE 123's
switches reach 5.8e6 p.u. against a median of 50) share one state: with them separate, the
flow through a switch hangs on voltage differences below rounding, and Gauss-Newton stalls
at steps of 1e-6 p.u. Merging is exact for the voltages (a closed switch's two ends are
at the same voltage); the admittance becomes ``T^T Y T`` and injections add up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from gridsim.messages import Topology


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


class NodeIndex:
    """Node ids of a topology by bus, to map device buses to nodes, and their no-load
    angles (degrees), to split delta loads."""

    def __init__(self, node_ids: Iterable[str], angles_deg: Mapping[str, float] | None = None):
        node_ids = list(node_ids)
        self.ids = set(node_ids)
        self.angles = dict(angles_deg or {})
        self.by_bus: dict[str, list[str]] = {}
        for node in node_ids:
            self.by_bus.setdefault(node.split(".")[0], []).append(node)

    def nodes_of(self, bus: str) -> list[str]:
        """The nodes a device on `bus` connects to.

        ``"48"``: every node of bus 48 in the topology; ``"1.1"``, ``"646.2.3"`` (delta),
        ``"48.1.2.3.0"``: the listed phases, node 0 (ground) left out.
        """
        name, *phases = bus.lower().split(".")
        if phases:
            nodes = [f"{name}.{p}" for p in dict.fromkeys(phases) if p != "0"]
        else:
            nodes = list(self.by_bus.get(name, []))
        unknown = [n for n in nodes if n not in self.ids]
        if unknown or not nodes:
            raise ValueError(f"device bus {bus!r}: nodes {unknown or nodes} are not in the "
                             f"topology")
        return nodes


def share_factors(delta: bool, angles_deg: list[float | None]) -> list[complex]:
    """The complex share of a device's power taken by each of its nodes.

    Equal shares, except for a delta device between two nodes a and b: it draws the
    current S / (V_a - V_b) from a and returns it at b, so at nominal voltages (the no-load
    angles) a takes ``S V_a / (V_a - V_b)`` and b ``-S V_b / (V_a - V_b)``: half of S each,
    rotated by -30 and +30 degrees.
    """
    if delta and len(angles_deg) == 2 and None not in angles_deg:
        va, vb = (np.exp(1j * np.radians(a)) for a in angles_deg)
        return [complex(va / (va - vb)), complex(-vb / (va - vb))]
    return [complex(1.0 / len(angles_deg))] * len(angles_deg)
