"""The WLS estimator's math on small networks where the answer is known exactly.

No broker, no OpenDSS: each test draws a network (`federates/wls/examples.py`: three-phase
lines from impedance matrices, by default ``s - a - b`` and ``a - c = d`` with ``a`` a
zero-injection node and ``c = d`` a switch), picks the true state, computes exact
measurements from it, and checks that the estimator gives the state back.
"""

from __future__ import annotations

import numpy as np
import pytest

from gridsim import messages as m
from gridsim.federates.wls.estimator import EstimationError, Settings, WLSEstimator
from gridsim.federates.wls.examples import (
    BASE_V,
    DEVICES,
    LINES,
    PHASES,
    exact_measurements,
    nodes,
    topology,
    true_state,
)
from gridsim.federates.wls.functions import Functions
from gridsim.network import Network


def with_stray_bus(msg: m.Topology) -> m.Topology:
    """`msg` plus a bus "z" that nothing connects: a zero row of Y, a singular system."""
    ids = msg.ids + nodes("z")
    return msg.model_copy(update={
        "ids": ids,
        "base_voltage_magnitudes": m.VoltagesMagnitude(ids=ids, values=[BASE_V] * len(ids),
                                                       units="V"),
        "base_voltage_angles": m.VoltagesAngle(
            ids=ids, values=list(msg.base_voltage_angles.values) + [0.0, -120.0, 120.0],
            units="deg")})


def estimate(msg, settings=None, seed=0, **kwargs):
    msg_top, y = msg
    net = Network.from_topology(msg_top)
    v = true_state(msg_top, y, seed)
    ms = exact_measurements(net, msg_top, y, v, **kwargs)
    est = WLSEstimator(net, settings or Settings(tolerance=1e-12))
    return net, v, est.estimate(ms)


def test_noise_free_measurements_give_the_true_state():
    """All |V|, every device injection, zero injection at a: the state to 1e-8 p.u."""
    net, v, result = estimate(topology())
    assert result.converged
    error = np.abs(net.node_voltages(result.v) - v / BASE_V)
    assert error.max() < 1e-8
    assert result.removed == [] and len(result.unobservable) == 0


def test_switch_ends_share_one_state():
    """c and d, joined by the switch, are one state; their voltages come out equal."""
    net, v, result = estimate(topology())
    c, d = net.index["c.1"], net.index["d.1"]
    assert net.state_of[c] == net.state_of[d]
    assert net.n == len(net.ids) - 3
    assert np.abs(net.node_voltages(result.v) - v / BASE_V).max() < 1e-8


def test_without_switch_merging_it_still_solves_the_unswitched_network():
    """A network without switch-like lines keeps one state per node."""
    lines = {k: val for k, val in LINES.items() if k != "sw"}
    net, v, result = estimate(topology(lines, ("b", "c")))
    assert net.n == len(net.ids)
    assert np.abs(net.node_voltages(result.v) - v / BASE_V).max() < 1e-8


def test_few_voltage_meters_with_flows_and_pmu():
    """Only the slack's |V|, the head line's flows, and one PMU: still exact."""
    net, v, result = estimate(topology(), vmag_nodes=nodes("s"), flows=("l1",),
                              pmu_nodes=("b.1",))
    assert result.converged
    assert np.abs(net.node_voltages(result.v) - v / BASE_V).max() < 1e-8


def test_unobservable_nodes_are_reported_not_filled():
    """A second lateral from the slack to bus e, with a load and no meter or pseudo-
    measurement: only the (unmeasured) slack injection involves e's voltages, so nothing
    but the prior decides them. They are reported unobservable; the rest is still exact."""
    lines = {**LINES, "l4": ("s", "e", 0.5)}
    msg, y = topology(lines, (*DEVICES, "e"))
    net = Network.from_topology(msg)
    v = true_state(msg, y, lines=lines)
    ms = exact_measurements(net, msg, y, v, vmag_nodes=[n for n in msg.ids if n[0] != "e"])
    measured_e = {i for i, label in enumerate(ms.label) if label.startswith(("p:e", "q:e"))}
    result = WLSEstimator(net).estimate(ms.without(measured_e))
    assert sorted(net.nodes_of(result.unobservable)) == nodes("e")
    observable = [i for i, n in enumerate(net.ids) if n[0] != "e"]
    assert np.abs(net.node_voltages(result.v)[observable] - v[observable] / BASE_V).max() < 1e-8


def test_gross_error_is_removed_and_named():
    """Noisy measurements plus one meter off by 20 sigma: that meter, and only it, goes."""
    msg, y = topology()
    net = Network.from_topology(msg)
    v = true_state(msg, y, seed=3)
    ms = exact_measurements(net, msg, y, v, sigma=1e-3)
    rng = np.random.default_rng(7)
    ms.value += ms.sigma * rng.standard_normal(len(ms))
    bad = ms.label.index("v:c.2")
    ms.value[bad] += 20 * ms.sigma[bad]
    result = WLSEstimator(net).estimate(ms)
    assert result.removed == ["v:c.2"]
    assert result.objective <= result.chi2_threshold


def test_clean_noisy_measurements_remove_nothing():
    """The same noise without the gross error: the chi-square test passes, nothing goes."""
    msg, y = topology()
    net = Network.from_topology(msg)
    v = true_state(msg, y, seed=3)
    ms = exact_measurements(net, msg, y, v, sigma=1e-3)
    ms.value += ms.sigma * np.random.default_rng(7).standard_normal(len(ms))
    result = WLSEstimator(net).estimate(ms)
    assert result.removed == []
    assert result.objective <= result.chi2_threshold


def test_warm_start_converges_faster_than_flat_start():
    """From the previous estimate a nearby state needs fewer iterations."""
    msg, y = topology()
    net = Network.from_topology(msg)
    est = WLSEstimator(net, Settings(tolerance=1e-12))
    first = est.estimate(exact_measurements(net, msg, y, true_state(msg, y, seed=1)))
    v2 = true_state(msg, y, seed=1) * (1 + 1e-4)
    v2[[msg.ids.index(s) for s in msg.slack_bus]] /= (1 + 1e-4)
    second = est.estimate(exact_measurements(net, msg, y, v2))
    assert second.iterations < first.iterations


@pytest.mark.parametrize("kind", ["p", "q"])
def test_injection_sigma_in_quadrature_for_merged_nodes(kind):
    """Merged c and d: one injection measurement with the summed value and sigma."""
    msg, y = topology()
    net = Network.from_topology(msg)
    ms = exact_measurements(net, msg, y, true_state(msg, y))
    label = next(lb for lb in ms.label if lb.startswith(f"{kind}:c.1"))
    assert f"{kind}:d.1" in label
    i = ms.label.index(label)
    assert ms.sigma[i] == pytest.approx(np.sqrt(2) * 0.1 / net.s_base_kva)


# -- switches: which lines are merged ------------------------------------------------------


def flagged(msg: m.Topology, **switch) -> m.Topology:
    """`msg` with the `switch` flag of the named branches set."""
    branches = [b.model_copy(update={"switch": switch[b.name]}) if b.name in switch else b
                for b in msg.branches]
    return msg.model_copy(update={"branches": branches})


def merged(net: Network, a: str, b: str) -> bool:
    return all(net.state_of[net.index[f"{a}.{p}"]] == net.state_of[net.index[f"{b}.{p}"]]
               for p in PHASES)


def test_a_line_flagged_as_switch_is_merged_whatever_its_impedance():
    """OpenDSS's default switch has 1.4e-3 ohm; a flagged line of 0.05 ohm is merged too."""
    msg, _ = topology({**LINES, "sw": ("c", "d", 0.05)})
    assert not merged(Network.from_topology(msg), "c", "d")  # unflagged: 0.05 ohm is a line
    assert merged(Network.from_topology(flagged(msg, sw=True)), "c", "d")


def test_a_line_flagged_as_not_a_switch_is_never_merged():
    """IEEE 9500's 0.3 m lines and substation connector (1e-5 ohm) stay lines."""
    msg, y = topology()
    net = Network.from_topology(flagged(msg, sw=False))
    assert not merged(net, "c", "d") and net.n == len(net.ids)
    v = true_state(msg, y)
    result = WLSEstimator(net, Settings(tolerance=1e-12)).estimate(
        exact_measurements(net, msg, y, v))
    assert result.converged
    assert np.abs(net.node_voltages(result.v) - v / BASE_V).max() < 1e-6


def test_unflagged_lines_are_merged_below_the_ohm_threshold_only():
    """Without the flag: 1e-6 ohm is a switch (the default topology), 1e-2 ohm is not,
    whatever the voltage base (the former p.u. threshold merged 69 kV lines)."""
    assert merged(Network.from_topology(topology()[0]), "c", "d")
    msg, _ = topology({**LINES, "sw": ("c", "d", 1e-2)})
    assert not merged(Network.from_topology(msg), "c", "d")
    assert merged(Network.from_topology(msg, switch_max_ohm=0.1), "c", "d")


def test_an_open_switch_is_not_merged():
    """An open switch (OpenDSS: its series admittance is 0) joins nothing."""
    msg, _ = topology()
    branches = [b.model_copy(update={"switch": True, "yprim": [(0.0, 0.0)] * 36})
                if b.name == "sw" else b for b in msg.branches]
    net = Network.from_topology(msg.model_copy(update={"branches": branches}))
    assert not merged(net, "c", "d")


# -- numerical failures ----------------------------------------------------------------------


def test_voltage_rows_at_a_zero_state_are_finite():
    """A de-energized node's state is exactly 0: |V| is 0 there, its derivative along e."""
    msg, y = topology()
    net = Network.from_topology(msg)
    ms = exact_measurements(net, msg, y, true_state(msg, y), pmu_nodes=("b.1",))
    x = WLSEstimator(net).x_prior.copy()
    b1 = net.state_of[net.index["b.1"]]
    x[[b1, b1 + net.n]] = 0.0
    h, jac = Functions(ms, net.n).evaluate(x)
    assert np.all(np.isfinite(h)) and np.all(np.isfinite(jac.data))
    row = ms.label.index("v:b.1")
    assert h[row] == 0.0
    assert jac[row, b1] == 1.0 and jac[row, b1 + net.n] == 0.0


def test_a_singular_system_raises_estimation_error_and_forgets_the_warm_start():
    """A bus with no admittance at all (nothing fixes its voltage but its zero injection,
    a zero constraint row): the factorization is singular; the estimator says so with
    `EstimationError` and starts the next estimate from the no-load voltages."""
    msg, y = topology()
    net = Network.from_topology(with_stray_bus(msg))
    est = WLSEstimator(net)
    est.x = est.x + 0.01
    with pytest.raises(EstimationError, match="singular"):
        est.estimate(exact_measurements(net, msg, y, true_state(msg, y)))
    assert np.array_equal(est.x, est.x_prior)


def test_a_non_finite_step_raises_estimation_error():
    msg, y = topology()
    net = Network.from_topology(msg)
    ms = exact_measurements(net, msg, y, true_state(msg, y))
    ms.value[0] = np.nan
    with pytest.raises(EstimationError, match="non-finite"):
        WLSEstimator(net).estimate(ms)


# -- floating islands --------------------------------------------------------------------------


def delta_island(idle: bool = True):
    """The test network plus bus f behind a delta-delta coupling to c (no common-mode
    current through it, 1 nS anti-float shunts as OpenDSS puts them), with a device on f.
    The truth: f's voltages without a common part (as OpenDSS's power flow gives them),
    and the device idle (zero injection) if `idle`."""
    msg, y0 = topology()
    ids = msg.ids + nodes("f")
    n0 = len(msg.ids)
    y = np.zeros((len(ids), len(ids)), dtype=complex)
    y[:n0, :n0] = y0
    k = np.eye(3) - np.ones((3, 3)) / 3  # a delta coupling: no current for a common shift
    c, f = [ids.index(x) for x in nodes("c")], [ids.index(x) for x in nodes("f")]
    ys = 1.0 / (0.5 + 2.0j)
    y[np.ix_(c, c)] += ys * k
    y[np.ix_(f, f)] += ys * k + 1e-9j * np.eye(3)
    y[np.ix_(c, f)] -= ys * k
    y[np.ix_(f, c)] -= ys * k
    rows, cols = np.nonzero(y)
    top = msg.model_copy(update={
        "ids": ids,
        "admittance": m.AdmittanceSparse(
            from_equipment=[ids[i] for i in rows], to_equipment=[ids[j] for j in cols],
            admittance_list=[(y[i, j].real, y[i, j].imag) for i, j in zip(rows, cols)]),
        "base_voltage_magnitudes": m.VoltagesMagnitude(ids=ids, values=[BASE_V] * len(ids),
                                                       units="V"),
        "base_voltage_angles": m.VoltagesAngle(
            ids=ids, values=list(msg.base_voltage_angles.values) + [0.0, -120.0, 120.0],
            units="deg"),
        "device_nodes": list(msg.device_nodes) + nodes("f")})
    v = true_state(top, y, seed=2)
    if idle:  # f draws nothing: its voltages are c's, but for a common shift
        v[f] = v[c]
    v[f] -= v[f].mean()
    return top, y, v


def test_a_delta_island_is_found_floating():
    top, _, _ = delta_island()
    net = Network.from_topology(top)
    assert [net.nodes_of(g) for g in net.floating] == [nodes("f")]
    assert Network.from_topology(topology()[0]).floating == []


def test_an_idle_delta_island_with_one_meter_is_estimated():
    """Its idle device's P and Q do not see a common shift of f, one |V| meter fixes one
    direction of it: the island prior holds the other at the no-load zero sequence (0, as
    in the truth), and the whole state comes out exact and observable."""
    top, y, v = delta_island()
    net = Network.from_topology(top)
    meters = [n for n in top.ids if not n.startswith("f")] + ["f.1"]
    ms = exact_measurements(net, top, y, v, vmag_nodes=meters)
    result = WLSEstimator(net, Settings(tolerance=1e-12)).estimate(ms)
    assert result.converged and len(result.unobservable) == 0
    assert np.abs(net.node_voltages(result.v) - v / BASE_V).max() < 1e-6


def test_an_unconverged_estimate_removes_nothing_and_is_no_warm_start():
    """One iteration allowed: not converged; a gross error is not hunted in a state that is
    not the estimate, and the next estimate starts from the no-load voltages again."""
    msg, y = topology()
    net = Network.from_topology(msg)
    ms = exact_measurements(net, msg, y, true_state(msg, y, seed=3))
    ms.value[ms.label.index("v:c.2")] += 20 * ms.sigma[0]
    est = WLSEstimator(net, Settings(max_iterations=1))
    result = est.estimate(ms)
    assert not result.converged and result.removed == []
    assert np.array_equal(est.x, est.x_prior)


def test_chi2_quantile_is_scipy_stats_own():
    """The estimator's threshold without importing scipy.stats: the same numbers, bit for
    bit, over the confidences and degrees of freedom a run can meet."""
    from scipy.stats import chi2

    from gridsim.federates.wls.estimator import chi2_quantile

    for confidence in (0.9, 0.95, 0.99, 0.999):
        for dof in (1, 2, 3, 7, 50, 299, 1000, 9999):
            assert chi2_quantile(confidence, dof) == float(chi2.ppf(confidence, dof))
