"""distopf as an independent peer of our DOPF: the same PV curtailment and var problem,
solved by distopf's own LinDistFlow model of the feeder (numerics on a solved OpenDSS
circuit; nothing here uses HELICS).

distopf receives, at one solved step of the global OpenDSS circuit (the one a
`gridsim.federates.feeder.model.FeederModel` holds, solved at the operating point):

- lines, transformers, capacitors and every load's present kW and kvar, read by distopf's
  own importer (``DSSToCSVConverter``'s readers run on the circuit as it stands: its
  constructor would recompile the file and lose the step). Loads are held at what they
  draw at the operating point (CVR exponents 0), as our linear model holds them;
- PV from our ``PVStates``: availability (not Pmpp), kVA rating and reactive output,
  split equally over each system's phases, in distopf's per unit (1 p.u. = 1 MVA);
- regulator ratios from OpenDSS (winding 2 tap over winding 1 tap) per phase. The importer
  rounds them to 5/8 % steps and, on a branch it orients against the regulator, negates
  the step instead of inverting the ratio (0.2 % off at 7 steps);
- a radial network. LinDistFlow needs a tree, but distopf's copy of IEEE 123 closes the
  normally open switches Sw7 (151-300) and Sw8 (54-94): the feeder has two loops and
  distopf's own matrix model fails on it ("Length of values (96) does not match length of
  index (98)"). `radialize` opens one branch per loop (the closed switch of the loop with
  the least flow, else its line with the least flow: Sw8 and Sw7 at midday) and puts
  the branch's flow at the operating point on its two buses as fixed loads. The radial
  model's flows are then OpenDSS's at the operating point, but the flow of an opened
  branch stays fixed when the controls act (in the feeder it moves with them).

`solve` writes our problem in distopf's variables and solves it with distopf's
``cvxpy_solve`` (CLARABEL):

- variables: distopf's per-phase ``pg`` (0 <= pg <= available) and ``qg`` of every PV
  (control ``"PQ"``); bounds ``v_min <= |V| <= v_max`` on every node (distopf bounds |V|^2);
- objective: ``c_curt sum(curt) + w_curt/2 sum(curt^2) + w_q/2 sum((q - q0)^2)``, ``curt``
  and ``q`` per PV system in kW and kvar: `gridsim.federates.dopf.problem`'s objective
  without load shedding (`PeerSettings.cost`). distopf's own ``curtail_min`` (squared
  per-phase curtailment in p.u., no reactive term) leaves the kvar undetermined and prices a
  large system's kW above a small one's;
- one setpoint per inverter: equality rows added to distopf's model hold the phases of a
  multi-phase system at the same ``pg`` and ``qg``. Without them distopf circulates kvar
  between the phases of one inverter, which costs nothing in this objective and which no
  inverter can do (noon of ``ieee123-dopf``: predicted maximum 1.040 p.u. with 0.1 kvar in
  all; OpenDSS, given the per-system sums, stays at 1.054).

Differences that remain, from the two formulations:

- network model: LinDistFlow (lossless flows, phase angles 120 degrees apart, linear in
  |V|^2) against our sensitivities of the exact power flow at the operating point. At noon
  of ``ieee123-dopf`` (2.9 MW exported) the neglected losses put distopf's voltages up to
  0.008 p.u. above OpenDSS's on phase A: it acts on voltages that are not there;
- inverter capability: distopf's octagon inscribed in the kVA circle (at 88 % of the
  rating it allows 0.28 of the rating in kvar, the circle 0.47) against our box
  ``|q| <= sqrt(kva^2 - available^2)``, inside the circle at every curtailment; curtailing
  buys distopf 2.4 kvar per kW, our box none;
- no load shedding (distopf has no sheddable load), so the peer has PV controls only.

Measured at noon of ``ieee123-dopf`` (OpenDSS maximum 1.0538 p.u. without control; the
scenario's weights, under which kvar are almost free): our central DOPF, re-linearized
three times, absorbs 84 kvar and OpenDSS ends at 1.0500; distopf absorbs 194 kvar, its
model ends at 1.0500 and OpenDSS at 1.0448. Neither curtails. ``bench/dopf_peer.py`` has
the table for 10:00-14:00; ``tests/test_dopf_peer.py`` the properties that explain it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cvxpy as cp
import networkx as nx
import numpy as np
import opendssdirect as dss
import pandas as pd
import scipy.sparse as sp
from distopf.dss_importer.dss_to_csv_converter import DSSToCSVConverter
from distopf.matrix_models.lindist import LinDistModel
from distopf.matrix_models.solvers import cvxpy_solve, lp_solve
from opendssdirect import dss as dss_engine

from gridsim.federates.chain import feeder_step
from gridsim.federates.dopf.adapter import DOPFSettings, build_problem, operating_point
from gridsim.federates.dopf.sensitivity import Devices, linearize
from gridsim.federates.feeder.model import FeederModel
from gridsim.messages import PVStates
from gridsim.network import Network

S_BASE_VA = 1e6
"""distopf's power base: 1 p.u. = 1 MVA (per phase)."""
KW_PER_PU = S_BASE_VA / 1000.0
PHASES = "abc"


@dataclass(frozen=True)
class PeerSettings:
    """Limits and weights, with the meaning of the DOPF federate's parameters."""

    v_min_pu: float = 0.95
    v_max_pu: float = 1.05
    c_curt: float = 1.0
    w_curt: float = 1e-3
    w_q: float = 1e-2
    solver: str = "CLARABEL"

    @classmethod
    def from_parameters(cls, p: dict) -> PeerSettings:
        """From the DOPF federate's parameters (``v_min``, ``v_max``, ``cost_curtailment``,
        ``weight_reactive``)."""
        return cls(v_min_pu=p["v_min"], v_max_pu=p["v_max"], c_curt=p["cost_curtailment"],
                   w_q=p["weight_reactive"])

    def cost(self, curt_kw: np.ndarray, q_kvar: np.ndarray, q0_kvar: np.ndarray) -> float:
        """The objective (module doc) of setpoints, whoever computed them."""
        curt, dq = np.asarray(curt_kw), np.asarray(q_kvar) - np.asarray(q0_kvar)
        return float(self.c_curt * curt.sum() + self.w_curt / 2 * curt @ curt
                     + self.w_q / 2 * dq @ dq)


@dataclass
class PeerSolution:
    """distopf's setpoints in our PV order and ids (nan if it found none)."""

    ids: list[str]
    curt_kw: np.ndarray
    """Curtailment below availability, kW."""
    q_kvar: np.ndarray
    """Reactive output, kvar (> 0 injecting)."""
    available_kw: np.ndarray
    status: str
    """cvxpy's status (``"optimal"`` when solved)."""
    objective: float
    """`PeerSettings.cost` of the setpoints."""
    solve_time_s: float
    """distopf's ``cvxpy_solve``: the cvxpy problem built from the model's matrices, solved."""
    build_time_s: float
    """Reading the circuit and building distopf's model."""
    v_pu: dict[str, float] = field(default_factory=dict)
    """distopf's predicted |V| per node id (``"150.1"``), p.u."""
    opened: list[str] = field(default_factory=list)
    """Branches `radialize` opened."""

    @property
    def p_max_kw(self) -> np.ndarray:
        """Output limits to apply: availability minus curtailment, kW."""
        return self.available_kw - self.curt_kw


class _LiveCircuit(DSSToCSVConverter):
    """distopf's importer on the circuit as it stands (no Redirect, no Solve)."""

    def __init__(self, v_min: float, v_max: float) -> None:
        self.dss = dss_engine
        self.s_base, self.v_min, self.v_max, self.cvr_p, self.cvr_q = S_BASE_VA, v_min, v_max, 0, 0
        self.center_taps = self._identify_center_tap_transformers()
        self.bus_names = self.get_bus_names()
        self.secondary_buses = self._build_secondary_buses()
        self.branch_data = self.get_branch_data()
        self.bus_data = self.get_bus_data()
        self.cap_data = self.get_cap_data()


@dataclass
class DistopfCase:
    """What distopf's matrix model is built from, in distopf's DataFrame layouts.

    ``gen`` has each PV's availability as ``p_a``.. (the upper bound of ``pg``) and its
    present output as ``p_now_a``.. (for `power_flow`), in our PV order.
    """

    branch: pd.DataFrame
    bus: pd.DataFrame
    gen: pd.DataFrame
    cap: pd.DataFrame
    reg: pd.DataFrame
    opened: list[str]

    def model(self, control: bool = True) -> LinDistModel:
        """distopf's LinDistFlow model: every PV's P and Q variables (one setpoint per
        inverter), or fixed at their present values (``control=False``)."""
        gen = self.gen.copy()
        gen["control_variable"] = "PQ" if control else ""
        if not control:
            for a in PHASES:
                gen[f"p_{a}"] = gen[f"p_now_{a}"]
        model = LinDistModel(self.branch, self.bus, gen, self.cap, self.reg)
        if control:
            self._balance(model)
        return model

    def device_rows(self, model: LinDistModel) -> tuple[sp.csr_array, sp.csr_array]:
        """Matrices (n_pv x n_x) summing each PV's ``pg`` and ``qg`` over its phases."""
        p_idx, q_idx, rows = [], [], []
        for k, (j, phases) in enumerate(zip(self.gen.id - 1, self.gen.phases)):
            for a in phases:
                p_idx.append(int(model.idx("pg", j, a)))
                q_idx.append(int(model.idx("qg", j, a)))
                rows.append(k)
        ones, shape = np.ones(len(rows)), (len(self.gen), model.n_x)
        return (sp.csr_array((ones, (rows, p_idx)), shape=shape),
                sp.csr_array((ones, (rows, q_idx)), shape=shape))

    def _balance(self, model: LinDistModel) -> None:
        """Equality rows: every phase of a multi-phase PV at the same ``pg`` and ``qg``."""
        cols = [(int(model.idx(var, j, a)), int(model.idx(var, j, b)))
                for j, phases in zip(self.gen.id - 1, self.gen.phases)
                for a, b in zip(phases, phases[1:]) for var in ("pg", "qg")]
        if not cols:
            return
        rows = np.repeat(np.arange(len(cols)), 2)
        extra = sp.csr_array((np.tile([1.0, -1.0], len(cols)), (rows, np.ravel(cols))),
                             shape=(len(cols), model.n_x))
        model.a_eq = sp.csr_array(sp.vstack([model.a_eq, extra]))
        model.b_eq = np.concatenate([model.b_eq, np.zeros(len(cols))])


def read_case(pv: PVStates, v_min_pu: float = 0.95, v_max_pu: float = 1.05) -> DistopfCase:
    """distopf's data at the solved step of the global OpenDSS circuit (module doc)."""
    live = _LiveCircuit(v_min_pu, v_max_pu)
    bus = live.bus_data.copy()
    bus[["cvr_p", "cvr_q"]] = 0.0
    branch, bus, opened = radialize(live.branch_data.copy(), bus)
    graph = nx.Graph(list(zip(branch.from_name, branch.to_name)))
    depth = nx.single_source_shortest_path_length(
        graph, str(bus.loc[bus.bus_type == "SWING", "name"].iloc[0]))
    ids = dict(zip(bus.name, bus.id))
    flip = branch.from_name.map(depth) > branch.to_name.map(depth)
    branch.loc[flip, ["from_name", "to_name"]] = branch.loc[flip, ["to_name", "from_name"]].values
    branch["fb"], branch["tb"] = branch.from_name.map(ids), branch.to_name.map(ids)
    return DistopfCase(branch.sort_values("tb", ignore_index=True), bus, _gen_data(pv, ids),
                       live.cap_data, _reg_data(ids, depth), opened)


def radialize(branch: pd.DataFrame, bus: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                  list[str]]:
    """Open one branch per loop; its flow becomes fixed loads on its two buses.

    On each loop the closed switch with the least flow (sum over phases of |S| at its first
    terminal) is opened, or the line with the least flow if the loop has no switch; the
    power into it at each terminal is added to that bus's load (p.u.).
    """
    opened: list[str] = []
    while cycles := nx.cycle_basis(graph := nx.Graph(
            [(r.from_name, r.to_name, {"row": r.Index}) for r in branch.itertuples()])):
        loop = cycles[0]
        rows = [graph.edges[a, b]["row"] for a, b in zip(loop, loop[1:] + loop[:1])]
        lines = [r for r in rows if branch.at[r, "type"] in ("switch", "line")]
        if not lines:
            raise ValueError(f"distopf peer: no line to open on the loop {loop}")
        terminals = {r: _terminal_powers(branch.at[r, "name"]) for r in lines}
        switches = [r for r in lines if branch.at[r, "type"] == "switch"]
        cut = min(switches or lines, key=lambda r: np.abs(terminals[r][0][2]).sum())
        for bus_name, nodes, s_kva in terminals[cut]:
            k = bus.index[bus.name == bus_name][0]
            for node, s in zip(nodes, s_kva):
                bus.at[k, f"pl_{PHASES[node - 1]}"] += s.real / KW_PER_PU
                bus.at[k, f"ql_{PHASES[node - 1]}"] += s.imag / KW_PER_PU
        opened.append(str(branch.at[cut, "name"]))
        branch = branch.drop(index=cut)
    return branch, bus, opened


def _terminal_powers(line: str) -> list[tuple[str, list[int], np.ndarray]]:
    """(bus, nodes, complex kVA into the line per conductor) at each terminal of a line."""
    dss.Lines.Name(line)
    powers = np.asarray(dss.CktElement.Powers()).view(complex)
    n = dss.CktElement.NumConductors()
    out = []
    for terminal, spec in enumerate(dss.CktElement.BusNames()[:2]):
        name, *nodes = spec.split(".")
        nodes = [int(x) for x in nodes if x != "0"][:n] or [1, 2, 3][:n]
        out.append((name, nodes, powers[terminal * n:terminal * n + len(nodes)]))
    return out


def _reg_data(ids: dict[str, int], depth: dict[str, int]) -> pd.DataFrame:
    """Regulator ratios per phase from OpenDSS, oriented away from the source (``ratio``
    columns only: distopf then keeps them instead of rounding them to tap steps)."""
    rows: dict[tuple[str, str], dict] = {}
    for control in dss.RegControls.AllNames():
        dss.RegControls.Name(control)
        dss.Transformers.Name(dss.RegControls.Transformer())
        dss.Transformers.Wdg(1)
        tap1 = dss.Transformers.Tap()
        dss.Transformers.Wdg(2)
        ratio = dss.Transformers.Tap() / tap1
        (b1, *nodes), (b2, *_) = (s.split(".") for s in dss.CktElement.BusNames()[:2])
        if depth[b1] > depth[b2]:
            b1, b2, ratio = b2, b1, 1.0 / ratio
        row = rows.setdefault((b1, b2), {"fb": ids[b1], "tb": ids[b2], "from_name": b1,
                                         "to_name": b2, "phases": "", "ratio_a": 1.0,
                                         "ratio_b": 1.0, "ratio_c": 1.0})
        for phase in [PHASES[int(n) - 1] for n in nodes if n != "0"] or PHASES:
            row[f"ratio_{phase}"] = ratio
            row["phases"] = "".join(p for p in PHASES if p in row["phases"] + phase)
    return pd.DataFrame(list(rows.values()), columns=["fb", "tb", "from_name", "to_name",
                                                       "phases", "ratio_a", "ratio_b",
                                                       "ratio_c"])


def _gen_data(pv: PVStates, ids: dict[str, int]) -> pd.DataFrame:
    """One distopf generator per PV system, split equally over its phases, in p.u."""
    rows = []
    for name, spec, avail, now, q, kva in zip(pv.ids, pv.bus, pv.available_kw, pv.p_kw,
                                              pv.q_kvar, pv.kva_rating):
        bus_name, *nodes = spec.lower().split(".")
        phases = "".join(PHASES[int(n) - 1] for n in nodes if n != "0") or PHASES
        row: dict = {"id": ids[bus_name], "name": name, "phases": phases, "gen_shape": "PV"}
        for a in PHASES:
            share = (a in phases) / len(phases) / KW_PER_PU
            row |= {f"p_{a}": avail * share, f"p_now_{a}": now * share, f"q_{a}": q * share,
                    f"s_{a}_max": kva * share, f"q_{a}_max": kva * share,
                    f"q_{a}_min": -kva * share}
        rows.append(row)
    gen = pd.DataFrame(rows)
    if gen.id.duplicated().any():
        raise ValueError("distopf peer: distopf has one generator per bus; PV systems "
                         f"{list(gen.name[gen.id.duplicated(keep=False)])} share one")
    return gen


def solve(pv: PVStates, settings: PeerSettings | None = None) -> PeerSolution:
    """distopf's setpoints at the solved step of the global OpenDSS circuit (module doc).

    The circuit must be solved at the operating point `pv` describes: loads, and the flows
    of the branches `radialize` opens, are read from it.
    """
    settings = settings or PeerSettings()
    start = time.perf_counter()
    case = read_case(pv, settings.v_min_pu, settings.v_max_pu)
    model = case.model(control=True)
    p_rows, q_rows = case.device_rows(model)
    build_s = time.perf_counter() - start
    available, q0 = np.asarray(pv.available_kw, float), np.asarray(pv.q_kvar, float)

    def objective(_model: LinDistModel, x: cp.Variable, **_) -> cp.Expression:
        curt, dq = available - KW_PER_PU * (p_rows @ x), KW_PER_PU * (q_rows @ x) - q0
        return (settings.c_curt * cp.sum(curt) + settings.w_curt / 2 * cp.sum_squares(curt)
                + settings.w_q / 2 * cp.sum_squares(dq))

    result = cvxpy_solve(model, objective, solver=settings.solver, x0=np.zeros(model.n_x))
    ids = list(pv.ids)
    if result.x is None or not result.success:
        nan = np.full(len(ids), np.nan)
        return PeerSolution(ids, nan, nan.copy(), available, str(result.message),
                            float("nan"), result.runtime, build_s, opened=case.opened)
    x = np.asarray(result.x)
    curt = np.clip(available - KW_PER_PU * (p_rows @ x), 0.0, None)
    q = KW_PER_PU * (q_rows @ x)
    return PeerSolution(ids, curt, q, available, str(result.message),
                        settings.cost(curt, q, q0), result.runtime, build_s,
                        node_voltages(model, x), case.opened)


def power_flow(pv: PVStates) -> tuple[DistopfCase, LinDistModel, dict[str, float]]:
    """distopf's LinDistFlow voltages (p.u. per node id) at the operating point, PV at its
    present output: its model's error against the real power flow, without control."""
    case = read_case(pv, 0.0, 2.0)
    model = case.model(control=False)
    return case, model, node_voltages(model, lp_solve(model, np.zeros(model.n_x)).x)


def node_voltages(model: LinDistModel, x: np.ndarray) -> dict[str, float]:
    """distopf's |V| (p.u.) per node id (``"<bus>.<phase number>"``) from its solution."""
    out = {}
    for name, *values in model.get_voltages(x)[["name", *PHASES]].itertuples(index=False):
        for k, value in enumerate(values, start=1):
            if value is not None and np.isfinite(float(value)):
                out[f"{name}.{k}"] = float(value)
    return out


class StepReplay:
    """One step of a feeder solved again with different PV setpoints, all from one state.

    The step is solved once on construction (the operating point). `apply` puts back the
    state of that solve (regulator taps; every PV at full output and its reactive setting),
    sets the clock back one step, applies the setpoints and solves the step again with the
    feeder's controls active, as the next step of a run would (a regulator may move).
    OpenDSS's result is the real outcome of the setpoints.
    """

    def __init__(self, model: FeederModel, time_s: float = 0.0) -> None:
        self.model, self.time_s = model, time_s
        self.first = self.last = feeder_step(model, time_s)
        self.hour = dss.Solution.DblHour()
        self.taps = model.tap_ratios()
        self.pv_settings = {}
        for name in dss.PVsystems.AllNames():
            dss.PVsystems.Name(name)
            self.pv_settings[name] = (dss.Properties.Value("%Pmpp"), dss.PVsystems.kvar())

    def apply(self, ids: list[str], p_max_kw: np.ndarray, q_kvar: np.ndarray,
              lift_below_kw: float = 0.01) -> dict:
        """The step's feeder messages with these setpoints; a curtailment under
        ``lift_below_kw`` lifts the limit, as the DOPF federate publishes it."""
        for transformer, tap in zip(self.model.catalog.reg_transformers, self.taps):
            dss.Transformers.Name(transformer)
            dss.Transformers.Wdg(2)
            dss.Transformers.Tap(tap)
        for name, (pct, kvar) in self.pv_settings.items():
            dss.Text.Command(f"PVSystem.{name}.%Pmpp={pct}")
            dss.PVsystems.Name(name)
            dss.PVsystems.kvar(kvar)
        available = dict(zip(self.first["pv_states"].ids, self.first["pv_states"].available_kw))
        limits = [None if available[i] - float(p) < lift_below_kw else float(p)
                  for i, p in zip(ids, p_max_kw)]
        _, rejected = self.model.set_pv("replay", list(ids), limits, [float(q) for q in q_kvar])
        if rejected:
            raise ValueError(f"setpoints rejected: {rejected}")
        dss.Solution.DblHour(self.hour - self.model.step_s / 3600)
        self.last = feeder_step(self.model, self.time_s, self.last["topology"])
        return self.last

    def restore(self) -> dict:
        """The step solved again as first solved (no setpoints): the operating point."""
        pv = self.first["pv_states"]
        return self.apply(list(pv.ids), np.asarray(pv.available_kw), np.asarray(pv.q_kvar))


def held_reference_problem(messages: dict, params: dict, q_ref_kvar: np.ndarray):
    """Our DOPF problem at the step of `messages`, as the federate builds it, but with the
    PV reactive reference held at `q_ref_kvar` (the federate moves it to the q in force;
    holding it keeps every re-linearization solving the same problem as distopf's)."""
    net = Network.from_topology(messages["topology"])
    pv, loads = messages["pv_states"], messages["load_states"]
    v = operating_point(net, messages["voltages_magnitude"], messages["voltages_angle"])
    devices = Devices.from_states(net, pv, loads, params["flexible_loads"])
    problem = build_problem(linearize(net, v, devices), pv, loads,
                            DOPFSettings.from_parameters(params))
    shift = problem.vq_pu_per_kvar @ (np.asarray(pv.q_kvar) - q_ref_kvar)
    return problem.replace(q0_kvar=q_ref_kvar, v0_pu=problem.v0_pu - shift)


def solve_at(replay: StepReplay, settings: PeerSettings | None = None
             ) -> tuple[PeerSolution, dict]:
    """distopf's setpoints at the replay's operating point (restored first: `solve` reads
    the live circuit) and the feeder's messages with them applied."""
    pv = replay.restore()["pv_states"]
    solution = solve(pv, settings)
    if solution.status != "optimal":
        return solution, replay.restore()
    return solution, replay.apply(solution.ids, solution.p_max_kw, solution.q_kvar)
