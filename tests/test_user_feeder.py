"""A user's own OpenDSS master file runs as the feeder, with no overlay.

The circuit is written here: a 12.47 kV source, two line sections and one three-phase load
following a four-point daily shape (OpenDSS reads point i at (i + 1) * 6 h).
"""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

MASTER = """\
Clear
New Circuit.mini basekv=12.47 pu=1.0 phases=3 bus1=src
New Linecode.lc nphases=3 r1=0.3 x1=0.6 r0=0.6 x0=1.2 units=km
New Line.l1 bus1=src bus2=a linecode=lc length=2 units=km
New Line.l2 bus1=a bus2=b linecode=lc length=2 units=km
New Loadshape.shape4 npts=4 interval=6 mult=(0.5 0.8 1.0 0.7)
New Load.ld1 bus1=b phases=3 kv=12.47 kw=2000 kvar=800 model=1 daily=shape4
Set voltagebases=[12.47]
Calcv
"""
SHAPE = [0.5, 0.8, 1.0, 0.7]


def user_scenario(folder, master_text: str, **changes):
    """``folder/model/master.dss`` holding `master_text`, and ``folder/mini.yaml`` running
    it for a day at 6-hour steps with a recorder; `changes` replace top-level keys."""
    (folder / "model").mkdir(exist_ok=True)
    (folder / "model" / "master.dss").write_text(master_text)
    scenario = {
        "name": "mini", "feeder": "model/master.dss", "start": "2026-07-01T00:00:00",
        "duration": "24h", "step": "6h", "seed": 1,
        "federates": {"feeder": {"type": "feeder"}, "recorder": {"type": "recorder"}},
        "links": ["feeder.* -> recorder.subscription"], **changes,
    }
    path = folder / "mini.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory, run_gridsim):
    folder = tmp_path_factory.mktemp("user-feeder")
    path = user_scenario(folder, MASTER)
    out = folder / "run"
    code, _, stderr = run_gridsim("run", path, "--out", out, "--quiet", timeout=120)
    assert code == 0, stderr
    return out


def test_user_feeder_nodes_and_summary(mini_run):
    """The run covers all four steps of the user's circuit and names its nine nodes."""
    summary = json.loads((mini_run / "summary.json").read_text())
    assert summary["feeder"] == "master"
    assert summary["federates"]["feeder"]["steps"] == 4
    assert summary["federates"]["feeder"]["nodes"] == 9


def test_user_feeder_follows_its_own_load_shape(mini_run):
    """The load draws its base kW times the shape's multiplier at each step (constant PQ).

    Step k is at hour 6k; hour 0 reads the shape's last point (it wraps), hour 6 the first.
    Drawn power matches to OpenDSS's convergence tolerance (1e-4); demand is exact.
    """
    db = sqlite3.connect(mini_run / "results.sqlite")
    rows = db.execute("SELECT step, value FROM samples_named WHERE topic = 'feeder/load_states' "
                      "AND field = 'p_kw' AND id = 'ld1' ORDER BY step").fetchall()
    demand = db.execute("SELECT step, value FROM samples_named WHERE topic = "
                        "'feeder/load_states' AND field = 'demand_kw' ORDER BY step").fetchall()
    db.close()
    expected = [2000 * SHAPE[(6 * k // 6 - 1) % 4] for k in range(4)]
    assert [step for step, _ in rows] == [0, 1, 2, 3]
    for (_, p_kw), want in zip(rows, expected):
        assert p_kw == pytest.approx(want, rel=1e-4)
    for (_, d_kw), want in zip(demand, expected):
        assert d_kw == pytest.approx(want, rel=1e-12)


def test_user_feeder_voltage_drops_with_load(mini_run):
    """Voltage at the far bus is lowest at the heaviest step and highest at the lightest."""
    db = sqlite3.connect(mini_run / "results.sqlite")
    v = dict(db.execute("SELECT step, value FROM samples_named WHERE topic = "
                        "'feeder/voltages_magnitude' AND field = 'values' AND id = 'b.1'"))
    db.close()
    loads = [SHAPE[(k - 1) % 4] for k in range(4)]
    assert min(v, key=v.get) == loads.index(max(loads))
    assert max(v, key=v.get) == loads.index(min(loads))
    assert all(0.8 < x < 1.0 for x in v.values())


def test_a_users_model_folder_is_left_as_it_was(tmp_path_factory, run_gridsim):
    """A master that solves and exports while it is read (as users' models do): OpenDSS
    writes into the run directory, and the model's folder is byte for byte as before."""
    folder = tmp_path_factory.mktemp("exporting-feeder")
    path = user_scenario(folder, MASTER + "Solve\nExport voltages\n", duration="12h")
    model = folder / "model"
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    out = folder / "run"
    code, _, stderr = run_gridsim("run", path, "--out", out, "--quiet", timeout=120)
    assert code == 0, stderr
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    assert list(out.glob("*EXP_VOLTAGES*.csv")), sorted(p.name for p in out.iterdir())


# -- what validate checks of a user's model (federates/feeder/checks.py) --------------------


def _scenario(folder, master_text: str, **changes):
    """`user_scenario` with the feeder alone, and what ``gridsim validate`` says of it."""
    from helpers import gridsim

    changes = {"federates": {"feeder": {"type": "feeder"}}, "links": [], **changes}
    path = user_scenario(folder, master_text, **changes)
    return path, gridsim("validate", str(path))


def test_an_opendss_error_names_the_model_file_and_line(tmp_path):
    from test_validation import assert_input_error

    path, result = _scenario(tmp_path, MASTER.replace("Calcv", "Calcv\nthis is no command"))
    line = MASTER.count("\n") + 1  # the line after "Calcv", the last
    assert_input_error(result, tmp_path / "model" / "master.dss", f"line {line}",
                       "OpenDSS", "Unknown Command")


def test_yearly_shapes_in_daily_mode_are_refused(tmp_path):
    """Loads with a yearly shape and no daily one would sit at their nominal kW all day in
    daily mode: refused, naming the mode; in yearly mode the same model validates."""
    from test_validation import assert_input_error

    yearly = MASTER.replace("daily=shape4", "yearly=shape4")
    path, result = _scenario(tmp_path, yearly)
    assert_input_error(result, path, "federates.feeder.parameters.mode", "1 of 1 loads",
                       "yearly")
    path, result = _scenario(tmp_path, yearly,
                             federates={"feeder": {"type": "feeder",
                                                   "parameters": {"mode": "yearly"}}})
    assert result.returncode == 0, result.stderr


def test_a_run_too_large_needs_saying_so(tmp_path):
    """10,000 days at 6-hour steps of a 9-node feeder is 360,000 node-steps: within the
    bound; 10,000 days at one-minute steps is not, unless allow_long_run."""
    from test_validation import assert_input_error

    path, result = _scenario(tmp_path, MASTER, duration="10000d")
    assert result.returncode == 0, result.stderr
    path, result = _scenario(tmp_path, MASTER, duration="10000d", step="1m")
    assert_input_error(result, path, "duration", "node-steps", "allow_long_run")
    path, result = _scenario(tmp_path, MASTER, duration="10000d", step="1m",
                             allow_long_run=True)
    assert result.returncode == 0, result.stderr


def test_validating_loads_no_scipy(repo_root):
    """The checks run in the process that then loads HELICS and forks the federates;
    HELICS must come before SciPy (gridsim.runtime), so validation must not load SciPy."""
    import subprocess
    import sys

    code = ("import sys; from gridsim.wiring import load_federation; "
            "load_federation('scenarios/ieee123.yaml'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]", out
