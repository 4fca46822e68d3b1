"""How the supervisor starts a federate process: a fresh interpreter, or a fork of itself.

A built-in federate is ``python -m gridsim.federates.NAME ...``. Started as a fresh
interpreter, each one pays for its own imports (HELICS, pydantic, NumPy, and SciPy, a
solver or OpenDSS): on the flagship day that was 3.9 s of the run's 10 s of CPU, eight
times over for the shared part. Instead, the supervisor imports what the scenario's built-in
federates need once (`preload`, after HELICS, which must load before SciPy:
`gridsim.runtime`) and forks one child per federate (`fork_module`), which runs the
module as ``__main__`` exactly as ``python -m`` would, in its own session, working
directory and log file, and with that command line as its process title (what ``ps`` and
/proc show). Any other command (a user's component, another language) is started with
`subprocess.Popen`.

A forked child shares the supervisor's state at the fork, so the fork happens while the
supervisor has one thread, before it opens anything but the children's pipes and logs.
``GRIDSIM_LAUNCH=spawn`` in the environment starts every federate as a fresh interpreter
(for comparison, or where ``fork`` is not available).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import runpy
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from setproctitle import setproctitle

LAUNCH_ENV = "GRIDSIM_LAUNCH"
"""``spawn`` starts every federate as a fresh interpreter; anything else lets the
supervisor fork the built-in ones."""

BUILTIN_PREFIX = "gridsim.federates."


def forkable_module(argv: list[str]) -> str | None:
    """The module of ``[this python, -m, gridsim.federates.X, ...]``, else None."""
    if (len(argv) >= 3 and argv[1] == "-m" and argv[2].startswith(BUILTIN_PREFIX)
            and Path(argv[0]).resolve() == Path(sys.executable).resolve()):
        return argv[2]
    return None


def fork_allowed() -> bool:
    """Whether this process may fork federates: asked for, possible, and single-threaded
    (no thread of Python's, nor of a library such as OpenBLAS's pool)."""
    return (os.environ.get(LAUNCH_ENV, "fork") != "spawn" and hasattr(os, "fork")
            and threading.active_count() == 1 and _native_threads() == 1)


def _native_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0  # not Linux: no way to tell, so no fork


def preload(modules: list[str]) -> None:
    """Import HELICS first, then each federate module's loop (``MODULE.federate`` when it
    exists, else the module itself), so that forked children start with them loaded."""
    importlib.import_module("gridsim.runtime")
    for module in dict.fromkeys(modules):
        loop = f"{module}.federate"
        importlib.import_module(loop if importlib.util.find_spec(loop) else module)


class ForkedProcess:
    """A forked child, with the part of `subprocess.Popen`'s interface the supervisor uses."""

    def __init__(self, pid: int, args: list[str]):
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(delay)
            delay = min(2 * delay, 0.05)
        return self.returncode


def fork_module(module: str, args: list[str], *, cwd: Path, log_path: Path, env: dict,
                keep_fd: int, close_fds: list[int]) -> ForkedProcess:
    """Fork a child that runs `module` as ``__main__`` with ``sys.argv[1:] == args``.

    The child gets a new session (its own process group, like ``start_new_session``),
    stdin from /dev/null, stdout and stderr to `log_path`, `env` as its environment and
    `cwd` as its directory; it closes `close_fds` (the supervisor's ends of the other
    children's pipes) and keeps `keep_fd` (its status pipe). It never returns: the module
    leaves through ``os._exit`` (`gridsim.runtime.run_and_exit`), or the child exits 1.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    pid = os.fork()
    if pid:
        os.close(log_fd)
        return ForkedProcess(pid, [sys.executable, "-m", module, *args])
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        for fd in (null, log_fd, *close_fds):
            if fd != keep_fd and fd > 2:
                os.close(fd)
        os.chdir(cwd)
        # What ps shows; before the environment changes, which it needs as it found it.
        setproctitle(shlex.join([sys.executable, "-m", module, *args]))
        os.environ.clear()
        os.environ.update(env)
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(line_buffering=True)
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 -- the child must never return into the supervisor
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
