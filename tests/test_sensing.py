"""The sensor's pure model (`gridsim.federates.sensor.sensing`): no broker, no OpenDSS.

A small synthetic feeder stands in for the topology::

    sub (slack, 3 phases) -- b1 .. b40 (3 phases each) -- 646 (phases 2, 3)

Loads: ``l1`` on ``b1`` (bus alone: its 3 nodes), ``l2`` on ``b2.1``, ``l646`` a delta load
on ``646.2.3``; PV ``pv1`` on ``b1.2``. True |V| is 1 pu minus a little per bus, injections
are drawn once, flows are given on two lines.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gridsim.federates.sensor.sensing import (
    BadData,
    DeviceState,
    NodeIndex,
    Sensor,
    SensorConfig,
    SensorConfigError,
    Truth,
    meter_candidates,
    plan_meters,
    pseudo_injections,
)

SLACK = ["sub.1", "sub.2", "sub.3"]
NODES = SLACK + [f"b{b}.{p}" for b in range(1, 41) for p in (1, 2, 3)] + ["646.2", "646.3"]
NON_SLACK = len(NODES) - len(SLACK)  # 122
BRANCHES = ["l1:sub.1", "l1:sub.2", "l2:b1.1"]
LOADS = [DeviceState("l2", "b2.1", 10.0, 5.0, demand_kw=10.0),
         DeviceState("l1", "b1", 28.0, 14.0, demand_kw=30.0),
         DeviceState("l646", "646.2.3", 20.0, -4.0, demand_kw=24.0)]
PVS = [DeviceState("pv1", "b1.2", 6.0, 1.0)]
DEVICE_NODES = ["b1.1", "b1.2", "b1.3", "b2.1", "646.2", "646.3"]


def truth(loads=LOADS, pvs=PVS) -> Truth:
    rng = np.random.default_rng(0)
    return Truth(
        values={"v": {n: 1.0 - 0.001 * i for i, n in enumerate(NODES)},
                "angle": {n: -120.0 * (int(n[-1]) - 1) - 0.1 * i for i, n in enumerate(NODES)},
                "p": dict(zip(NODES, rng.normal(-20.0, 30.0, len(NODES)))),
                "q": dict(zip(NODES, rng.normal(-5.0, 10.0, len(NODES)))),
                "p_flow": dict(zip(BRANCHES, [500.0, 0.0, -120.0])),
                "q_flow": dict(zip(BRANCHES, [200.0, 3.0, -40.0]))},
        loads=loads, pvs=pvs)


def sensor(seed: int = 1, device_nodes=DEVICE_NODES, **params) -> Sensor:
    return Sensor(SensorConfig.from_parameters(params), np.random.default_rng(seed), NODES,
                  SLACK, device_nodes, BRANCHES)


def run(s: Sensor, steps: int, t: Truth | None = None) -> list[dict]:
    t = t or truth()
    return [s.measure(k, t) for k in range(steps)]


def as_plain(outputs: list[dict]) -> list[dict]:
    return [{q: vars(r) for q, r in out.items()} for out in outputs]


# -- determinism -----------------------------------------------------------------------------


FULL = dict(quantities=["v", "p", "q"], pmu_nodes=["b3.1"], metered_branches=["l2:b1.1"],
            dropout_probability=0.1)


def test_same_seed_gives_identical_readings():
    assert as_plain(run(sensor(7, **FULL), 5)) == as_plain(run(sensor(7, **FULL), 5))
    assert sensor(7, **FULL).plan == sensor(7, **FULL).plan


def test_different_seed_gives_different_readings():
    a, b = sensor(7, **FULL), sensor(8, **FULL)
    assert a.plan.metered_nodes != b.plan.metered_nodes
    assert as_plain(run(a, 2)) != as_plain(run(b, 2))


# -- meter choice ----------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 0.5, 1.0])
def test_fraction_meters_round_fraction_of_non_slack_nodes(fraction):
    s = sensor(metered_fraction=fraction)
    expected = round(fraction * NON_SLACK)
    assert len(s.plan.metered_nodes) == expected
    assert not set(s.plan.metered_nodes) & set(SLACK)
    assert set(s.plan.readings["v"]) == set(s.plan.metered_nodes) | set(SLACK)
    assert s.summary()["metered_nodes"] == expected
    assert s.summary()["meters"]["v"] == expected + len(SLACK)


def test_meters_only_on_energized_phase_nodes():
    """Neutral nodes (.4) and nodes dead at the first step (|V| <= 0.1 p.u.) get no meter
    even at fraction 1; the fraction counts the candidates that remain."""
    nodes = [*NODES, "b5.4", "b6.4"]
    voltages = {n: 1.0 for n in nodes} | {"b7.1": 0.0, "b7.2": 0.05, "b8.3": 0.11}
    plan = plan_meters(SensorConfig.from_parameters({"metered_fraction": 1.0}), nodes, SLACK,
                       BRANCHES, np.random.default_rng(0), voltages)
    assert set(plan.metered_nodes) == set(NODES) - set(SLACK) - {"b7.1", "b7.2"}
    assert "b8.3" in plan.metered_nodes
    half = plan_meters(SensorConfig.from_parameters({"metered_fraction": 0.5}), nodes, SLACK,
                       BRANCHES, np.random.default_rng(0), voltages)
    assert len(half.metered_nodes) == round(0.5 * (NON_SLACK - 2))
    assert not {"b5.4", "b6.4", "b7.1", "b7.2"} & set(half.metered_nodes)
    assert meter_candidates(nodes, SLACK) == sorted(set(NODES) - set(SLACK))


def test_explicit_meters_may_still_be_anywhere():
    """The candidate rule is for the random choice: listed nodes are metered as listed."""
    s = Sensor(SensorConfig.from_parameters({"metered_nodes": ["b7.1"]}),
               np.random.default_rng(0), NODES, SLACK, DEVICE_NODES, BRANCHES,
               voltages_pu={"b7.1": 0.0})
    assert s.plan.metered_nodes == ("b7.1",)


def test_meters_stay_the_same_every_step():
    s = sensor(metered_fraction=0.37)
    ids = [out["v"].ids for out in run(s, 6)]
    assert all(i == ids[0] for i in ids)
    assert ids[0] == sorted(set(s.plan.metered_nodes) | set(SLACK))


def test_explicit_nodes_pmus_and_no_substation_meter():
    s = sensor(metered_nodes=["b5.2", "b4.1"], quantities=["v", "p"], pmu_nodes=["b9.3"],
               substation_meter=False)
    assert s.plan.metered_nodes == ("b4.1", "b5.2")
    assert s.plan.readings["v"] == ("b4.1", "b5.2", "b9.3")
    assert s.plan.readings["angle"] == ("b9.3",)
    assert s.plan.readings["p"] == ("b4.1", "b5.2")
    assert s.plan.readings["q"] == ()


# -- noise -----------------------------------------------------------------------------------


def z_scores(outputs: list[dict], t: Truth, quantity: str, pseudo: bool = False) -> np.ndarray:
    table = t.values[quantity]
    return np.array([(v - table[i]) / s for out in outputs
                     for i, v, s, f in zip(out[quantity].ids, out[quantity].values,
                                           out[quantity].sigma, out[quantity].pseudo)
                     if f == pseudo])


@pytest.mark.parametrize("quantity", ["v", "angle", "p", "q", "p_flow", "q_flow"])
def test_noise_is_unbiased_with_the_published_sigma(quantity):
    """Over a few thousand readings: mean ~0 and standard deviation within 10% of sigma."""
    t = truth()
    s = sensor(metered_fraction=1.0, quantities=["v", "p", "q"], pmu_nodes=NODES,
               metered_branches=BRANCHES, pseudo_loads=False)
    steps = 4000 // len(s.plan.readings[quantity]) + 1
    z = z_scores(run(s, steps, t), t, quantity)
    assert len(z) >= 4000
    assert abs(z.mean()) < 0.06
    assert z.std() == pytest.approx(1.0, rel=0.1)


def test_published_sigma_follows_the_parameters():
    t = truth()
    out = sensor(metered_fraction=1.0, quantities=["v", "p", "q"], pmu_nodes=["b2.2"],
                 metered_branches=BRANCHES, sigma_v_pu=0.002, sigma_pq_pct=2.0,
                 sigma_pq_floor_kw=0.5, sigma_flow_pct=3.0, sigma_angle_deg=0.05,
                 pseudo_loads=False).measure(0, t)
    assert set(out["v"].sigma) == {0.002}
    assert out["angle"].sigma == [0.05]
    for i, sigma in zip(out["p"].ids, out["p"].sigma):
        assert sigma == pytest.approx(max(0.02 * abs(t.values["p"][i]), 0.5))
    assert out["p_flow"].sigma == pytest.approx([0.03 * 500.0, 0.5, 0.03 * 120.0])
    assert out["q_flow"].sigma == pytest.approx([0.03 * 200.0, 0.5, 0.03 * 40.0])


# -- dropouts --------------------------------------------------------------------------------


def test_dropout_rate_and_kept_readings_unchanged():
    params = dict(metered_fraction=1.0, quantities=["v", "p"], pseudo_loads=False)
    full = run(sensor(3, **params), 20)
    dropped = sensor(3, dropout_probability=0.2, **params)
    partial = run(dropped, 20)
    total = sum(len(o[q].ids) for o in full for q in ("v", "p", "q"))
    kept = sum(len(o[q].ids) for o in partial for q in ("v", "p", "q"))
    assert total == 20 * (2 * NON_SLACK + 3 * len(SLACK))  # substation: |V|, P and Q
    assert 1 - kept / total == pytest.approx(0.2, abs=0.03)
    assert dropped.summary()["dropped_readings"] == total - kept
    for a, b in zip(full, partial):  # same draws: a dropout removes a reading, nothing else
        values = dict(zip(a["v"].ids, a["v"].values))
        assert all(values[i] == v for i, v in zip(b["v"].ids, b["v"].values))


# -- bad data --------------------------------------------------------------------------------


def test_bad_data_offset_only_inside_its_window():
    params = dict(metered_nodes=["b7.1"], quantities=["v", "p"], metered_branches=BRANCHES)
    bad = [{"id": "b7.1", "quantity": "v", "offset": 0.05, "from_step": 2, "to_step": 3},
           {"id": "l1:sub.1", "quantity": "q_flow", "offset": -25.0, "from_step": 4}]
    clean = run(sensor(**params), 7)
    s = sensor(**params, bad_data=bad)
    dirty = run(s, 7)
    for k in range(7):
        dv = dict(zip(dirty[k]["v"].ids, np.subtract(dirty[k]["v"].values, clean[k]["v"].values)))
        assert dv["b7.1"] == pytest.approx(0.05 if k in (2, 3) else 0.0, abs=1e-12), k
        assert dv["sub.1"] == 0.0
        dq = np.subtract(dirty[k]["q_flow"].values, clean[k]["q_flow"].values)
        assert dq[dirty[k]["q_flow"].ids.index("l1:sub.1")] == pytest.approx(
            -25.0 if k >= 4 else 0.0, abs=1e-12)
        assert dirty[k]["p"].values == clean[k]["p"].values
    assert s.summary()["bad_data_injected"] == 2 + 3


def test_bad_data_window_is_inclusive():
    entry = BadData("x", "v", 1.0, from_step=2, to_step=3)
    assert [entry.active(k) for k in range(5)] == [False, False, True, True, False]
    assert BadData("x", "v", 1.0, from_step=1).active(10**6)


# -- pseudo-measurements ---------------------------------------------------------------------


def test_pseudo_equals_pv_minus_expected_load_without_error():
    """With pseudo_rel_error 0: demand split per node, minus, plus the PV telemetry."""
    s = sensor(metered_nodes=["b2.1"], quantities=["p"], pseudo_rel_error=0.0)
    out = s.measure(0, truth())
    p = dict(zip(out["p"].ids, zip(out["p"].values, out["p"].pseudo)))
    q = dict(zip(out["q"].ids, zip(out["q"].values, out["q"].pseudo)))
    expected_p = {"b1.1": -10.0, "b1.2": 6.0 - 10.0, "b1.3": -10.0, "646.2": -12.0,
                  "646.3": -12.0}
    expected_q = {"b1.1": -5.0, "b1.2": 1.0 - 5.0, "b1.3": -5.0, "646.2": 2.4, "646.3": 2.4,
                  "b2.1": -5.0}
    for node, value in expected_p.items():
        assert p[node] == (pytest.approx(value, abs=1e-12), True), node
    for node, value in expected_q.items():
        assert q[node] == (pytest.approx(value, abs=1e-12), True), node
    assert p["b2.1"][1] is False  # metered: a reading, not a pseudo-measurement
    assert s.summary()["pseudo"] == {"p": 5, "q": 6}
    assert out["p"].ids == sorted(out["p"].ids)


def test_pseudo_values_and_sigmas_formula():
    """Load: demand * (1 + r e), q at the load's q/p ratio, sigma_p = r * demand and
    sigma_q = sigma_p * |q/p|, each split as value / n and sigma / n over its n nodes;
    at a node the variances add, then the floor."""
    r, e = 0.3, [0.5, -1.2]
    loads = [DeviceState("l1", "b1", 28.0, 14.0, demand_kw=30.0),
             DeviceState("l2", "b2.1", 10.0, 0.0, demand_kw=10.0)]
    pv = DeviceState("pv1", "b1.2", 6.0, 1.0)
    got = pseudo_injections(loads, [pv], NodeIndex(NODES), e, rel_error=r, pv_sigma_pct=1.0,
                            floor=0.1)
    p1 = 30.0 * (1 + r * e[0])
    assert got["b1.1"].p_kw == pytest.approx(-p1 / 3)
    assert got["b1.1"].q_kvar == pytest.approx(-p1 * 0.5 / 3)
    assert got["b1.1"].sigma_p_kw == pytest.approx(r * 30.0 / 3)
    assert got["b1.1"].sigma_q_kvar == pytest.approx(r * 30.0 * 0.5 / 3)
    assert got["b1.2"].p_kw == pytest.approx(6.0 - p1 / 3)
    assert got["b1.2"].sigma_p_kw == pytest.approx(math.hypot(r * 30.0 / 3, 0.06))
    assert got["b1.2"].sigma_q_kvar == pytest.approx(math.hypot(r * 15.0 / 3, 0.01))
    assert got["b2.1"].p_kw == pytest.approx(-10.0 * (1 + r * e[1]))
    assert got["b2.1"].q_kvar == 0.0 and got["b2.1"].sigma_q_kvar == 0.1  # floor
    assert set(got) == {"b1.1", "b1.2", "b1.3", "b2.1"}


def test_generator_and_storage_telemetry_enter_like_pv():
    """A generator (3 phases) and a storage unit charging (negative output): their
    telemetry, split over their nodes with sigma sigma_pq_pct of each value, adds to the
    node's injection; a node only they map to is no longer unmapped."""
    gens = [DeviceState("generator.g1", "b30", 300.0, -90.0, delta=True),
            DeviceState("storage.s1", "b1.2", -6.0, 0.0)]
    s = sensor(metered_nodes=["b2.1"], device_nodes=[*DEVICE_NODES, "b30.1", "b30.2", "b30.3"],
               pseudo_rel_error=0.0)
    out = s.measure(0, Truth(truth().values, LOADS, PVS, gens))
    p = dict(zip(out["p"].ids, zip(out["p"].values, out["p"].sigma)))
    q = dict(zip(out["q"].ids, zip(out["q"].values, out["q"].sigma)))
    for phase in (1, 2, 3):
        assert p[f"b30.{phase}"] == (pytest.approx(100.0), pytest.approx(1.0))
        assert q[f"b30.{phase}"] == (pytest.approx(-30.0), pytest.approx(0.3))
    assert p["b1.2"][0] == pytest.approx(6.0 - 10.0 - 6.0)
    assert s.summary()["unmapped_device_nodes"] == 0
    without = sensor(metered_nodes=["b2.1"], device_nodes=[*DEVICE_NODES, "b30.1"])
    out = without.measure(0, truth())
    assert dict(zip(out["p"].ids, out["p"].values))["b30.1"] == 0.0  # unknown: 0 +- floor
    assert without.summary()["unmapped_device_nodes"] == 1


def test_pseudo_skips_metered_slack_and_counts_unmapped_nodes():
    s = sensor(metered_nodes=["b1.1"], quantities=["q"],
               device_nodes=[*DEVICE_NODES, "sub.1", "b30.3"])
    out = s.measure(0, truth())
    p_pseudo = {i for i, f in zip(out["p"].ids, out["p"].pseudo) if f}
    q_pseudo = {i for i, f in zip(out["q"].ids, out["q"].pseudo) if f}
    assert p_pseudo == {*DEVICE_NODES, "b30.3"}
    assert q_pseudo == p_pseudo - {"b1.1"}
    assert s.summary()["unmapped_device_nodes"] == 1  # b30.3: no load, no PV
    assert "sub.1" not in p_pseudo  # the substation has a meter (SCADA), never a pseudo
    assert "sub.1" in out["p"].ids


def test_no_pseudo_when_off():
    """Without pseudo-measurements only the substation's P and Q meters remain."""
    out = sensor(pseudo_loads=False).measure(0, truth())
    assert out["p"].ids == out["q"].ids == sorted(SLACK)
    assert not any(out["p"].pseudo) and not any(out["q"].pseudo)


# -- buses -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bus, nodes", [
    ("b1", ["b1.1", "b1.2", "b1.3"]),
    ("B1", ["b1.1", "b1.2", "b1.3"]),
    ("b1.2", ["b1.2"]),
    ("b1.3.1", ["b1.3", "b1.1"]),
    ("646.2.3", ["646.2", "646.3"]),
    ("646", ["646.2", "646.3"]),
    ("b4.1.0", ["b4.1"]),
    ("b4.1.2.3.0", ["b4.1", "b4.2", "b4.3"]),
], ids=lambda v: str(v))
def test_bus_parsing(bus, nodes):
    assert NodeIndex(NODES).nodes_of(bus) == nodes


@pytest.mark.parametrize("bus", ["nowhere", "b1.4", "646.1.2", "b1.0"])
def test_bus_outside_topology_raises(bus):
    with pytest.raises(ValueError, match=f"device bus '{bus}'"):
        NodeIndex(NODES).nodes_of(bus)


# -- bad parameters --------------------------------------------------------------------------


@pytest.mark.parametrize("params, message", [
    ({"metered_nodes": ["b1.1", "nope", "b99.1"]}, "metered_nodes: unknown ids 'b99.1', 'nope'"),
    ({"pmu_nodes": ["zz.1"]}, "pmu_nodes: unknown ids 'zz.1'"),
    ({"metered_branches": ["l9:b1.1"]}, "metered_branches: unknown ids 'l9:b1.1'"),
    ({"bad_data": [{"id": "b1.1", "quantity": "v", "offset": 1, "from_step": 0}],
      "metered_nodes": ["b2.1"]}, "bad_data[0].id: 'b1.1' has no 'v' meter"),
    ({"bad_data": [{"id": "nope", "quantity": "p_flow", "offset": 1, "from_step": 0}]},
     "bad_data[0].id: 'nope' has no 'p_flow' meter"),
])
def test_unknown_ids_raise_naming_them(params, message):
    with pytest.raises(SensorConfigError, match=f"parameter {message}".replace("[", r"\[")
                       .replace("]", r"\]")):
        sensor(**params)


@pytest.mark.parametrize("params, message", [
    ({"quantities": ["v", "i"]}, "quantities: unknown ['i']"),
    ({"metered_fraction": 1.5}, "metered_fraction: must be in [0, 1]"),
    ({"dropout_probability": -0.1}, "dropout_probability: must be in [0, 1]"),
    ({"sigma_v_pu": -1.0}, "sigma_v_pu: must be >= 0"),
    ({"metered_nodes": [1, 2]}, "metered_nodes: expected a list of ids"),
    ({"bad_data": [{"id": "b1.1", "quantity": "angle", "offset": 1, "from_step": 0}]},
     "bad_data[0].quantity: 'angle' is not one of"),
    ({"bad_data": [{"id": "b1.1", "quantity": "v", "offset": 1}]},
     "bad_data[0]: unknown keys [], missing keys ['from_step']"),
    ({"bad_data": [{"id": "b1.1", "quantity": "v", "offset": 1, "from_step": 3, "to_step": 2}]},
     "bad_data[0]: from_step must be an integer >= 0"),
    ({"bad_data": [{"id": "b1.1", "quantity": "v", "offset": "x", "from_step": 0}]},
     "bad_data[0].offset: expected a number"),
])
def test_bad_parameters_raise_naming_them(params, message):
    with pytest.raises(SensorConfigError) as info:
        SensorConfig.from_parameters(params)
    assert str(info.value).startswith(f"parameter {message}")


def test_optional_inputs_needed_by_the_configuration():
    assert SensorConfig().needed_inputs() == []
    config = SensorConfig.from_parameters({"pmu_nodes": ["b1.1"], "metered_branches": ["x"]})
    assert config.needed_inputs() == [("pmu_nodes", "voltages_angle"),
                                      ("metered_branches", "branch_flows")]


def test_missing_truth_raises_naming_the_ids():
    t = truth()
    t.values["v"] = {}
    with pytest.raises(ValueError, match="no true 'v' value for"):
        sensor().measure(0, t)


def test_truth_of_reads_generator_states():
    """The federate's inputs: a GeneratorStates message becomes the truth's generators, ids
    prefixed with their kind (a generator and a storage unit may share a name)."""
    from gridsim import messages as m
    from gridsim.federates.sensor.adapter import truth_of

    latest = {
        "load_states": m.LoadStates(ids=["l1"], bus=["b1"], p_kw=[3.0], q_kvar=[1.0],
                                    demand_kw=[3.0], cap_kw=[None]),
        "generator_states": m.GeneratorStates(
            ids=["u1", "u1"], kind=["generator", "storage"], bus=["b30", "b1.2"],
            p_kw=[300.0, -6.0], q_kvar=[-90.0, 0.0], kva_rating=[400.0, 10.0],
            delta=[True, False])}
    t = truth_of(latest)
    assert [(g.id, g.bus, g.p_kw, g.q_kvar, g.delta) for g in t.generators] == [
        ("generator.u1", "b30", 300.0, -90.0, True), ("storage.u1", "b1.2", -6.0, 0.0, False)]
    assert t.pvs == []
    assert truth_of({"load_states": latest["load_states"]}).generators == []


# -- loads under a cap: what the utility commanded, it knows -------------------------------


@pytest.mark.parametrize(("mean", "sigma", "cap"), [(100.0, 30.0, 80.0), (100.0, 30.0, 200.0),
                                                    (100.0, 30.0, 20.0), (100.0, 30.0, 100.0)])
def test_capped_moments_match_integration(mean, sigma, cap):
    """Mean and spread of min(D, cap) against numerical integration over D's density plus
    the mass at the cap (sampling needs millions of draws for the deeply capped case)."""
    from scipy import integrate, stats

    from gridsim.federates.sensor.sensing import capped_moments

    def moment(k: int) -> float:
        below = integrate.quad(lambda x: x ** k * stats.norm.pdf(x, mean, sigma),
                               mean - 12 * sigma, cap)[0]
        return below + cap ** k * stats.norm.sf(cap, mean, sigma)

    first, second = moment(1), moment(2)
    expected_mean, expected_sigma = capped_moments(mean, sigma, cap)
    assert expected_mean == pytest.approx(first, rel=1e-9)
    assert expected_sigma == pytest.approx(math.sqrt(second - first ** 2), rel=1e-6)


def test_a_capped_load_is_pseudo_measured_at_most_its_cap_with_a_smaller_sigma():
    """Demand 100 kW, 30% error, capped at 50 kW: the pseudo power is at most 50 kW and its
    sigma is the spread of min(D, 50), far below the uncapped 30 kW; uncapped, unchanged."""
    from gridsim.federates.sensor.sensing import DeviceState, capped_moments, pseudo_injections

    index = NodeIndex(["1.1"])
    for cap, draw in ((50.0, 1.5), (None, 1.5), (50.0, -2.0)):
        load = DeviceState("l1", "1.1", 100.0, 0.0, demand_kw=100.0, cap_kw=cap)
        pseudo = pseudo_injections([load], [], index, [draw], rel_error=0.3, pv_sigma_pct=1.0,
                                   floor=0.01)["1.1"]
        uncapped = 100.0 * (1 + 0.3 * draw)
        assert -pseudo.p_kw == pytest.approx(uncapped if cap is None else min(uncapped, cap))
        sigma = 30.0 if cap is None else capped_moments(100.0, 30.0, cap)[1]
        assert pseudo.sigma_p_kw == pytest.approx(sigma)
        assert cap is None or sigma < 10.0
