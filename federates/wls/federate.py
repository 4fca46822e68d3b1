"""The WLS estimator federate's loop: latest measurements in, one estimate out per step.

Timing: periodic every step at offset 2 s, after the feeder (0 s) and the sensor (1 s) of
the same step. The network model is rebuilt when a new topology revision arrives, warm
starting from the previous estimate node by node.

A numerical failure of one estimate (`EstimationError`: a singular system, a non-finite
step) does not stop the federate: that step publishes diagnostics with ``converged`` false
and the reason in ``error``, and no voltages (nothing trustworthy to publish); the next
step starts again from the no-load voltages.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from gridsim import messages as m
from gridsim.federates.wls.estimator import EstimationError, Settings, WLSEstimator
from gridsim.federates.wls.measurements import MeasurementBuilder, P, Q
from gridsim.network import Network
from gridsim.runtime import FederateRuntime
from gridsim.scoring import Score, phasors

log = logging.getLogger("gridsim.wls")

_PORTS = ("topology", "voltages_magnitude", "powers_real", "powers_imag", "voltages_angle",
          "branch_powers_real", "branch_powers_imag", "truth_voltages_magnitude",
          "truth_voltages_angle")


def run(rt: FederateRuntime) -> dict:
    """Estimate every step; returns the summary part."""
    p = rt.parameters
    settings = Settings(max_iterations=p["max_iterations"], tolerance=p["tolerance"],
                        chi2_confidence=p["chi2_confidence"], lnr_threshold=p["lnr_threshold"],
                        max_removals=p["max_removals"] if p["bad_data"] else 0)
    latest: dict[str, object] = {}
    estimator: WLSEstimator | None = None
    score, stats = Score(), _Stats()
    solve_times: list[float] = []
    rt.enter()
    for _, granted in rt.step_times():
        t = rt.step_index(granted) * rt.step_s  # the time of the data estimated
        for port in _PORTS:
            for _, msg in rt.updates(port):
                latest[port] = msg
        if "topology" not in latest or "voltages_magnitude" not in latest:
            continue
        if estimator is None or estimator.net.revision != latest["topology"].revision:
            estimator = rebuild_estimator(estimator, latest["topology"], p["s_base_kva"], settings)
        t0 = time.perf_counter()
        ms = measurement_set(estimator.net, latest)
        try:
            result = estimator.estimate(ms)
        except EstimationError as exc:
            solve_times.append(time.perf_counter() - t0)
            log.warning("t=%gs: estimate failed: %s", t, exc)
            stats.fail()
            rt.publish("diagnostics", m.EstimatorDiagnostics(
                time_s=t, algorithm="wls", converged=False, iterations=0,
                measurements=len(ms), solve_time_s=solve_times[-1], error=str(exc)))
            continue
        solve_times.append(time.perf_counter() - t0)
        net = estimator.net
        unobservable = set(net.nodes_of(result.unobservable))
        keep = [i for i, node in enumerate(net.ids) if node not in unobservable]
        ids = [net.ids[i] for i in keep]
        v = net.node_voltages(result.v)[keep]
        magnitude = m.VoltagesMagnitude(time_s=t, ids=ids, values=np.abs(v).tolist(), units="pu")
        angle = m.VoltagesAngle(time_s=t, ids=ids, values=np.degrees(np.angle(v)).tolist(),
                                units="deg")
        rt.publish("voltages_magnitude", magnitude)
        rt.publish("voltages_angle", angle)
        rt.publish("diagnostics", m.EstimatorDiagnostics(
            time_s=t, algorithm="wls", converged=result.converged,
            iterations=result.iterations, objective=result.objective,
            chi2_threshold=result.chi2_threshold, degrees_of_freedom=result.dof,
            measurements=len(result.measurements), removed=result.removed,
            unobservable_nodes=sorted(unobservable),
            solve_time_s=solve_times[-1]))
        stats.add(result)
        if "truth_voltages_magnitude" in latest and "truth_voltages_angle" in latest:
            score.add(phasors(magnitude, angle), phasors(latest["truth_voltages_magnitude"],
                                                         latest["truth_voltages_angle"]))
    rt.timing["solve_s_per_step"] = solve_times
    if solve_times:
        rt.timing["solve_s_median"] = float(np.median(solve_times))
    return {"algorithm": "wls", **stats.summary(), **score.summary()}


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


def measurement_set(net: Network, latest: dict):
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


class _Stats:
    """Deterministic figures of the estimator's run."""

    def __init__(self):
        self.steps = 0
        self.not_converged = 0
        self.failed = 0
        self.removed: list[str] = []
        self.max_unobservable = 0
        self.iterations: list[int] = []

    def add(self, result) -> None:
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
