"""The sensor in a real federation: feeder + sensor + recorder, through ``gridsim run``.

A 4-step copy of ``scenarios/ieee123-sensing.yaml`` from noon (PV producing)::

    feeder (offset 0) --truth--> sensor (offset 1 s) --readings--> recorder
       |                                                              ^
       +-------------------------- truth ----------------------------+

At each step k the sensor reads what the feeder published at step k: its recorded |V|
readings are compared with the feeder's recorded truth of the same step. The run is done
twice; both summary.json files must be identical, byte for byte.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gridsim.federates.sensor.adapter import check_inputs
from gridsim.federates.sensor.sensing import SensorConfig, SensorConfigError

STEP_S = 900.0
N_STEPS = 4
FRACTION = 0.37  # the sensor's default metered_fraction
SIGMA_V_PU = 0.005  # its default sigma_v_pu


def logs(run_dir: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted((run_dir / "logs").glob("*.log")))


@pytest.fixture(scope="module")
def sensing_runs(tmp_path_factory, write_scenario, run_gridsim):
    """Two runs of the same scenario: [(exit code, stderr, run dir)] * 2."""
    tmp = tmp_path_factory.mktemp("sensing")
    scenario = write_scenario("ieee123-sensing", tmp / "sensing.yaml",
                              start="2026-07-01T12:00:00",
                              duration=f"{N_STEPS * STEP_S / 3600:g}h")
    runs = []
    for i in range(2):
        out = tmp / f"run{i}"
        code, _, stderr = run_gridsim("run", scenario, "--out", out, "--quiet", timeout=120)
        runs.append((code, stderr, out))
    return runs


@pytest.fixture(scope="module")
def run_dir(sensing_runs) -> Path:
    code, stderr, out = sensing_runs[0]
    assert code == 0, f"gridsim run exited {code}\n{stderr}\n{logs(out)}"
    return out


@pytest.fixture(scope="module")
def recorded(run_dir):
    """topic -> {step: payload} of everything recorded (one message per topic and step)."""
    db = sqlite3.connect(f"file:{run_dir / 'results.sqlite'}?mode=ro", uri=True)
    found: dict[str, dict[int, dict]] = {}
    for topic, step, payload in db.execute(
            "SELECT t.topic, m.step, m.payload FROM messages m JOIN topics t USING (topic_id) "
            "ORDER BY m.step, m.rowid"):
        assert step not in found.get(topic, {}), f"{topic}: two messages at step {step}"
        found.setdefault(topic, {})[step] = json.loads(payload)
    db.close()
    return found


@pytest.fixture(scope="module")
def topology(recorded) -> dict:
    return recorded["feeder/topology"][0]


def test_both_runs_succeed(sensing_runs):
    for code, stderr, out in sensing_runs:
        assert code == 0, f"gridsim run exited {code}\n{stderr}\n{logs(out)}"


def test_sensor_publishes_every_output_each_step(recorded):
    for port in ("voltages_magnitude", "voltages_angle", "powers_real", "powers_imag",
                 "branch_powers_real", "branch_powers_imag"):
        steps = recorded[f"sensor/{port}"]
        assert sorted(steps) == list(range(N_STEPS)), port
        for k, message in steps.items():
            assert message["time_s"] == pytest.approx(k * STEP_S), (port, k)
            assert message["units"] and message["accuracy"] is not None, port
    assert recorded["sensor/voltages_angle"][0]["ids"] == []  # no PMUs by default


def test_voltage_readings_within_5_sigma_of_truth(recorded):
    for k in range(N_STEPS):
        reading = recorded["sensor/voltages_magnitude"][k]
        truth = recorded["feeder/voltages_magnitude"][k]
        true_v = dict(zip(truth["ids"], truth["values"]))
        assert reading["units"] == "pu"
        assert set(reading["accuracy"]) == {SIGMA_V_PU}
        for node, value in zip(reading["ids"], reading["values"]):
            assert abs(value - true_v[node]) <= 5 * SIGMA_V_PU, (k, node, value, true_v[node])


def test_metered_nodes_are_37_percent_of_non_slack_nodes(recorded, topology):
    slack = set(topology["slack_bus"])
    n_non_slack = len(set(topology["ids"]) - slack)
    ids = [recorded["sensor/voltages_magnitude"][k]["ids"] for k in range(N_STEPS)]
    metered = set(ids[0]) - slack
    assert len(metered) == round(FRACTION * n_non_slack)
    assert all(i == ids[0] for i in ids), "the meters moved between steps"


def test_substation_has_voltage_meters(recorded, topology):
    assert topology["slack_bus"]
    for k in range(N_STEPS):
        assert set(topology["slack_bus"]) <= set(recorded["sensor/voltages_magnitude"][k]["ids"])


def test_pseudo_measurements_at_unmetered_device_nodes(recorded, topology):
    """Default quantities are |V| only: every non-slack device node gets pseudo P and Q."""
    devices = set(topology["device_nodes"]) - set(topology["slack_bus"])
    assert devices
    for port in ("powers_real", "powers_imag"):
        for k in range(N_STEPS):
            message = recorded[f"sensor/{port}"][k]
            assert message["pseudo"] is not None, port
            flagged = {i for i, f in zip(message["ids"], message["pseudo"]) if f}
            assert flagged == devices, (port, k)
            assert min(message["accuracy"]) >= 0.1, (port, k)  # sigma_pq_floor_kw


def test_pv_telemetry_enters_the_pseudo_measurements(recorded):
    """A PV system on a bus without loads (pv_300 on IEEE 123): its nodes' pseudo P and Q
    add up to its telemetry exactly (split equally over the nodes, no load part)."""
    loads = recorded["feeder/load_states"][0]
    load_buses = {bus.split(".")[0] for bus in loads["bus"]}
    pv = recorded["feeder/pv_states"][0]
    alone = [(i, bus) for i, bus in zip(pv["ids"], pv["bus"])
             if bus.split(".")[0] not in load_buses]
    assert alone, "expected a PV system on a bus without loads"
    for port, field in (("powers_real", "p_kw"), ("powers_imag", "q_kvar")):
        message = recorded[f"sensor/{port}"][0]
        for device, bus in alone:
            shares = [(v, f) for i, v, f in zip(message["ids"], message["values"],
                                                message["pseudo"]) if i.split(".")[0] == bus]
            assert shares and all(f for _, f in shares), (port, device)
            assert sum(v for v, _ in shares) == pytest.approx(
                pv[field][pv["ids"].index(device)], rel=1e-9, abs=1e-12), (port, device)
    assert pv["p_kw"][pv["ids"].index(alone[0][0])] > 10.0  # noon: producing


def test_summary_holds_the_sensor_part(run_dir, topology):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok"
    part = summary["federates"]["sensor"]
    n_metered = round(FRACTION * len(set(topology["ids"]) - set(topology["slack_bus"])))
    assert part["metered_nodes"] == n_metered
    n_slack = len(topology["slack_bus"])
    assert part["meters"] == {"v": n_metered + n_slack, "angle": 0,
                              "p": n_slack, "q": n_slack, "p_flow": 0, "q_flow": 0}
    n_devices = len(set(topology["device_nodes"]) - set(topology["slack_bus"]))
    assert part["pseudo"] == {"p": n_devices, "q": n_devices}
    assert part["bad_data_injected"] == 0
    assert part["steps"] == N_STEPS
    assert part["readings"] == N_STEPS * sum(part["meters"].values())


def test_two_runs_give_identical_summaries(sensing_runs):
    (_, _, first), (_, _, second) = sensing_runs
    assert (first / "summary.json").read_bytes() == (second / "summary.json").read_bytes()


def test_unknown_metered_node_stops_the_run_naming_it(tmp_path, write_scenario, run_gridsim):
    scenario = write_scenario(
        "ieee123-sensing", tmp_path / "bad.yaml", duration="30m",
        federates={"feeder": {"type": "feeder"},
                   "sensor": {"type": "sensor",
                              "parameters": {"metered_nodes": ["48.1", "nope.1"]}},
                   "recorder": {"type": "recorder"}})
    code, _, stderr = run_gridsim("run", scenario, "--out", tmp_path / "run", "--quiet",
                                  timeout=120)
    assert code == 1
    # The sensor's error reaches every federate and they exit in any order; the supervisor
    # names the one that failed first.
    assert "federate 'sensor' failed: SensorConfigError: parameter metered_nodes: unknown " \
           "ids 'nope.1'" in stderr


@pytest.mark.parametrize("params, port", [({"pmu_nodes": ["48.1"]}, "voltages_angle"),
                                          ({"metered_branches": ["l1:1.1"]}, "branch_flows")])
def test_configuration_needing_an_unlinked_input_is_refused(params, port):
    """The wiring links the optional inputs by default when one feeder offers them; when it
    cannot (several sources), a configuration that reads them must stop at start."""
    config = SensorConfig.from_parameters(params)
    check_inputs(config, lambda p: True, "sensor")
    with pytest.raises(SensorConfigError, match=f"parameter {next(iter(params))} needs input "
                                                f"'{port}', which is not linked"):
        check_inputs(config, lambda p: p != port, "sensor")


FULL = {"metered_fraction": 0.1, "quantities": ["v", "p", "q"],
        "pmu_nodes": ["48.1", "76.2"], "metered_branches": ["l115:149.1", "l1:1.2"],
        "bad_data": [{"id": "48.1", "quantity": "v", "offset": 0.1, "from_step": 1},
                     {"id": "l115:149.1", "quantity": "p_flow", "offset": 100.0,
                      "from_step": 0, "to_step": 0}]}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, write_scenario, run_gridsim):
    """A 2-step run with every kind of meter and two bad-data entries."""
    tmp = tmp_path_factory.mktemp("sensing-full")
    scenario = write_scenario(
        "ieee123-sensing", tmp / "full.yaml", start="2026-07-01T12:00:00", duration="30m",
        federates={"feeder": {"type": "feeder"},
                   "sensor": {"type": "sensor", "parameters": FULL},
                   "recorder": {"type": "recorder"}})
    out = tmp / "run"
    code, _, stderr = run_gridsim("run", scenario, "--out", out, "--quiet", timeout=120)
    assert code == 0, f"gridsim run exited {code}\n{stderr}\n{logs(out)}"
    db = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True)
    found: dict[str, dict[int, dict]] = {}
    for topic, step, payload in db.execute(
            "SELECT t.topic, m.step, m.payload FROM messages m JOIN topics t USING (topic_id)"):
        found.setdefault(topic, {})[step] = json.loads(payload)
    db.close()
    return found, json.loads((out / "summary.json").read_text())["federates"]["sensor"]


@pytest.mark.parametrize("port, truth_port, field", [
    ("voltages_magnitude", "voltages_magnitude", "values"),
    ("voltages_angle", "voltages_angle", "values"),
    ("powers_real", "powers_real", "values"),
    ("powers_imag", "powers_imag", "values"),
    ("branch_powers_real", "branch_flows", "p_kw"),
    ("branch_powers_imag", "branch_flows", "q_kvar"),
])
def test_every_meter_reads_truth_plus_noise_plus_bad_data(full_run, port, truth_port, field):
    """Meter readings are within 5 sigma of the truth once the bad-data offset is removed."""
    recorded, _ = full_run
    offsets = {("voltages_magnitude", "48.1", 1): 0.1,
               ("branch_powers_real", "l115:149.1", 0): 100.0}
    for k in (0, 1):
        reading, truth = recorded[f"sensor/{port}"][k], recorded[f"feeder/{truth_port}"][k]
        true = dict(zip(truth["ids"], truth[field]))
        flags = reading["pseudo"] or [False] * len(reading["ids"])
        meters = [(i, v, s) for i, v, s, f in zip(reading["ids"], reading["values"],
                                                  reading["accuracy"], flags) if not f]
        assert meters, (port, k)
        for node, value, sigma in meters:
            error = value - offsets.get((port, node, k), 0.0) - true[node]
            assert abs(error) <= 5 * sigma, (port, k, node, value, true[node], sigma)


def test_full_run_summary(full_run):
    recorded, part = full_run
    topology = recorded["feeder/topology"][0]
    n_metered = round(0.1 * len(set(topology["ids"]) - set(topology["slack_bus"])))
    assert part["metered_nodes"] == n_metered
    assert part["meters"]["angle"] == 2 and part["meters"]["p_flow"] == 2
    n_slack = len(topology["slack_bus"])
    assert part["meters"]["p"] == part["meters"]["q"] == n_metered + n_slack
    assert part["bad_data_injected"] == 2  # 48.1 |V| at step 1, l115 P flow at step 0
    assert recorded["sensor/voltages_angle"][0]["ids"] == ["48.1", "76.2"]
