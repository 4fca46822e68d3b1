"""From a resolved federation to what runs it: federate configs, wiring JSON, runner JSON.

Every federate process derives its own configuration with `federate_config` from the same
wiring file and its name, so what `gridsim build` writes for inspection is exactly what the
federates use. The wiring file (``system.json``) has OEDI-SI's shape (``name``,
``components``, ``links``) plus a ``scenario`` block with the clock, feeder and seed.
"""

from __future__ import annotations

import json
import shlex
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from gridsim import __version__
from gridsim.wiring import Federation, topic

DEFAULT_BROKER_PORT = 23404

STATUS_FD_ENV = "GRIDSIM_STATUS_FD"
"""Environment variable naming a file descriptor the supervisor reads progress lines from:
`JOINED`, once the federate is registered with the broker, then each granted time (s)."""

JOINED = "joined"
"""The status line of a federate registered with the broker."""

FAILURE_SUFFIX = ".failed.json"
"""A failing federate writes ``parts/NAME.failed.json`` (time, error) before stopping the
federation, so that the supervisor can tell the first failure from its consequences."""

FEDERATE_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Environment every federate process starts with, unless the user's own environment sets
the same variables: one BLAS thread per process. Every federate is its own process, and on a
2-core machine OpenBLAS's thread pool turned SuperLU's multi-column solves (the DOPF's
sensitivities, the estimator's normalized residuals) from 3-10 ms into 260-415 ms."""


@dataclass(frozen=True)
class RunSettings:
    """Where and how one run happens: not part of the scenario."""

    run_dir: Path = Path(".")
    broker_port: int | None = None


def federate_seed(seed: int, name: str) -> int:
    """The seed of one federate: the scenario's seed mixed with its name (stable)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def federate_config(federation: Federation, name: str, run: RunSettings) -> dict:
    """Everything the federate `name` needs to run, as plain JSON data.

    Each linked input lists its topics (one per link) and its ``combine`` rule (None, or
    a name of `gridsim.components.COMBINE_RULES`): with several links the federate merges
    them by that rule (the feeder's load caps: the least of every source's cap)."""
    scenario = federation.scenario
    inst = federation.federates[name]
    timing = inst.timing
    period_s = timing.period_steps * scenario.step_s
    linked = {link.source_port for link in federation.links if link.source == name}
    outputs = {p.port_id: {"topic": topic(name, p.port_id), "type": p.type,
                           "linked": p.port_id in linked}
               for p in inst.definition.dynamic_outputs}
    inputs = federation.inputs_of(name)
    declared = {p.port_id: p for p in inst.definition.dynamic_inputs}
    helics: dict = {
        "name": name,
        "coreType": scenario.core_type,
        "brokerAddress": "127.0.0.1",
        "brokerPort": run.broker_port or DEFAULT_BROKER_PORT,
        "coreInitString": "--useosport",
        "terminate_on_error": True,
        "log_level": "warning",
        "publications": [{"key": o["topic"], "type": "string", "global": True}
                         for o in outputs.values()],
        "subscriptions": [{"key": t, "required": True}
                          for topics in inputs.values() for t in topics],
    }
    if not timing.event_driven:
        helics.update(period=period_s, offset=timing.offset_s, uninterruptible=True)
    return {
        "gridsim_version": __version__,
        "scenario": scenario.name,
        "name": name,
        "type": inst.type,
        "parameters": inst.parameters,
        "inputs": {port: {"topics": topics, "type": declared[port].type,
                          "source_types": {t: _output_type(federation, t) for t in topics},
                          "combine": declared[port].combine}
                   for port, topics in inputs.items()},
        "outputs": outputs,
        "clock": {
            "start": scenario.start.isoformat(),
            "step_s": scenario.step_s,
            "n_steps": scenario.n_steps,
            "duration_s": scenario.duration_s,
            "period_s": period_s,
            "offset_s": timing.offset_s,
            "event_driven": timing.event_driven,
        },
        "seed": federate_seed(scenario.seed, name),
        "scenario_seed": scenario.seed,
        "feeder": federation.feeder.to_json(),
        "run_dir": str(run.run_dir),
        "helics": helics,
    }


def _output_type(federation: Federation, topic_key: str) -> str:
    source, _, port = topic_key.partition("/")
    return federation.federates[source].definition.output(port).type


def system_json(federation: Federation) -> dict:
    """The resolved wiring in OEDI-SI's shape, readable again by `gridsim run`."""
    scenario = federation.scenario
    block = scenario.model_dump(mode="json", exclude={"name", "federates", "links",
                                                      "components"})
    block["feeder"] = (scenario.feeder if scenario.feeder == federation.feeder.name
                       else str(federation.feeder.master))
    block["feeder_overlays"] = [str(p) for p in federation.feeder.extra]
    components = []
    for name, inst in federation.federates.items():
        components.append({"name": name, "type": inst.type, "parameters": inst.parameters,
                           "timing": inst.timing.model_dump()})
    custom = {inst.type: str(inst.definition_path) for inst in federation.federates.values()
              if inst.type in scenario.components}
    if custom:
        block["components"] = custom
    return {
        "name": scenario.name,
        "scenario": block,
        "components": components,
        "links": [link.model_dump() for link in federation.links],
    }


def launch_command(federation: Federation, name: str, system_path: str, run: RunSettings,
                   python: str = sys.executable) -> list[str]:
    """The command line that starts federate `name` (its component's execute_function).

    A leading ``python`` becomes this interpreter; a word naming a file in the component's
    ``directory`` (a script, as in OEDI-SI's ``python sender_cosim.py``) becomes its
    absolute path, since federates run with the run directory as working directory.
    """
    inst = federation.federates[name]
    argv = shlex.split(inst.definition.execute_function)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = python
    component_dir = (inst.definition_path.parent / inst.definition.directory).resolve()
    argv = [str(component_dir / arg) if not arg.startswith("-") and "/" not in arg[:1]
            and (component_dir / arg).is_file() else arg for arg in argv]
    argv += [system_path, name, "--run-dir", str(run.run_dir)]
    if run.broker_port:
        argv += ["--broker-port", str(run.broker_port)]
    return argv


def runner_json(federation: Federation, system_path: str, run: RunSettings) -> dict:
    """A runner file for ``helics run --path``: a broker plus one entry per federate.

    Paths are as given (relative to the runner file's folder, which ``helics run`` uses as
    the working directory base); commands start with plain ``python`` so the file does not
    depend on one machine's interpreter path.
    """
    federates = [
        {"name": name, "directory": ".",
         "exec": shlex.join(launch_command(federation, name, system_path, run, "python")),
         "env": FEDERATE_ENV}
        for name in federation.federates
    ]
    broker = {"name": "broker", "directory": ".",
              "exec": shlex.join(["helics_broker", *broker_arguments(federation)])}
    return {"name": federation.scenario.name, "broker": False,
            "federates": [*federates, broker]}


def time_coordination(federation: Federation) -> str:
    """``global`` or ``distributed``: the scenario's choice, ``auto`` resolved."""
    chosen = federation.scenario.time_coordination
    if chosen == "auto":
        return "global" if federation.has_cycle() else "distributed"
    return chosen


def broker_arguments(federation: Federation) -> list[str]:
    """The ``helics_broker`` options of a run, after the executable.

    Time coordination (the scenario's ``time_coordination``; by default ``auto``): where
    federates feed each other in a loop (feeder -> sensor -> estimator -> DOPF -> feeder,
    feeder <-> market), HELICS's distributed coordinator passed time requests round the loop:
    on the flagship day the feeder, DOPF, market and broker exchanged 50,000-100,000
    messages each, 7 s of system time; the global coordinator, about 2,000 each, for a
    byte-identical summary. Without a loop the distributed one lets a federate run ahead of
    those that only listen to it: the feeder's day with its recorder steps in 0.17 s
    against 0.37 s in lockstep (docs/architecture.md, performance notes).
    """
    scenario = federation.scenario
    argv = [f"--federates={len(federation.federates)}", f"--coretype={scenario.core_type}"]
    if time_coordination(federation) == "global":
        argv.append("--globaltime")
    return argv


def write_build(federation: Federation, out: Path, run: RunSettings) -> dict[str, Path]:
    """Write system.json, runner.json and every federate's config under `out`.

    ``federates/NAME.json`` is the federate's whole gridsim configuration;
    ``federates/NAME.helics.json`` its HELICS part alone, loadable by any HELICS federate.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = {"system": out / "system.json", "runner": out / "runner.json"}
    _write_json(written["system"], system_json(federation))
    _write_json(written["runner"], runner_json(federation, "system.json", run))
    for name in federation.federates:
        path = out / "federates" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        config = federate_config(federation, name, run)
        _write_json(path, config)
        _write_json(path.with_suffix(".helics.json"), config["helics"])
        written[name] = path
    return written


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
