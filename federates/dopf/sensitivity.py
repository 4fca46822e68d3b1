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

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridsim.network import Network, NodeIndex, share_factors

DEAD_PU = 1e-3
"""States below this |V| (p.u.) are de-energized (behind an open switch): they are held at
zero, as their Jacobian rows are (IEEE 9500 has two such nodes)."""
PERMC_SPEC = "COLAMD"
"""Column ordering of the sparse LU (SciPy's ``permc_spec``, its default). On IEEE 9500's
Jacobian (18,524 rows) the minimum-degree orderings ``MMD_AT_PLUS_A`` and ``MMD_ATA`` fill
26-27% less (300,000 against 408,000 nonzeros in L and U), but the solve of the 384
right-hand sides took 0.216-0.219 s against 0.228 s (median of 5), and factorizing
17-22 ms against 20 ms: not worth results that differ in the last digits."""


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
    def from_states(cls, net: Network, pv_states, load_states,
                    flexible_loads: Collection[str] = ()) -> Devices:
        """From PVStates and LoadStates messages (bus strings parsed to node ids), keeping
        only the loads in `flexible_loads`, in the message's order.

        Only flexible loads become problem variables, so only they need a shed column: on
        IEEE 9500 (2,546 loads, none flexible by default) a column for every load made
        `linearize` 25 times slower (8.6 s against 0.24-0.41 s).
        """
        index = NodeIndex(net.ids)
        wanted = set(flexible_loads)
        keep = [i for i, load in enumerate(load_states.ids) if load in wanted]
        loads_p = np.asarray(load_states.p_kw, dtype=float)[keep]
        loads_q = np.asarray(load_states.q_kvar, dtype=float)[keep]
        ratio = np.divide(loads_q, loads_p, out=np.zeros_like(loads_p), where=loads_p != 0)
        delta = load_states.delta or [False] * len(load_states.ids)
        return cls(list(pv_states.ids), [index.nodes_of(b) for b in pv_states.bus],
                   [load_states.ids[i] for i in keep],
                   [index.nodes_of(load_states.bus[i]) for i in keep], ratio,
                   [bool(delta[i]) for i in keep])


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
    load_ids: list[str] = field(default_factory=list)
    """The load of each column of ``vs`` and ``psub_s`` (`Devices.load_ids`)."""
    limited: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """The nodes whose |V| the DOPF limits (`limited_nodes`)."""

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
    with columns for the `discrete` devices if given.

    Only the controls' columns are solved for (``2 n_pv + n_load + n_tap + n_cap``
    right-hand sides), all in one call of the factorization. On IEEE 9500 (18,524 real
    states, 178 PV, 18 regulators, 10 banks: 384 columns) that solve is most of the time.
    """
    n = net.n
    _, first = np.unique(net.state_of, return_index=True)
    v = v_nodes[first]
    e, f = v.real, v.imag
    dead = np.flatnonzero(np.abs(v) < DEAD_PU)
    free = np.setdiff1d(np.arange(n), np.concatenate([net.slack, dead]))
    g, b = net.y.real.tocsr(), net.y.imag.tocsr()
    lu = spla.splu(_jacobian(g, b, e, f, free, free).tocsc(), permc_spec=PERMC_SPEC)
    injections = _control_injections(net, devices)
    n_tap, n_cap = (discrete.n_tap, discrete.n_cap) if discrete is not None else (0, 0)
    if discrete is not None:
        injections += _discrete_injections(net, v, discrete)
    rhs, at_slack = _right_hand_sides(net, free, injections)
    dx = lu.solve(rhs)
    k = len(free)
    dmag_states = np.zeros((n, rhs.shape[1]))
    dmag_states[free] = (e[free, None] * dx[:k] + f[free, None] * dx[k:]) / np.maximum(
        np.abs(v[free]), DEAD_PU)[:, None]
    dmag = dmag_states[net.state_of]
    dsub = ((_jacobian(g, b, e, f, net.slack, free)[: len(net.slack)] @ dx).sum(axis=0)
            - at_slack.real.sum(axis=0)) * net.s_base_kva
    n_pv, n_load = len(devices.pv_ids), len(devices.load_ids)
    bounds = np.cumsum([0, n_pv, n_pv, n_load, n_tap, n_cap])
    blocks = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    p, q, s, t, c = blocks
    return LinearModel(list(net.ids), np.abs(v_nodes), dmag[:, p], dmag[:, q], dmag[:, s],
                       dsub[p], dsub[q], dsub[s], dmag[:, t], dmag[:, c], dsub[t], dsub[c],
                       list(devices.load_ids), limited_nodes(net, v_nodes))


def limited_nodes(net: Network, v_nodes: np.ndarray) -> np.ndarray:
    """Which nodes (`net.ids` order) have a |V| the DOPF should limit: energized phase
    conductors whose potential the network holds.

    Left out: de-energized nodes (`DEAD_PU`); neutral points (conductor 4 and above: on
    IEEE 9500 the ungrounded wye neutrals of six DER transformers, at 0.001-0.009 p.u.,
    made every problem infeasible under ``v_min``); and floating islands
    (`Network.floating`: the 480 V delta secondaries behind those transformers, 66 nodes,
    whose voltage to ground only OpenDSS's anti-float shunts hold; the linear model moved
    it by up to 0.2 p.u. for the kvar an optimum used, while their line-to-line voltages,
    the ones that matter, follow the limited primary).
    """
    conductor = np.array([int(node.rsplit(".", 1)[1]) for node in net.ids])
    floating = np.zeros(net.n, dtype=bool)
    for island in net.floating:
        floating[island] = True
    return (np.abs(v_nodes) >= DEAD_PU) & (conductor >= 1) & (conductor <= 3) & ~floating[
        net.state_of]


def _jacobian(g: sp.csr_matrix, b: sp.csr_matrix, e, f, rows, cols) -> sp.csr_matrix:
    """d[P_rows; Q_rows] / d[e_cols; f_cols] of S = V conj(Y V), rectangular, with
    ``Y = g + j b``."""
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


Injection = dict[int, complex]
"""Complex power injected per state (p.u.) by one unit of a control."""


def _right_hand_sides(net: Network, free: np.ndarray,
                      injections: list[Injection]) -> tuple[np.ndarray, np.ndarray]:
    """``[dP; dQ]`` at the free states, one column per injection, and what each injects
    at the slack states (complex: the substation imports that much less); injections at
    de-energized states are dropped."""
    k = len(free)
    position = np.full(net.n, -1)
    position[free] = np.arange(k)
    slack_position = np.full(net.n, -1)
    slack_position[net.slack] = np.arange(len(net.slack))
    rhs = np.zeros((2 * k, len(injections)))
    at_slack = np.zeros((len(net.slack), len(injections)), dtype=complex)
    for j, injection in enumerate(injections):
        for state, value in injection.items():
            if position[state] >= 0:
                rhs[position[state], j] += value.real
                rhs[k + position[state], j] += value.imag
            elif slack_position[state] >= 0:
                at_slack[slack_position[state], j] += value
    return rhs, at_slack


def _control_injections(net: Network, devices: Devices) -> list[Injection]:
    """1 kW and 1 kvar injected by each PV system, then 1 kW of each load shed (with
    its kvar), in p.u."""
    angles = np.degrees(np.angle(net.v_start[net.state_of]))

    def injection(nodes: list[str], s_kva: complex, delta: bool = False) -> Injection:
        out: Injection = {}
        shares = share_factors(delta, [angles[net.index[node]] for node in nodes])
        for node, share in zip(nodes, shares):
            state = int(net.state_of[net.index[node]])
            out[state] = out.get(state, 0.0) + share * s_kva / net.s_base_kva
        return out

    return ([injection(nodes, 1.0) for nodes in devices.pv_nodes]
            + [injection(nodes, 1.0j) for nodes in devices.pv_nodes]
            + [injection(nodes, complex(1.0, float(ratio)), delta) for nodes, ratio, delta
               in zip(devices.load_nodes, devices.load_pf_ratio, devices.load_delta)])


def _discrete_injections(net: Network, v: np.ndarray,
                         discrete: DiscreteDevices) -> list[Injection]:
    """``-dS = -V conj(dY V)`` (p.u.) of one tap step up per regulator, then of closing
    each capacitor bank (module doc)."""
    states = lambda nodes: np.array([net.state_of[net.index[n]] for n in nodes])  # noqa: E731
    out: list[Injection] = []
    for j, (primary, secondary) in enumerate(discrete.tap_nodes):
        p, s = states(primary), states(secondary)
        y_ps = net.y[p][:, s].toarray()
        t, step = discrete.tap_ratio[j], discrete.tap_step[j]
        d_ps, d_ss = -y_ps / t * step, 2.0 * y_ps / t**2 * step
        di_p = d_ps @ v[s]
        di_s = d_ps.T @ v[p] + d_ss @ v[s]
        injection: Injection = {}
        for state, ds in zip(np.concatenate([p, s]),
                             np.concatenate([v[p] * np.conj(di_p), v[s] * np.conj(di_s)])):
            injection[int(state)] = injection.get(int(state), 0.0) - complex(ds)
        out.append(injection)
    for j, nodes in enumerate(discrete.cap_nodes):
        injection = {}
        for state in states(nodes):
            injection[int(state)] = injection.get(int(state), 0.0) + 1j * discrete.cap_b_pu[
                j] * abs(v[state]) ** 2
        out.append(injection)
    return out
