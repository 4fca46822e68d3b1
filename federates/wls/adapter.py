"""The WLS estimator's messages: measurements in, estimate and diagnostics out (no HELICS).

What the estimator loop (`federate.py`) and the offline chain (`federates/chain.py`)
share: the settings, the estimator rebuilt on a new topology revision (warm-started node by
node), the measurement set of a step from the sensor's messages, and the messages of an
estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gridsim import messages as m
from gridsim.federates.wls.estimator import Estimate, Settings, WLSEstimator
from gridsim.federates.wls.measurements import MeasurementBuilder, MeasurementSet, P, Q
from gridsim.network import Network

NEEDED = ("topology", "voltages_magnitude")
"""Inputs without which no estimate is made (`gridsim.loop`'s rule for missing inputs)."""

PORTS = ("topology", "voltages_magnitude", "powers_real", "powers_imag", "voltages_angle",
         "branch_powers_real", "branch_powers_imag", "truth_voltages_magnitude",
         "truth_voltages_angle")


@dataclass(frozen=True)
class WLSSettings:
    """The estimator federate's parameters, parsed."""

    s_base_kva: float = 1000.0
    estimator: Settings = field(default_factory=Settings)

    @classmethod
    def from_parameters(cls, p: Mapping) -> WLSSettings:
        return cls(p["s_base_kva"], Settings(
            max_iterations=p["max_iterations"], tolerance=p["tolerance"],
            chi2_confidence=p["chi2_confidence"], lnr_threshold=p["lnr_threshold"],
            max_removals=p["max_removals"] if p["bad_data"] else 0,
            uncertainty=p["uncertainty"]))


def rebuild_estimator(old: WLSEstimator | None, topology: m.Topology, s_base_kva: float,
                      settings: Settings) -> WLSEstimator:
    """An estimator on the new topology, warm-started from `old` where nodes match."""
    net = Network.from_topology(topology, s_base_kva)
    estimator = WLSEstimator(net, settings)
    if old is not None:
        n_old, n = old.net.n, net.n
        for node, i in net.index.items():
            j = old.net.index.get(node)
            if j is not None:
                state, old_state = net.state_of[i], old.net.state_of[j]
                estimator.x[state] = old.x[old_state]
                estimator.x[state + n] = old.x[old_state + n_old]
    return estimator


def measurement_set(net: Network, latest: Mapping[str, m.Message]) -> MeasurementSet:
    """The step's measurement set from the latest message of each port."""
    b = MeasurementBuilder(net)
    vm = latest["voltages_magnitude"]
    b.voltages("voltages_magnitude", vm.ids, vm.values, _sigma(vm))
    for port, kind in (("powers_real", P), ("powers_imag", Q)):
        if port in latest:
            msg = latest[port]
            b.injections(port, kind, msg.ids, msg.values, _sigma(msg), msg.pseudo)
    if "voltages_angle" in latest:
        msg = latest["voltages_angle"]
        b.angles("voltages_angle", msg.ids, msg.values, _sigma(msg))
    for port, kind in (("branch_powers_real", P), ("branch_powers_imag", Q)):
        if port in latest:
            msg = latest[port]
            b.flows(port, kind, msg.ids, msg.values, _sigma(msg))
    return b.build()


def _sigma(msg: m.MeasurementArray) -> list[float]:
    """The accuracy of each value; a message without one is an error of the sender."""
    if msg.accuracy is None:
        raise ValueError(f"measurements without accuracy (units {msg.units}): the estimator "
                         "weights by sigma, so every value needs one")
    return msg.accuracy


def estimate_messages(net: Network, result: Estimate, t: float,
                      solve_time_s: float) -> dict[str, m.Message]:
    """Voltages of the observable nodes and the diagnostics of one estimate, by port.

    The |V| message carries each node's sigma (p.u., `uncertainty`) as its accuracy, or
    none when the estimate has none (not converged, or switched off).
    """
    unobservable = set(net.nodes_of(result.unobservable))
    keep = [i for i, node in enumerate(net.ids) if node not in unobservable]
    ids = [net.ids[i] for i in keep]
    v = net.node_voltages(result.v)[keep]
    sigma = None if result.vmag_sigma is None else \
        result.vmag_sigma[net.state_of[keep]].tolist()
    return {
        "voltages_magnitude": m.VoltagesMagnitude(time_s=t, ids=ids, values=np.abs(v).tolist(),
                                                  units="pu", accuracy=sigma),
        "voltages_angle": m.VoltagesAngle(time_s=t, ids=ids,
                                          values=np.degrees(np.angle(v)).tolist(), units="deg"),
        "diagnostics": m.EstimatorDiagnostics(
            time_s=t, algorithm="wls", converged=result.converged,
            iterations=result.iterations, objective=result.objective,
            chi2_threshold=result.chi2_threshold, degrees_of_freedom=result.dof,
            measurements=len(result.measurements), removed=result.removed,
            unobservable_nodes=sorted(unobservable), solve_time_s=solve_time_s),
    }


def failure_diagnostics(t: float, error: str, measurements: int = 0,
                        solve_time_s: float = 0.0) -> m.EstimatorDiagnostics:
    """Diagnostics of a step that published no estimate (numerical failure, or inputs
    that never arrived)."""
    return m.EstimatorDiagnostics(time_s=t, algorithm="wls", converged=False, iterations=0,
                                  measurements=measurements, solve_time_s=solve_time_s,
                                  error=error)


class EstimatorRecord:
    """Deterministic figures of the estimator's run."""

    def __init__(self):
        self.steps = 0
        self.not_converged = 0
        self.failed = 0
        self.removed: list[str] = []
        self.max_unobservable = 0
        self.iterations: list[int] = []

    def add(self, result: Estimate) -> None:
        self.steps += 1
        self.not_converged += not result.converged
        self.removed += result.removed
        self.max_unobservable = max(self.max_unobservable, len(result.unobservable))
        self.iterations.append(result.iterations)

    def fail(self) -> None:
        """A step whose estimate failed numerically (counted as not converged)."""
        self.failed += 1
        self.not_converged += 1

    def summary(self) -> dict:
        return {"estimates": self.steps, "not_converged": self.not_converged,
                "failed": self.failed,
                "removed_measurements": sorted(set(self.removed)),
                "removals": len(self.removed), "max_unobservable_nodes": self.max_unobservable,
                "iterations_mean": float(np.mean(self.iterations)) if self.iterations else 0.0}
