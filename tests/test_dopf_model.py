"""The DOPF's linear model against OpenDSS (the seed's validation, Fig. 4-5).

IEEE 123 at noon with twice the PV, regulator and capacitor controls off so that only the
control under test moves: the model is built at the solved state, one device is moved,
OpenDSS solves again, and the predicted voltage changes must match the real ones.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import opendssdirect as dss
import pytest

from gridsim.federates.dopf.sensitivity import Devices, DiscreteDevices, linearize
from gridsim.federates.feeder.adapter import topology_message
from gridsim.federates.feeder.model import FeederModel
from gridsim.feeders import resolve
from gridsim.messages import CapacitorStates, LoadStates, PVStates, RegulatorStates
from gridsim.network import Network

NOON = datetime(2026, 7, 1, 12)


def solved_model() -> FeederModel:
    model = FeederModel(resolve("ieee123", Path("."), "test"), NOON, 900, pv_scale=2.0)
    dss.Text.Command("set controlmode=off")
    model.solve()
    model.sync_network()
    return model


def node_voltages(model: FeederModel, ids: list[str]) -> np.ndarray:
    """Complex node voltages in p.u. of node base, in `ids` order."""
    v = dict(zip(model.node_ids, model.voltages()))
    base = dict(zip(model.network.ids, [model.network.base_v[n] for n in model.network.ids]))
    return np.array([v[n] / base[n] for n in ids])


@pytest.fixture(scope="module")
def base():
    """(linear model, devices, |V| before, kW drawn by each load) at the solved noon state,
    every load flexible."""
    model = solved_model()
    topology = topology_message(model, 0.0)
    net = Network.from_topology(topology)
    loads = LoadStates(**model.load_states())
    devices = Devices.from_states(net, PVStates(**model.pv_states()), loads, loads.ids)
    regulators, capacitors = discrete_states(model)
    discrete = DiscreteDevices.from_states(net, regulators, capacitors, regulators.ids,
                                           capacitors.ids)
    v = node_voltages(model, net.ids)
    return (linearize(net, v, devices, discrete), devices, np.abs(v),
            dict(zip(loads.ids, loads.p_kw)))


def discrete_states(model: FeederModel) -> tuple[RegulatorStates, CapacitorStates]:
    """The feeder's regulator and capacitor messages, as the DOPF receives them."""
    states = model.capacitor_states()
    return (RegulatorStates(**model.regulator_states()),
            CapacitorStates(ids=list(states), states=list(states.values()),
                            **model.capacitor_ratings()))


def moved(command) -> np.ndarray:
    """|V| after the same noon step is solved with `command(model)` applied first."""
    model = FeederModel(resolve("ieee123", Path("."), "test"), NOON, 900, pv_scale=2.0)
    dss.Text.Command("set controlmode=off")
    command(model)
    model.solve()
    model.sync_network()
    return np.abs(node_voltages(model, model.network.ids))


def check(predicted: np.ndarray, actual: np.ndarray, relative: float) -> None:
    """Predicted changes match OpenDSS's within `relative` of the largest change."""
    assert np.abs(actual).max() > 1e-4, "the control moved nothing measurable"
    error = np.abs(predicted - actual).max()
    assert error <= relative * np.abs(actual).max(), (error, np.abs(actual).max())


def test_pv_curtailment(base):
    model, devices, v0, _ = base
    i = devices.pv_ids.index("pv_48")
    available = 2 * 250.0 * 0.972  # 2 x Pmpp x irradiance at 12:00 (pv_clear_sky)
    limit = available - 200.0
    actual = moved(lambda m: m.set_pv("pv", ["pv_48"], [limit], [None])) - v0
    check(model.vp[:, i] * -200.0, actual, 0.05)


def test_pv_reactive_power(base):
    model, devices, v0, _ = base
    i = devices.pv_ids.index("pv_76")
    actual = moved(lambda m: m.set_pv("pv", ["pv_76"], [None], [-150.0])) - v0
    check(model.vq[:, i] * -150.0, actual, 0.05)


def test_load_shed(base):
    model, devices, v0, _ = base
    """Half of s76a (a constant-PQ load at the far end of the main feeder) shed."""
    model, devices, v0, drawn = base
    i = devices.load_ids.index("s76a")
    cap = drawn["s76a"] / 2
    actual = moved(lambda m: m.set_load_caps("caps", ["s76a"], [cap])) - v0
    check(model.vs[:, i] * (drawn["s76a"] - cap), actual, 0.05)


@pytest.mark.parametrize(("regulator", "steps"), [("creg2a", 2), ("creg1a", -3),
                                                  ("creg4b", 1)])
def test_regulator_tap(base, regulator, steps):
    """A tap move (single phase, or creg1a's three phases ganged at the head of the
    feeder) is a change of admittance; its response matches OpenDSS's."""
    model, _, v0, _ = base
    position = {name: tap for name, tap in zip(*_taps())}
    j = _taps()[0].index(regulator)
    actual = moved(lambda m: m.set_taps("taps", [regulator],
                                        [position[regulator] + steps])) - v0
    check(model.vt[:, j] * steps, actual, 0.05)


def _taps() -> tuple[list[str], list[int]]:
    states = RegulatorStates(**solved_model().regulator_states())
    return list(states.ids), list(states.tap)


@pytest.mark.parametrize("bank", ["c83", "c90b"])
def test_capacitor_switching(base, bank):
    """Opening a closed bank (600 kvar three-phase, 50 kvar single-phase) matches
    OpenDSS's response to the negative of its closing column."""
    model, _, v0, _ = base
    names = list(solved_model().capacitor_states())
    actual = moved(lambda m: m.set_capacitors("caps", [bank], [0])) - v0
    check(-model.vc[:, names.index(bank)], actual, 0.05)


def test_substation_power_and_losses(base):
    """1 kW more PV: the substation supplies about 1 kW less, losses change by little."""
    model, _, _, _ = base
    assert np.all(np.abs(model.psub_p + 1.0) < 0.1)
    assert np.all(np.abs(model.loss_p) < 0.1)


def test_only_flexible_loads_are_problem_variables(base):
    """The DOPF problem carries a shed variable (and a sensitivity column) per flexible
    load only, bounded by its share of demand."""
    from gridsim.federates.dopf.adapter import (
        DOPFSettings,
        build_problem,
        flexible_positions,
    )

    model = solved_model()
    pv, loads = PVStates(**model.pv_states()), LoadStates(**model.load_states())
    linear, _, _, _ = base
    params = {"flexible_loads": ["s76a", "s1a"], "shed_max_fraction": 0.5, "v_min": 0.95,
              "v_max": 1.05, "cost_curtailment": 1.0, "cost_shedding": 10.0,
              "weight_reactive": 1e-4}
    positions = flexible_positions(loads, params["flexible_loads"])
    assert [loads.ids[i] for i in positions] == ["s1a", "s76a"]
    problem = build_problem(linear, pv, loads, DOPFSettings.from_parameters(params))
    assert problem.n_load == 2
    assert problem.shed_max_kw == pytest.approx([0.5 * loads.demand_kw[i] for i in positions])
    assert np.array_equal(problem.vs_pu_per_kw, linear.vs[:, positions])


def test_columns_of_flexible_loads_only(base):
    """A model with shed columns for two loads only (what the federate builds: its
    flexible loads) has exactly those columns of the model with every load, and the same
    PV, tap and bank columns."""
    everything, _, _, _ = base
    model = solved_model()
    net = Network.from_topology(topology_message(model, 0.0))
    loads = LoadStates(**model.load_states())
    devices = Devices.from_states(net, PVStates(**model.pv_states()), loads, ["s76a", "s1a"])
    regulators, capacitors = discrete_states(model)
    discrete = DiscreteDevices.from_states(net, regulators, capacitors, regulators.ids,
                                           capacitors.ids)
    some = linearize(net, node_voltages(model, net.ids), devices, discrete)
    assert some.load_ids == ["s1a", "s76a"]
    columns = [everything.load_ids.index(load) for load in some.load_ids]
    np.testing.assert_allclose(some.vs, everything.vs[:, columns], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(some.psub_s, everything.psub_s[columns], rtol=1e-9)
    for name in ("v0", "vp", "vq", "vt", "vc", "psub_p", "psub_q", "psub_t", "psub_c"):
        np.testing.assert_allclose(getattr(some, name), getattr(everything, name),
                                   rtol=1e-9, atol=1e-15)
