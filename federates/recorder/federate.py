"""The recorder federate's loop: woken by updates, writes them, commits.

Timing: ``after_inputs`` (`gridsim.components.Timing`). When every federate it records
publishes at most once a step (periodic ones), it runs once a step, 0.1 s after the latest
of them, and finds each one's newest message; otherwise it is event-driven, and HELICS
grants it the time of each publication it subscribes to. Either way it records what
arrived and commits, so the database always holds every step completed before a crash.
Each message is stored with its step and that step's time (`Clock.data_time`), the time
its data speaks of.
"""

from __future__ import annotations

from gridsim import __version__
from gridsim.federates.recorder.store import RecorderSettings, RunStore
from gridsim.loop import Runtime


def _wakes(rt: Runtime):
    """The granted times: every update's (event-driven), or the recorder's own steps."""
    if rt.config.clock.event_driven:
        while (t := rt.next_event()) is not None:
            yield t
    else:
        for step in rt.step_times():
            yield step.granted_s


def run(rt: Runtime) -> dict:
    """Record until the federation ends; returns the summary part."""
    config = rt.config
    filename = RecorderSettings.from_parameters(config.parameters).filename
    source_types = {t: typ for spec in config.inputs.values()
                    for t, typ in spec.source_types.items()}
    clock = config.clock
    facts = {"scenario": config.scenario, "start": clock.start.isoformat(),
             "step_s": clock.step_s, "n_steps": clock.n_steps, "seed": config.scenario_seed,
             "feeder": config.feeder.name, "gridsim_version": __version__}
    store = RunStore(config.run_dir / filename, facts)
    steps: set[int] = set()
    rt.enter()
    for t in _wakes(rt):
        step = clock.step_index(t)
        time_s = clock.data_time(t)
        for _, topic, payload in rt.raw_updates():
            store.add(topic, source_types[topic], step, time_s, payload)
        store.commit()
        steps.add(step)
    store.close()
    return {"file": filename, "topics": len(source_types), "messages": store.messages,
            "steps": len(steps)}
