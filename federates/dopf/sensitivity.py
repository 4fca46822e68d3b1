"""The DOPF's linear model: how node voltages and the substation's power respond to the
controllable devices, around the present operating point (pure numerics).

The seed's step 1 ("process the grid"): at the operating point V (estimated or true), the
power-flow Jacobian J = d[P; Q]/d[e; f] of every non-slack state (rectangular voltages, slack
fixed, loads as constant power) is factorized once (sparse LU), and solved only for the
columns of the controls: a kW or kvar injected at a PV system's nodes, or a kW of load shed
at a load's nodes (its kvar following its power factor). The voltage magnitude response is
``d|V| = (e de + f df) / |V|``; the substation's response comes from the slack rows.

Units: |V| in p.u. of node base; controls in kW and kvar; the matrices are p.u. per kW (or
per kvar) and kW per kW. A device on several nodes shares its power among them as
`gridsim.network.share_factors` says (equally; a two-node delta load with a rotation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridsim.network import Network, NodeIndex, share_factors


@dataclass
class Devices:
    """The controllable devices: ids with the nodes each connects to."""

    pv_ids: list[str]
    pv_nodes: list[list[str]]
    load_ids: list[str]
    load_nodes: list[list[str]]
    load_pf_ratio: np.ndarray
    """Each load's kvar per kW (its present q / p), so shedding takes both."""
    load_delta: list[bool]

    @classmethod
    def from_states(cls, net: Network, pv_states, load_states) -> Devices:
        """From PVStates and LoadStates messages (bus strings parsed to node ids)."""
        index = NodeIndex(net.ids)
        loads_p = np.asarray(load_states.p_kw, dtype=float)
        loads_q = np.asarray(load_states.q_kvar, dtype=float)
        ratio = np.divide(loads_q, loads_p, out=np.zeros_like(loads_p), where=loads_p != 0)
        return cls(list(pv_states.ids), [index.nodes_of(b) for b in pv_states.bus],
                   list(load_states.ids), [index.nodes_of(b) for b in load_states.bus], ratio,
                   list(load_states.delta or [False] * len(load_states.ids)))


@dataclass
class LinearModel:
    """Sensitivities at one operating point."""

    node_ids: list[str]
    v0: np.ndarray
    """|V| of every node at the operating point, p.u."""
    vp: np.ndarray
    """d|V| / d(PV active injection), p.u. per kW, (node, PV)."""
    vq: np.ndarray
    """d|V| / d(PV reactive injection), p.u. per kvar, (node, PV)."""
    vs: np.ndarray
    """d|V| / d(load shed), p.u. per kW shed, (node, load)."""
    psub_p: np.ndarray
    """d(substation kW) / d(PV kW), per PV."""
    psub_q: np.ndarray
    """d(substation kW) / d(PV kvar), per PV."""
    psub_s: np.ndarray
    """d(substation kW) / d(kW shed), per load."""

    @property
    def loss_p(self) -> np.ndarray:
        """d(losses kW) / d(PV kW): the substation supplies the losses, PV offsets load."""
        return self.psub_p + 1.0

    @property
    def loss_s(self) -> np.ndarray:
        """d(losses kW) / d(kW shed)."""
        return self.psub_s + 1.0


def linearize(net: Network, v_nodes: np.ndarray, devices: Devices) -> LinearModel:
    """The linear model around node voltages `v_nodes` (complex p.u., in `net.ids` order)."""
    n = net.n
    first = np.full(n, -1)
    for node in range(len(net.ids) - 1, -1, -1):
        first[net.state_of[node]] = node
    v = v_nodes[first]
    e, f = v.real, v.imag
    free = np.setdiff1d(np.arange(n), net.slack)
    jac = _jacobian(net.y, e, f, free, free)
    lu = spla.splu(jac.tocsc())
    rhs, labels = _control_columns(net, devices, free)
    dx = lu.solve(rhs)
    k = len(free)
    de, df = np.zeros((n, rhs.shape[1])), np.zeros((n, rhs.shape[1]))
    de[free], df[free] = dx[:k], dx[k:]
    dmag_states = (e[:, None] * de + f[:, None] * df) / np.abs(v)[:, None]
    dmag = dmag_states[net.state_of]
    slack_jac = _jacobian(net.y, e, f, net.slack, free)
    dsub = (slack_jac[: len(net.slack)] @ dx).sum(axis=0) * net.s_base_kva
    n_pv, n_load = len(devices.pv_ids), len(devices.load_ids)
    cols = {label: i for i, label in enumerate(labels)}
    pick = lambda kind, count: [cols[(kind, i)] for i in range(count)]  # noqa: E731
    p_cols, q_cols, s_cols = pick("p", n_pv), pick("q", n_pv), pick("s", n_load)
    # A load shed injects +kW (and +kvar by its power factor) into the network.
    return LinearModel(list(net.ids), np.abs(v_nodes), dmag[:, p_cols], dmag[:, q_cols],
                       dmag[:, s_cols], dsub[p_cols], dsub[q_cols], dsub[s_cols])


def _jacobian(y: sp.csr_matrix, e, f, rows, cols) -> sp.csr_matrix:
    """d[P_rows; Q_rows] / d[e_cols; f_cols] of S = V conj(Y V), rectangular."""
    g, b = y.real.tocsr(), y.imag.tocsr()
    ir, ii = g @ e - b @ f, g @ f + b @ e
    n = len(e)
    own = sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)),
                        shape=(len(rows), n))
    d = sp.diags
    gr, br = g[rows], b[rows]
    er, fr = e[rows], f[rows]
    dp_de = d(ir[rows]) @ own + d(er) @ gr + d(fr) @ br
    dp_df = d(ii[rows]) @ own - d(er) @ br + d(fr) @ gr
    dq_de = -d(ii[rows]) @ own + d(fr) @ gr - d(er) @ br
    dq_df = d(ir[rows]) @ own - d(fr) @ br - d(er) @ gr
    return sp.bmat([[dp_de[:, cols], dp_df[:, cols]], [dq_de[:, cols], dq_df[:, cols]]],
                   format="csr")


def _control_columns(net: Network, devices: Devices, free: np.ndarray):
    """Right-hand sides: one column per control, 1 kW (or kvar) injected, in p.u."""
    position = {int(s): i for i, s in enumerate(free)}
    k = len(free)
    columns, labels = [], []

    angles = np.degrees(np.angle(net.v_start[net.state_of]))

    def column(nodes: list[str], s_kva: complex, delta: bool = False) -> np.ndarray:
        col = np.zeros(2 * k)
        shares = share_factors(delta, [angles[net.index[node]] for node in nodes])
        for node, share in zip(nodes, shares):
            state = int(net.state_of[net.index[node]])
            if state in position:
                col[position[state]] += (share * s_kva).real / net.s_base_kva
                col[k + position[state]] += (share * s_kva).imag / net.s_base_kva
        return col

    for i, nodes in enumerate(devices.pv_nodes):
        columns += [column(nodes, 1.0), column(nodes, 1.0j)]
        labels += [("p", i), ("q", i)]
    for i, nodes in enumerate(devices.load_nodes):
        s_kva = complex(1.0, float(devices.load_pf_ratio[i]))
        columns.append(column(nodes, s_kva, devices.load_delta[i]))
        labels.append(("s", i))
    matrix = np.column_stack(columns) if columns else np.zeros((2 * k, 0))
    return matrix, labels
