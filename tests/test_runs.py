"""Whole runs through the ``gridsim`` command, with real broker and federate processes.

Covers: a normal run and its outputs (summary.json, results.sqlite, CSV export), determinism,
two runs at once, a federate killed mid-run, the wall-clock watchdog, bad input, and the
helics-cli runner files (the committed runner.json and one written by ``gridsim build``).
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

# -- helpers -----------------------------------------------------------------------------


def read_db(path: Path) -> sqlite3.Connection:
    assert path.is_file(), f"missing {path}"
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def recorded_steps(db: sqlite3.Connection, topic: str) -> list[int]:
    return [s for (s,) in db.execute(
        "SELECT DISTINCT m.step FROM messages m JOIN topics t USING (topic_id) "
        "WHERE t.topic = ? ORDER BY m.step", (topic,))]


def broker_port(run_dir: Path) -> int:
    return json.loads((run_dir / "federates" / "feeder.json").read_text())["helics"]["brokerPort"]


def leftovers(proc_tools, run_dir: Path, port: int) -> dict[int, list[str]]:
    """Processes still alive that belong to the run: federates (run dir) or its broker."""
    left = proc_tools.wait_until_gone(str(run_dir))
    left.update(proc_tools.wait_until_gone("helics_broker", f"--port={port}"))
    return left


def start_run(gridsim_exe: Path, scenario: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(gridsim_exe), "run", str(scenario), "--out", str(out),
                             "--quiet", *extra],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_steps(proc: subprocess.Popen, db_path: Path, at_least: int,
                   timeout: float = 60.0) -> int:
    """Poll the run's database (read-only) until it holds `at_least` distinct steps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"run ended early ({proc.returncode}): " \
                                    f"{proc.communicate()[1]}"
        if db_path.is_file():
            try:
                db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
                try:
                    (n,) = db.execute("SELECT COUNT(DISTINCT step) FROM messages").fetchone()
                finally:
                    db.close()
                if n >= at_least:
                    return n
            except sqlite3.OperationalError:
                pass  # not created yet, or busy
        time.sleep(0.05)
    pytest.fail(f"{db_path} did not reach {at_least} steps in {timeout} s")


def federate_pid(proc_tools, module: str, run_dir: Path) -> int:
    """The pid of ``python -m gridsim.federates.MODULE ... --run-dir RUN_DIR``."""
    found = [pid for pid, argv in proc_tools.processes_with(
                 f"-m gridsim.federates.{module} ", f" --run-dir {run_dir} ").items()]
    assert len(found) == 1, f"expected one {module} process for {run_dir}, found {found}"
    return found[0]


def check_cut_short(db_path: Path, tmp_path: Path) -> None:
    """The database of a run stopped early, read from a copy of its file alone: intact,
    steps 0..k-1 for some k >= 5 short of the end, each with every node's value."""
    alone = tmp_path / "alone.sqlite"
    alone.write_bytes(db_path.read_bytes())
    db = sqlite3.connect(alone)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        steps = recorded_steps(db, "feeder/voltages_magnitude")
        (n_nodes,) = db.execute(
            "SELECT COUNT(DISTINCT id) FROM samples_named "
            "WHERE topic = 'feeder/voltages_magnitude' AND field = 'values'").fetchone()
        per_step = db.execute(
            "SELECT step, COUNT(*) FROM samples_named WHERE topic = "
            "'feeder/voltages_magnitude' AND field = 'values' GROUP BY step").fetchall()
    finally:
        db.close()
    assert len(steps) >= 5 and steps == list(range(len(steps)))
    assert len(steps) < 2880, "the run should have been cut short"
    assert n_nodes > 0 and all(n == n_nodes for _, n in per_step), "a step was half-written"


@pytest.fixture
def long_ieee123(tmp_path, write_scenario):
    """ieee123 over 30 days (2,880 steps; daily mode repeats the daily shapes): long enough
    to interrupt. The feeder solves ~300 steps/s, so it is far from done when killed."""
    return write_scenario("ieee123-feeder", tmp_path / "long123.yaml", duration="30d")


@pytest.fixture
def short_ieee13(tmp_path, write_scenario):
    """ieee13 cut to 12 steps (3 h)."""
    return write_scenario("ieee13", tmp_path / "short13.yaml", duration="3h")


# -- a normal run ------------------------------------------------------------------------


def test_run_ieee13_outputs(bundled_run, run_gridsim):
    run_dir = bundled_run("ieee13")
    for name in ("system.json", "runner.json", "federates/feeder.json",
                 "federates/recorder.json", "logs/broker.log", "logs/feeder.log",
                 "logs/recorder.log", "summary.json", "timing.json", "results.sqlite"):
        assert (run_dir / name).is_file(), name

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["schema_version"] == 1
    assert summary["status"] == "ok"
    assert summary["failed_federate"] is None
    assert summary["n_steps"] == 96
    assert summary["step_s"] == 900.0
    assert summary["scenario"] == "ieee13" and summary["feeder"] == "ieee13"
    assert summary["federates"]["feeder"]["steps"] == 96
    assert len(summary["federates"]["feeder"]["v_max_pu_per_step"]) == 96
    assert summary["federates"]["recorder"]["steps"] == 96
    timing = json.loads((run_dir / "timing.json").read_text())
    assert timing["wall_s"] > 0 and set(timing["federates"]) == {"feeder", "recorder"}

    db = read_db(run_dir / "results.sqlite")
    facts = dict(db.execute("SELECT key, value FROM run"))
    assert facts["n_steps"] == "96" and facts["scenario"] == "ieee13"
    assert recorded_steps(db, "feeder/voltages_magnitude") == list(range(96))
    (n_nodes,) = db.execute("SELECT COUNT(DISTINCT id) FROM samples_named WHERE topic = "
                            "'feeder/voltages_magnitude' AND field = 'values'").fetchone()
    db.close()
    assert n_nodes == summary["federates"]["feeder"]["nodes"]

    out = run_dir.parent / "csv"
    code, stdout, stderr = run_gridsim("export", run_dir, "--format", "csv", "--out", out,
                                       timeout=60)
    assert code == 0, stderr
    csv_path = out / "feeder.voltages_magnitude.values.csv"
    assert str(csv_path) in stdout.splitlines()
    with csv_path.open(newline="") as f:
        rows = list(csv.reader(f))
    header, data = rows[0], rows[1:]
    assert header[:2] == ["step", "time_s"] and len(header) == 2 + n_nodes
    assert len(data) == 96
    assert [int(r[0]) for r in data] == list(range(96))
    assert all(len(r) == len(header) and all(v != "" for v in r) for r in data)


# -- determinism and concurrency ---------------------------------------------------------


def test_same_scenario_twice_gives_identical_summary(tmp_path, short_ieee13, gridsim_exe,
                                                     proc_tools):
    """Twice, once with the federates forked from the supervisor (the default) and once
    started as fresh interpreters (``GRIDSIM_LAUNCH=spawn``): the same numbers."""
    outs = [tmp_path / "a", tmp_path / "b"]
    for out, launch in zip(outs, ("fork", "spawn")):
        env = {**proc_tools.venv_env(), "GRIDSIM_LAUNCH": launch}
        code, _, stderr = proc_tools.run_command(
            [gridsim_exe, "run", short_ieee13, "--out", out, "--quiet"], timeout=60, env=env)
        assert code == 0, stderr
        launched = json.loads((out / "timing.json").read_text())["launch"]
        assert launched == {"feeder": launch, "recorder": launch}
    first, second = ((o / "summary.json").read_bytes() for o in outs)
    assert json.loads(first)["n_steps"] == 12
    assert json.loads(first)["status"] == "ok"
    assert first == second

    def samples(out):
        db = read_db(out / "results.sqlite")
        try:
            return db.execute("SELECT topic, step, field, id, value FROM samples_named "
                              "ORDER BY topic, step, field, id").fetchall()
        finally:
            db.close()

    rows = samples(outs[0])
    assert len(rows) > 1000
    assert rows == samples(outs[1])


@pytest.mark.slow
def test_two_runs_at_once(tmp_path, gridsim_exe, repo_root, proc_tools):
    scenario = repo_root / "scenarios" / "ieee13.yaml"
    outs = [tmp_path / "one", tmp_path / "two"]
    procs = [start_run(gridsim_exe, scenario, out) for out in outs]
    try:
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            proc_tools.stop_process(p)
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    for out in outs:
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["federates"]["recorder"]["steps"] == 96
    assert broker_port(outs[0]) != broker_port(outs[1])
    assert (outs[0] / "summary.json").read_bytes() == (outs[1] / "summary.json").read_bytes()


# -- failures: a federate killed, the watchdog, bad input ------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["feeder", "recorder"])
def test_killed_federate_fails_the_run(victim, tmp_path, long_ieee123, gridsim_exe,
                                       proc_tools):
    run_dir = (tmp_path / "run").resolve()
    proc = start_run(gridsim_exe, long_ieee123, run_dir)
    try:
        wait_for_steps(proc, run_dir / "results.sqlite", 5)
        port = broker_port(run_dir)
        pid = federate_pid(proc_tools, victim, run_dir)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("gridsim did not exit within 30 s of the kill")
        elapsed = time.monotonic() - killed_at
    finally:
        proc_tools.stop_process(proc)

    assert proc.returncode == 1, stderr
    assert elapsed <= 10.0, f"gridsim took {elapsed:.1f} s to exit after the kill"
    assert f"federate '{victim}' failed" in stderr, stderr
    assert "exited with code -9" in stderr, stderr
    assert leftovers(proc_tools, run_dir, port) == {}

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failed_federate"] == victim
    assert not (run_dir / "results.sqlite-wal").exists(), "the log is folded into the file"

    check_cut_short(run_dir / "results.sqlite", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("signals", [(signal.SIGTERM, signal.SIGTERM),
                                     (signal.SIGINT, signal.SIGINT),
                                     (signal.SIGINT, signal.SIGTERM, signal.SIGINT)])
def test_signals_in_a_burst_give_one_clean_stop(signals, tmp_path, long_ieee123, gridsim_exe,
                                                proc_tools):
    """Signals to gridsim 10 ms apart: exit 1 without a traceback, nothing left running,
    summary.json with the status, and results.sqlite alone (no write-ahead log beside it)
    holding every recorded step whole."""
    run_dir = (tmp_path / "run").resolve()
    proc = start_run(gridsim_exe, long_ieee123, run_dir)
    try:
        wait_for_steps(proc, run_dir / "results.sqlite", 5)
        port = broker_port(run_dir)
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.01)
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("gridsim did not stop within 30 s of the signals")
    finally:
        proc_tools.stop_process(proc)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr, stderr
    assert leftovers(proc_tools, run_dir, port) == {}
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    assert not (run_dir / "results.sqlite-wal").exists()
    check_cut_short(run_dir / "results.sqlite", tmp_path)


@pytest.mark.slow
def test_watchdog_stops_a_run(tmp_path, long_ieee123, run_gridsim, proc_tools):
    run_dir = (tmp_path / "run").resolve()
    t0 = time.monotonic()
    code, _, stderr = run_gridsim("run", long_ieee123, "--out", run_dir, "--quiet",
                                  "--timeout", "3", timeout=60)
    elapsed = time.monotonic() - t0
    assert code == 1, stderr
    assert "wall-clock limit of 3 s" in stderr, stderr
    assert elapsed <= 15.0, f"took {elapsed:.1f} s"
    assert leftovers(proc_tools, run_dir, broker_port(run_dir)) == {}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failed_federate"] in ("feeder",
                                                                            "recorder")


def test_unknown_federate_type_is_bad_input(tmp_path, write_scenario, run_gridsim):
    scenario = write_scenario("ieee13", tmp_path / "bad.yaml", federates={
        "feeder": {"type": "feeder"}, "recorder": {"type": "recorder"},
        "meter": {"type": "no_such_type"}})
    run_dir = tmp_path / "run"
    code, stdout, stderr = run_gridsim("run", scenario, "--out", run_dir, "--quiet", timeout=60)
    assert code == 2
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: {scenario}: federates.meter.type: ")
    assert "no_such_type" in lines[0] and "Traceback" not in stderr
    assert not run_dir.exists(), "nothing may be started or written for bad input"


# -- helics-cli runner files -------------------------------------------------------------


def test_committed_runner_json_is_up_to_date(repo_root, run_gridsim):
    code, stdout, stderr = run_gridsim("runner", "scenarios/ieee123.yaml", cwd=repo_root,
                                       timeout=60)
    assert code == 0, stderr
    generated = json.loads(stdout)
    committed = json.loads((repo_root / "runner.json").read_text())
    assert committed == generated, "runner.json is stale: run `make runner`"
    scenario = yaml.safe_load((repo_root / "scenarios" / "ieee123.yaml").read_text())
    assert {f["name"] for f in committed["federates"]} == {*scenario["federates"], "broker"}


def test_time_coordination_is_global_where_federates_feed_each_other(repo_root, tmp_path,
                                                                     write_scenario):
    """``auto``: the broker's global coordinator for the flagship (the feeder, the DOPF and
    the market feed each other), HELICS's distributed one for the feeder and its recorder;
    a scenario's own choice wins."""
    from gridsim.build import broker_arguments
    from gridsim.wiring import load_federation

    flagship = load_federation(repo_root / "scenarios" / "ieee123.yaml")
    assert flagship.has_cycle() and "--globaltime" in broker_arguments(flagship)
    feeder_day = load_federation(repo_root / "scenarios" / "ieee123-feeder.yaml")
    assert not feeder_day.has_cycle() and "--globaltime" not in broker_arguments(feeder_day)
    chosen = load_federation(write_scenario("ieee123-feeder", tmp_path / "global.yaml",
                                            time_coordination="global"))
    assert "--globaltime" in broker_arguments(chosen)


def test_the_recorder_runs_after_its_sources_when_they_are_periodic(repo_root, tmp_path,
                                                                   write_scenario):
    """``after_inputs``: once a step, 0.1 s after the latest source (the DOPF at 3 s in the
    flagship); event-driven as soon as one source is."""
    from gridsim.wiring import load_federation

    flagship = load_federation(repo_root / "scenarios" / "ieee123.yaml")
    timing = flagship.federates["recorder"].timing
    assert (timing.event_driven, timing.period_steps, timing.offset_s) == (False, 1, 3.1)
    woken = load_federation(write_scenario(
        "ieee123-feeder", tmp_path / "woken.yaml",
        federates={"feeder": {"type": "feeder", "timing": {"event_driven": True}},
                   "recorder": {"type": "recorder"}}))
    assert woken.federates["recorder"].timing.event_driven


HELICS_DEFAULT_PORT = 23404


@contextmanager
def default_port_lock():
    """`helics run` uses the broker's default port: one such test at a time, machine-wide."""
    with open(f"/tmp/gridsim-tests-helics-{HELICS_DEFAULT_PORT}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _port_in_use(port: int) -> bool:
    """Whether something listens on `port` (connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _runner_run_dir(runner: dict) -> str:
    """The --run-dir every federate of a runner is given (they must agree)."""
    dirs = set()
    for fed in runner["federates"]:
        argv = shlex.split(fed["exec"])
        if fed["name"] == "broker":
            continue
        assert argv[:2] == ["python", "-m"], fed["exec"]
        assert fed["directory"] == "."
        dirs.add(argv[argv.index("--run-dir") + 1])
    assert len(dirs) == 1, dirs
    return dirs.pop()


def helics_run(runner_path: Path, proc_tools, venv_bin: Path) -> tuple[int, str, str]:
    with default_port_lock():
        assert not _port_in_use(HELICS_DEFAULT_PORT), \
            f"port {HELICS_DEFAULT_PORT} is taken; `helics run` needs it for its broker"
        result = proc_tools.run_command([venv_bin / "helics", "run", "--path", runner_path],
                                        timeout=120, cwd=runner_path.parent,
                                        env=proc_tools.venv_env())
        folder = str(runner_path.parent)
        deadline = time.monotonic() + 3.0
        while _brokers_in(proc_tools, folder) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _brokers_in(proc_tools, folder) == [], "helics run left its broker behind"
        return result


def _brokers_in(proc_tools, folder: str) -> list[int]:
    """Live helics_broker processes started with `folder` as working directory."""
    found = []
    for pid in proc_tools.processes_with("helics_broker"):
        try:
            if os.readlink(f"/proc/{pid}/cwd") == folder:
                found.append(pid)
        except OSError:
            pass
    return found


def _check_helics_results(run_dir: Path, n_steps: int) -> None:
    db = read_db(run_dir / "results.sqlite")
    try:
        assert recorded_steps(db, "feeder/voltages_magnitude") == list(range(n_steps))
    finally:
        db.close()
    part = json.loads((run_dir / "parts" / "recorder.summary.json").read_text())
    assert part["steps"] == n_steps


@pytest.mark.slow
def test_helics_run_built_runner_absolute(tmp_path, short_ieee13, run_gridsim, proc_tools,
                                          venv_bin):
    """`gridsim build --out /abs/dir` then `helics run`: every output lands in that dir."""
    build = (tmp_path / "built").resolve()
    code, stdout, stderr = run_gridsim("build", short_ieee13, "--out", build, timeout=60)
    assert code == 0, stderr
    assert str(build / "runner.json") in stdout.splitlines()
    runner = json.loads((build / "runner.json").read_text())
    brokers = [f for f in runner["federates"] if f["name"] == "broker"]
    assert len(brokers) == 1 and brokers[0]["exec"].startswith("helics_broker ")
    assert _runner_run_dir(runner) == ".", "outputs go to the runner's own folder"

    code, out, err = helics_run(build / "runner.json", proc_tools, venv_bin)
    assert code == 0, out + err
    _check_helics_results(build, 12)
    feeder_part = json.loads((build / "parts" / "feeder.summary.json").read_text())
    assert feeder_part["steps"] == 12


@pytest.fixture(scope="module")
def relative_build(tmp_path_factory, write_scenario, run_gridsim, proc_tools, venv_bin):
    """`gridsim build --out REL` (relative, run from a temporary folder), then `helics run`.

    Yields (runner folder, the run dir the runner names resolved against that folder).
    """
    tmp_path = tmp_path_factory.mktemp("relative-build")
    scenario = write_scenario("ieee13", tmp_path / "short13.yaml", duration="3h")
    rel = f"gs-build-{uuid.uuid4().hex[:10]}"
    code, _, stderr = run_gridsim("build", scenario, "--out", rel, cwd=tmp_path, timeout=60)
    assert code == 0, stderr
    folder = tmp_path / rel
    runner = json.loads((folder / "runner.json").read_text())
    named = _runner_run_dir(runner)
    assert not Path(named).is_absolute()
    code, out, err = helics_run(folder / "runner.json", proc_tools, venv_bin)
    assert code == 0, out + err
    yield folder, (folder / named).resolve()


@pytest.mark.slow
def test_helics_run_built_runner_relative(relative_build):
    """The recorder's database appears where the runner's --run-dir says, taken relative to
    the runner's folder (the working directory `helics run` gives each federate)."""
    folder, run_dir = relative_build
    assert run_dir == folder.resolve()
    _check_helics_results(run_dir, 12)
    assert (folder / "feeder.log").is_file() and (folder / "recorder.log").is_file()


@pytest.mark.slow
def test_helics_run_relative_run_dir_holds_every_part(relative_build):
    """Every federate's outputs land in the run dir, however OpenDSS resolves its files."""
    folder, run_dir = relative_build
    feeder_part = json.loads((run_dir / "parts" / "feeder.summary.json").read_text())
    assert feeder_part["steps"] == 12
