"""The feeder federate's loop: commands in, one OpenDSS step, ground truth out.

Timing: periodic at the scenario step with offset 0. At each granted time ``k * step`` it
applies the commands received since the last step, solves step ``k`` and publishes. Outputs
nobody is linked to are not computed.
"""

from __future__ import annotations

import logging

import numpy as np

from gridsim import messages as m
from gridsim.federates.feeder.model import FeederModel, Rejected
from gridsim.runtime import FederateRuntime

log = logging.getLogger("gridsim.feeder")

_COMMANDS = {
    "pv_setpoints": lambda model, port, msg: model.set_pv(port, msg.ids, msg.p_max_kw,
                                                          msg.q_kvar),
    "load_caps": lambda model, port, msg: model.set_load_caps(port, msg.ids, msg.cap_kw),
    "capacitor_commands": lambda model, port, msg: model.set_capacitors(port, msg.ids,
                                                                        msg.states),
    "tap_commands": lambda model, port, msg: model.set_taps(port, msg.ids, msg.taps),
}


def run(rt: FederateRuntime) -> dict:
    """Step the feeder through the scenario; returns the summary part."""
    p = rt.parameters
    model = FeederModel(rt.feeder, rt.start, rt.step_s, mode=p["mode"],
                        max_control_iter=p["max_control_iter"], load_scale=p["load_scale"],
                        pv_scale=p["pv_scale"])
    stats = _Stats()
    rt.enter()
    for k, t in rt.step_times():
        accepted, rejected = _apply_commands(rt, model)
        model.solve()
        changed = model.sync_network()
        v_pu = model.voltages_pu()
        stats.add(v_pu, rejected)
        publish_step(rt, model, t, v_pu, changed)
        if accepted or rejected:
            for r in rejected:
                log.warning("step %d: rejected %s %r: %s", k, r.port, r.name, r.reason)
            rt.publish("command_report", m.CommandReport(
                time_s=t, accepted=accepted,
                rejected=[m.RejectedCommand(port=r.port, name=r.name, reason=r.reason)
                          for r in rejected]))
    return stats.summary(model)


def _apply_commands(rt: FederateRuntime, model: FeederModel) -> tuple[int, list[Rejected]]:
    accepted, rejected = 0, []
    for port, apply in _COMMANDS.items():
        for _, msg in rt.updates(port):
            n_ok, bad = apply(model, port, msg)
            accepted += n_ok
            rejected += bad
    return accepted, rejected


def publish_step(rt: FederateRuntime, model: FeederModel, t: float, v_pu: np.ndarray,
             topology_changed: bool) -> None:
    """Publish every linked output of this step.

    Messages are built with ``model_construct``: the feeder makes them aligned by
    construction, and validating 2,000 floats a step again would cost more than the solve.
    """
    ids = model.node_ids
    arrays = {"voltages_magnitude": (m.VoltagesMagnitude, lambda v: v_pu, "pu"),
              "voltages_angle": (m.VoltagesAngle, lambda v: np.degrees(np.angle(v)), "deg"),
              "voltages_real": (m.VoltagesReal, lambda v: v.real, "V"),
              "voltages_imag": (m.VoltagesImaginary, lambda v: v.imag, "V")}
    wanted = [port for port in (*arrays, "powers_real", "powers_imag") if rt.wanted(port)]
    v = model.voltages() if wanted else None
    for port in wanted:
        if port in arrays:
            cls, values, units = arrays[port]
            rt.publish(port, cls.model_construct(time_s=t, ids=ids, values=values(v).tolist(),
                                                 units=units))
    if rt.wanted("powers_real") or rt.wanted("powers_imag"):
        net_ids, s = model.injections(v)
        for port, cls, values, units in (("powers_real", m.PowersReal, s.real, "kW"),
                                         ("powers_imag", m.PowersImaginary, s.imag, "kvar")):
            if rt.wanted(port):
                rt.publish(port, cls.model_construct(time_s=t, ids=net_ids,
                                                     values=values.tolist(), units=units))
    if topology_changed and rt.wanted("topology"):
        rt.publish("topology", topology_message(model, t))
    _publish_devices(rt, model, t)


def _publish_devices(rt: FederateRuntime, model: FeederModel, t: float) -> None:
    if rt.wanted("pv_states"):
        rt.publish("pv_states", m.PVStates.model_construct(time_s=t, **model.pv_states()))
    if rt.wanted("generator_states"):
        rt.publish("generator_states",
                   m.GeneratorStates.model_construct(time_s=t, **model.generator_states()))
    if rt.wanted("load_states"):
        rt.publish("load_states", m.LoadStates.model_construct(time_s=t, **model.load_states()))
    if rt.wanted("regulator_states"):
        rt.publish("regulator_states",
                   m.RegulatorStates.model_construct(time_s=t, **model.regulator_states()))
    if rt.wanted("branch_flows"):
        rt.publish("branch_flows", m.BranchFlows.model_construct(time_s=t, **model.branch_flows()))
    if rt.wanted("capacitor_states"):
        states = model.capacitor_states()
        rt.publish("capacitor_states", m.CapacitorStates.model_construct(
            time_s=t, ids=list(states), states=list(states.values()),
            **model.capacitor_ratings()))


def topology_message(model: FeederModel, t: float) -> m.Topology:
    """The network model as a Topology message.

    Only the admittance changes from one revision to the next (taps, capacitors); the rest
    is built once per model and reused, and nothing is validated again (the feeder makes
    every array aligned by construction): republishing cost 8 ms a time before.
    """
    net = model.network
    static = getattr(model, "_topology_parts", None)
    if static is None:
        ids = net.ids
        static = model._topology_parts = {
            "ids": ids,
            "base_voltage_magnitudes": m.VoltagesMagnitude.model_construct(
                ids=ids, values=[net.base_v[n] for n in ids], units="V"),
            "base_voltage_angles": m.VoltagesAngle.model_construct(
                ids=ids, values=[float(net.noload_angle_deg[n]) for n in ids], units="deg"),
            "slack_bus": net.slack_nodes,
            "branches": [m.BranchAdmittance(**b, switch=b["name"] in model.catalog.switches)
                         for b in net.branches],
            "device_nodes": net.device_nodes,
        }
    y = net.y.tocoo()
    ids = static["ids"]
    admittance = m.AdmittanceSparse.model_construct(
        from_equipment=[ids[i] for i in y.row], to_equipment=[ids[j] for j in y.col],
        admittance_list=list(zip(y.data.real.tolist(), y.data.imag.tolist())), units="S")
    return m.Topology.model_construct(time_s=t, admittance=admittance, revision=net.revision,
                                      **static)


class _Stats:
    """Deterministic key figures of the feeder's run, for summary.json."""

    def __init__(self):
        self.steps = 0
        self.v_max: list[float] = []
        self.v_min: list[float] = []
        self.rejected = 0

    def add(self, v_pu: np.ndarray, rejected: list[Rejected]) -> None:
        energized = v_pu[v_pu > 0.1]
        self.steps += 1
        self.v_max.append(float(energized.max()))
        self.v_min.append(float(energized.min()))
        self.rejected += len(rejected)

    def summary(self, model: FeederModel) -> dict:
        return {
            "steps": self.steps,
            "nodes": len(model.node_ids),
            "v_max_pu": max(self.v_max, default=None),
            "v_min_pu": min(self.v_min, default=None),
            "v_max_pu_per_step": self.v_max,
            "v_min_pu_per_step": self.v_min,
            "rejected_commands": self.rejected,
        }
