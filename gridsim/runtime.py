"""The federate side of a run over HELICS: the `gridsim.loop.Runtime` a loop gets, and the
process entry of every federate.

A federate's ``__main__`` imports this module first and calls `run_and_exit` with its loop.
Importing it loads HELICS, which must happen before SciPy's compiled modules load: with
``scipy.linalg`` (or ``scipy.special``, ``scipy.stats``) loaded first, creating a federate
from a JSON configuration fails with "--brokerport: Value not in range" (helics 3.6.1,
scipy 1.17). This module and the entry points are the only ones that import HELICS
(`tests/test_imports.py`).

`main` loads the wiring file, derives the federate's config (`gridsim.build.federate_config`),
connects to the broker, calls the loop and reports the outcome. An exception stops the
whole federation through a HELICS global error and exits 1 with the traceback in the
federate's log; the supervisor names the federate.
"""

from __future__ import annotations

import helics as h  # isort: skip -- first, before anything can load SciPy

import argparse
import json
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from helics.capi import ffi, helicsErrorInitialize, helicsInputGetStringSize, loadSym
from pydantic import BaseModel

from gridsim.build import FAILURE_SUFFIX, JOINED, STATUS_FD_ENV, RunSettings, federate_config
from gridsim.errors import InputError
from gridsim.loop import FederateConfig, Runtime, Step
from gridsim.messages import MESSAGE_TYPES
from gridsim.wiring import load_federation

log = logging.getLogger("gridsim.federate")


class HelicsRuntime:
    """One federate's connection to a HELICS federation (`gridsim.loop.Runtime`)."""

    def __init__(self, config: FederateConfig):
        self.config = config
        self.fed = _create_federate(dict(config.helics))
        self._pubs = {port: self.fed.get_publication_by_name(o.topic)
                      for port, o in config.outputs.items()}
        self._subs = {port: [(t, h.helicsFederateGetSubscription(self.fed, t))
                             for t in spec.topics]
                      for port, spec in config.inputs.items()}
        self._input_models = {port: MESSAGE_TYPES.get(spec.type)
                              for port, spec in config.inputs.items()}
        fd = os.environ.get(STATUS_FD_ENV)
        self._status = os.fdopen(int(fd), "w", buffering=1) if fd else None
        if self._status:
            self._status.write(f"{JOINED}\n")  # registered: the supervisor may wait on it
        self.timing: dict[str, Any] = {}
        self.stepping: tuple[float, float] | None = None
        """perf_counter() when stepping began and when the last step finished."""
        self.busy_s = 0.0
        """Wall time spent in the loop between a grant and the next request: the federate's
        own compute and publishing, without the wait for HELICS."""
        self.busy_cpu_s = 0.0
        """CPU time of this process over the same spans."""
        self._busy_since: tuple[float, float] | None = None
        self.entered_cpu_s: float | None = None
        """This process's CPU time when the loop entered executing mode, after its own
        set-up (models, compiles)."""

    def _busy(self) -> None:
        """Start counting the loop's own work (a grant has just arrived)."""
        self._busy_since = (time.perf_counter(), time.process_time())

    def _idle(self) -> None:
        """Stop counting: the loop asks for its next time."""
        if self._busy_since is not None:
            wall, cpu = self._busy_since
            self.busy_s += time.perf_counter() - wall
            self.busy_cpu_s += time.process_time() - cpu
            self._busy_since = None

    # -- ports ----------------------------------------------------------------------------

    def wanted(self, port: str) -> bool:
        return self.config.outputs[port].linked

    def publish(self, port: str, message: BaseModel) -> None:
        self._pubs[port].publish(message.model_dump_json())

    def connected(self, port: str) -> bool:
        return bool(self._subs.get(port))

    def updates(self, port: str) -> list[BaseModel | dict]:
        return [message for _, message in self.link_updates(port)]

    def link_updates(self, port: str) -> list[tuple[str, BaseModel | dict]]:
        model = self._input_models.get(port)
        out = []
        for topic, sub in self._subs.get(port, []):
            if sub.is_updated():
                raw = input_text(sub)
                out.append((topic, model.model_validate_json(raw) if model else json.loads(raw)))
        return out

    def raw_updates(self) -> list[tuple[str, str, str]]:
        out = []
        for port, subs in self._subs.items():
            for topic_key, sub in subs:
                if sub.is_updated():
                    out.append((port, topic_key, input_text(sub)))
        return out

    # -- clock ----------------------------------------------------------------------------

    def enter(self) -> None:
        self.entered_cpu_s = time.process_time()
        self.fed.enter_executing_mode()
        self._busy()  # the loop's work before its first time request is its own

    def step_times(self, only: Iterable[int] | None = None) -> Iterator[Step]:
        """Requests each time of `Clock.grants` (or of those in `only`) from HELICS before
        yielding its step. After the last step the federate simply leaves (`close`):
        requesting the maximum time instead, to end together, deadlocked as soon as two
        federates fed each other (feeder and DOPF)."""
        clock = self.config.clock
        began = time.perf_counter()
        granted = 0.0
        for k, t in clock.chosen_grants(only):
            self._idle()
            if t > 0:
                granted = self.fed.request_time(t)
            self._busy()
            self.status(granted)
            yield Step(k, clock.data_time(granted), granted)
            self.stepping = (began, time.perf_counter())
        self._idle()

    def next_event(self) -> float | None:
        self._idle()
        granted = self.fed.request_time(h.HELICS_TIME_MAXTIME)
        if granted >= h.HELICS_TIME_MAXTIME:
            return None
        self._busy()
        self.status(granted)
        return granted

    def status(self, t: float) -> None:
        """Tell the supervisor how far this federate is, in simulated seconds."""
        if self._status:
            self._status.write(f"{t:.6f}\n")

    def close(self) -> None:
        """Leave the federation cleanly."""
        self.fed.disconnect()

    def fail(self, message: str) -> None:
        """Stop the whole federation with an error."""
        try:
            self.fed.global_error(1, f"{self.config.name}: {message}"[:500])
        except Exception:  # noqa: BLE001 -- already failing; the exit code reports it
            pass


def _create_federate(helics_config: dict, attempts: int = 3) -> h.HelicsFederate:
    """Create the federate; retry when its core could not bind a port.

    Seen in about 1 run in 10 when many federations start back to back on one machine:
    "Unable to bind zmq pull socket", then "unable to register federate". Nothing is
    registered with the broker yet, so trying again is safe.
    """
    for attempt in range(attempts):
        try:
            return h.helicsCreateCombinationFederateFromConfig(json.dumps(helics_config))
        except h.HelicsException as exc:
            message = str(exc).lower()
            if not ("bind" in message or "register" in message) or attempt == attempts - 1:
                raise
            log.warning("federate creation failed (%s); retrying", exc)
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


_GET_STRING = loadSym("helicsInputGetString")


def input_text(sub: h.HelicsInput) -> str:
    """The current value of an input as text.

    pyhelics' own getter allocates its buffer as ``ffi.new("char[N]")``, so every new value
    length makes cffi parse a new C type (about 6 ms): with messages of varying size that
    dominated the recorder. A ``char[]`` buffer of the same size avoids it.
    """
    size = helicsInputGetStringSize(sub) + 1
    buf = ffi.new("char[]", size)
    length = ffi.new("int[1]")
    err = helicsErrorInitialize()
    _GET_STRING(sub.handle, buf, size, length, err)
    if err.error_code != 0:
        raise h.HelicsException(f"[{err.error_code}] {ffi.string(err.message).decode()}")
    return ffi.string(buf, length[0]).decode()


def write_summary(run_dir: Path, name: str, part: dict, timing: dict) -> None:
    """Write this federate's summary part and its (non-deterministic) timing figures."""
    folder = run_dir / "parts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.summary.json").write_text(json.dumps(part, indent=2, sort_keys=True))
    (folder / f"{name}.timing.json").write_text(json.dumps(timing, indent=2, sort_keys=True))


def run_and_exit(run: Callable[[Runtime], dict]) -> None:
    """Process entry of a federate: `main`, then a fast exit.

    Once the federate has disconnected and written its outputs, the interpreter's normal
    teardown (module finalizers of HELICS, OpenDSS, SciPy) only adds about half a second to
    every run, so the process closes the HELICS library and leaves at once.
    """
    code = main(run)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    h.helicsCloseLibrary()
    os._exit(code)


def main(run: Callable[[Runtime], dict], argv: list[str] | None = None) -> int:
    """Command-line entry of a federate: ``SYSTEM NAME [--run-dir D] [--broker-port P]``."""
    parser = argparse.ArgumentParser(description="Run one gridsim federate.")
    parser.add_argument("system", help="scenario YAML or wiring JSON")
    parser.add_argument("name", help="federate name in that file")
    parser.add_argument("--run-dir", default=".", help="run directory for outputs")
    parser.add_argument("--broker-port", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    warnings.simplefilter("ignore", UserWarning)
    t0 = time.perf_counter()
    imported_cpu_s = time.process_time()
    try:
        federation = load_federation(args.system, model_checks=False)  # the supervisor's
        if args.name not in federation.federates:
            raise InputError(args.system, "federates", f"no federate named {args.name!r}")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    config = FederateConfig.from_json(federate_config(
        federation, args.name, RunSettings(run_dir=run_dir, broker_port=args.broker_port)))
    rt = None
    try:
        rt = HelicsRuntime(config)
        t_ready = time.perf_counter()
        ready_cpu_s = time.process_time()
        part = run(rt)
        rt.close()
        timing = {"startup_s": t_ready - t0, "run_s": time.perf_counter() - t_ready,
                  "busy_s": rt.busy_s, "busy_cpu_s": rt.busy_cpu_s,
                  "import_cpu_s": imported_cpu_s, "connect_cpu_s": ready_cpu_s - imported_cpu_s,
                  "process_cpu_s": time.process_time(), **rt.timing}
        if rt.entered_cpu_s is not None:
            timing["setup_cpu_s"] = rt.entered_cpu_s - ready_cpu_s
        if rt.stepping:
            timing["stepping_s"] = rt.stepping[1] - rt.stepping[0]
        write_summary(run_dir, args.name, part, timing)
        return 0
    except Exception as exc:  # noqa: BLE001 -- any failure must stop the federation
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
        record = {"time": time.time(), "error": error.splitlines()[0][:300]}
        (run_dir / "parts").mkdir(exist_ok=True)
        (run_dir / "parts" / f"{args.name}{FAILURE_SUFFIX}").write_text(json.dumps(record))
        if rt is not None:
            rt.fail(error)
        return 1
