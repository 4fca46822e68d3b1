"""The recorder federate's loop: woken by every update, writes it, commits.

Timing: event-driven. HELICS grants it the time of each publication it subscribes to; it
records what arrived at that time and commits, so the database always holds every step
completed before a crash. Times are stored rounded to the microsecond (HELICS grants the
first one at its resolution, 1 ns, rather than 0).
"""

from __future__ import annotations

from gridsim import __version__
from gridsim.federates.recorder.store import RunStore
from gridsim.runtime import FederateRuntime


def run(rt: FederateRuntime) -> dict:
    """Record until the federation ends; returns the summary part."""
    path = rt.run_dir / rt.parameters["filename"]
    source_types = {t: typ for spec in rt.config["inputs"].values()
                    for t, typ in spec["source_types"].items()}
    facts = {"scenario": rt.config["scenario"],
             "start": rt.start.isoformat(), "step_s": rt.step_s, "n_steps": rt.n_steps,
             "seed": rt.seed, "feeder": rt.feeder.name, "gridsim_version": __version__}
    store = RunStore(path, facts)
    steps: set[int] = set()
    rt.enter()
    while (t := rt.next_event()) is not None:
        step = rt.step_index(t)
        time_s = round(t, 6)
        for _, topic, payload in rt.raw_updates():
            store.add(topic, source_types[topic], step, time_s, payload)
        store.commit()
        steps.add(step)
    store.close()
    return {"file": rt.parameters["filename"], "topics": len(source_types),
            "messages": store.messages, "steps": len(steps)}
