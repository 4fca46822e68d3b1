"""What a federate's loop sees, without HELICS: its typed configuration, the `Runtime`
protocol, the steps it is granted, and the newest message of each input.

A federate type provides ``run(rt: Runtime) -> dict`` (its summary part). The same function
runs over HELICS (`gridsim.runtime.HelicsRuntime`, started by ``python -m
gridsim.federates.TYPE``) and in-process (`gridsim.fake_runtime.FakeRuntime`, for tests and
offline chains), so a loop never imports HELICS and never knows which one it has.

Inputs that have not arrived, one rule for every federate (`Inputs`):

- an input keeps its newest message from step to step until a newer one arrives (the
  topology, for one, is published only when it changes);
- a step names the inputs it *needs*; while one of them has never arrived, the step is
  skipped: the federate publishes no outputs for it, except a diagnostic saying which
  inputs were missing where it has a diagnostics port, logs it, and counts it in its
  summary as ``skipped_steps``;
- an optional input that has never arrived is absent: the federate works without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from pydantic import BaseModel

from gridsim.feeders import FeederSource

log = logging.getLogger("gridsim.loop")

TIME_EPS_S = 1e-6
"""Granted times are compared and rounded with this slack (HELICS's resolution is 1 ns)."""


@dataclass(frozen=True)
class Clock:
    """The scenario's clock as one federate sees it."""

    start: datetime
    step_s: float
    n_steps: int
    period_s: float
    """Time between the federate's grants (``timing.period_steps`` x step)."""
    offset_s: float
    """Where in each period the federate runs (the chain feeder 0 s, sensor 1 s, ...)."""
    event_driven: bool = False

    @property
    def end_s(self) -> float:
        """The end of the scenario: no step starts at or after it."""
        return self.n_steps * self.step_s

    def step_index(self, t: float) -> int:
        """The scenario step a time belongs to."""
        return int((t + TIME_EPS_S) // self.step_s)

    def data_time(self, granted_s: float) -> float:
        """The time of the data a federate granted at `granted_s` works on: its step's start.

        Messages carry this time, not the grant time, so that a chain of offsets within one
        step (feeder 0 s, sensor 1 s, estimator 2 s) all speak of the same instant."""
        return self.step_index(granted_s) * self.step_s

    def grants(self) -> Iterator[float]:
        """Granted times of a periodic federate: ``k * period + offset`` inside the run."""
        k = 0
        while (t := k * self.period_s + self.offset_s) < self.end_s - 1e-9:
            yield t
            k += 1

    def chosen_grants(self, only: Iterable[int] | None) -> Iterator[tuple[int, float]]:
        """``(k, time)`` of `grants`, or of those whose index is in `only`."""
        if only is None:
            yield from enumerate(self.grants())
            return
        wanted = set(only)
        last = max(wanted, default=-1)
        for k, t in enumerate(self.grants()):
            if k > last:
                return
            if k in wanted:
                yield k, t


class Step(NamedTuple):
    """One granted time of a periodic federate."""

    index: int
    """How many grants came before this one (the step number when the period is one step)."""
    time_s: float
    """The time of the data: the start of the scenario step the grant falls in."""
    granted_s: float
    """The granted time itself (``time_s`` plus the federate's offset)."""


@dataclass(frozen=True)
class InputPort:
    """An input port and what feeds it."""

    type: str
    topics: tuple[str, ...]
    """One per link, ``source/port``."""
    source_types: Mapping[str, str] = field(default_factory=dict)
    """The message type each topic's source declares (the recorder stores it)."""


@dataclass(frozen=True)
class OutputPort:
    """An output port: its topic and whether anything is linked to it."""

    topic: str
    type: str
    linked: bool


@dataclass(frozen=True)
class FederateConfig:
    """One federate's configuration, parsed once from what `gridsim.build` writes."""

    name: str
    type: str
    scenario: str
    parameters: Mapping[str, Any]
    """Checked against the component definition before the run; a federate turns them into
    its own settings dataclass (`from_parameters`) before any numerics see them."""
    clock: Clock
    seed: int
    """This federate's own seed, derived from the scenario's seed and its name."""
    feeder: FeederSource
    run_dir: Path
    inputs: Mapping[str, InputPort]
    outputs: Mapping[str, OutputPort]
    helics: Mapping[str, Any] = field(default_factory=dict)
    """The HELICS federate configuration (empty in process)."""
    scenario_seed: int = 0
    """The scenario's own seed (what a run is known by; `seed` is derived from it)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FederateConfig:
        """From the plain data of `gridsim.build.federate_config`."""
        clock = data["clock"]
        return cls(
            name=data["name"], type=data.get("type", ""), scenario=data.get("scenario", ""),
            parameters=dict(data["parameters"]),
            clock=Clock(datetime.fromisoformat(clock["start"]), clock["step_s"],
                        clock["n_steps"], clock["period_s"], clock["offset_s"],
                        clock.get("event_driven", False)),
            seed=data["seed"], feeder=FeederSource.from_json(data["feeder"]),
            run_dir=Path(data["run_dir"]),
            inputs={port: InputPort(spec["type"], tuple(spec["topics"]),
                                    dict(spec.get("source_types", {})))
                    for port, spec in data["inputs"].items()},
            outputs={port: OutputPort(spec["topic"], spec["type"], spec["linked"])
                     for port, spec in data["outputs"].items()},
            helics=data.get("helics", {}), scenario_seed=data.get("scenario_seed", 0))


class Runtime(Protocol):
    """A federate's connection to its federation, as its loop uses it."""

    config: FederateConfig
    timing: dict[str, Any]
    """Wall-clock figures for timing.json (never summary.json, which is deterministic)."""

    def enter(self) -> None:
        """Enter executing mode (time 0)."""

    def step_times(self, only: Iterable[int] | None = None) -> Iterator[Step]:
        """The periodic federate's steps; each is granted before it is yielded. With
        `only` (indices of `Clock.grants`), just those: the federate is not woken in
        between, and leaves after the last (a federate that acts only at known times)."""

    def next_event(self) -> float | None:
        """Event-driven federates: the time of the next update; None once the run ends."""

    def connected(self, port: str) -> bool:
        """Whether an input port has at least one link."""

    def wanted(self, port: str) -> bool:
        """Whether an output port is linked (else it need not be computed)."""

    def updates(self, port: str) -> list[BaseModel | dict]:
        """Messages received on `port` since the last read, one per updated link."""

    def link_updates(self, port: str) -> list[tuple[str, BaseModel | dict]]:
        """``(topic, message)`` per updated link of `port`: for an input that combines
        several links (``combine`` in its definition), each link's message stays its own."""

    def raw_updates(self) -> list[tuple[str, str, str]]:
        """``(port, topic, JSON text)`` of every updated input, unparsed (the recorder)."""

    def publish(self, port: str, message: BaseModel) -> None:
        """Publish a message on an output port."""


class Inputs:
    """The newest message of each input port, kept from step to step (module doc's rule).

    ``inputs["topology"]`` is the newest topology; ``"pv_states" in inputs`` whether one
    has arrived. Ports that are not linked are never read.
    """

    def __init__(self, rt: Runtime, ports: Iterable[str]):
        self._rt = rt
        self.ports = tuple(p for p in dict.fromkeys(ports) if rt.connected(p))
        self.messages: dict[str, Any] = {}
        self.skipped = 0
        """Steps skipped because a needed input had never arrived."""

    def read(self) -> list[str]:
        """Take every update; returns the ports that received something this time. A port
        fed by several links keeps the message of the last link updated."""
        updated = []
        for port in self.ports:
            messages = self._rt.updates(port)
            if messages:
                self.messages[port] = messages[-1]
                updated.append(port)
        return updated

    def missing(self, needed: Iterable[str]) -> list[str]:
        """The needed ports that have never received a message."""
        return [port for port in needed if port not in self.messages]

    def skip(self, step: Step, missing: list[str]) -> str:
        """Count and log a skipped step; returns the reason, for a diagnostic."""
        self.skipped += 1
        reason = f"nothing received yet on {', '.join(missing)}"
        log.warning("t=%g s: step skipped: %s", step.time_s, reason)
        return reason

    def __getitem__(self, port: str) -> Any:
        return self.messages[port]

    def __contains__(self, port: object) -> bool:
        return port in self.messages

    def get(self, port: str, default: Any = None) -> Any:
        return self.messages.get(port, default)
