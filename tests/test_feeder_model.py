"""The feeder's model alone: real OpenDSS, no broker.

`FeederModel` drives opendssdirect's single, process-wide OpenDSS instance, so every test
builds its own model (``compile`` replaces whatever circuit was there) and, where it compares
with an uncommanded reference, runs the reference to completion first.

The feeder is IEEE 123 with gridsim's overlay on 2026-07-01 (PV producing from about 06:00).
Loads used below: ``s1a`` (residential, constant PQ, 40 kW base) and ``s74c`` / ``s48``
(constant impedance: consumption grows with the square of the voltage).
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import opendssdirect as dss
import pytest

from gridsim.federates.feeder.model import FeederModel, Rejected, shape_multiplier
from gridsim.feeders import resolve

NOON = datetime(2026, 7, 1, 12)
STEP_S = 900.0
TAP_STEP_PU = 0.00625  # IEEE 123 regulators: 32 steps over +-10 %


def make_model(start: datetime = NOON, step_s: float = STEP_S) -> FeederModel:
    return FeederModel(resolve("ieee123", Path("."), "test"), start, step_s)


def run_reference(n_solves: int, start: datetime = NOON) -> list[dict]:
    """What an uncommanded model reports after each of `n_solves` solves."""
    model = make_model(start)
    states = []
    for _ in range(n_solves):
        model.solve()
        model.sync_network()
        ids, s = model.injections()
        states.append({"pv": model.pv_states(), "loads": model.load_states(),
                       "taps": model.regulator_states()["tap"],
                       "v_pu": dict(zip(model.node_ids, model.voltages_pu())),
                       "injections": dict(zip(ids, s)),
                       "slack": list(model.network.slack_nodes)})
    return states


def value(states: dict, field: str, device: str):
    """`field` of `device` in a pv_states / load_states / regulator_states dict."""
    return states[field][states["ids"].index(device)]


# -- PV ---------------------------------------------------------------------------------


def test_pv_curtailment_limits_output_not_availability():
    ref = run_reference(3)
    model = make_model()
    model.solve()
    assert value(model.pv_states(), "p_kw", "pv_48") > 200.0  # 250 kW at noon, clear sky

    assert model.set_pv("pv_setpoints", ["pv_48"], [100.0], [None]) == (1, [])
    model.solve()
    pv = model.pv_states()
    assert value(pv, "p_kw", "pv_48") == pytest.approx(100.0, rel=0.01)
    assert value(pv, "available_kw", "pv_48") == pytest.approx(
        value(ref[1]["pv"], "available_kw", "pv_48"), rel=1e-9)
    assert value(pv, "available_kw", "pv_48") > 200.0
    for other in ("pv_76", "pv_1"):
        assert value(pv, "p_kw", other) == pytest.approx(value(ref[1]["pv"], "p_kw", other),
                                                         rel=1e-3)

    # a limit at or above Pmpp lifts the curtailment
    assert model.set_pv("pv_setpoints", ["pv_48"], [1e6], [None]) == (1, [])
    model.solve()
    assert value(model.pv_states(), "p_kw", "pv_48") == pytest.approx(
        value(ref[2]["pv"], "p_kw", "pv_48"), rel=1e-3)


def test_pv_reactive_setpoint():
    ref = run_reference(2)
    model = make_model()
    model.solve()
    assert abs(value(model.pv_states(), "q_kvar", "pv_76")) < 0.5  # unity power factor

    accepted, rejected = model.set_pv("pv_setpoints", ["PV_76", "pv_114"], [None, None],
                                      [50.0, -30.0])
    assert (accepted, rejected) == (2, [])
    model.solve()
    pv = model.pv_states()
    assert value(pv, "q_kvar", "pv_76") == pytest.approx(50.0, rel=0.02)
    assert value(pv, "q_kvar", "pv_114") == pytest.approx(-30.0, rel=0.02)
    # within the inverter's kVA, active output is untouched
    for name in ("pv_76", "pv_114"):
        assert value(pv, "p_kw", name) == pytest.approx(value(ref[1]["pv"], "p_kw", name),
                                                        rel=1e-3)


# -- loads ------------------------------------------------------------------------------


def test_load_cap_on_constant_power_load_and_its_removal():
    ref = run_reference(3)
    model = make_model()
    model.solve()
    demand = value(model.load_states(), "demand_kw", "s1a")
    assert demand > 15.0

    assert model.set_load_caps("load_caps", ["S1a"], [10.0]) == (1, [])
    model.solve()
    loads = model.load_states()
    # a constant-PQ load draws its kW exactly (to the power flow's tolerance)
    assert value(loads, "p_kw", "s1a") == pytest.approx(10.0, rel=1e-4)
    assert value(loads, "demand_kw", "s1a") == pytest.approx(
        value(ref[1]["loads"], "demand_kw", "s1a"), rel=1e-12)
    assert value(loads, "demand_kw", "s1a") > 15.0
    assert value(loads, "cap_kw", "s1a") == 10.0

    assert model.set_load_caps("load_caps", ["s1a"], [None]) == (1, [])
    model.solve()
    loads = model.load_states()
    assert value(loads, "cap_kw", "s1a") is None
    assert model.regulator_states()["tap"] == ref[2]["taps"]
    # back to the reference run's consumption, to the power flow's tolerance (the two
    # runs reached step 2 by different iterations; both agree to about 2e-6 here)
    for name in ("s1a", "s74c"):
        assert value(loads, "p_kw", name) == pytest.approx(
            value(ref[2]["loads"], "p_kw", name), rel=1e-4), name


def test_load_cap_above_demand_changes_nothing():
    ref = run_reference(2)
    model = make_model()
    model.solve()
    assert model.set_load_caps("load_caps", ["s1a", "s48"], [1000.0, 1000.0]) == (2, [])
    model.solve()
    loads = model.load_states()
    for name in ("s1a", "s48"):
        assert value(loads, "p_kw", name) == pytest.approx(
            value(ref[1]["loads"], "p_kw", name), rel=1e-9)


def test_load_cap_bounds_consumption_of_voltage_dependent_loads():
    """A cap bounds what the load consumes (`LoadStates.p_kw`), not its nominal kW.

    ``s74c`` and ``s48`` are constant-impedance loads: they draw kW * (V / V_nominal)^2, and
    at noon their nodes sit at about 1.03 p.u. (the regulators boost), so a cap applied to
    the nominal kW alone is exceeded by about 6 %. The 1 % allowed here is what a
    correction from the last solve's voltage would leave: from one step to the next the
    voltage at a node moves by well under 0.5 %, and consumption by twice that.
    """
    model = make_model()
    model.solve()
    caps = {"s74c": 11.0, "s48": 100.0}
    loads = model.load_states()
    for name, cap in caps.items():
        assert value(loads, "demand_kw", name) > 1.5 * cap
    assert model.set_load_caps("load_caps", list(caps), list(caps.values())) == (2, [])
    for step in range(3):
        model.solve()
        loads = model.load_states()
        for name, cap in caps.items():
            assert value(loads, "p_kw", name) <= cap * 1.01, f"{name} after {step + 1} steps"
            assert value(loads, "p_kw", name) >= cap * 0.9, f"{name} after {step + 1} steps"


# -- capacitors -------------------------------------------------------------------------


def test_open_capacitor_changes_network_and_flows():
    ref = run_reference(2)
    model = make_model()
    model.solve()
    assert model.sync_network() is True  # the first network
    net = model.network
    i83 = net.ids.index("83.1")
    y_closed = net.y[i83, i83]
    kvar = dict(zip(dss.Capacitors.AllNames(), model.capacitor_ratings()["kvar"]))["c83"]
    assert model.capacitor_states()["c83"] == [1]

    assert model.set_capacitors("capacitor_commands", ["C83"], [0]) == (1, [])
    model.solve()
    assert model.capacitor_states() == {"c83": [0], "c88a": [1], "c90b": [1], "c92c": [1]}
    assert model.sync_network() is True
    # the network model lost the bank's susceptance: kvar / 3 per phase at base voltage
    b_phase = kvar * 1000.0 / 3 / net.base_v["83.1"] ** 2
    assert net.y[i83, i83] - y_closed == pytest.approx(-1j * b_phase, rel=1e-6)

    # the substation now supplies the bank's former output (kvar * v^2 per phase; 20 %
    # leaves room for the regulators' reaction and the change in reactive losses), and
    # voltages at bus 83 change
    ids, s = model.injections()
    injections = dict(zip(ids, s))
    slack = ref[1]["slack"]
    q_sub = sum(injections[n].imag for n in slack)
    q_sub_ref = sum(ref[1]["injections"][n].imag for n in slack)
    q_bank = sum(kvar / 3 * ref[1]["v_pu"][f"83.{p}"] ** 2 for p in (1, 2, 3))
    assert q_sub - q_sub_ref == pytest.approx(q_bank, rel=0.2)
    v = dict(zip(model.node_ids, model.voltages_pu()))
    assert max(abs(v[f"83.{p}"] - ref[1]["v_pu"][f"83.{p}"]) for p in (1, 2, 3)) > 1e-3

    # and back
    assert model.set_capacitors("capacitor_commands", ["c83"], [1]) == (1, [])
    model.solve()
    assert model.capacitor_states()["c83"] == [1]
    assert model.sync_network() is True
    assert net.y[net.ids.index("83.1"), net.ids.index("83.1")] == pytest.approx(y_closed,
                                                                               rel=1e-12)


# -- regulators -------------------------------------------------------------------------


def test_tap_that_automatic_control_would_undo():
    """Without the command's disabling, the regulator control moves a tap set by hand."""
    model = make_model()
    model.solve()
    dss.RegControls.Name("creg1a")
    dss.RegControls.TapNumber(-10)
    model.solve()
    assert value(model.regulator_states(), "tap", "creg1a") != -10


def test_tap_command_moves_and_holds_regulator():
    """A commanded tap holds over later steps; a second command moves it again.

    The network model (topology, injections) must follow every commanded tap, also when
    the regulator's control is already disabled by an earlier command.
    """
    model = make_model()
    model.solve()
    model.sync_network()
    net = model.network.ctx
    for tap in (-10, -5):
        assert model.set_taps("tap_commands", ["CREG1A"], [tap]) == (1, [])
        for step in range(3):
            where = f"tap {tap}, step {step + 1}"
            model.solve()
            regs = model.regulator_states()
            assert len(regs["tap"]) == len(regs["ids"]) == 7, f"{where}: {regs}"
            assert value(regs, "tap", "creg1a") == tap, where
            assert value(regs, "tap_ratio", "creg1a") == pytest.approx(1 + tap * TAP_STEP_PU)
            model.sync_network()
            net.Transformers.Name("reg1a")
            net.Transformers.Wdg(2)
            assert net.Transformers.Tap() == pytest.approx(1 + tap * TAP_STEP_PU), where


# -- rejections -------------------------------------------------------------------------


def check_rejected(rejected: list[Rejected], port: str, names: list[str]) -> None:
    assert [r.name for r in rejected] == names
    for r in rejected:
        assert isinstance(r, Rejected)
        assert r.port == port
        assert r.reason.strip(), r


def test_bad_commands_are_rejected_with_reasons():
    model = make_model()
    model.solve()
    accepted, rejected = model.set_pv("pv_setpoints", ["pv_nope", "pv_48"], [None, None],
                                      [10.0, 5.0])
    assert accepted == 1
    check_rejected(rejected, "pv_setpoints", ["pv_nope"])

    accepted, rejected = model.set_load_caps("load_caps", ["load_nope", "s1a", "s2b"],
                                             [5.0, -1.0, 3.0])
    assert accepted == 1
    check_rejected(rejected, "load_caps", ["load_nope", "s1a"])
    assert "-1" in rejected[1].reason

    accepted, rejected = model.set_capacitors("capacitor_commands",
                                              ["cap_nope", "c83", "c88a"], [0, 2, 0])
    assert accepted == 1
    check_rejected(rejected, "capacitor_commands", ["cap_nope", "c83"])
    assert "2" in rejected[1].reason

    accepted, rejected = model.set_taps("tap_commands", ["creg_nope", "creg1a", "creg2a"],
                                        [0, 17, -17])
    assert accepted == 0
    check_rejected(rejected, "tap_commands", ["creg_nope", "creg1a", "creg2a"])
    assert "17" in rejected[1].reason and "16" in rejected[1].reason

    model.solve()  # still converges; only the accepted commands took effect
    loads = model.load_states()
    assert value(loads, "cap_kw", "s1a") is None
    assert value(loads, "cap_kw", "s2b") == 3.0
    assert model.capacitor_states()["c83"] == [1]
    assert model.capacitor_states()["c88a"] == [0]
    assert value(model.pv_states(), "q_kvar", "pv_48") == pytest.approx(5.0, rel=0.02)


@pytest.mark.parametrize("command", [
    ("set_load_caps", "load_caps", ["s1a"], [math.nan]),
    ("set_pv", "pv_setpoints", ["pv_48"], [math.nan], [None]),
    ("set_pv", "pv_setpoints", ["pv_48"], [None], [math.nan]),
], ids=["load-cap-nan", "pv-p-nan", "pv-q-nan"])
def test_non_finite_values_are_rejected(command):
    """JSON ``NaN`` parses into these messages' floats; it must not reach OpenDSS."""
    method, port, *args = command
    model = make_model()
    model.solve()
    accepted, rejected = getattr(model, method)(port, *args)
    assert accepted == 0
    check_rejected(rejected, port, args[0])
    model.solve()  # must not raise SolveError


# -- injections and load shapes ---------------------------------------------------------


@pytest.mark.parametrize("hour", [3, 12, 19])
def test_injections_sum_to_losses(hour):
    model = make_model(datetime(2026, 7, 1, hour))
    model.solve()
    model.sync_network()
    ids, s = model.injections()
    assert len(ids) == len(s) == len(set(ids))
    losses_kw = dss.Circuit.Losses()[0] / 1000.0
    load_kw = sum(model.load_states()["p_kw"])
    assert 0 < losses_kw < 0.05 * load_kw
    assert s.real.sum() == pytest.approx(losses_kw, rel=1e-6)


def test_shape_multiplier_reads_point_i_at_i_plus_one_intervals():
    mults = np.array([0.1, 0.2, 0.3, 0.4])
    assert shape_multiplier(0.25, mults, 0.25) == 0.1
    assert shape_multiplier(0.25, mults, 0.5) == 0.2
    assert shape_multiplier(0.25, mults, 1.0) == 0.4
    assert shape_multiplier(0.25, mults, 0.0) == 0.4   # wraps: time 0 is the shape's end
    assert shape_multiplier(0.25, mults, 1.25) == 0.1
    assert shape_multiplier(0.0, mults, 3.0) == 1.0    # no interval: no shape


@pytest.mark.parametrize("start, step_s", [
    (datetime(2026, 7, 1, 0, 0), 900.0),
    (datetime(2026, 7, 1, 12, 0), 900.0),
    (datetime(2026, 7, 1, 23, 45), 900.0),
    (datetime(2026, 7, 1, 12, 5), 300.0),
    (datetime(2026, 7, 1, 12, 10), 300.0),
    (datetime(2026, 7, 1, 7, 10), 300.0),
], ids=lambda v: v.strftime("%H%M") if isinstance(v, datetime) else f"{v:g}s")
def test_shape_multiplier_matches_opendss(start, step_s):
    """Constant-PQ loads draw base kW times what OpenDSS reads from the shape.

    15-minute shapes, so with a 5-minute step the solve times fall between shape points.
    """
    model = make_model(start, step_s)
    model.solve()
    hour = dss.Solution.DblHour()
    assert hour == pytest.approx(start.hour + start.minute / 60)
    loads = model.load_states()
    for name, shape in (("s1a", "residential"), ("s49a", "commercial")):
        dss.Loads.Name(name)
        assert dss.Loads.Model() == 1 and dss.Loads.Daily().lower() == shape
        base = dss.Loads.kW()
        interval, mults = model.catalog.shapes[shape]
        actual = value(loads, "p_kw", name) / base
        assert shape_multiplier(interval, mults, hour) == pytest.approx(actual, rel=1e-4), name
        assert value(loads, "demand_kw", name) == pytest.approx(value(loads, "p_kw", name),
                                                                rel=1e-4), name
