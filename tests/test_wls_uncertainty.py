"""The estimator's sigma of |V| per node (`federates/wls/uncertainty.py`).

A Monte Carlo on the test network of `federates/wls/examples.py` (``s - a - b``, ``a - c = d``)
checks the published sigma against the spread of estimates from noisy measurements; the
rest checks its properties (more or better meters, fewer unknowns: smaller sigma; nothing
for a node only the prior decides), that the frontal inverse agrees with one solve per node,
and what the |V| message carries.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from gridsim.federates.wls import adapter, uncertainty
from gridsim.federates.wls.estimator import Settings, WLSEstimator
from gridsim.federates.wls.examples import (
    DEVICES,
    LINES,
    exact_measurements,
    nodes,
    topology,
    true_state,
)
from gridsim.federates.wls.functions import Functions
from gridsim.network import Network

SPARSE = {"vmag_nodes": nodes("s"), "flows": ("l1",), "pmu_nodes": ("b.1",)}
"""The slack's |V|, both flows of l1, one PMU angle, the device injections: sigmas differ
from node to node (0.77e-3 to 1.0e-3 p.u.)."""


def network(lines: dict = LINES, devices=DEVICES, seed: int = 0):
    msg, y = topology(lines, devices)
    return msg, y, Network.from_topology(msg), true_state(msg, y, seed, lines=lines)


def node_sigma(net: Network, result) -> np.ndarray:
    return net.node_voltages(result.vmag_sigma)


@pytest.mark.parametrize("lines, metering", [(LINES, {}), (LINES, SPARSE), ("loop", SPARSE)],
                         ids=["full", "sparse", "sparse-loop"])
def test_monte_carlo_spread_matches_the_published_sigma(lines, metering):
    """Gaussian noise of the stated sigmas on every measurement, 300 seeded trials, each
    estimate warm-started from the noise-free one as the federate starts from the last step:
    the standard deviation of every node's |V| estimate is the published sigma within 15 %.
    Found (empirical / published, over the nodes): 1.016 to 1.053 with full metering, 0.949
    to 0.961 sparse, 0.939 to 0.972 sparse with the loop. One ratio's sampling error is 4 %,
    and the nodes' estimates move together, so their ratios are close to one another.

    Warm-started because from the no-load start the estimator's chord iterations keep the
    no-load factorization, and with noisy measurements their fixed point is not quite the
    WLS minimum: sparse, each trial from the no-load start, the spread was 26 % wider than
    sigma (on IEEE 123 over a day, warm-started, the estimate is within 2 % of sigma of the
    minimum)."""
    msg, y, net, v = network(looped() if lines == "loop" else lines)
    clean = exact_measurements(net, msg, y, v, **metering)
    est = WLSEstimator(net, Settings(max_removals=0))
    reference = est.estimate(clean)
    sigma = reference.vmag_sigma
    rng = np.random.default_rng(2026)
    magnitudes = []
    for _ in range(300):
        noisy = exact_measurements(net, msg, y, v, **metering)
        noisy.value = noisy.value + noisy.sigma * rng.standard_normal(len(noisy))
        trial = WLSEstimator(net, Settings(max_removals=0))
        trial.x = est.x.copy()
        result = trial.estimate(noisy)
        assert result.converged
        magnitudes.append(np.abs(result.v))
    ratio = np.std(magnitudes, axis=0, ddof=1) / sigma
    assert np.all((ratio > 0.85) & (ratio < 1.15)), ratio


def test_more_and_better_meters_give_smaller_sigma():
    """|V| meters at the slack only, then also at b, then at every node; then every meter
    twice as good: sigma never grows, and drops where a meter was added."""
    msg, y, net, v = network()

    def sigma(**kw):
        result = WLSEstimator(net).estimate(exact_measurements(net, msg, y, v, **kw))
        return node_sigma(net, result)

    slack_only = sigma(vmag_nodes=nodes("s"))
    with_b = sigma(vmag_nodes=nodes("s") + nodes("b"))
    everywhere = sigma()
    better = sigma(sigma=0.5e-3)
    b = [msg.ids.index(n) for n in nodes("b")]
    assert np.all(with_b <= slack_only * (1 + 1e-9))
    assert np.all(with_b[b] < 0.8 * slack_only[b])
    assert np.all(everywhere <= with_b * (1 + 1e-9))
    assert np.all(better < everywhere)


def test_a_node_only_the_prior_decides_is_not_published():
    """Bus e behind its own lateral, with a load but no meter or pseudo-measurement: e is
    unobservable, gets no sigma and is not in the message; every published node has a
    finite, positive sigma, aligned with its id."""
    lines = {**LINES, "l4": ("s", "e", 0.5)}
    msg, y, net, v = network(lines, (*DEVICES, "e"))
    ms = exact_measurements(net, msg, y, v, vmag_nodes=[n for n in msg.ids if n[0] != "e"])
    ms = ms.without({i for i, label in enumerate(ms.label) if label.startswith(("p:e", "q:e"))})
    result = WLSEstimator(net).estimate(ms)
    assert sorted(net.nodes_of(result.unobservable)) == nodes("e")
    assert np.all(np.isnan(result.vmag_sigma[result.unobservable]))
    message = adapter.estimate_messages(net, result, 0.0, 0.0)["voltages_magnitude"]
    assert not set(message.ids) & set(nodes("e"))
    sigma = np.array(message.accuracy)
    assert len(sigma) == len(message.ids) and np.all(np.isfinite(sigma)) and np.all(sigma > 0)
    state = net.state_of[[net.index[node] for node in message.ids]]
    assert np.array_equal(sigma, result.vmag_sigma[state])


def looped() -> dict:
    """The test network with a line b - c closing a loop a - b - c - a."""
    return {**LINES, "l5": ("b", "c", 1.5)}


@pytest.mark.parametrize("lines", [LINES, looped()], ids=["radial", "loop"])
@pytest.mark.parametrize("metering", [{}, SPARSE], ids=["full", "sparse"])
def test_frontal_inverse_agrees_with_a_solve_per_node(lines, metering):
    """Forcing the per-node solves (a check tolerance no result can meet) changes no sigma
    by more than 1e-8 relative, on a radial network and on one with a loop."""
    msg, y, net, v = network(lines)
    ms = exact_measurements(net, msg, y, v, **metering)
    frontal = WLSEstimator(net)
    a = frontal.estimate(ms)
    solved = WLSEstimator(net, Settings(uncertainty_rtol=-1.0))
    b = solved.estimate(ms)
    assert (frontal.uncertainty.method, solved.uncertainty.method) == ("frontal", "solve")
    np.testing.assert_allclose(a.vmag_sigma, b.vmag_sigma, rtol=1e-8)


def test_sigma_is_that_of_the_matrix_at_the_solution():
    """From the no-load start the estimator keeps its first factorization (chord
    iterations), whose Jacobian is the no-load one; sigma is still that of ``K`` at the
    solution: the same as from a warm start, and as a dense inverse of ``K`` there."""
    msg, y, net, v = network()
    ms = exact_measurements(net, msg, y, v, **SPARSE)
    cold = WLSEstimator(net)
    first = cold.estimate(ms)
    warm = WLSEstimator(net)
    warm.x = cold.x.copy()
    second = warm.estimate(ms)
    np.testing.assert_allclose(first.vmag_sigma, second.vmag_sigma, rtol=1e-6)
    x = cold.x
    _, jac = Functions(ms, net.n).evaluate(x)
    cjac = cold._cjac
    kkt = sp.bmat([[sp.diags(ms.sigma ** 2), jac, None], [jac.T, -cold._prior, cjac.T],
                   [None, cjac, None]])
    inv = np.linalg.inv(kkt.toarray())
    n, m = net.n, len(ms)
    e, f = x[:n], x[n:]
    g = np.concatenate([np.diag(e), np.diag(f)]) / np.hypot(e, f)
    block = inv[m:m + 2 * n, m:m + 2 * n]
    dense = np.sqrt(-np.einsum("ij,ik,kj->j", g, block, g))
    np.testing.assert_allclose(first.vmag_sigma, dense, rtol=1e-6)


def test_a_floating_island_is_estimated_with_its_prior_counted():
    """The delta island of test_wls.py (one |V| meter on it): its nodes get a sigma that
    counts the island prior, finite and agreeing with the per-node solves."""
    from test_wls import delta_island

    top, y, v = delta_island()
    net = Network.from_topology(top)
    meters = [n for n in top.ids if not n.startswith("f")] + ["f.1"]
    ms = exact_measurements(net, top, y, v, vmag_nodes=meters)
    a = WLSEstimator(net).estimate(ms)
    b = WLSEstimator(net, Settings(uncertainty_rtol=-1.0)).estimate(ms)
    assert np.all(np.isfinite(a.vmag_sigma)) and np.all(a.vmag_sigma > 0)
    np.testing.assert_allclose(a.vmag_sigma, b.vmag_sigma, rtol=1e-8)


def test_no_sigma_when_switched_off_or_over_budget():
    """`uncertainty` off, or the fallback solves over `uncertainty_max_entries`: no sigma,
    and the |V| message goes out without accuracy."""
    msg, y, net, v = network()
    ms = exact_measurements(net, msg, y, v)
    for settings in (Settings(uncertainty=False),
                     Settings(uncertainty_rtol=-1.0, uncertainty_max_entries=1.0)):
        result = WLSEstimator(net, settings).estimate(ms)
        assert result.converged and result.vmag_sigma is None
        message = adapter.estimate_messages(net, result, 0.0, 0.0)["voltages_magnitude"]
        assert message.accuracy is None


def test_an_unconverged_estimate_has_no_sigma():
    msg, y, net, v = network()
    result = WLSEstimator(net, Settings(max_iterations=1)).estimate(
        exact_measurements(net, msg, y, v))
    assert not result.converged and result.vmag_sigma is None


def test_sigma_is_deterministic():
    msg, y, net, v = network()
    ms = exact_measurements(net, msg, y, v, **SPARSE)
    first = WLSEstimator(net).estimate(ms).vmag_sigma
    assert np.array_equal(first, WLSEstimator(net).estimate(ms).vmag_sigma)


def test_parameter_switches_it_off():
    parameters = {"s_base_kva": 1000.0, "max_iterations": 20, "tolerance": 1e-9,
                  "bad_data": True, "chi2_confidence": 0.95, "lnr_threshold": 4.0,
                  "max_removals": 10, "uncertainty": True}
    assert adapter.WLSSettings.from_parameters(parameters).estimator.uncertainty
    off = adapter.WLSSettings.from_parameters({**parameters, "uncertainty": False})
    assert not off.estimator.uncertainty


@pytest.fixture(scope="module")
def ieee123_step():
    """IEEE 123 at noon and the sensor of scenarios/ieee123-se.yaml, seed 123."""
    from gridsim.federates.chain import SensorChain, feeder_step
    from gridsim.federates.feeder.model import FeederModel
    from gridsim.feeders import resolve

    model = FeederModel(resolve("ieee123", Path("."), "test"), datetime(2026, 7, 1, 12), 900)
    messages = feeder_step(model, 0.0)
    sensor = {"metered_fraction": 0.37, "sigma_v_pu": 0.005, "pseudo_rel_error": 0.3}
    return messages, SensorChain(sensor, 123).measure(0, messages)


def test_ieee123_frontal_agrees_with_solves_and_keeps_its_structure(ieee123_step):
    """IEEE 123 (two loops closed by its ties): the frontal sigmas agree with one solve per
    node to 1e-4 (found: 5e-6, at the substation's nodes; 1e-9 elsewhere); a second step
    with the same meters reuses the frontal structure."""
    messages, measured = ieee123_step
    net = Network.from_topology(messages["topology"])
    ms = adapter.measurement_set(net, {"topology": messages["topology"], **measured})
    est = WLSEstimator(net)
    first = est.estimate(ms)
    structure = est.uncertainty._structure
    second = est.estimate(ms)
    assert est.uncertainty._structure is structure and est.uncertainty.method == "frontal"
    solved = WLSEstimator(net, Settings(uncertainty_rtol=-1.0))
    solved.x = est.x.copy()
    reference = solved.estimate(ms)
    observable = ~np.isnan(first.vmag_sigma)
    assert observable.all()
    np.testing.assert_allclose(second.vmag_sigma, reference.vmag_sigma, rtol=1e-4)
    assert 5e-4 < np.min(first.vmag_sigma) and np.max(first.vmag_sigma) < 5e-3


def test_check_nodes_cover_the_extremes():
    variance = np.array([0.0, 3.0, 1.0, 5.0, 2.0])
    assert uncertainty._check_set(variance, 4).tolist() == [0, 2, 3, 4]
