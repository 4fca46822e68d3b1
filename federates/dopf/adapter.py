"""The DOPF's messages: operating point and device states in, setpoints out (no HELICS).

What the DOPF loop (`federate.py`), the distopf peer and the benchmarks share: the settings,
one step of the seed's method from the latest messages (`solve_step`: operating point,
linear model, problem, solve, with the discrete devices if any), the setpoint and command
messages of a solution, and the run's record for summary.json.

The problem's variables are absolute: curtailment below the PV's availability, reactive
output, load shed below demand. The operating point already includes the setpoints in
force, so its voltages are first brought back to "no curtailment, no shedding" with the same
linear model before the problem is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np

from gridsim import messages as m
from gridsim.federates.dopf.algorithms import Algorithm
from gridsim.federates.dopf.discrete import DiscreteProblem, solve_discrete
from gridsim.federates.dopf.forecast import estimated_voltages, planned_load_drop
from gridsim.federates.dopf.problem import DOPFProblem, Solution
from gridsim.federates.dopf.sensitivity import (
    Devices,
    DiscreteDevices,
    LinearModel,
    linearize,
)
from gridsim.network import Network

LIFT_KW = 1e6
"""A curtailment limit this high lifts any limit (the feeder clips it at Pmpp)."""

CURTAIL_EPS_KW = 0.01
"""Curtailment below this is no order: the PV's limit is lifted (`step_messages`)."""

STATE_PORTS = ("topology", "voltages_magnitude", "voltages_angle", "pv_states", "load_states")
"""Inputs every step needs (`gridsim.loop`'s rule for missing inputs)."""


@dataclass(frozen=True)
class DOPFSettings:
    """The DOPF's parameters (component definition, where each is described), parsed."""

    algorithm: str = "central"
    pv_forecast: str = "trend"
    v_min: float = 0.95
    v_max: float = 1.05
    cost_curtailment: float = 1.0
    cost_shedding: float = 10.0
    weight_reactive: float = 1e-4
    flexible_loads: tuple[str, ...] = ()
    shed_max_fraction: float = 0.5
    controlled_regulators: tuple[str, ...] = ()
    controlled_capacitors: tuple[str, ...] = ()
    cost_tap: float = 2.0
    cost_capacitor: float = 5.0
    max_tap_move: int = 2
    voltage_margin_sigmas: float = 1.0

    @classmethod
    def from_parameters(cls, parameters: Mapping) -> DOPFSettings:
        """From the federate's parameters; names not given keep their defaults."""
        values = {f.name: parameters[f.name] for f in fields(cls) if f.name in parameters}
        for name in ("flexible_loads", "controlled_regulators", "controlled_capacitors"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def with_policy(self, policy: m.Policy) -> DOPFSettings:
        """The voltage limits of the regulator's policy in force."""
        return replace(self, v_min=policy.v_min_pu, v_max=policy.v_max_pu)

    @property
    def state_ports(self) -> tuple[str, ...]:
        """Inputs a step needs with these settings (device states of controlled devices)."""
        return STATE_PORTS + (("regulator_states",) if self.controlled_regulators else ()) + (
            ("capacitor_states",) if self.controlled_capacitors else ())


@dataclass
class SolvedStep:
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
    unestimated: list[str] = field(default_factory=list)
    """Nodes the estimate lacked: linearized at no-load, not limited (`forecast`)."""

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


def solve_step(net: Network, latest: Mapping[str, m.Message], s: DOPFSettings,
               algorithm: Algorithm, previous: Solution | None = None,
               available_next_kw: np.ndarray | None = None) -> SolvedStep:
    """Linearize at the latest operating point and solve, with the discrete devices the
    parameters list (`gridsim.federates.dopf.discrete`), if any, for the PV availability
    `available_next_kw` (None: as it is now) and the loads under the caps planned for the
    next step (``latest["planned_caps"]``, if any; `forecast.planned_load_drop`)."""
    pv, loads = latest["pv_states"], latest["load_states"]
    v_nodes, sigma, unestimated = estimated_voltages(net, latest["voltages_magnitude"],
                                                     latest["voltages_angle"])
    drop = planned_load_drop(loads, latest.get("planned_caps"))
    discrete = None
    if s.controlled_regulators or s.controlled_capacitors:
        discrete = DiscreteDevices.from_states(
            net, latest.get("regulator_states"), latest.get("capacitor_states"),
            s.controlled_regulators, s.controlled_capacitors)
    devices = Devices.from_states(net, pv, loads, {*s.flexible_loads, *drop})
    model = linearize(net, v_nodes, devices, discrete)
    estimated = np.ones(len(v_nodes), dtype=bool)
    estimated[[net.index[node] for node in unestimated]] = False
    problem = build_problem(model, pv, loads, s, available_next_kw, drop,
                            s.voltage_margin_sigmas * sigma, estimated)
    v0 = model.v0[model.limited & estimated]
    if discrete is None:
        solution = algorithm.solve(problem, warm_start=previous)
        return SolvedStep(problem, solution, solution.objective, solution.solve_time_s, v0,
                          unestimated=unestimated)
    mixed = DiscreteProblem(
        problem, model.vt, discrete.tap_position,
        np.maximum(discrete.tap_position - s.max_tap_move, -discrete.tap_limit),
        np.minimum(discrete.tap_position + s.max_tap_move, discrete.tap_limit),
        model.vc, discrete.cap_state, model.psub_t, model.psub_c,
        c_tap=s.cost_tap, c_cap=s.cost_capacitor)
    result = solve_discrete(mixed, algorithm, warm_start=previous)
    return SolvedStep(mixed.fixed(result.taps, result.caps), result.solution, result.objective,
                      result.solve_time_s, v0, discrete, result.taps, result.caps, unestimated)


def operating_point(net: Network, magnitude: m.VoltagesMagnitude,
                    angle: m.VoltagesAngle) -> np.ndarray:
    """Complex node voltages (p.u.) from the estimate (`forecast.estimated_voltages`)."""
    return estimated_voltages(net, magnitude, angle)[0]


def build_problem(model: LinearModel, pv: m.PVStates, loads: m.LoadStates, s: DOPFSettings,
                  available_next_kw: np.ndarray | None = None,
                  load_drop_kw: Mapping[str, float] | None = None,
                  margin_pu: np.ndarray | None = None,
                  estimated: np.ndarray | None = None) -> DOPFProblem:
    """The DOPF instance, its voltages brought back to no curtailment and no shedding of
    the flexible loads, and moved to the next step (`forecast`): to the PV availability
    expected then, if given, and by the planned drop of each load's draw
    (`load_drop_kw`, kW), if any. Nodes the DOPF does not limit (`LinearModel.limited`:
    dead, neutral, floating) and nodes not `estimated` have no limits (``inf``); the
    others' limits are tightened by `margin_pu` (p.u. per node, e.g. k standard deviations
    of the estimate).

    `model` needs a shed column for every flexible load and every load in `load_drop_kw`
    (`Devices.from_states`; more columns are ignored). A cap on any other load (set by
    another federate) is not the DOPF's to lift: it stays part of the operating point.
    """
    available = np.asarray(pv.available_kw)
    curt_now = np.clip(available - np.asarray(pv.p_kw), 0.0, None)
    flexible = flexible_positions(loads, s.flexible_loads)
    columns = _load_columns(model, [loads.ids[i] for i in flexible])
    demand = np.asarray(loads.demand_kw)[flexible]
    shed_now = np.clip(demand - np.asarray(loads.p_kw)[flexible], 0.0, None) * np.array(
        [loads.cap_kw[i] is not None for i in flexible], dtype=bool)
    vs = model.vs[:, columns]
    v_free = model.v0 + model.vp @ curt_now - vs @ shed_now
    if available_next_kw is not None:
        v_free = v_free + model.vp @ (available_next_kw - available)
        available = available_next_kw
    if load_drop_kw:
        dropping = list(load_drop_kw)
        v_free = v_free + model.vs[:, _load_columns(model, dropping)] @ np.array(
            [load_drop_kw[load] for load in dropping])
    limited = model.limited if estimated is None else model.limited & estimated
    margin = np.zeros(len(v_free)) if margin_pu is None else margin_pu
    return DOPFProblem(
        v0_pu=v_free, vp_pu_per_kw=model.vp, vq_pu_per_kvar=model.vq,
        vs_pu_per_kw=vs, available_kw=available,
        kva_rating=np.asarray(pv.kva_rating), q0_kvar=np.asarray(pv.q_kvar),
        shed_max_kw=s.shed_max_fraction * demand,
        v_min_pu=np.where(limited, s.v_min + margin, -np.inf),
        v_max_pu=np.where(limited, s.v_max - margin, np.inf),
        c_curt=s.cost_curtailment,
        c_shed=s.cost_shedding, w_q=s.weight_reactive)


def _load_columns(model: LinearModel, load_ids: list[str]) -> np.ndarray:
    """Positions of `load_ids` among the model's shed columns."""
    position = {load: j for j, load in enumerate(model.load_ids)}
    missing = [load for load in load_ids if load not in position]
    if missing:
        raise ValueError(f"the linear model has no shed column for loads {missing}: "
                         f"build Devices with them")
    return np.array([position[load] for load in load_ids], dtype=int)


def flexible_positions(loads: m.LoadStates, flexible: Sequence[str]) -> np.ndarray:
    """Positions in `loads` of the flexible loads: only they are variables of the problem
    (every other load's shed would be a variable fixed at 0; on IEEE 123 those 91 columns
    of voltage sensitivities tripled the central solver's time)."""
    wanted = set(flexible)
    return np.array([i for i, load in enumerate(loads.ids) if load in wanted], dtype=int)



def step_messages(t: float, step: SolvedStep, pv: m.PVStates, loads: m.LoadStates,
                  flexible: Sequence[str]) -> dict[str, m.Message]:
    """The messages of an applied solution, by port: PV setpoints, caps of the flexible
    loads (if any), and the positions of every controlled regulator and bank, moved or not
    (a command also disables the device's own control in the feeder)."""
    solution, available = step.solution, step.problem.available_kw
    limits = [float(a - c) if c > CURTAIL_EPS_KW else LIFT_KW
              for a, c in zip(available, solution.curt)]
    out: dict[str, m.Message] = {"pv_setpoints": m.PVSetpoints(
        time_s=t, ids=list(pv.ids), p_max_kw=limits, q_kvar=[float(q) for q in solution.q])}
    positions = flexible_positions(loads, flexible)
    if len(positions):
        caps = [float(loads.demand_kw[i] - shed) if shed > 0.01 else None
                for i, shed in zip(positions, solution.shed)]
        out["load_caps"] = m.LoadCaps(time_s=t, ids=[loads.ids[i] for i in positions],
                                      cap_kw=caps)
    d = step.discrete
    if d is not None and d.n_tap:
        out["tap_commands"] = m.TapCommands(time_s=t, ids=d.tap_ids,
                                            taps=[int(x) for x in step.taps])
    if d is not None and d.n_cap:
        out["capacitor_commands"] = m.CapacitorCommands(time_s=t, ids=d.cap_ids,
                                                        states=[int(x) for x in step.caps])
    return out


def diagnostics(t: float, algorithm: str, step: SolvedStep, applied: bool) -> m.DOPFDiagnostics:
    """How the solve went and what it decided (decisions only when applied: a failed or
    infeasible solve's numbers are not decisions, and may not be finite)."""
    solution = step.solution
    predicted = (step.problem.voltages_pu(solution.x)[step.problem.limited]
                 if applied else None)
    return m.DOPFDiagnostics(
        time_s=t, algorithm=algorithm, status=solution.status, applied=applied,
        reason="" if applied else f"{solution.status}: setpoints in force kept",
        objective=step.objective if applied and np.isfinite(step.objective) else None,
        iterations=solution.iterations, solve_time_s=step.solve_time_s,
        curtailment_kw=float(solution.curt.sum()) if applied else 0.0,
        shed_kw=float(solution.shed.sum()) if applied else 0.0,
        tap_moves=step.tap_moves if applied else 0,
        capacitor_switches=step.capacitor_switches if applied else 0,
        v_max_pu=float(step.v0.max()) if step.v0.size else None,
        v_max_predicted_pu=float(predicted.max()) if predicted is not None and predicted.size
        else None,
        unestimated_nodes=step.unestimated)


def failed_diagnostics(t: float, algorithm: str, reason: str) -> m.DOPFDiagnostics:
    """Diagnostics of a step whose linear model could not be built."""
    return m.DOPFDiagnostics(time_s=t, algorithm=algorithm, status="failed", applied=False,
                             reason=f"linear model: {reason}; setpoints in force kept")


def skipped_diagnostics(t: float, algorithm: str, reason: str) -> m.DOPFDiagnostics:
    """Diagnostics of a step whose needed inputs never arrived."""
    return m.DOPFDiagnostics(time_s=t, algorithm=algorithm, status="skipped", applied=False,
                             reason=reason)


class DOPFRecord:
    """Deterministic figures of the DOPF's run, for summary.json.

    ``input_*`` figures are of the voltages the DOPF was given (the estimate, before its
    setpoints act), not of the real network: the feeder reports those. Curtailment is what
    the DOPF ordered and kept in force (availability less the limit it set, for every
    step until it orders otherwise), not what inverters clipped on their own.
    """

    def __init__(self, step_s: float):
        self.step_h = step_s / 3600.0
        self.statuses: dict[str, int] = {}
        self.objective: list[float | None] = []
        self.input_v_max: list[float | None] = []
        self.input_violations = 0
        self.ordered_kw = 0.0
        self.curtailed_kwh = 0.0
        self.tap_moves = 0
        self.capacitor_switches = 0
        self.unestimated_steps = 0
        self.solve_s: list[float] = []

    def add(self, step: SolvedStep, applied: bool, v_max: float) -> None:
        solution, v0 = step.solution, step.v0
        self.statuses[solution.status] = self.statuses.get(solution.status, 0) + 1
        self.objective.append(float(step.objective) if applied else None)
        self.input_v_max.append(float(v0.max()) if v0.size else None)
        self.input_violations += bool(v0.size and v0.max() > v_max + 1e-9)
        self.unestimated_steps += bool(step.unestimated)
        if applied:
            self.tap_moves += step.tap_moves
            self.capacitor_switches += step.capacitor_switches
            self.ordered_kw = float(np.where(solution.curt > CURTAIL_EPS_KW, solution.curt,
                                             0.0).sum())
        self.curtailed_kwh += self.ordered_kw * self.step_h
        self.solve_s.append(step.solve_time_s)

    def fail(self) -> None:
        """A step whose linear model failed: counted, the order in force stays."""
        self.statuses["failed"] = self.statuses.get("failed", 0) + 1
        self.objective.append(None)
        self.input_v_max.append(None)
        self.curtailed_kwh += self.ordered_kw * self.step_h

    def summary(self) -> dict:
        return {"solves": len(self.objective), "statuses": self.statuses,
                "objective_per_step": self.objective,
                "input_v_max_pu_per_step": self.input_v_max,
                "input_steps_above_v_max": self.input_violations,
                "ordered_curtailment_kwh": self.curtailed_kwh, "tap_moves": self.tap_moves,
                "capacitor_switches": self.capacitor_switches,
                "steps_with_unestimated_nodes": self.unestimated_steps}
