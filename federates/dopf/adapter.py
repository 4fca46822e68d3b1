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
from dataclasses import dataclass, fields, replace

import numpy as np

from gridsim import messages as m
from gridsim.federates.dopf.algorithms import Algorithm
from gridsim.federates.dopf.discrete import DiscreteProblem, solve_discrete
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
    voltage_margin_sigmas: float = 0.0

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


def solve_step(net: Network, latest: Mapping[str, m.Message], s: DOPFSettings, algorithm: Algorithm,
               previous: Solution | None = None,
               available_next_kw: np.ndarray | None = None) -> SolvedStep:
    """Linearize at the latest operating point and solve, with the discrete devices the
    parameters list (`gridsim.federates.dopf.discrete`), if any, for the PV availability
    `available_next_kw` (None: as it is now)."""
    pv, loads = latest["pv_states"], latest["load_states"]
    v_nodes = operating_point(net, latest["voltages_magnitude"], latest["voltages_angle"])
    discrete = None
    if s.controlled_regulators or s.controlled_capacitors:
        discrete = DiscreteDevices.from_states(
            net, latest.get("regulator_states"), latest.get("capacitor_states"),
            s.controlled_regulators, s.controlled_capacitors)
    model = linearize(net, v_nodes, Devices.from_states(net, pv, loads, s.flexible_loads),
                      discrete)
    problem = build_problem(model, pv, loads, s, available_next_kw)
    if discrete is None:
        solution = algorithm.solve(problem, warm_start=previous)
        return SolvedStep(problem, solution, solution.objective, solution.solve_time_s,
                    model.v0[model.limited])
    mixed = DiscreteProblem(
        problem, model.vt, discrete.tap_position,
        np.maximum(discrete.tap_position - s.max_tap_move, -discrete.tap_limit),
        np.minimum(discrete.tap_position + s.max_tap_move, discrete.tap_limit),
        model.vc, discrete.cap_state, model.psub_t, model.psub_c,
        c_tap=s.cost_tap, c_cap=s.cost_capacitor)
    result = solve_discrete(mixed, algorithm, warm_start=previous)
    return SolvedStep(mixed.fixed(result.taps, result.caps), result.solution, result.objective,
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


def build_problem(model: LinearModel, pv: m.PVStates, loads: m.LoadStates, s: DOPFSettings,
                  available_next_kw: np.ndarray | None = None) -> DOPFProblem:
    """The DOPF instance, its voltages brought back to no curtailment and no shedding of
    the flexible loads, and moved to the PV availability expected when the setpoints apply
    (`forecast`), if given. Nodes the DOPF does not limit (`LinearModel.limited`: dead,
    neutral, floating) have no limits (``inf``).

    `model` needs a shed column for every flexible load (`Devices.from_states` with
    ``s.flexible_loads``; more columns are ignored). A cap on any other load (set by
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
    return DOPFProblem(
        v0_pu=v_free, vp_pu_per_kw=model.vp, vq_pu_per_kvar=model.vq,
        vs_pu_per_kw=vs, available_kw=available,
        kva_rating=np.asarray(pv.kva_rating), q0_kvar=np.asarray(pv.q_kvar),
        shed_max_kw=s.shed_max_fraction * demand,
        v_min_pu=np.where(model.limited, s.v_min, -np.inf),
        v_max_pu=np.where(model.limited, s.v_max, np.inf),
        c_curt=s.cost_curtailment,
        c_shed=s.cost_shedding, w_q=s.weight_reactive)


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
    limits = [float(a - c) if c > 0.01 else LIFT_KW for a, c in zip(available, solution.curt)]
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
    """How the solve went and what it decided."""
    solution = step.solution
    predicted = (step.problem.voltages_pu(solution.x)[step.problem.limited]
                 if applied else None)
    return m.DOPFDiagnostics(
        time_s=t, algorithm=algorithm, status=solution.status, applied=applied,
        reason="" if applied else f"{solution.status}: setpoints in force kept",
        objective=step.objective if np.isfinite(step.objective) else None,
        iterations=solution.iterations, solve_time_s=step.solve_time_s,
        curtailment_kw=float(solution.curt.sum()), shed_kw=float(solution.shed.sum()),
        tap_moves=step.tap_moves if applied else 0,
        capacitor_switches=step.capacitor_switches if applied else 0,
        v_max_pu=float(step.v0.max()),
        v_max_predicted_pu=float(predicted.max()) if predicted is not None else None)


def skipped_diagnostics(t: float, algorithm: str, reason: str) -> m.DOPFDiagnostics:
    """Diagnostics of a step whose needed inputs never arrived."""
    return m.DOPFDiagnostics(time_s=t, algorithm=algorithm, status="skipped", applied=False,
                             reason=reason)


class DOPFRecord:
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

    def add(self, step: SolvedStep, applied: bool, pv: m.PVStates, v_max: float) -> None:
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
