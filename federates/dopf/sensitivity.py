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

Discrete devices (`DiscreteDevices`) change the admittance, not an injection: moving a
regulator's tap or closing a capacitor bank changes Y by dY, which at fixed voltages asks
``dS = V conj(dY V)`` more power of the network; the same factorization gives the response
to the injection ``-dS``. A capacitor bank of susceptance B per node gives ``dS = -j B |V|^2``
(kvar injected). A regulator is a two-winding transformer tapped on winding 2; OpenDSS's
admittance of it is ``D Y0 D`` with ``D = diag(1, 1/t)``, so with ``Y_ps`` (its block between
primary and secondary nodes, read from the topology) and tap ratio ``t``::

    dY_ps/dt = dY_sp/dt = -Y_ps / t,    dY_ss/dt = 2 Y_ps / t^2,    dY_pp/dt = 0

(checked against two OpenDSS admittances one tap apart, and against OpenDSS's voltages in
tests/test_dopf_model.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridsim.network import Network, NodeIndex, share_factors

DEAD_PU = 1e-3
"""States below this |V| (p.u.) are de-energized (behind an open switch): they are held at
zero, as their Jacobian rows are (IEEE 9500 has two such nodes)."""


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
class DiscreteDevices:
    """Regulators and capacitor banks the DOPF may move, with what their columns need."""

    tap_ids: list[str]
    tap_nodes: list[tuple[list[str], list[str]]]
    """Primary and secondary nodes of each regulator, phase by phase."""
    tap_ratio: np.ndarray
    tap_step: np.ndarray
    """Change of the tap ratio per step, p.u."""
    tap_position: np.ndarray
    tap_limit: np.ndarray
    cap_ids: list[str]
    cap_nodes: list[list[str]]
    cap_b_pu: np.ndarray
    """Susceptance of each bank per node, p.u. on the network's base."""
    cap_state: np.ndarray
    """1 if every step of the bank is closed, else 0 (a bank is switched as a whole)."""

    @classmethod
    def from_states(cls, net: Network, regulators=None, capacitors=None,
                    tap_ids: list[str] | None = None,
                    cap_ids: list[str] | None = None) -> DiscreteDevices:
        """From RegulatorStates and CapacitorStates, keeping the listed devices (None: none)."""
        index = NodeIndex(net.ids)
        taps = [i for i, r in enumerate(regulators.ids if regulators else [])
                if r in set(tap_ids or [])]
        caps = [i for i, c in enumerate(capacitors.ids if capacitors else [])
                if c in set(cap_ids or [])]
        tap_nodes = [_aligned_phases(index.nodes_of(regulators.primary[i]),
                                     index.nodes_of(regulators.secondary[i])) for i in taps]
        cap_nodes = [index.nodes_of(capacitors.bus[i]) for i in caps]
        b_pu = []
        for i, nodes in zip(caps, cap_nodes):
            rated_v = capacitors.kv[i] * 1e3 / (np.sqrt(3.0) if len(nodes) > 1 else 1.0)
            base = net.base_v[net.state_of[net.index[nodes[0]]]]
            b_pu.append(capacitors.kvar[i] / len(nodes) / net.s_base_kva * (base / rated_v) ** 2)
        pick = lambda values, at, kind=float: np.array([values[i] for i in at], dtype=kind)  # noqa: E731
        return cls(
            [regulators.ids[i] for i in taps], tap_nodes,
            pick(regulators.tap_ratio, taps) if taps else np.zeros(0),
            pick(regulators.tap_step, taps) if taps else np.zeros(0),
            pick(regulators.tap, taps, int) if taps else np.zeros(0, int),
            pick(regulators.tap_limit, taps, int) if taps else np.zeros(0, int),
            [capacitors.ids[i] for i in caps], cap_nodes, np.array(b_pu),
            np.array([int(all(capacitors.states[i])) for i in caps], dtype=int))

    @property
    def n_tap(self) -> int:
        return len(self.tap_ids)

    @property
    def n_cap(self) -> int:
        return len(self.cap_ids)


def _aligned_phases(primary: list[str], secondary: list[str]) -> tuple[list[str], list[str]]:
    """Primary and secondary nodes paired by phase number."""
    by_phase = {node.split(".")[1]: node for node in secondary}
    pairs = [(p, by_phase[p.split(".")[1]]) for p in primary if p.split(".")[1] in by_phase]
    return [p for p, _ in pairs], [s for _, s in pairs]


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
    vt: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """d|V| / d(tap position), p.u. per step, (node, regulator) (`DiscreteDevices`)."""
    vc: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """|V| change from closing each capacitor bank, p.u., (node, bank)."""
    psub_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """d(substation kW) / d(tap position), per regulator."""
    psub_c: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Substation kW change from closing each bank."""

    @property
    def loss_p(self) -> np.ndarray:
        """d(losses kW) / d(PV kW): the substation supplies the losses, PV offsets load."""
        return self.psub_p + 1.0

    @property
    def loss_s(self) -> np.ndarray:
        """d(losses kW) / d(kW shed)."""
        return self.psub_s + 1.0


def linearize(net: Network, v_nodes: np.ndarray, devices: Devices,
              discrete: DiscreteDevices | None = None) -> LinearModel:
    """The linear model around node voltages `v_nodes` (complex p.u., in `net.ids` order),
    with columns for the `discrete` devices if given."""
    n = net.n
    first = np.full(n, -1)
    for node in range(len(net.ids) - 1, -1, -1):
        first[net.state_of[node]] = node
    v = v_nodes[first]
    e, f = v.real, v.imag
    dead = np.flatnonzero(np.abs(v) < DEAD_PU)
    free = np.setdiff1d(np.arange(n), np.concatenate([net.slack, dead]))
    jac = _jacobian(net.y, e, f, free, free)
    lu = spla.splu(jac.tocsc())
    rhs, labels = _control_columns(net, devices, free)
    ds_slack = np.zeros((len(net.slack), rhs.shape[1]), dtype=complex)
    if discrete is not None:
        more, more_labels, ds_slack_more = _discrete_columns(net, v, discrete, free)
        rhs, labels = np.hstack([rhs, more]), labels + more_labels
        ds_slack = np.hstack([ds_slack, ds_slack_more])
    dx = lu.solve(rhs)
    k = len(free)
    de, df = np.zeros((n, rhs.shape[1])), np.zeros((n, rhs.shape[1]))
    de[free], df[free] = dx[:k], dx[k:]
    dmag_states = (e[:, None] * de + f[:, None] * df) / np.maximum(np.abs(v), DEAD_PU)[:, None]
    dmag = dmag_states[net.state_of]
    slack_jac = _jacobian(net.y, e, f, net.slack, free)
    dsub = ((slack_jac[: len(net.slack)] @ dx).sum(axis=0) + ds_slack.real.sum(axis=0)
            ) * net.s_base_kva
    n_pv, n_load = len(devices.pv_ids), len(devices.load_ids)
    cols = {label: i for i, label in enumerate(labels)}
    pick = lambda kind, count: [cols[(kind, i)] for i in range(count)]  # noqa: E731
    p_cols, q_cols, s_cols = pick("p", n_pv), pick("q", n_pv), pick("s", n_load)
    n_tap, n_cap = (discrete.n_tap, discrete.n_cap) if discrete is not None else (0, 0)
    t_cols, c_cols = pick("t", n_tap), pick("c", n_cap)
    # A load shed injects +kW (and +kvar by its power factor) into the network.
    return LinearModel(list(net.ids), np.abs(v_nodes), dmag[:, p_cols], dmag[:, q_cols],
                       dmag[:, s_cols], dsub[p_cols], dsub[q_cols], dsub[s_cols],
                       dmag[:, t_cols], dmag[:, c_cols], dsub[t_cols], dsub[c_cols])


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


def _discrete_columns(net: Network, v: np.ndarray, discrete: DiscreteDevices,
                      free: np.ndarray):
    """Right-hand sides ``-V conj(dY V)`` (p.u.) of one tap step up per regulator and of
    closing each capacitor bank (module doc), with ``dS`` at the slack states."""
    position = {int(s): i for i, s in enumerate(free)}
    k = len(free)
    states = lambda nodes: np.array([net.state_of[net.index[n]] for n in nodes])  # noqa: E731
    columns, labels, slack_rows = [], [], []
    slack_position = {int(s): i for i, s in enumerate(net.slack)}

    def column(ds: dict[int, complex]) -> tuple[np.ndarray, np.ndarray]:
        col, at_slack = np.zeros(2 * k), np.zeros(len(net.slack), dtype=complex)
        for state, value in ds.items():
            if state in position:
                col[position[state]] -= value.real
                col[k + position[state]] -= value.imag
            elif state in slack_position:
                at_slack[slack_position[state]] += value
        return col, at_slack

    for j, (primary, secondary) in enumerate(discrete.tap_nodes):
        p, s = states(primary), states(secondary)
        y_ps = net.y[p][:, s].toarray()
        t, step = discrete.tap_ratio[j], discrete.tap_step[j]
        d_ps, d_ss = -y_ps / t * step, 2.0 * y_ps / t**2 * step
        di_p = d_ps @ v[s]
        di_s = d_ps.T @ v[p] + d_ss @ v[s]
        ds: dict[int, complex] = {}
        for state, value in zip(np.concatenate([p, s]),
                                np.concatenate([v[p] * np.conj(di_p), v[s] * np.conj(di_s)])):
            ds[int(state)] = ds.get(int(state), 0.0) + complex(value)
        col, at_slack = column(ds)
        columns.append(col), slack_rows.append(at_slack), labels.append(("t", j))
    for j, nodes in enumerate(discrete.cap_nodes):
        ds = {}
        for state in states(nodes):
            ds[int(state)] = ds.get(int(state), 0.0) - 1j * discrete.cap_b_pu[j] * abs(
                v[state]) ** 2
        col, at_slack = column(ds)
        columns.append(col), slack_rows.append(at_slack), labels.append(("c", j))
    if not columns:
        return np.zeros((2 * k, 0)), [], np.zeros((len(net.slack), 0), dtype=complex)
    return np.column_stack(columns), labels, np.column_stack(slack_rows)
