"""The recorded physics against OpenDSS itself, with real federations.

Each bundled scenario is run through ``gridsim run`` (broker, feeder and recorder processes)
and its database compared with a direct OpenDSS time series computed here with opendssdirect
alone: same voltages to 1e-9 p.u. at every step and node. Then the recorded topology,
voltages and injections are checked against each other, and the PV output at noon against the
overlay's ratings and the clear-sky load shape.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import opendssdirect as dss
import pytest
import scipy.sparse as sp
import yaml

from gridsim.feeders import resolve

N_STEPS = 96
STEP_S = 900.0
TOPIC_VM = "feeder/voltages_magnitude"


@contextmanager
def kept_cwd():
    """OpenDSS's ``compile`` changes the process's working directory; put it back."""
    cwd = os.getcwd()
    try:
        yield
    finally:
        os.chdir(cwd)


def compile_feeder(name: str, repo_root: Path) -> None:
    """Compile bundled feeder `name` (master, then overlays) into the global OpenDSS instance.

    ``compile`` clears whatever circuit the process-wide instance held before.
    """
    source = resolve(name, repo_root / "scenarios", "test")
    assert source.master.is_file()
    assert source.overlays and all(p.is_file() for p in source.overlays)
    dss.Text.Command(f'compile "{source.master}"')
    for overlay in source.overlays:
        dss.Text.Command(f'redirect "{overlay}"')


def direct_series(name: str, repo_root: Path, start_hour: float = 0.0,
                  step_s: float = STEP_S, n_steps: int = N_STEPS) -> list[dict[str, float]]:
    """Node voltage magnitudes (p.u.) of a plain OpenDSS daily run, one dict per step."""
    with kept_cwd():
        compile_feeder(name, repo_root)
        dss.Text.Command(f"set mode=daily stepsize={step_s:g}s number=1 maxcontroliter=30")
        dss.Solution.DblHour(start_hour - step_s / 3600)
        series = []
        for k in range(n_steps):
            dss.Solution.Solve()
            assert dss.Solution.Converged(), f"direct solve of {name} diverged at step {k}"
            nodes = [n.lower() for n in dss.Circuit.AllNodeNames()]
            values = dss.Circuit.AllBusMagPu()
            assert len(nodes) == len(values)
            series.append(dict(zip(nodes, values, strict=True)))
    return series


def open_db(run_dir: Path) -> sqlite3.Connection:
    db_path = run_dir / "results.sqlite"
    assert db_path.is_file(), f"no results database in {run_dir}"
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)


def payload(db: sqlite3.Connection, topic: str, step: int) -> dict:
    rows = db.execute("SELECT m.payload FROM messages m JOIN topics t USING (topic_id) "
                      "WHERE t.topic = ? AND m.step = ?", (topic, step)).fetchall()
    assert len(rows) == 1, f"{len(rows)} messages of {topic} at step {step}"
    return json.loads(rows[0][0])


def scenario_start_hour(repo_root: Path, name: str) -> float:
    raw = yaml.safe_load((repo_root / "scenarios" / f"{name}.yaml").read_text())
    start = raw["start"]
    return start.hour + start.minute / 60 + start.second / 3600


# -- voltages against a direct OpenDSS run ----------------------------------------------


@pytest.mark.parametrize(("scenario", "name"), [("ieee13", "ieee13"),
                                              ("ieee123-feeder", "ieee123")])
def test_voltages_match_direct_opendss(scenario, name, repo_root, bundled_run):
    """The ground-truth day of feeder `name` (scenario `scenario`: feeder and recorder)."""
    raw = yaml.safe_load((repo_root / "scenarios" / f"{scenario}.yaml").read_text())
    assert raw["feeder"] == name and "feeder_overlays" not in raw
    assert raw["step"] == "15m" and raw["duration"] == "24h", "the test assumes 96 x 15 min"
    assert scenario_start_hour(repo_root, scenario) == 0.0, "the test assumes a 00:00 start"
    run_dir = bundled_run(scenario)
    expected = direct_series(name, repo_root)

    db = open_db(run_dir)
    recorded: dict[int, dict[str, float]] = {}
    duplicates = 0
    for step, node, value in db.execute(
            "SELECT step, id, value FROM samples_named "
            "WHERE topic = ? AND field = 'values'", (TOPIC_VM,)):
        per_step = recorded.setdefault(step, {})
        duplicates += node in per_step
        per_step[node] = value
    db.close()

    assert duplicates == 0
    assert sorted(recorded) == list(range(N_STEPS))
    worst, where = 0.0, None
    for k in range(N_STEPS):
        assert set(recorded[k]) == set(expected[k]), f"node sets differ at step {k}"
        for node, v in expected[k].items():
            diff = abs(recorded[k][node] - v)
            if diff > worst:
                worst, where = diff, (k, node)
    assert worst <= 1e-9, f"largest difference {worst:.3e} p.u. at (step, node) {where}"
    # a sanity check that the comparison is about a live feeder, not zeros on both sides
    assert max(expected[48].values()) > 0.9


# -- topology, voltages and injections agree --------------------------------------------


def _latest_topology(db: sqlite3.Connection, step: int) -> dict:
    """The last Topology message published at or before `step` (by messages.time_s)."""
    t = step * STEP_S
    rows = db.execute(
        "SELECT m.time_s, m.payload FROM messages m JOIN topics t USING (topic_id) "
        "WHERE t.topic = 'feeder/topology' AND m.time_s <= ? ORDER BY m.time_s",
        (t + STEP_S / 2,)).fetchall()
    assert rows, f"no topology at or before step {step}"
    return json.loads(rows[-1][1])


def _check_injections(db: sqlite3.Connection, step: int) -> float:
    """Relative mismatch of V * conj(Y V) / 1000 against the recorded powers at `step`."""
    topo = _latest_topology(db, step)
    ids = topo["ids"]
    index = {n: i for i, n in enumerate(ids)}
    assert len(index) == len(ids)
    adm = topo["admittance"]
    entries = np.array([complex(re, im) for re, im in adm["admittance_list"]])
    assert len(entries) == len(adm["from_equipment"]) == len(adm["to_equipment"]) > 0
    y = sp.coo_matrix((entries, ([index[n] for n in adm["from_equipment"]],
                                 [index[n] for n in adm["to_equipment"]])),
                      shape=(len(ids), len(ids))).tocsr()

    v_re, v_im = payload(db, "feeder/voltages_real", step), payload(db, "feeder/voltages_imag",
                                                                      step)
    assert v_re["ids"] == v_im["ids"] and v_re["units"] == v_im["units"] == "V"
    volts = dict(zip(v_re["ids"], np.array(v_re["values"]) + 1j * np.array(v_im["values"]),
                     strict=True))
    assert set(ids) <= set(volts)
    v = np.array([volts[n] for n in ids])

    p, q = payload(db, "feeder/powers_real", step), payload(db, "feeder/powers_imag", step)
    assert p["ids"] == q["ids"] and p["units"] == "kW" and q["units"] == "kvar"
    assert sorted(p["ids"]) == sorted(ids)
    powers = dict(zip(p["ids"], np.array(p["values"]) + 1j * np.array(q["values"]),
                      strict=True))
    recorded = np.array([powers[n] for n in ids])

    computed = v * np.conj(y @ v) / 1000.0
    scale = np.max(np.abs(recorded))
    assert scale > 1.0, "no injection at all: nothing to compare"
    return float(np.max(np.abs(computed - recorded)) / scale)


def test_topology_voltages_and_injections_agree(bundled_run):
    db = open_db(bundled_run("ieee123-feeder"))
    topo_steps = [s for (s,) in db.execute(
        "SELECT m.step FROM messages m JOIN topics t USING (topic_id) "
        "WHERE t.topic = 'feeder/topology' ORDER BY m.time_s")]
    assert topo_steps[0] == 0, "the topology must be published at the first step"
    # noon (step 48) and the evening peak (step 78): the topology may predate them
    checked = {0, 48, 78, topo_steps[-1], N_STEPS - 1}
    stale = [k for k in checked if k not in topo_steps]
    assert stale, "at least one checked step should reuse an older topology message"
    mismatch = {k: _check_injections(db, k) for k in sorted(checked)}
    db.close()
    assert max(mismatch.values()) <= 1e-6, mismatch


# -- PV at noon ------------------------------------------------------------------------


def _shape_value_at(shape: str, hour: float) -> float:
    """A fixed-interval load shape's multiplier at `hour`, read through opendssdirect.

    OpenDSS reads point i of a fixed-interval shape as the value at (i + 1) * interval.
    """
    dss.LoadShape.Name(shape)
    assert dss.LoadShape.Name().lower() == shape.lower()
    interval = dss.LoadShape.HrInterval()
    mults = list(dss.LoadShape.PMult())
    assert interval > 0 and len(mults) == dss.LoadShape.Npts()
    i = round(hour / interval) - 1
    return float(mults[i % len(mults)])


def test_pv_output_at_noon_matches_overlay_and_shape(repo_root, bundled_run):
    with kept_cwd():
        compile_feeder("ieee123", repo_root)
        pmpp, irradiance, shapes = {}, {}, set()
        for name in dss.PVsystems.AllNames():
            dss.PVsystems.Name(name)
            pmpp[name] = dss.PVsystems.Pmpp()
            irradiance[name] = dss.PVsystems.Irradiance()
            shapes.add(dss.PVsystems.daily().lower())
        assert shapes == {"pv_clear_sky"}
        multiplier = _shape_value_at("pv_clear_sky", 12.0)
    assert len(pmpp) == 14
    assert math.isclose(sum(pmpp.values()), 1500.0)
    assert set(irradiance.values()) == {1.0}
    assert 0.5 < multiplier <= 1.0

    noon_step = round((12.0 - scenario_start_hour(repo_root, "ieee123-feeder")) * 3600 / STEP_S)
    db = open_db(bundled_run("ieee123-feeder"))
    pv = payload(db, "feeder/pv_states", noon_step)
    (time_s,) = db.execute("SELECT time_s FROM messages m JOIN topics t USING (topic_id) "
                           "WHERE t.topic = 'feeder/pv_states' AND m.step = ?",
                           (noon_step,)).fetchone()
    db.close()
    assert math.isclose(time_s, 12 * 3600.0)
    assert sorted(pv["ids"]) == sorted(pmpp)
    expected = sum(pmpp.values()) * multiplier
    total = sum(pv["p_kw"])
    assert abs(total - expected) <= 0.01 * expected, (total, expected)
