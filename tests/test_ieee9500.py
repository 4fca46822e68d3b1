"""State estimation on IEEE 9500 (9,501 nodes) with the feeder, sensor and estimator code,
without a broker (`gridsim.federates.chain`), and the switch rule on IEEE 123.

IEEE 9500 as bundled: constant loads, 9 generators and 2 storage units, 109 switches (11
open), seven 480 V delta secondaries behind its DER transformers, two dead nodes beyond open
switches. The feeder's noon state is turned into its messages once; the sensor is that of
``scenarios/ieee123-se.yaml`` (37 % |V| meters at sigma 0.005 p.u., pseudo-measurements of
every load at 30 %, DER telemetry, the substation's |V|, P and Q).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from gridsim.federates.chain import EstimatorChain, SensorChain, feeder_step
from gridsim.federates.feeder.model import FeederModel
from gridsim.federates.wls.adapter import measurement_set
from gridsim.federates.wls.functions import Functions
from gridsim.feeders import resolve
from gridsim.network import Network, is_switch_conductor

SENSOR = {"metered_fraction": 0.37, "sigma_v_pu": 0.005, "pseudo_rel_error": 0.3}


def feeder(name: str) -> dict:
    model = FeederModel(resolve(name, Path("."), "test"), datetime(2026, 7, 1, 12), 900)
    return feeder_step(model, 0.0)


@pytest.fixture(scope="module")
def f9500() -> dict:
    return feeder("ieee9500")


@pytest.fixture(scope="module")
def truth(f9500) -> dict[str, complex]:
    vm, va = f9500["voltages_magnitude"], f9500["voltages_angle"]
    return {n: r * np.exp(1j * np.radians(a)) for n, r, a in zip(vm.ids, vm.values, va.values)}


@pytest.fixture(scope="module")
def estimates(f9500) -> list:
    """Three estimates (sensor seeds 0, 1, 2), warm-started in sequence, and their chain."""
    chain = EstimatorChain()
    out = [chain.estimate(f9500["topology"], SensorChain(SENSOR, seed).measure(0, f9500))
           for seed in range(3)]
    return out, chain


def merged_pairs(topology) -> list[tuple[str, str, str]]:
    return [(b.name, a, c) for b in topology.branches
            for i, (a, c) in enumerate(zip(b.from_nodes, b.to_nodes))
            if a and c and is_switch_conductor(b, i)]


def test_only_closed_switches_are_merged(f9500, truth):
    """98 closed switches (234 conductors) and nothing else; their ends agree to 1e-6 p.u.
    in the power flow (the former p.u. threshold also merged 69 kV lines 1e-3 p.u. apart)."""
    top = f9500["topology"]
    switches = {b.name for b in top.branches if b.switch}
    assert len(switches) == 109
    pairs = merged_pairs(top)
    assert {name for name, _, _ in pairs} <= switches
    assert len(pairs) == 234 and len({name for name, _, _ in pairs}) == 98
    assert max(abs(truth[a] - truth[c]) for _, a, c in pairs) < 1e-6
    net = Network.from_topology(top)
    assert all(net.state_of[net.index[a]] == net.state_of[net.index[c]] for _, a, c in pairs)
    assert net.n == len(net.ids) - 234


def test_the_der_delta_secondaries_are_the_floating_islands(f9500):
    net = Network.from_topology(f9500["topology"])
    islands = [net.nodes_of(g) for g in net.floating]
    assert len(islands) == 7
    assert all(any("der480" in node for node in nodes) for nodes in islands)


def test_meters_only_on_energized_phase_nodes(f9500, truth):
    chain = SensorChain(SENSOR, 0)
    chain.measure(0, f9500)
    metered = chain.sensor.plan.metered_nodes
    assert all(node.rsplit(".", 1)[1] in ("1", "2", "3") for node in metered)
    assert min(abs(truth[node]) for node in metered) > 0.1
    candidates = [n for n, v in truth.items() if abs(v) > 0.1 and n[-2:] in (".1", ".2", ".3")
                  and n not in f9500["topology"].slack_bus]
    assert len(metered) == round(0.37 * len(candidates))


def test_generator_and_storage_telemetry_reach_the_pseudo_measurements(f9500):
    """The 1 MW steam generator: 333 kW per phase, not 0 +- 0.1 kW."""
    gens = f9500["generator_states"]
    assert gens.kind.count("generator") == 9 and gens.kind.count("storage") == 2
    assert gens.p_kw[gens.ids.index("steamgen1")] == pytest.approx(1000.0, rel=1e-3)
    out = SensorChain(SENSOR, 0).measure(0, f9500)["powers_real"]
    p = dict(zip(out.ids, zip(out.values, out.accuracy, out.pseudo)))
    value, sigma, pseudo = p["m1026chp-3.1"]
    assert pseudo and value == pytest.approx(333.3, rel=1e-3) and sigma == pytest.approx(3.33,
                                                                                       rel=1e-2)


def test_the_measurement_model_agrees_with_the_truth(f9500, truth):
    """At the true state the objective is what the noise alone gives (about one per
    measurement; it was 7.4e7 with the generators pseudo-measured at 0), and the zero-
    injection currents are at the power flow's tolerance."""
    measured = SensorChain(SENSOR, 0).measure(0, f9500)
    chain = EstimatorChain()
    chain.estimate(f9500["topology"], measured)
    est = chain.estimator
    net = est.net
    ms = measurement_set(net, {"topology": f9500["topology"], **measured})
    v = np.zeros(net.n, dtype=complex)
    for node, i in net.index.items():
        v[net.state_of[i]] = truth[node]
    x = np.concatenate([v.real, v.imag])
    h, _ = Functions(ms, net.n).evaluate(x)
    r = (ms.value - h) / ms.sigma
    assert r @ r < 1.1 * len(ms)
    assert np.abs(r).max() < 6.0
    assert np.abs(est._constraints(x)[0]).max() < 1e-2


def test_estimates_converge_pass_the_chi_square_test_and_are_accurate(estimates):
    results, chain = estimates
    for result in results:
        assert result.converged
        assert result.removed == []
        assert result.objective <= result.chi2_threshold
        assert len(result.unobservable) == 0
    assert chain.estimator.net.n == 9501 - 234


def test_estimates_are_accurate(estimates, f9500):
    results, chain = estimates
    errors = chain.node_errors(results[-1], f9500)
    assert errors.mean() < 0.002
    assert errors.max() < 0.05  # an unmetered 120 V secondary: its load is known to 30 %


def test_a_gross_error_is_found_and_named(estimates, f9500):
    """A |V| meter 0.1 p.u. (20 sigma) high: removed, and nothing else."""
    _, chain = estimates
    sensor = SensorChain(SENSOR, 0)
    sensor.measure(0, f9500)
    node = sensor.sensor.plan.metered_nodes[100]
    bad = SensorChain({**SENSOR, "bad_data": [
        {"id": node, "quantity": "v", "offset": 0.1, "from_step": 0}]}, 0)
    result = chain.estimate(f9500["topology"], bad.measure(0, f9500))
    assert result.removed == [f"voltages_magnitude:{node}"]
    assert result.converged and result.objective <= result.chi2_threshold


def test_ieee123_merges_its_eight_switches_only():
    """sw1..sw6 (OpenDSS's default 1.4e-3 ohm) and sw7, sw8 (1e-6 ohm), as before."""
    top = feeder("ieee123")["topology"]
    pairs = merged_pairs(top)
    assert {name for name, _, _ in pairs} == {f"sw{i}" for i in range(1, 9)}
    assert len(pairs) == 22
    assert Network.from_topology(top).floating == []
