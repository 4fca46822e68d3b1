"""Commands through a real federation: feeder + test commander + recorder.

``gridsim run`` starts a broker and three processes on a 12-step copy of the IEEE 123
scenario from 10:00 (PV producing). The commander (``tests/fixtures/commander``) publishes
its plan after the feeder's solve of a step (offset 1 s), so commands sent at step 3 must
show in what the feeder publishes at step 4, and not before. Some commands name devices
that do not exist or carry bad values: the feeder must report each of them at step 4,
count them in summary.json and still finish the run.

The fixture's component definition says ``python commander.py``: a user's own federate
type, referenced from the scenario by path, whose script is found in the definition's
``directory`` although federates run with the run directory as working directory.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

COMMANDER_DIR = Path(__file__).resolve().parent / "fixtures" / "commander"
STEP_S = 900.0
N_STEPS = 12
SENT = 3                 # the commander publishes at step 3 (t = 2701 s) ...
APPLIED = SENT + 1       # ... and the feeder applies the commands when it solves step 4
UNCAPPED = 5             # the load cap is removed at step 5, so step 6 is uncapped again

PV_LIMIT_KW = 50.0
PV_Q_KVAR = 30.0
LOAD_CAP_KW = 10.0
TAP = -3  # creg1a sits at 2 around 10:45; -3 keeps s1a (phase A) above 0.95 p.u., i.e. PQ

PLAN = [
    {"step": SENT, "port": "pv_setpoints", "message": {
        "ids": ["pv_48", "pv_76", "pv_nope"],
        "p_max_kw": [PV_LIMIT_KW, None, None],
        "q_kvar": [None, PV_Q_KVAR, 10.0]}},
    {"step": SENT, "port": "load_caps", "message": {
        "ids": ["s1a", "load_nope", "s2b"],
        "cap_kw": [LOAD_CAP_KW, 5.0, -1.0]}},
    {"step": SENT, "port": "capacitor_commands", "message": {
        "ids": ["c83", "cap_nope", "c88a"],
        "states": [0, 0, 2]}},
    {"step": SENT, "port": "tap_commands", "message": {
        "ids": ["creg1a", "creg_nope", "creg2a"],
        "taps": [TAP, 0, 99]}},
    {"step": UNCAPPED, "port": "load_caps", "message": {"ids": ["s1a"], "cap_kw": [None]}},
]
ACCEPTED_AT_APPLIED = 5  # pv_48, pv_76, s1a, c83, creg1a
REJECTED = {  # name -> port of every command the feeder must refuse
    "pv_nope": "pv_setpoints",
    "load_nope": "load_caps",
    "s2b": "load_caps",            # negative cap
    "cap_nope": "capacitor_commands",
    "c88a": "capacitor_commands",  # state 2
    "creg_nope": "tap_commands",
    "creg2a": "tap_commands",      # tap 99, outside +-16
}


@pytest.fixture(scope="module")
def command_run(tmp_path_factory, write_scenario, run_gridsim):
    """(exit code, stderr, run dir) of the federation with the command plan."""
    tmp = tmp_path_factory.mktemp("commands")
    definition = COMMANDER_DIR / "component_definition.json"
    ports = ("pv_setpoints", "load_caps", "capacitor_commands", "tap_commands")
    scenario = write_scenario(
        "ieee123-feeder", tmp / "commands.yaml", name="commands",
        start="2026-07-01T10:00:00", duration=f"{N_STEPS * STEP_S / 3600:g}h",
        components={"commander": str(definition)},
        federates={"feeder": {"type": "feeder"},
                   "commander": {"type": "commander", "parameters": {"plan": PLAN}},
                   "recorder": {"type": "recorder"}},
        links=["feeder.* -> recorder.subscription", "commander.* -> recorder.subscription",
               *(f"commander.{p} -> feeder.{p}" for p in ports)])
    out = tmp / "run"
    code, _, stderr = run_gridsim("run", scenario, "--out", out, "--quiet", timeout=120)
    return code, stderr, out


def test_a_users_federate_starts_as_its_own_program(run_dir):
    """Built-in federates are forked from the supervisor; the commander, a user's
    ``python commander.py``, is started as the program its definition names."""
    launched = json.loads((run_dir / "timing.json").read_text())["launch"]
    assert launched == {"feeder": "fork", "commander": "spawn", "recorder": "fork"}


def logs(run_dir: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted((run_dir / "logs").glob("*.log")))


@pytest.fixture(scope="module")
def run_dir(command_run) -> Path:
    code, stderr, out = command_run
    assert code == 0, f"gridsim run exited {code}\n{stderr}\n{logs(out)}"
    return out


@pytest.fixture(scope="module")
def recorded(run_dir):
    """topic -> {step: [payload, ...]} of everything the recorder stored."""
    db = sqlite3.connect(f"file:{run_dir / 'results.sqlite'}?mode=ro", uri=True)
    found: dict[str, dict[int, list[dict]]] = {}
    for topic, step, payload in db.execute(
            "SELECT t.topic, m.step, m.payload FROM messages m JOIN topics t USING (topic_id) "
            "ORDER BY m.step, m.rowid"):
        found.setdefault(topic, {}).setdefault(step, []).append(json.loads(payload))
    db.close()
    return found


def series(recorded, topic: str, field: str, device: str) -> list:
    """The value of `field` for `device` at each step 0..N_STEPS-1 (one message a step)."""
    steps = recorded[topic]
    assert sorted(steps) == list(range(N_STEPS)), f"{topic}: steps {sorted(steps)}"
    out = []
    for k in range(N_STEPS):
        (message,) = steps[k]
        out.append(message[field][message["ids"].index(device)])
    return out


def test_run_succeeds_despite_rejected_commands(command_run):
    code, stderr, out = command_run
    assert code == 0, f"gridsim run exited {code}\n{stderr}\n{logs(out)}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert summary["federates"]["feeder"]["steps"] == N_STEPS
    assert summary["federates"]["feeder"]["rejected_commands"] == len(REJECTED)
    published = summary["federates"]["commander"]["published"]
    assert published == [[e["step"], e["port"]] for e in PLAN]


def test_commands_were_recorded_when_sent(recorded):
    for entry in PLAN:
        messages = recorded[f"commander/{entry['port']}"][entry["step"]]
        assert [m["ids"] for m in messages] == [entry["message"]["ids"]]
        assert messages[0]["time_s"] == pytest.approx(entry["step"] * STEP_S + 1.0)


def test_pv_curtailment_and_reactive_setpoint_from_next_step(recorded):
    p48 = series(recorded, "feeder/pv_states", "p_kw", "pv_48")
    avail48 = series(recorded, "feeder/pv_states", "available_kw", "pv_48")
    q76 = series(recorded, "feeder/pv_states", "q_kvar", "pv_76")
    # before: pv_48 produces what is available, well above the limit; pv_76 at unity pf
    for k in range(APPLIED):
        assert p48[k] == pytest.approx(avail48[k], rel=0.01)
        assert abs(q76[k]) < 1.0
    assert p48[SENT] > 2 * PV_LIMIT_KW
    # from the step after the command on: limited, while availability is untouched
    for k in range(APPLIED, N_STEPS):
        assert p48[k] == pytest.approx(PV_LIMIT_KW, rel=0.01), f"step {k}"
        assert avail48[k] > 2 * PV_LIMIT_KW
        assert q76[k] == pytest.approx(PV_Q_KVAR, rel=0.02), f"step {k}"


def test_load_cap_from_next_step_until_removed(recorded):
    p = series(recorded, "feeder/load_states", "p_kw", "s1a")  # constant-PQ load
    demand = series(recorded, "feeder/load_states", "demand_kw", "s1a")
    cap = series(recorded, "feeder/load_states", "cap_kw", "s1a")
    capped = range(APPLIED, UNCAPPED + 1)
    for k in range(N_STEPS):
        if k in capped:
            assert cap[k] == LOAD_CAP_KW, f"step {k}"
            assert p[k] == pytest.approx(LOAD_CAP_KW, rel=1e-3), f"step {k}"
            assert demand[k] > 1.5 * LOAD_CAP_KW, f"step {k}: demand must stay uncapped"
        else:
            assert cap[k] is None, f"step {k}"
            assert p[k] == pytest.approx(demand[k], rel=1e-3), f"step {k}"
    # the rejected negative cap left s2b alone
    assert set(series(recorded, "feeder/load_states", "cap_kw", "s2b")) == {None}


def test_capacitor_opens_from_next_step(recorded):
    c83 = series(recorded, "feeder/capacitor_states", "states", "c83")
    c88a = series(recorded, "feeder/capacitor_states", "states", "c88a")
    assert c83 == [[1]] * APPLIED + [[0]] * (N_STEPS - APPLIED)
    assert c88a == [[1]] * N_STEPS  # the rejected state 2 changed nothing
    # the network changed: a new topology revision is published at the step applied
    revisions = {k: m[0]["revision"] for k, m in recorded["feeder/topology"].items()}
    assert APPLIED in revisions and revisions[APPLIED] > max(
        r for k, r in revisions.items() if k < APPLIED)


def test_tap_command_holds_from_next_step(recorded):
    taps = series(recorded, "feeder/regulator_states", "tap", "creg1a")
    for k in range(N_STEPS):
        (message,) = recorded["feeder/regulator_states"][k]
        assert len(message["tap"]) == len(message["ids"]), f"step {k}: taps misaligned"
    assert taps[SENT] != TAP
    assert taps[APPLIED:] == [TAP] * (N_STEPS - APPLIED)


def test_command_report_lists_each_rejection(recorded):
    reports = recorded["feeder/command_report"]
    assert sorted(reports) == [APPLIED, UNCAPPED + 1]  # only steps that received commands
    (report,) = reports[APPLIED]
    assert report["time_s"] == pytest.approx(APPLIED * STEP_S)
    assert report["accepted"] == ACCEPTED_AT_APPLIED
    assert sorted(r["name"] for r in report["rejected"]) == sorted(REJECTED)
    for r in report["rejected"]:
        assert r["port"] == REJECTED[r["name"]], r
        assert r["reason"].strip(), r
    (later,) = reports[UNCAPPED + 1]
    assert later["accepted"] == 1 and later["rejected"] == []


def test_caps_from_several_sources_combine_by_their_minimum():
    """The market caps load a at 4 kW and the DOPF at 6 kW: 4 is in force; the market
    lifts its cap: 6; the DOPF lifts its own: uncapped. A source's None never lifts
    another source's cap."""
    from gridsim.federates.feeder.commands import LoadCapper

    capper = LoadCapper({"a": 10.0, "b": 5.0})
    assert capper.set_caps("load_caps", ["a", "b"], [4.0, 3.0], "market/load_caps")[0] == 2
    capper.set_caps("load_caps", ["a", "b"], [6.0, None], "dopf/load_caps")
    assert capper.caps == {"a": 4.0, "b": 3.0}
    capper.set_caps("load_caps", ["a", "b"], [None, None], "market/load_caps")
    assert capper.caps == {"a": 6.0}
    capper.set_caps("load_caps", ["a"], [None], "dopf/load_caps")
    assert capper.caps == {}
