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
from dataclasses import dataclass

import numpy as np

from gridsim import messages as m
from gridsim.federates.dopf.algorithms import make
from gridsim.federates.dopf.discrete import DiscreteProblem, solve_discrete
from gridsim.federates.dopf.problem import DOPFProblem, Solution
from gridsim.federates.dopf.sensitivity import (
    Devices,
    DiscreteDevices,
    LinearModel,
    linearize,
)
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
    ports = _PORTS + (("regulator_states",) if p["controlled_regulators"] else ()) + (
        ("capacitor_states",) if p["controlled_capacitors"] else ())
    latest: dict[str, m.Message] = {}
    net: Network | None = None
    previous: Solution | None = None
    pv_before: m.PVStates | None = None
    record = _Record(rt.step_s)
    rt.enter()
    for _, granted in rt.step_times():
        t = rt.step_index(granted) * rt.step_s
        for port in ports:
            for _, msg in rt.updates(port):
                latest[port] = msg
        for _, policy in rt.updates("policy") if rt.connected("policy") else []:
            p = {**p, "v_min": policy.v_min_pu, "v_max": policy.v_max_pu}
        missing = [port for port in ports if port not in latest]
        if missing:
            rt.publish("diagnostics", m.DOPFDiagnostics(
                time_s=t, algorithm=algorithm.name, status="skipped", applied=False,
                reason=f"nothing received yet on {', '.join(missing)}"))
            continue
        if net is None or net.revision != latest["topology"].revision:
            net = Network.from_topology(latest["topology"])
        step = solve_step(net, latest, p, algorithm, previous,
                          forecast(latest["pv_states"], pv_before, p["pv_forecast"]))
        pv_before = latest["pv_states"]
        solution = step.solution
        applied = solution.status == "optimal"
        if applied:
            _publish_setpoints(rt, t, latest["pv_states"], latest["load_states"], solution,
                               p["flexible_loads"], step.problem.available_kw)
            _publish_discrete(rt, t, step)
            previous = solution
        else:
            log.warning("t=%.0f s: %s solve %s; setpoints in force kept", t, algorithm.name,
                        solution.status)
        predicted = (step.problem.voltages_pu(solution.x)[step.problem.limited]
                     if applied else None)
        rt.publish("diagnostics", m.DOPFDiagnostics(
            time_s=t, algorithm=algorithm.name, status=solution.status, applied=applied,
            reason="" if applied else f"{solution.status}: setpoints in force kept",
            objective=step.objective if np.isfinite(step.objective) else None,
            iterations=solution.iterations, solve_time_s=step.solve_time_s,
            curtailment_kw=float(solution.curt.sum()), shed_kw=float(solution.shed.sum()),
            tap_moves=step.tap_moves if applied else 0,
            capacitor_switches=step.capacitor_switches if applied else 0,
            v_max_pu=float(step.v0.max()),
            v_max_predicted_pu=float(predicted.max()) if predicted is not None else None))
        record.add(step, applied, latest["pv_states"], p["v_max"])
    rt.timing["solve_s_per_step"] = record.solve_s
    return {"algorithm": algorithm.name, **record.summary()}


@dataclass
class Step:
    """One DOPF solve: the problem as solved and what was decided."""

    problem: DOPFProblem
    """The continuous problem of the chosen discrete settings (the base problem if none)."""
    solution: Solution
    objective: float
    """Objective, with the discrete devices' operation costs."""
    solve_time_s: float
    v0: np.ndarray
    """|V| at the operating point of the nodes the DOPF limits, p.u."""
    discrete: DiscreteDevices | None = None
    taps: np.ndarray | None = None
    caps: np.ndarray | None = None

    @property
    def tap_moves(self) -> int:
        if self.discrete is None:
            return 0
        return int(np.abs(self.taps - self.discrete.tap_position).sum())

    @property
    def capacitor_switches(self) -> int:
        if self.discrete is None:
            return 0
        return int(np.abs(self.caps - self.discrete.cap_state).sum())


def solve_step(net: Network, latest: dict[str, m.Message], p: dict, algorithm,
               previous: Solution | None = None,
               available_next_kw: np.ndarray | None = None) -> Step:
    """Linearize at the latest operating point and solve, with the discrete devices the
    parameters list (`gridsim.federates.dopf.discrete`), if any, for the PV availability
    `available_next_kw` (None: as it is now)."""
    pv, loads = latest["pv_states"], latest["load_states"]
    v_nodes = operating_point(net, latest["voltages_magnitude"], latest["voltages_angle"])
    discrete = None
    if p["controlled_regulators"] or p["controlled_capacitors"]:
        discrete = DiscreteDevices.from_states(
            net, latest.get("regulator_states"), latest.get("capacitor_states"),
            p["controlled_regulators"], p["controlled_capacitors"])
    model = linearize(net, v_nodes, Devices.from_states(net, pv, loads, p["flexible_loads"]),
                      discrete)
    problem = build_problem(model, pv, loads, p, available_next_kw)
    if discrete is None:
        solution = algorithm.solve(problem, warm_start=previous)
        return Step(problem, solution, solution.objective, solution.solve_time_s,
                    model.v0[model.limited])
    mixed = DiscreteProblem(
        problem, model.vt, discrete.tap_position,
        np.maximum(discrete.tap_position - p["max_tap_move"], -discrete.tap_limit),
        np.minimum(discrete.tap_position + p["max_tap_move"], discrete.tap_limit),
        model.vc, discrete.cap_state, model.psub_t, model.psub_c,
        c_tap=p["cost_tap"], c_cap=p["cost_capacitor"])
    result = solve_discrete(mixed, algorithm, warm_start=previous)
    return Step(mixed.fixed(result.taps, result.caps), result.solution, result.objective,
                result.solve_time_s, model.v0[model.limited], discrete, result.taps,
                result.caps)


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


def build_problem(model: LinearModel, pv: m.PVStates, loads: m.LoadStates, p: dict,
                  available_next_kw: np.ndarray | None = None) -> DOPFProblem:
    """The DOPF instance, its voltages brought back to no curtailment and no shedding of
    the flexible loads, and moved to the PV availability expected when the setpoints apply
    (`forecast`), if given. Nodes the DOPF does not limit (`LinearModel.limited`: dead,
    neutral, floating) have no limits (``inf``).

    `model` needs a shed column for every flexible load (`Devices.from_states` with
    ``p["flexible_loads"]``; more columns are ignored). A cap on any other load (set by
    another federate) is not the DOPF's to lift: it stays part of the operating point.
    """
    available = np.asarray(pv.available_kw)
    curt_now = np.clip(available - np.asarray(pv.p_kw), 0.0, None)
    flexible = flexible_positions(loads, p["flexible_loads"])
    columns = _load_columns(model, [loads.ids[i] for i in flexible])
    demand = np.asarray(loads.demand_kw)[flexible]
    shed_now = np.clip(demand - np.asarray(loads.p_kw)[flexible], 0.0, None) * np.array(
        [loads.cap_kw[i] is not None for i in flexible], dtype=bool)
    vs = model.vs[:, columns]
    v_free = model.v0 + model.vp @ curt_now - vs @ shed_now
    if available_next_kw is not None:
        v_free = v_free + model.vp @ (available_next_kw - available)
        available = available_next_kw
    return DOPFProblem(
        v0_pu=v_free, vp_pu_per_kw=model.vp, vq_pu_per_kvar=model.vq,
        vs_pu_per_kw=vs, available_kw=available,
        kva_rating=np.asarray(pv.kva_rating), q0_kvar=np.asarray(pv.q_kvar),
        shed_max_kw=p["shed_max_fraction"] * demand,
        v_min_pu=np.where(model.limited, p["v_min"], -np.inf),
        v_max_pu=np.where(model.limited, p["v_max"], np.inf),
        c_curt=p["cost_curtailment"],
        c_shed=p["cost_shedding"], w_q=p["weight_reactive"])


def _load_columns(model: LinearModel, load_ids: list[str]) -> np.ndarray:
    """Positions of `load_ids` among the model's shed columns."""
    position = {load: j for j, load in enumerate(model.load_ids)}
    missing = [load for load in load_ids if load not in position]
    if missing:
        raise ValueError(f"the linear model has no shed column for flexible loads {missing}: "
                         f"build Devices with them")
    return np.array([position[load] for load in load_ids], dtype=int)


def forecast(pv: m.PVStates, previous: m.PVStates | None, method: str) -> np.ndarray | None:
    """PV availability expected at the next step, when the setpoints apply (kW).

    ``"trend"``: the last step's change continued once, kept within [0, 2 x now] (a morning
    ramp gains about 0.0035 p.u. per step on the DOPF scenario, which a controller acting
    on the present alone lets through for hours). ``"none"``: availability stays as it is
    (returns None).
    """
    if method == "none" or previous is None or list(previous.ids) != list(pv.ids):
        return None
    now = np.asarray(pv.available_kw)
    return np.clip(2.0 * now - np.asarray(previous.available_kw), 0.0, 2.0 * now)


def flexible_positions(loads: m.LoadStates, flexible: list[str]) -> np.ndarray:
    """Positions in `loads` of the flexible loads: only they are variables of the problem
    (every other load's shed would be a variable fixed at 0; on IEEE 123 those 91 columns
    of voltage sensitivities tripled the central solver's time)."""
    wanted = set(flexible)
    return np.array([i for i, load in enumerate(loads.ids) if load in wanted], dtype=int)


def _publish_discrete(rt: FederateRuntime, t: float, step: Step) -> None:
    """Positions of every controlled regulator and bank, moved or not (a command also
    disables the device's own control in the feeder)."""
    d = step.discrete
    if d is None:
        return
    if d.n_tap:
        rt.publish("tap_commands", m.TapCommands(time_s=t, ids=d.tap_ids,
                                                 taps=[int(x) for x in step.taps]))
    if d.n_cap:
        rt.publish("capacitor_commands", m.CapacitorCommands(
            time_s=t, ids=d.cap_ids, states=[int(x) for x in step.caps]))


def _publish_setpoints(rt: FederateRuntime, t: float, pv: m.PVStates, loads: m.LoadStates,
                       solution: Solution, flexible: list[str], available: np.ndarray) -> None:
    """PV limits (availability the problem planned for, less curtailment) and load caps."""
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
        self.tap_moves = 0
        self.capacitor_switches = 0
        self.solve_s: list[float] = []

    def add(self, step: Step, applied: bool, pv: m.PVStates, v_max: float) -> None:
        solution, v0 = step.solution, step.v0
        self.statuses[solution.status] = self.statuses.get(solution.status, 0) + 1
        self.objective.append(float(step.objective) if applied else None)
        self.v_max_seen.append(float(v0.max()))
        self.violations += bool(v0.max() > v_max + 1e-9)
        if applied:
            self.tap_moves += step.tap_moves
            self.capacitor_switches += step.capacitor_switches
        available, output = np.asarray(pv.available_kw), np.asarray(pv.p_kw)
        self.curtailed_kwh += float(np.clip(available - output, 0, None).sum()) * self.step_h
        self.solve_s.append(step.solve_time_s)

    def summary(self) -> dict:
        return {"solves": len(self.objective), "statuses": self.statuses,
                "objective_per_step": self.objective, "v_max_seen_pu": self.v_max_seen,
                "steps_above_v_max": self.violations,
                "curtailed_energy_kwh": self.curtailed_kwh, "tap_moves": self.tap_moves,
                "capacitor_switches": self.capacitor_switches}
