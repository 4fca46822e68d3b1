"""The DOPF federate's loop: operating point in, linear model, solve, setpoints out.

Timing: periodic (every ``timing.period_steps`` steps) at offset 3 s, after the feeder (0 s),
sensor (1 s) and estimator (2 s) of the same step; the feeder applies the setpoints at its
next step. Each solve re-linearizes at the latest operating point, which is how a closed
loop corrects the linear model's error from one step to the next.

The problem's variables are absolute: curtailment below the PV's availability, reactive
output, load shed below demand. The operating point already includes the setpoints in
force, so its voltages are first brought back to "no curtailment, no shedding" with the same
linear model before the problem is built. A solve that fails or is infeasible leaves the
setpoints in force unchanged and says why in ``diagnostics``; it never stops the federation.
"""

from __future__ import annotations

import logging

import numpy as np
from gridsim.federates.dopf.algorithms import make
from gridsim.federates.dopf.problem import DOPFProblem, Solution
from gridsim.federates.dopf.sensitivity import Devices, LinearModel, linearize

from gridsim import messages as m
from gridsim.network import Network
from gridsim.runtime import FederateRuntime

log = logging.getLogger("gridsim.dopf")

_PORTS = ("topology", "voltages_magnitude", "voltages_angle", "pv_states", "load_states")
LIFT_KW = 1e6
"""A curtailment limit this high lifts any limit (the feeder clips it at Pmpp)."""


def run(rt: FederateRuntime) -> dict:
    """Solve every period; returns the summary part."""
    p = rt.parameters
    algorithm = make(p["algorithm"])
    latest: dict[str, m.Message] = {}
    net: Network | None = None
    previous: Solution | None = None
    record = _Record(rt.step_s)
    rt.enter()
    for _, granted in rt.step_times():
        t = rt.step_index(granted) * rt.step_s
        for port in _PORTS:
            for _, msg in rt.updates(port):
                latest[port] = msg
        missing = [port for port in _PORTS if port not in latest]
        if missing:
            rt.publish("diagnostics", m.DOPFDiagnostics(
                time_s=t, algorithm=algorithm.name, status="skipped", applied=False,
                reason=f"nothing received yet on {', '.join(missing)}"))
            continue
        if net is None or net.revision != latest["topology"].revision:
            net = Network.from_topology(latest["topology"])
        pv, loads = latest["pv_states"], latest["load_states"]
        v_nodes = operating_point(net, latest["voltages_magnitude"], latest["voltages_angle"])
        model = linearize(net, v_nodes, Devices.from_states(net, pv, loads))
        problem = build_problem(model, pv, loads, p)
        solution = algorithm.solve(problem, warm_start=previous)
        applied = solution.status == "optimal"
        if applied:
            _publish_setpoints(rt, t, pv, loads, solution, p["flexible_loads"])
            previous = solution
        else:
            log.warning("t=%.0f s: %s solve %s; setpoints in force kept", t, algorithm.name,
                        solution.status)
        predicted = problem.voltages_pu(solution.x) if applied else None
        rt.publish("diagnostics", m.DOPFDiagnostics(
            time_s=t, algorithm=algorithm.name, status=solution.status, applied=applied,
            reason="" if applied else f"{solution.status}: setpoints in force kept",
            objective=solution.objective if np.isfinite(solution.objective) else None,
            iterations=solution.iterations, solve_time_s=solution.solve_time_s,
            curtailment_kw=float(solution.curt.sum()), shed_kw=float(solution.shed.sum()),
            v_max_pu=float(model.v0.max()),
            v_max_predicted_pu=float(predicted.max()) if predicted is not None else None))
        record.add(solution, applied, model.v0, pv, p["v_max"])
    rt.timing["solve_s_per_step"] = record.solve_s
    return {"algorithm": algorithm.name, **record.summary()}


def operating_point(net: Network, magnitude: m.VoltagesMagnitude,
                     angle: m.VoltagesAngle) -> np.ndarray:
    """Complex node voltages (p.u.) from the estimate; nodes it lacks take no-load values."""
    v = net.v_start[net.state_of].copy()
    angles = dict(zip(angle.ids, angle.values))
    for node, mag in zip(magnitude.ids, magnitude.values):
        i = net.index.get(node)
        if i is not None and node in angles:
            v[i] = mag * np.exp(1j * np.radians(angles[node]))
    return v


def build_problem(model: LinearModel, pv: m.PVStates, loads: m.LoadStates, p: dict) -> DOPFProblem:
    """The DOPF instance, its voltages brought back to no curtailment and no shedding."""
    available = np.asarray(pv.available_kw)
    curt_now = np.clip(available - np.asarray(pv.p_kw), 0.0, None)
    demand = np.asarray(loads.demand_kw)
    shed_now = np.clip(demand - np.asarray(loads.p_kw), 0.0, None) * np.array(
        [cap is not None for cap in loads.cap_kw])
    flexible = flexible_positions(loads, p["flexible_loads"])
    v_free = model.v0 + model.vp @ curt_now - model.vs @ shed_now
    return DOPFProblem(
        v0_pu=v_free, vp_pu_per_kw=model.vp, vq_pu_per_kvar=model.vq,
        vs_pu_per_kw=model.vs[:, flexible], available_kw=available,
        kva_rating=np.asarray(pv.kva_rating), q0_kvar=np.asarray(pv.q_kvar),
        shed_max_kw=p["shed_max_fraction"] * demand[flexible],
        v_min_pu=p["v_min"], v_max_pu=p["v_max"], c_curt=p["cost_curtailment"],
        c_shed=p["cost_shedding"], w_q=p["weight_reactive"])


def flexible_positions(loads: m.LoadStates, flexible: list[str]) -> np.ndarray:
    """Positions in `loads` of the flexible loads: only they are variables of the problem
    (every other load's shed would be a variable fixed at 0; on IEEE 123 those 91 columns
    of voltage sensitivities tripled the central solver's time)."""
    wanted = set(flexible)
    return np.array([i for i, load in enumerate(loads.ids) if load in wanted], dtype=int)


def _publish_setpoints(rt: FederateRuntime, t: float, pv: m.PVStates, loads: m.LoadStates,
                       solution: Solution, flexible: list[str]) -> None:
    available = np.asarray(pv.available_kw)
    limits = [float(a - c) if c > 0.01 else LIFT_KW for a, c in zip(available, solution.curt)]
    rt.publish("pv_setpoints", m.PVSetpoints(time_s=t, ids=list(pv.ids), p_max_kw=limits,
                                             q_kvar=[float(q) for q in solution.q]))
    positions = flexible_positions(loads, flexible)
    if len(positions):
        ids = [loads.ids[i] for i in positions]
        caps = [float(loads.demand_kw[i] - shed) if shed > 0.01 else None
                for i, shed in zip(positions, solution.shed)]
        rt.publish("load_caps", m.LoadCaps(time_s=t, ids=ids, cap_kw=caps))


class _Record:
    """Deterministic figures of the DOPF's run, for summary.json."""

    def __init__(self, step_s: float):
        self.step_h = step_s / 3600.0
        self.statuses: dict[str, int] = {}
        self.objective: list[float | None] = []
        self.v_max_seen: list[float] = []
        self.curtailed_kwh = 0.0
        self.violations = 0
        self.solve_s: list[float] = []

    def add(self, solution: Solution, applied: bool, v0: np.ndarray, pv: m.PVStates,
            v_max: float) -> None:
        self.statuses[solution.status] = self.statuses.get(solution.status, 0) + 1
        self.objective.append(float(solution.objective) if applied else None)
        self.v_max_seen.append(float(v0.max()))
        self.violations += bool(v0.max() > v_max + 1e-9)
        available, output = np.asarray(pv.available_kw), np.asarray(pv.p_kw)
        self.curtailed_kwh += float(np.clip(available - output, 0, None).sum()) * self.step_h
        self.solve_s.append(solution.solve_time_s)

    def summary(self) -> dict:
        return {"solves": len(self.objective), "statuses": self.statuses,
                "objective_per_step": self.objective, "v_max_seen_pu": self.v_max_seen,
                "steps_above_v_max": self.violations,
                "curtailed_energy_kwh": self.curtailed_kwh}
