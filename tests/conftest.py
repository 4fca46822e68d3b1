"""Shared fixtures for gridsim's integration tests.

Every test here drives the real thing: the ``gridsim`` console script of the project's virtual
environment, a real HELICS broker, real federate processes and real OpenDSS. Helpers:

- `repo_root`, `venv_bin`, `gridsim_exe`: where things are;
- `write_scenario`: a copy of a bundled scenario with changes (e.g. a shorter duration);
- `run_gridsim`: run ``gridsim ...`` with a time limit and get ``(code, stdout, stderr)``;
- `bundled_run`: a full run of ``scenarios/NAME.yaml``, done once per session and shared;
- `proc_tools`: process helpers, e.g. the live processes whose command line contains a
  string (from /proc).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = REPO_ROOT / ".venv" / "bin"
GRIDSIM = VENV_BIN / "gridsim"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: starts several federations or waits on purpose (kill, watchdog); "
                   "deselect with -m 'not slow'")


# -- paths -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    assert (VENV_BIN / "python").exists(), f"no virtual environment at {VENV_BIN}"
    return VENV_BIN


@pytest.fixture(scope="session")
def gridsim_exe(venv_bin) -> Path:
    assert GRIDSIM.exists(), f"the gridsim console script is missing: {GRIDSIM}"
    return GRIDSIM


# -- scenarios ---------------------------------------------------------------------------


def write_scenario_copy(src: str | Path, dest: Path, **changes) -> Path:
    """Copy scenario `src` (a path, or a name under scenarios/) to `dest` with top-level changes.

    ``write_scenario_copy("ieee13", tmp_path / "s.yaml", duration="3h")``. A change whose value
    is None removes the key. The bundled feeders are named (``feeder: ieee13``), so the copy
    runs from anywhere.
    """
    path = Path(src)
    if not path.suffix:
        path = REPO_ROOT / "scenarios" / f"{src}.yaml"
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


@pytest.fixture(scope="session")
def write_scenario():
    return write_scenario_copy


@pytest.fixture(scope="session")
def run_data(run_gridsim):
    """``run_data(data, out)``: write scenario `data` beside run directory `out`, run it
    (it must succeed) and return its summary's ``federates`` part."""

    def run(data: dict, out: Path, timeout: float = 300.0) -> dict:
        path = out.with_name(f"{out.name}.yaml")
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        code, _, stderr = run_gridsim("run", path, "--out", out, "--quiet", timeout=timeout)
        assert code == 0, stderr
        return json.loads((out / "summary.json").read_text())["federates"]

    return run


# -- processes ---------------------------------------------------------------------------


def run_command(argv: list[str], *, timeout: float, cwd: Path | None = None,
                env: dict | None = None) -> tuple[int, str, str]:
    """Run `argv`, return (code, stdout, stderr); on timeout stop it and fail the test.

    The command gets its own session. On timeout it is first sent SIGTERM (gridsim's
    supervisor then stops its broker and federates), then its group gets SIGKILL.
    """
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd or REPO_ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(map(str, argv))} did not finish within {timeout} s\n"
                    f"stdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


def stop_process(proc: subprocess.Popen, grace_s: float = 8.0) -> None:
    """SIGTERM `proc`, then SIGKILL its process group if it does not end within `grace_s`."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.fixture(scope="session")
def run_gridsim(gridsim_exe):
    """``run_gridsim("run", scenario, "--out", d, timeout=60)`` -> (code, stdout, stderr)."""

    def run(*args, timeout: float = 120.0, cwd: Path | None = None):
        return run_command([gridsim_exe, *args], timeout=timeout, cwd=cwd)

    return run


def venv_env() -> dict:
    """The environment with the virtual environment's bin folder first on PATH."""
    return dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def cmdlines() -> dict[int, list[str]]:
    """pid -> argv of every live (non-zombie) process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            found[int(entry.name)] = raw.rstrip(b"\0").decode(errors="replace").split("\0")
    return found


def processes_with(*needles: str, exclude_self: bool = True) -> dict[int, list[str]]:
    """Live processes whose joined command line contains every string in `needles`."""
    me = os.getpid()
    return {pid: argv for pid, argv in cmdlines().items()
            if all(n in " ".join(argv) for n in needles) and not (exclude_self and pid == me)}


def wait_until_gone(*needles: str, timeout: float = 3.0) -> dict[int, list[str]]:
    """Wait up to `timeout` s for processes matching `needles` to disappear; return survivors.

    The grace only covers the kernel reaping processes that were already killed.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = processes_with(*needles)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.fixture(scope="session")
def proc_tools():
    """Process helpers: processes_with, wait_until_gone, stop_process, run_command, venv_env."""

    return SimpleNamespace(processes_with=processes_with, wait_until_gone=wait_until_gone,
                           stop_process=stop_process, run_command=run_command,
                           venv_env=venv_env)


# -- shared runs -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bundled_run(tmp_path_factory, run_gridsim):
    """``bundled_run("ieee13")``: the run dir of ``gridsim run scenarios/ieee13.yaml --quiet``.

    Each scenario runs once per session; the run must exit 0.
    """
    done: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in done:
            out = tmp_path_factory.mktemp(f"run-{name}") / "run"
            code, stdout, stderr = run_gridsim("run", f"scenarios/{name}.yaml", "--out", out,
                                               "--quiet", timeout=120)
            assert code == 0, f"gridsim run {name} exited {code}\n{stderr}"
            done[name] = out
        return done[name]

    return get
