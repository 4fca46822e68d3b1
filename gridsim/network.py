"""The per-unit network model of a feeder, from its `Topology` message (pure numerics).

Node order, base voltages, the admittance matrix in per unit (``Y_pu = diag(b) Y diag(b) /
S_base`` with ``b`` the line-to-neutral base of each node), the slack nodes with their
reference angles, the zero-injection nodes (every node that is neither slack nor a device
node) and the lines' primitive admittances. Shared by the estimator and the DOPF.

Nodes joined by a closed switch share one state: with them separate, the flow through a
switch hangs on voltage differences below rounding, and Gauss-Newton stalls at steps of
1e-6 p.u. Merging is exact for the voltages (a closed switch's two ends are at the same
voltage); the admittance becomes ``T^T Y T`` and injections add up.

Which lines are switches (`is_switch_conductor`): those the topology says are
(``BranchAdmittance.switch``, from OpenDSS's ``switch=yes``), where their series admittance
is not zero (a closed conductor). Lines it says are not switches are never merged, however
short. Only when the sender does not say (``switch`` None) does the series impedance decide:
below `SWITCH_MAX_OHM`. The numbers behind the rule:

- IEEE 123: its 8 switches are its only lines merged, as before: sw1..sw6 with OpenDSS's
  default switch impedance (r1 = x1 = 1 ohm per unit length, length 0.001: 1.4e-3 ohm, 4e3
  p.u. on 1 MVA; their ends differ by up to 2e-4 p.u. at midnight) and sw7, sw8 (1e-6 ohm,
  5.8e6 p.u.), against a median line coupling of 50 p.u.; its shortest real line has
  0.016 ohm (360 p.u.).
- IEEE 9500: 109 lines are switches (1.4e-6 ohm), 11 of them open (series admittance 0):
  234 conductor pairs on 98 lines merged, whose ends differ by at most 7e-7 p.u. in the
  power flow. The former rule, an absolute threshold of 1e3 p.u., merged 2,119 pairs on
  1,083 lines, among them 591 pairs whose ends differ by 1e-4 to 1.4e-3 p.u., the 69 kV
  lines above all (the p.u. admittance grows with the base voltage squared). No threshold
  in ohms or relative to the median separates switches from lines either: IEEE 123's
  default switches (1.4e-3 ohm, 52 times its median line admittance in S) have a larger
  impedance than 9500's shortest real lines (a 0.3 m line: 1.6e-4 ohm, 195 times its
  median) and its substation connector (1e-5 ohm); only the flag tells them apart.
- The fallback, 2e-3 ohm, catches OpenDSS's default switch; on IEEE 9500 it would also take
  the substation connector, the nine capacitor leads ``cap_*`` and 19 very short real
  lines, whose ends differ by at most 3e-5 p.u. (harmless), and no 69 kV line.

Floating islands (`Network.floating`, see `floating_islands`): groups of states joined by
lines whose common potential no element holds to ground, the low-voltage side of a delta
winding with only delta devices behind it. Shifting all their voltages together changes
no current but that of OpenDSS's anti-float shunts (1 ppm of the transformer's rating);
the network model alone cannot place them, and an estimator needs to know.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from gridsim.messages import BranchAdmittance, Topology


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
    floating: list[np.ndarray] = field(default_factory=list)
    """The states of each floating island (`floating_islands`)."""

    @property
    def n(self) -> int:
        """Number of states (complex)."""
        return self.y.shape[0]

    @classmethod
    def from_topology(cls, topology: Topology, s_base_kva: float = 1000.0,
                      switch_max_ohm: float | None = None) -> Network:
        """The per-unit model of a Topology message.

        `switch_max_ohm`: the fallback threshold for lines not flagged either way (default
        `SWITCH_MAX_OHM`).
        """
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
        state_of = _merge_groups(topology, index, SWITCH_MAX_OHM if switch_max_ohm is None
                                 else switch_max_ohm, slack_nodes)
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
                  np.exp(1j * angles[first]), s_base_kva, t, set(topology.device_nodes),
                  topology.revision)
        net.lines = {b.name: net._line_rows(b.from_nodes, b.to_nodes, b.yprim, s_base)
                     for b in topology.branches}
        net.floating = floating_islands(net, topology)
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


SWITCH_MAX_OHM = 2e-3
"""Series impedance (ohm) below which a line not flagged either way counts as a switch
(OpenDSS's default switch: 1.4e-3 ohm; see the module docstring)."""


def is_switch_conductor(branch: BranchAdmittance, c: int,
                        switch_max_ohm: float = SWITCH_MAX_OHM) -> bool:
    """Whether conductor `c` of `branch` is a closed switch (its two ends one node)."""
    k = len(branch.from_nodes)
    series = abs(complex(*branch.yprim[c * 2 * k + k + c]))  # S, terminal 1 to terminal 2
    if series == 0.0 or branch.switch is False:
        return False  # an open conductor, or a line that is not a switch
    return branch.switch is True or 1.0 / series < switch_max_ohm


def _merge_groups(topology: Topology, index: dict[str, int], switch_max_ohm: float,
                  slack_nodes: list[int]) -> np.ndarray:
    """State index of every node: nodes joined by closed switches share one.

    States are numbered in node order; a group's state is that of its first node.
    """
    parent = list(range(len(index)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for branch in topology.branches:
        if branch.switch is False:
            continue
        for c, (a, b) in enumerate(zip(branch.from_nodes, branch.to_nodes)):
            if not a or not b or a not in index or b not in index:
                continue
            if is_switch_conductor(branch, c, switch_max_ohm):
                parent[find(index[a])] = find(index[b])
    roots = [find(i) for i in range(len(index))]
    for s in slack_nodes:  # keep the slack nodes' own states distinct
        if roots.count(roots[s]) > 1 and any(roots[o] == roots[s] for o in slack_nodes if o != s):
            raise ValueError("two slack nodes are joined by a switch")
    numbering: dict[int, int] = {}
    return np.array([numbering.setdefault(r, len(numbering)) for r in roots], dtype=int)


FLOATING_RATIO = 1e-6
"""A group of states is a floating island when shifting them all together draws less than
this share of the current their admittance rows could carry (see `floating_islands`)."""


def floating_islands(net: Network, topology: Topology,
                     ratio: float = FLOATING_RATIO) -> list[np.ndarray]:
    """Groups of states whose common potential the network does not fix (sorted states).

    Candidates are the groups of states joined by lines (series conductors carry a common
    shift along) or by being nodes of one bus; transformers do not join them. A group ``G``
    is floating when ``sum |Y 1_G| < ratio * sum over G of sum_j |Y_ij|``: raising every
    voltage of ``G`` by the same amount moves almost no current anywhere. On IEEE 9500 the
    seven 480 V delta secondaries of its DER transformers score 1e-9 (their anti-float
    shunts), the next group 5e-3 (a 12.47 kV network behind a grounded winding); on IEEE 13
    and 123 no group scores below 0.5. A group with a slack state is left out: the slack's
    angle constraints fix its common potential (IEEE 13's source bus, behind a delta
    winding, would score 1e-9 otherwise).
    """
    n = net.n
    rows, cols = [], []
    for branch in topology.branches:
        for a, b in zip(branch.from_nodes, branch.to_nodes):
            if a in net.index and b in net.index:
                rows.append(net.state_of[net.index[a]])
                cols.append(net.state_of[net.index[b]])
    first_of_bus: dict[str, int] = {}
    for node, i in net.index.items():
        state = int(net.state_of[i])
        rows.append(first_of_bus.setdefault(node.split(".")[0], state))
        cols.append(state)
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    count, label = csgraph.connected_components(graph, directed=False)
    member = sp.csr_matrix((np.ones(n), (np.arange(n), label)), shape=(n, count))
    moved = np.asarray(abs(net.y @ member).sum(axis=0)).ravel()
    capacity = member.T @ np.asarray(abs(net.y).sum(axis=1)).ravel()
    held = np.zeros(count, dtype=bool)
    held[label[net.slack]] = True  # the slack's angle constraints fix its common potential
    groups = np.flatnonzero((moved < ratio * capacity) & ~held)
    return [np.flatnonzero(label == g) for g in groups]


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
