"""The recorder federate's loop: woken by every update, writes it, commits.

Timing: event-driven. HELICS grants it the time of each publication it subscribes to; it
records what arrived at that time and commits, so the database always holds every step
completed before a crash. Times are stored rounded to the microsecond (HELICS grants the
first one at its resolution, 1 ns, rather than 0).
"""

from __future__ import annotations

from gridsim import __version__
from gridsim.federates.recorder.store import RecorderSettings, RunStore
from gridsim.loop import Runtime


def run(rt: Runtime) -> dict:
    """Record until the federation ends; returns the summary part."""
    config = rt.config
    filename = RecorderSettings.from_parameters(config.parameters).filename
    source_types = {t: typ for spec in config.inputs.values()
                    for t, typ in spec.source_types.items()}
    clock = config.clock
    facts = {"scenario": config.scenario, "start": clock.start.isoformat(),
             "step_s": clock.step_s, "n_steps": clock.n_steps, "seed": config.seed,
             "feeder": config.feeder.name, "gridsim_version": __version__}
    store = RunStore(config.run_dir / filename, facts)
    steps: set[int] = set()
    rt.enter()
    while (t := rt.next_event()) is not None:
        step = clock.step_index(t)
        time_s = round(t, 6)
        for _, topic, payload in rt.raw_updates():
            store.add(topic, source_types[topic], step, time_s, payload)
        store.commit()
        steps.add(step)
    store.close()
    return {"file": filename, "topics": len(source_types), "messages": store.messages,
            "steps": len(steps)}
