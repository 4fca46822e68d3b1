"""The run supervisor: broker and federates as child processes, watched until they end.

`run_federation` writes the build into the run directory, starts a HELICS broker on a free
port and every federate in its own process group (log in ``logs/NAME.log``; built-in types
forked from this process with their modules loaded, others as their own programs:
`gridsim.processes`), follows their progress in simulated time through a pipe each, and
ends in one of three ways:

- every federate exits 0: the summary parts are merged into ``summary.json``;
- a federate exits non-zero, or exits at all before it joined the federation (or the
  wall-clock watchdog fires): everything else is stopped and the failure names the
  federate that caused it (`gridsim.blame`), with the tail of its log;
- the supervisor gets SIGTERM or SIGINT (any number of them, at any moment): everything is
  stopped, once.

Whichever way it ends, an SQLite database a killed federate left with its write-ahead log
is folded back into one file, and ``summary.json`` says how the run ended.

Whatever happens, no child process survives: each process group gets SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gridsim import __version__
from gridsim.blame import culprit, formed, has_failed, note_exits
from gridsim.build import (
    FEDERATE_ENV,
    JOINED,
    STATUS_FD_ENV,
    RunSettings,
    broker_arguments,
    launch_command,
    write_build,
)
from gridsim.components import builtin_types
from gridsim.processes import ForkedProcess, fork_allowed, fork_module, forkable_module, preload
from gridsim.wiring import Federation

SUMMARY_SCHEMA = 1
"""Version of summary.json's keys; raise it when a key changes meaning or is removed."""


@dataclass
class RunResult:
    """How a run ended."""

    ok: bool
    run_dir: Path
    failed: str | None = None
    reason: str = ""
    log_tail: str = ""
    wall_s: float = 0.0
    startup_s: float | None = None
    summary: dict = field(default_factory=dict)
    launch: dict[str, str] = field(default_factory=dict)
    """Federate name -> ``fork`` or ``spawn``: how its process started."""


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen | ForkedProcess
    log_path: Path
    status_fd: int | None = None
    sim_time: float = -1.0
    periodic: bool = True
    reports: bool = False
    """Known to send status lines (a built-in type): its silence means it has not joined."""
    exited_at: float | None = None
    """time.time() when the supervisor saw it exit (`gridsim.blame`)."""
    before_join: bool = False
    """It exited before the federation formed (`gridsim.blame`)."""
    launch: str = "spawn"
    """``fork`` or ``spawn`` (`gridsim.processes`)."""
    joined: bool = False
    """It said it is registered with the broker (a federate without a status pipe never
    says so)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, with the next one free too (zmq uses both)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000 and _port_free(port + 1):
            return port
    raise RuntimeError("no free port pair found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def broker_executable() -> str:
    """The helics_broker program: the binary inside the helics package, else the one next
    to this Python or on PATH. (The one next to Python in a virtual environment is a
    Python script that runs the binary as its child: 0.1 s of CPU and a process more.)"""
    spec = importlib.util.find_spec("helics")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "install" / "bin" / "helics_broker"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    local = Path(sys.executable).parent / "helics_broker"
    found = str(local) if local.exists() else shutil.which("helics_broker")
    if not found:
        raise RuntimeError("helics_broker not found; is the helics package installed?")
    return found


def run_federation(federation: Federation, run_dir: Path, *, timeout_s: float | None = None,
                   progress=None) -> RunResult:
    """Run `federation` with outputs in `run_dir`; see the module docstring."""
    run_dir = run_dir.resolve()
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "parts").mkdir(exist_ok=True)
    for stale in (run_dir / "parts").glob("*.json"):
        stale.unlink()
    scenario = federation.scenario
    timeout_s = timeout_s or scenario.timeout_s or max(120.0, 2.0 * scenario.n_steps)
    settings = RunSettings(run_dir=run_dir, broker_port=free_port())
    written = write_build(federation, run_dir, settings)
    t0 = time.perf_counter()
    children: list[_Child] = []
    signals = _Signals()
    previous = {sig: signal.signal(sig, signals) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        children.append(_start_broker(run_dir, settings, broker_arguments(federation)))
        commands = {name: launch_command(federation, name, str(written["system"]), settings)
                    for name in federation.federates}
        modules = _modules_to_fork(commands)
        for name, inst in federation.federates.items():
            child = _start_federate(name, commands[name], run_dir, modules.get(name),
                                    [c.status_fd for c in children if c.status_fd is not None])
            child.periodic = not inst.timing.event_driven
            child.reports = builtin_types().get(inst.type) == inst.definition_path
            children.append(child)
        result = _watch(children, run_dir, t0, timeout_s, scenario.duration_s, progress,
                        signals)
    finally:
        _stop_all(children)
    result.wall_s = time.perf_counter() - t0
    result.launch = {c.name: c.launch for c in children if c.name != "broker"}
    _fold_write_ahead_logs(run_dir)
    _write_outputs(federation, result)
    if signals.received is not None:
        # Stopped by a signal: more may follow, and the interpreter restores the default
        # handlers while it exits, so they are blocked for the little the caller has left.
        signal.pthread_sigmask(signal.SIG_BLOCK, set(previous))
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    return result


class _Signals:
    """SIGTERM and SIGINT during a run are only noted (the first one's number); the watch
    loop sees it within 50 ms and stops the run. Nothing is raised from the handler, so
    any number of signals at any moment (start-up, stopping, writing out) give one clean
    stop."""

    def __init__(self) -> None:
        self.received: int | None = None

    def __call__(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum


def _fold_write_ahead_logs(run_dir: Path) -> None:
    """Fold what a killed federate left in an SQLite write-ahead log (``X.sqlite-wal``)
    into its database, so that the database file alone holds every recorded step."""
    for wal in run_dir.glob("*-wal"):
        database = wal.with_name(wal.name.removesuffix("-wal"))
        if not database.is_file():
            continue
        try:
            db = sqlite3.connect(database, timeout=5)
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.execute("PRAGMA journal_mode=DELETE")
            finally:
                db.close()
        except sqlite3.Error:
            pass  # the database stays readable with its log beside it


def _start_broker(run_dir: Path, settings: RunSettings, options: list[str]) -> _Child:
    argv = [broker_executable(), *options, f"--port={settings.broker_port}",
            "--loglevel=warning", f"--name=gridsim-{os.getpid()}-{settings.broker_port}"]
    log_path = run_dir / "logs" / "broker.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(argv, cwd=run_dir, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return _Child("broker", proc, log_path, periodic=False)


def _modules_to_fork(commands: dict[str, list[str]]) -> dict[str, str]:
    """Federate name -> module, for the built-in federates this process will fork
    (`gridsim.processes`), after importing what they need. Empty when forking is off or not
    safe, or when an import fails (each federate then starts fresh and reports the
    failure in its own log)."""
    if not fork_allowed():
        return {}
    modules = {name: m for name, argv in commands.items() if (m := forkable_module(argv))}
    try:
        preload(list(modules.values()))
    except Exception:  # noqa: BLE001 -- the federates will fail visibly in their own logs
        return {}
    return modules if fork_allowed() else {}


def _start_federate(name: str, argv: list[str], run_dir: Path, module: str | None,
                    open_fds: list[int]) -> _Child:
    """Start one federate: forked from this process when `module` is given, else spawned."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    env = {**FEDERATE_ENV, **os.environ, STATUS_FD_ENV: str(write_fd), "PYTHONUNBUFFERED": "1"}
    log_path = run_dir / "logs" / f"{name}.log"
    if module:
        proc = fork_module(module, argv[3:], cwd=run_dir, log_path=log_path, env=env,
                           keep_fd=write_fd, close_fds=[read_fd, *open_fds])
    else:
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(argv, cwd=run_dir, stdout=log_file,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env, pass_fds=(write_fd,))
    os.close(write_fd)
    return _Child(name, proc, log_path, status_fd=read_fd, launch="fork" if module else "spawn")


def _watch(children: list[_Child], run_dir: Path, t0: float, timeout_s: float,
           duration_s: float, progress, signals: _Signals) -> RunResult:
    """Follow the children until all federates exit, one fails, time runs out, or a
    signal asks the run to stop."""
    selector = selectors.DefaultSelector()
    for child in children:
        if child.status_fd is not None:
            selector.register(child.status_fd, selectors.EVENT_READ, child)
    federates = [c for c in children if c.name != "broker"]
    broker = children[0]
    startup_s = None
    buffers: dict[int, bytes] = {}
    watched = any(c.reports and c.periodic for c in federates)
    while True:
        if signals.received is not None:
            return RunResult(False, run_dir, None, "interrupted", startup_s=startup_s)
        for key, _ in selector.select(timeout=0.05):
            child = key.data
            _read_status(child, buffers, selector)
        note_exits(federates, watched, lambda: _drain(federates, buffers, selector))
        periodic = [c for c in federates if c.periodic]
        if startup_s is None and periodic and all(c.sim_time >= 0 for c in periodic):
            startup_s = time.perf_counter() - t0
        running = [c for c in periodic if c.proc.poll() is None]  # some leave early
        if progress is not None and running:
            progress(min(c.sim_time for c in running), duration_s)
        if has_failed(federates):
            blamed, reason = culprit(federates, run_dir)
            return _failure(blamed, run_dir, reason, startup_s)
        if broker.proc.poll() not in (None, 0) and any(c.proc.poll() is None for c in federates):
            return _failure(broker, run_dir, f"broker exited with code {broker.proc.poll()}",
                            startup_s)
        if all(c.proc.poll() == 0 for c in federates):
            result = RunResult(True, run_dir, startup_s=startup_s)
            return result
        if time.perf_counter() - t0 > timeout_s:
            # Not joined: a built-in that never said so, or, while no federate has been
            # granted time 0 (the federation never formed), any that never said anything.
            started = formed(federates)
            absent = [c for c in federates if not c.joined and c.proc.poll() is None
                      and (c.reports or not started)]
            laggard = absent[0] if absent else min(running or periodic or federates,
                                                   key=lambda c: c.sim_time)
            where = ("it had not joined the federation" if absent
                     else f"stuck at t={max(laggard.sim_time, 0):.0f} s")
            return _failure(laggard, run_dir,
                            f"wall-clock limit of {timeout_s:.0f} s reached ({where})",
                            startup_s)


def _drain(federates: list[_Child], buffers: dict[int, bytes], selector) -> None:
    """Read every status line already written."""
    for child in federates:
        while child.status_fd is not None and _read_status(child, buffers, selector):
            pass


def _read_status(child: _Child, buffers: dict[int, bytes], selector) -> bool:
    """Read what `child` has written to its status pipe; False when nothing was waiting."""
    fd = child.status_fd
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return False
    if not data:
        selector.unregister(fd)
        os.close(fd)
        child.status_fd = None
        return False
    buf = buffers.get(fd, b"") + data
    *lines, buffers[fd] = buf.split(b"\n")
    for line in lines:
        if line == JOINED.encode():
            child.joined = True
        else:
            child.sim_time = float(line)
    return True


def _failure(child: _Child, run_dir: Path, reason: str, startup_s) -> RunResult:
    return RunResult(False, run_dir, child.name, reason, _tail(child.log_path),
                     startup_s=startup_s)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop_all(children: list[_Child], grace_s: float = 3.0) -> None:
    """Stop every child's process group: SIGTERM, then SIGKILL after `grace_s`."""
    alive = [c for c in children if c.proc.poll() is None]
    for child in alive:
        _signal_group(child.proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in alive:
        try:
            child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        _signal_group(child.proc, signal.SIGKILL)
        child.proc.wait()
        if child.status_fd is not None:
            os.close(child.status_fd)
            child.status_fd = None


def _signal_group(proc: subprocess.Popen | ForkedProcess, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _write_outputs(federation: Federation, result: RunResult) -> None:
    """summary.json (deterministic key figures) and timing.json (wall-clock figures)."""
    scenario = federation.scenario
    parts_dir = result.run_dir / "parts"
    parts = {p.name.removesuffix(".summary.json"): json.loads(p.read_text())
             for p in sorted(parts_dir.glob("*.summary.json"))}
    timings = {p.name.removesuffix(".timing.json"): json.loads(p.read_text())
               for p in sorted(parts_dir.glob("*.timing.json"))}
    result.summary = {
        "schema_version": SUMMARY_SCHEMA,
        "gridsim_version": __version__,
        "scenario": scenario.name,
        "feeder": federation.feeder.name,
        "seed": scenario.seed,
        "start": scenario.start.isoformat(),
        "step_s": scenario.step_s,
        "n_steps": scenario.n_steps,
        "status": "ok" if result.ok else "failed",
        "failed_federate": result.failed,
        "federates": parts,
    }
    (result.run_dir / "summary.json").write_text(
        json.dumps(result.summary, indent=2, sort_keys=True) + "\n")
    timing = {"wall_s": result.wall_s, "startup_s": result.startup_s, "federates": timings,
              "launch": result.launch}
    (result.run_dir / "timing.json").write_text(json.dumps(timing, indent=2, sort_keys=True))
