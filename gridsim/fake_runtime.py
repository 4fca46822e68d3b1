"""Federate loops in one process, without a broker: `FakeRuntime` and `FakeFederation`.

A `FakeFederation` runs the loops of several federates (each in a thread, one at a time)
under a time coordinator with HELICS's rules as gridsim uses them: a periodic federate is
granted exactly the time it requests; an event-driven federate (requesting the maximum
time) is woken at the time of its next update; the federate with the smallest next time
runs next (ties in the order the federates were added), so grants never go back in time
and a run is deterministic. Inputs hold values as HELICS inputs do: the newest message of
each link, flagged until read. Every message crosses as JSON text and is parsed into its
declared type on arrival, so the wire contract is exercised as over HELICS.

Inputs whose source is not in the federation can be scripted (`FakeFederation.script`):
``(time, message)`` pairs published on a topic at those times.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gridsim.build import RunSettings, federate_config
from gridsim.feeders import FeederSource
from gridsim.loop import Clock, FederateConfig, InputPort, OutputPort, Runtime, Step
from gridsim.messages import MESSAGE_TYPES
from gridsim.wiring import load_federation

NEVER = math.inf


def config_for(name: str, *, parameters: Mapping[str, Any], inputs: Mapping[str, str],
               outputs: Mapping[str, str], step_s: float, n_steps: int, offset_s: float = 0.0,
               period_steps: int = 1, seed: int = 0, run_dir: Path = Path("."),
               feeder: FeederSource | None = None) -> FederateConfig:
    """A configuration without a scenario, for a loop fed by scripts: `inputs` and
    `outputs` map ports to message types; input ``P`` is linked to topic ``script/P``."""
    return FederateConfig(
        name=name, type=name, scenario="", parameters=dict(parameters),
        clock=Clock(datetime(2026, 1, 1), step_s, n_steps, period_steps * step_s, offset_s),
        seed=seed, feeder=feeder or FeederSource("none", Path(".")), run_dir=run_dir,
        inputs={port: InputPort(type_, (f"script/{port}",)) for port, type_ in inputs.items()},
        outputs={port: OutputPort(f"{name}/{port}", type_, True)
                 for port, type_ in outputs.items()})


class FederationStopped(RuntimeError):
    """Raised in every other member once one member's loop fails."""


class FakeRuntime:
    """One member of a `FakeFederation` (`gridsim.loop.Runtime`)."""

    def __init__(self, config: FederateConfig, federation: FakeFederation):
        self.config = config
        self.timing: dict[str, Any] = {}
        self.published: list[tuple[float, str, BaseModel]] = []
        """``(granted time, port, message)`` of everything this federate published."""
        self.granted_s = 0.0
        self._federation = federation
        self._models = {port: MESSAGE_TYPES.get(spec.type)
                        for port, spec in config.inputs.items()}
        self._values: dict[tuple[str, str], str] = {}
        self._updated: dict[tuple[str, str], bool] = {}
        self.pending_s = NEVER
        """Time of the oldest unread update (what wakes an event-driven federate)."""

    # -- ports ----------------------------------------------------------------------------

    def connected(self, port: str) -> bool:
        spec = self.config.inputs.get(port)
        return bool(spec and spec.topics)

    def wanted(self, port: str) -> bool:
        return self.config.outputs[port].linked

    def publish(self, port: str, message: BaseModel) -> None:
        self.published.append((self.granted_s, port, message))
        self._federation.deliver(self.config.outputs[port].topic, message.model_dump_json(),
                                 self.granted_s)

    def receive(self, port: str, topic: str, text: str, time_s: float) -> None:
        """A value arriving on one link of `port` (called by the federation)."""
        self._values[port, topic] = text
        self._updated[port, topic] = True
        self.pending_s = min(self.pending_s, time_s)

    def updates(self, port: str) -> list[BaseModel | dict]:
        return [message for _, message in self.link_updates(port)]

    def link_updates(self, port: str) -> list[tuple[str, BaseModel | dict]]:
        model = self._models.get(port)
        out = []
        for topic in self.config.inputs[port].topics if port in self.config.inputs else ():
            if self._updated.pop((port, topic), False):
                raw = self._values[port, topic]
                out.append((topic, model.model_validate_json(raw) if model else
                            json.loads(raw)))
        self._settle()
        return out

    def raw_updates(self) -> list[tuple[str, str, str]]:
        out = [(port, topic, self._values[port, topic])
               for port, spec in self.config.inputs.items() for topic in spec.topics
               if self._updated.pop((port, topic), False)]
        self._settle()
        return out

    def _settle(self) -> None:
        if not any(self._updated.values()):
            self.pending_s = NEVER

    # -- clock ----------------------------------------------------------------------------

    def enter(self) -> None:
        self.granted_s = self._federation.request(self, 0.0)

    def step_times(self, only: Iterable[int] | None = None) -> Iterator[Step]:
        clock = self.config.clock
        for k, t in clock.chosen_grants(only):
            if t > 0:
                self.granted_s = self._federation.request(self, t)
            yield Step(k, clock.data_time(self.granted_s), self.granted_s)

    def next_event(self) -> float | None:
        granted = self._federation.request(self, NEVER)
        if granted == NEVER:
            return None
        self.granted_s = granted
        return granted


class FakeFederation:
    """Federate loops run in one process under one time coordinator (module doc)."""

    def __init__(self, configs: Iterable[FederateConfig]):
        self.members: dict[str, FakeRuntime] = {}
        self._links: dict[str, list[tuple[FakeRuntime, str]]] = {}
        for config in configs:
            rt = FakeRuntime(config, self)
            self.members[config.name] = rt
            for port, spec in config.inputs.items():
                for topic in spec.topics:
                    self._links.setdefault(topic, []).append((rt, port))
        self._scripts: list[tuple[float, int, str, str]] = []
        self._cond = threading.Condition()
        self._state: dict[str, str] = {}
        self._requests: dict[str, float] = {}
        self._grants: dict[str, float] = {}
        self._order = {name: i for i, name in enumerate(self.members)}
        self.error: BaseException | None = None

    @classmethod
    def from_system(cls, system: str | Path, run_dir: Path,
                    members: Iterable[str] | None = None) -> FakeFederation:
        """Members of a scenario (or wiring file), configured exactly as in a real run;
        `members` picks some of them (default: all)."""
        federation = load_federation(str(system))
        names = list(members) if members is not None else list(federation.federates)
        return cls(FederateConfig.from_json(
            federate_config(federation, name, RunSettings(run_dir=run_dir)))
            for name in names)

    def script(self, topic: str, messages: Iterable[tuple[float, BaseModel]]) -> None:
        """Publish `messages` on `topic` (``source/port``) at their times."""
        for time_s, message in messages:
            self._scripts.append((time_s, len(self._scripts), topic,
                                  message.model_dump_json()))
        self._scripts.sort()

    def deliver(self, topic: str, text: str, time_s: float) -> None:
        """A value published on `topic` reaches every input linked to it."""
        for rt, port in self._links.get(topic, ()):
            rt.receive(port, topic, text, time_s)

    def run(self, loops: Mapping[str, Callable[[Runtime], dict]]) -> dict[str, dict]:
        """Run every member's loop to its end; returns their summary parts. The first
        failure is raised here once every thread has stopped."""
        missing = set(self.members) - set(loops)
        if missing:
            raise ValueError(f"no loop given for {sorted(missing)}")
        results: dict[str, dict] = {}
        self._state = dict.fromkeys(self.members, "running")

        def body(name: str) -> None:
            try:
                results[name] = loops[name](self.members[name])
            except BaseException as exc:  # noqa: BLE001 -- reported by run()
                with self._cond:
                    if self.error is None and not isinstance(exc, FederationStopped):
                        self.error = exc
            finally:
                with self._cond:
                    self._state[name] = "done"
                    self._requests.pop(name, None)
                    self._schedule()

        threads = [threading.Thread(target=body, args=(name,), name=f"fake-{name}")
                   for name in self.members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.error is not None:
            raise self.error
        return results

    def request(self, rt: FakeRuntime, t: float) -> float:
        """Block until `rt` is granted; returns the granted time (`NEVER`: the run ended)."""
        name = rt.config.name
        with self._cond:
            self._state[name] = "waiting"
            self._requests[name] = t
            self._schedule()
            while self._state[name] == "waiting" and self.error is None:
                self._cond.wait()
            if self.error is not None:
                raise FederationStopped(f"{name}: another federate failed")
            return self._grants[name]

    def _next_time(self, name: str) -> float:
        requested = self._requests[name]
        if requested == NEVER:
            return self.members[name].pending_s
        return requested

    def _schedule(self) -> None:
        """Grant the next member once every live member waits (called under the lock)."""
        if self.error is not None:
            self._cond.notify_all()
            return
        if any(state == "running" for state in self._state.values()):
            return
        waiting = [name for name, state in self._state.items() if state == "waiting"]
        if not waiting:
            return
        name = min(waiting, key=lambda n: (self._next_time(n), self._order[n]))
        t = self._next_time(name)
        if self._scripts and self._scripts[0][0] <= t:
            script_t = self._scripts[0][0]
            while self._scripts and self._scripts[0][0] == script_t:
                _, _, topic, text = self._scripts.pop(0)
                self.deliver(topic, text, script_t)
            self._schedule()
            return
        if t == NEVER:
            for other in waiting:
                self._grants[other] = NEVER
                self._state[other] = "running"
        else:
            self._grants[name] = t
            self._state[name] = "running"
        self._cond.notify_all()
