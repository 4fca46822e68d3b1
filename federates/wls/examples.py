"""Small three-phase networks with a known state and its exact measurements (pure numerics).

The estimator kit (`conformance`) and the WLS tests draw their networks here: three-phase
lines from one impedance matrix, a true state chosen at random, and measurements computed
from it without noise, so an estimator must give the state back. The default network::

    s (slack) ── l1 ── a ── l2 ── b (load)
                       └─── l3 ── c (load) ══ sw ══ d (load)

``a`` has no device (zero injection); ``sw`` is a switch-like line (1e-6 ohm), so ``c`` and
``d`` share one state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from gridsim import messages as m
from gridsim.federates.wls.measurements import MeasurementBuilder, MeasurementSet, P, Q
from gridsim.network import Network

BASE_V = 2401.8
PHASES = (1, 2, 3)
Z_LINE = np.array([[0.35 + 1.02j, 0.16 + 0.50j, 0.16 + 0.42j],
                   [0.16 + 0.50j, 0.34 + 1.05j, 0.15 + 0.38j],
                   [0.16 + 0.42j, 0.15 + 0.38j, 0.34 + 1.03j]])
"""Ohm, one line section."""
LINES = {"l1": ("s", "a", 1.0), "l2": ("a", "b", 0.8), "l3": ("a", "c", 1.2),
         "sw": ("c", "d", 1e-6)}
"""Line name -> (from bus, to bus, length in sections); below 1e-3 a line is switch-like."""
DEVICES = ("b", "c", "d")


def nodes(bus: str) -> list[str]:
    """The three phase nodes of `bus`."""
    return [f"{bus}.{p}" for p in PHASES]


def topology(lines: dict = LINES, devices: Iterable[str] = DEVICES) -> tuple[m.Topology,
                                                                              np.ndarray]:
    """A Topology message for `lines` with a device on each of `devices`, and its Y (S)."""
    buses = ["s"] + sorted({b for f, t, _ in lines.values() for b in (f, t)} - {"s"})
    ids = [n for bus in buses for n in nodes(bus)]
    index = {n: i for i, n in enumerate(ids)}
    y = np.zeros((len(ids), len(ids)), dtype=complex)
    branches = []
    for name, (f, t, length) in lines.items():
        z = Z_LINE * length if length >= 1e-3 else np.eye(3) * length
        ys = np.linalg.inv(z)
        yprim = np.block([[ys, -ys], [-ys, ys]])
        idx = [index[n] for n in nodes(f) + nodes(t)]
        y[np.ix_(idx, idx)] += yprim
        branches.append(m.BranchAdmittance(
            name=name, from_nodes=nodes(f), to_nodes=nodes(t),
            yprim=[(v.real, v.imag) for v in yprim.ravel()]))
    rows, cols = np.nonzero(y)
    angles = [0.0, -120.0, 120.0] * len(buses)
    msg = m.Topology(
        ids=ids,
        admittance=m.AdmittanceSparse(
            from_equipment=[ids[i] for i in rows], to_equipment=[ids[j] for j in cols],
            admittance_list=[(y[i, j].real, y[i, j].imag) for i, j in zip(rows, cols)]),
        base_voltage_magnitudes=m.VoltagesMagnitude(ids=ids, values=[BASE_V] * len(ids),
                                                    units="V"),
        base_voltage_angles=m.VoltagesAngle(ids=ids, values=angles, units="deg"),
        slack_bus=nodes("s"), branches=branches,
        device_nodes=[n for bus in devices for n in nodes(bus)])
    return msg, y


def true_state(msg: m.Topology, y: np.ndarray, seed: int = 0,
               lines: dict = LINES) -> np.ndarray:
    """Node voltages (V): slack at 1.02 p.u. and its angles, devices drawn near 0.97 p.u.
    (both ends of a switch equal), zero-injection nodes solved so that their current is
    exactly zero."""
    rng = np.random.default_rng(seed)
    ids = msg.ids
    n = len(ids)
    theta = np.radians(msg.base_voltage_angles.values)
    v = BASE_V * (0.97 + 0.02 * rng.standard_normal(n)) * np.exp(
        1j * (theta + 0.01 * rng.standard_normal(n)))
    slack = [ids.index(s) for s in msg.slack_bus]
    v[slack] = 1.02 * BASE_V * np.exp(1j * theta[slack])
    for f, t, length in lines.values():
        if length < 1e-3 and f"{t}.1" in ids:
            v[[ids.index(n) for n in nodes(t)]] = v[[ids.index(n) for n in nodes(f)]]
    zero = [i for i, node in enumerate(ids) if node not in msg.device_nodes and i not in slack]
    rest = [i for i in range(n) if i not in zero]
    v[zero] = -np.linalg.solve(y[np.ix_(zero, zero)], y[np.ix_(zero, rest)] @ v[rest])
    return v


def exact_measurements(net: Network, msg: m.Topology, y: np.ndarray, v: np.ndarray, *,
                       vmag_nodes: Sequence[str] | None = None, flows: Sequence[str] = (),
                       pmu_nodes: Sequence[str] = (), sigma: float = 1e-3) -> MeasurementSet:
    """Measurements computed from the true state `v` (V), without noise: |V| at
    `vmag_nodes` (default: every node; sigma p.u.), P and Q of every device node (100 sigma
    kW), both flows of each line of `flows` at its from end, and PMU angles (1e-3 deg)."""
    s_kva = v * np.conj(y @ v) / 1000.0
    ids = msg.ids
    b = MeasurementBuilder(net)
    vm_nodes = ids if vmag_nodes is None else vmag_nodes
    b.voltages("v", vm_nodes, [abs(v[ids.index(n)]) / BASE_V for n in vm_nodes],
               [sigma] * len(vm_nodes))
    devices = list(msg.device_nodes)
    b.injections("p", P, devices, [s_kva[ids.index(n)].real for n in devices],
                 [sigma * 100] * len(devices), None)
    b.injections("q", Q, devices, [s_kva[ids.index(n)].imag for n in devices],
                 [sigma * 100] * len(devices), None)
    for line in flows:
        branch = next(br for br in msg.branches if br.name == line)
        yprim = np.array([complex(*c) for c in branch.yprim]).reshape(6, 6)
        vb = np.array([v[ids.index(n)] for n in branch.from_nodes + branch.to_nodes])
        flow = vb[:3] * np.conj(yprim[:3] @ vb) / 1000.0
        labels = [f"{line}:{n}" for n in branch.from_nodes]
        b.flows("fp", P, labels, flow.real, [sigma * 100] * 3)
        b.flows("fq", Q, labels, flow.imag, [sigma * 100] * 3)
    b.angles("a", list(pmu_nodes), [np.degrees(np.angle(v[ids.index(n)])) for n in pmu_nodes],
             [1e-3] * len(pmu_nodes))
    return b.build()
