"""Blame: a federate that exits before it joined the federation is the one named
(`gridsim.blame`), with a real broker and real processes.

Before, a federate that exited cleanly before joining left the others waiting in HELICS's
executing-mode barrier until the watchdog fired, and the watchdog named one of the waiting
federates (the feeder, "stuck at t=0 s").
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from gridsim.blame import (
    JOIN_GRACE_S,
    culprit,
    early_clean_exit,
    has_failed,
    note_exits,
)
from gridsim.build import FAILURE_SUFFIX
from gridsim.supervisor import _Child


def helics_free_scenario(tmp_path: Path, type_name: str, script: str) -> Path:
    """ieee13 for an hour: a feeder, and a user's federate `type_name` that runs the Python
    `script` and never touches HELICS."""
    folder = tmp_path / type_name
    folder.mkdir()
    (folder / "main.py").write_text(script)
    (folder / "component_definition.json").write_text(json.dumps({
        "version": "0.0.1", "description": "never joins", "execute_function": "python main.py",
        "static_inputs": [], "dynamic_inputs": [], "dynamic_outputs": []}))
    path = tmp_path / f"{type_name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": type_name, "feeder": "ieee13", "duration": "1h", "step": "15m",
        "components": {type_name: f"{type_name}/component_definition.json"},
        "federates": {"feeder": {"type": "feeder"}, type_name: {"type": type_name}},
    }, sort_keys=False))
    return path


def quitter_scenario(tmp_path: Path, code: int, delay_s: float = 0.0) -> Path:
    """A user's federate whose process exits with `code` after `delay_s`."""
    return helics_free_scenario(tmp_path, "quitter", f"import sys, time\n"
                                f"time.sleep({delay_s})\nsys.exit({code})\n")


@pytest.mark.parametrize("code, delay_s", [(3, 0.0), (3, 3.0), (0, 0.0)],
                         ids=["exit-3-at-once", "exit-3-while-the-feeder-waits", "exit-0"])
def test_federate_exiting_before_joining_is_named(tmp_path, run_gridsim, code, delay_s):
    run_dir = tmp_path / "run"
    t0 = time.monotonic()
    exit_code, _, stderr = run_gridsim("run", quitter_scenario(tmp_path, code, delay_s),
                                       "--out", run_dir, "--quiet", "--timeout", "60",
                                       timeout=120)
    elapsed = time.monotonic() - t0
    assert exit_code == 1, stderr
    assert f"error: federate 'quitter' failed: exited with code {code} before joining the " \
           "federation" in stderr, stderr
    assert "wall-clock limit" not in stderr
    assert elapsed < 30, f"took {elapsed:.1f} s: the watchdog, not the exit, ended the run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failed_federate"] == "quitter"


def test_a_federate_exiting_after_the_run_is_not_blamed(tmp_path, run_gridsim):
    """The same user federate, but one that joins and runs (the commander fixture with an
    empty plan), ends cleanly with the feeder: nothing is blamed."""
    commander = Path(__file__).parent / "fixtures" / "commander" / "component_definition.json"
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump({
        "name": "ok", "feeder": "ieee13", "duration": "30m", "step": "15m",
        "components": {"commander": str(commander)},
        "federates": {"feeder": {"type": "feeder"}, "commander": {"type": "commander"}},
    }, sort_keys=False))
    code, _, stderr = run_gridsim("run", path, "--out", tmp_path / "run", "--quiet",
                                  timeout=120)
    assert code == 0, stderr


# --- the rules on recorded evidence (no processes) -----------------------------------------

class _Proc:
    def __init__(self, code: int | None):
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode


def child(name: str, code: int | None, exited_at: float | None = None, sim_time: float = -1.0,
          before_join: bool = False) -> _Child:
    c = _Child(name, _Proc(code), Path(f"{name}.log"), sim_time=sim_time, reports=True)
    c.exited_at, c.before_join = exited_at, before_join
    return c


def record(run_dir: Path, name: str, at: float, error: str) -> None:
    (run_dir / "parts").mkdir(exist_ok=True)
    (run_dir / "parts" / f"{name}{FAILURE_SUFFIX}").write_text(json.dumps(
        {"time": at, "error": error}))


def test_waiting_federate_with_a_record_is_not_blamed(tmp_path):
    """The feeder failed while waiting (its record), after the quitter left without one:
    the quitter is named."""
    record(tmp_path, "feeder", 105.0, "HelicsException: the federation was terminated")
    federates = [child("feeder", 1, 105.2, before_join=True),
                 child("quitter", 3, 100.0, before_join=True)]
    blamed, reason = culprit(federates, tmp_path)
    assert blamed.name == "quitter"
    assert reason == "exited with code 3 before joining the federation"


def test_earliest_record_among_early_exits_wins(tmp_path):
    """Two failures before joining, both recorded: the earlier record, its error first."""
    record(tmp_path, "feeder", 107.0, "HelicsException: global error")
    record(tmp_path, "sensor", 106.0, "SensorConfigError: parameter metered_nodes")
    federates = [child("feeder", 1, 107.1, before_join=True),
                 child("sensor", 1, 107.1, before_join=True)]
    blamed, reason = culprit(federates, tmp_path)
    assert blamed.name == "sensor"
    assert reason.startswith("SensorConfigError: parameter metered_nodes (exit code 1")


def test_exits_after_joining_keep_the_earliest_record(tmp_path):
    record(tmp_path, "recorder", 200.0, "OSError: disk full")
    record(tmp_path, "feeder", 201.0, "HelicsException: global error")
    federates = [child("feeder", 1, 201.1, sim_time=900.0),
                 child("recorder", 1, 201.1, sim_time=900.0)]
    assert culprit(federates, tmp_path)[0].name == "recorder"


def test_a_record_of_a_federate_still_running_names_no_exit_code(tmp_path):
    """A failure record written before the process is seen to exit: its error alone, not
    "(exit code None)"."""
    record(tmp_path, "dopf", 300.0, "ValueError: bad estimate")
    federates = [child("feeder", None, sim_time=900.0), child("dopf", None, sim_time=900.0)]
    assert culprit(federates, tmp_path) == (federates[1], "ValueError: bad estimate")


def test_the_watchdog_names_a_federate_that_never_joined_as_such(tmp_path, run_gridsim):
    """A user's federate that starts and never connects: the watchdog names it and says it
    had not joined, not that it was "stuck at t=0 s"."""
    path = helics_free_scenario(tmp_path, "sleeper", "import time\ntime.sleep(120)\n")
    code, _, stderr = run_gridsim("run", path, "--out", tmp_path / "run", "--quiet",
                                  "--timeout", "3", timeout=60)
    assert code == 1, stderr
    assert "federate 'sleeper' failed: wall-clock limit of 3 s reached (it had not joined " \
           "the federation)" in stderr, stderr


def test_clean_exit_before_joining_waits_for_a_late_status_line(tmp_path):
    """A clean exit before the federation is seen to form fails the run only after the
    grace, and not at all once a status line shows the federation formed."""
    quitter = child("quitter", 0)
    feeder = child("feeder", None)
    federates = [feeder, quitter]
    note_exits(federates, True, lambda: None)
    assert quitter.before_join and not has_failed(federates)
    quitter.exited_at -= JOIN_GRACE_S
    assert early_clean_exit(federates) is quitter and has_failed(federates)
    feeder.sim_time = 0.0
    note_exits(federates, True, lambda: None)
    assert not quitter.before_join and not has_failed(federates)
