"""The feeder's network model: admittance without loads, for topology and injections.

A second OpenDSS context holds the same circuit with every power-conversion element (loads,
PV, storage, generators) and the source disabled, so its system admittance matrix is the
network alone: lines, switches, transformers, regulators at their current taps, capacitors
in their current states. Keeping it in its own context never disturbs the main solve.
"""

from __future__ import annotations

import os

import numpy as np
import opendssdirect as dss
import scipy.sparse as sp

from gridsim.feeders import FeederSource

_PC_CLASSES = ("Load", "PVSystem", "Storage", "Generator")


def compile_into(ctx, source: FeederSource) -> None:
    """Compile `source` (master file, then overlays) into the OpenDSS context `ctx`.

    Read with ``redirect``, not ``compile``: ``compile`` moves OpenDSS's output folder
    (``DataPath``) to the master file's folder, so exports and monitor files of a user's
    model landed beside it (in an installed package, for a bundled feeder). With
    ``redirect`` they go to the process's working directory, the run directory for a
    federate; the master's own relative paths still resolve from its folder. Changing the
    process's directory is not allowed either.
    """
    ctx.Basic.AllowChangeDir(False)
    ctx.Basic.DataPath(os.getcwd())  # OpenDSS's own is where the process first loaded it
    ctx.Text.Command(f'redirect "{source.master}"')
    for overlay in source.scripts:
        ctx.Text.Command(f'redirect "{overlay}"')


class NetworkModel:
    """The network admittance matrix and base voltages of a feeder, tracking taps and caps."""

    def __init__(self, source: FeederSource):
        self.ctx = dss.NewContext()
        compile_into(self.ctx, source)
        self.ctx.Solution.Solve()  # OpenDSS numbers the nodes of elements only once solved
        self.device_nodes = self._device_nodes()
        self.branches = self._line_branches()
        for cls in _PC_CLASSES:
            self.ctx.Circuit.SetActiveClass(cls)
            for name in self.ctx.ActiveClass.AllNames():
                self.ctx.Text.Command(f"{cls}.{name}.enabled=no")
        self.ctx.Text.Command("set mode=snapshot controlmode=off")
        self.ctx.Solution.Solve()
        names = [n.lower() for n in self.ctx.Circuit.AllNodeNames()]
        volts = np.asarray(self.ctx.Circuit.AllBusVolts()).view(complex)
        self.base_v = self._node_bases(names)
        self.noload_angle_deg = dict(zip(names, np.degrees(np.angle(volts))))
        self.slack_nodes = self._slack_nodes()
        self.ctx.Text.Command("Vsource.source.enabled=no")
        self.revision = -1
        self.ids: list[str] = []
        self.y = sp.csc_matrix((0, 0), dtype=complex)

    def _terminal_nodes(self) -> list[list[str]]:
        """Node id of each conductor of each terminal of the active element ("" = ground)."""
        buses = [b.split(".")[0].lower() for b in self.ctx.CktElement.BusNames()]
        order = list(self.ctx.CktElement.NodeOrder())
        k = len(order) // len(buses)
        return [[f"{bus}.{n}" if n else "" for n in order[t * k:(t + 1) * k]]
                for t, bus in enumerate(buses)]

    def _device_nodes(self) -> list[str]:
        """Nodes where an enabled load, PV system, storage or generator connects."""
        nodes: set[str] = set()
        for cls in _PC_CLASSES:
            self.ctx.Circuit.SetActiveClass(cls)
            for name in self.ctx.ActiveClass.AllNames():
                self.ctx.Circuit.SetActiveElement(f"{cls}.{name}")
                if self.ctx.CktElement.Enabled():
                    nodes.update(n for n in self._terminal_nodes()[0] if n)
        return sorted(nodes)

    def _line_branches(self) -> list[dict]:
        """Every enabled line: name, node ids of both terminals, primitive admittance (S)."""
        branches = []
        more = self.ctx.Lines.First()
        while more:
            from_nodes, to_nodes = self._terminal_nodes()
            yprim = np.asarray(self.ctx.CktElement.YPrim())
            branches.append({"name": self.ctx.Lines.Name().lower(), "from_nodes": from_nodes,
                             "to_nodes": to_nodes,
                             "yprim": list(zip(yprim[0::2].tolist(), yprim[1::2].tolist()))})
            more = self.ctx.Lines.Next()
        return branches

    def _node_bases(self, names: list[str]) -> dict[str, float]:
        """Line-to-neutral base voltage of every node, V."""
        bases: dict[str, float] = {}
        for bus in self.ctx.Circuit.AllBusNames():
            self.ctx.Circuit.SetActiveBus(bus)
            kv = self.ctx.Bus.kVBase() * 1000.0
            for node in self.ctx.Bus.Nodes():
                bases[f"{bus.lower()}.{node}"] = kv
        return {n: bases[n] for n in names}

    def _slack_nodes(self) -> list[str]:
        self.ctx.Circuit.SetActiveElement("Vsource.source")
        bus = self.ctx.CktElement.BusNames()[0].split(".")[0].lower()
        return [n for n in self.base_v if n.split(".")[0] == bus]

    def update(self, taps: dict[str, float], cap_states: dict[str, list[int]]) -> None:
        """Mirror regulator taps (transformer -> winding-2 tap, p.u.) and capacitor states,
        then rebuild the admittance matrix."""
        for transformer, tap in taps.items():
            self.ctx.Transformers.Name(transformer)
            self.ctx.Transformers.Wdg(2)
            self.ctx.Transformers.Tap(tap)
        for cap, states in cap_states.items():
            self.ctx.Capacitors.Name(cap)
            self.ctx.Capacitors.States(list(states))
        self.ctx.YMatrix.BuildYMatrixD(2, False)
        data, indices, indptr = self.ctx.YMatrix.getYsparse()
        if len(indptr) - 1 != len(self.ids):
            # Taps and capacitor states change values, never the nodes or their order, so
            # the order is read once (reading it took 0.17 ms, longer than the rebuild).
            self.ids = [n.lower() for n in self.ctx.Circuit.YNodeOrder()]
        self.y = sp.csc_matrix((data, indices, indptr), shape=(len(self.ids),) * 2)
        self.revision += 1

    def injections(self, voltages: np.ndarray) -> np.ndarray:
        """Complex power injected into the network at each node (VA), for voltages in V.

        `voltages` follows `self.ids`. S = V * conj(Y V): what loads, PV and the source put
        into the network, exact to the power flow's convergence tolerance.
        """
        return voltages * np.conj(self.y @ voltages)
