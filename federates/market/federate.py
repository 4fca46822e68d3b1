"""The market's loop: entities from the feeder's loads, one round before the shortage, load
caps every step of it, a signed ledger of the bids.

Timing: periodic at offset 2.5 s (after the feeder's step-k states, before a DOPF at 3 s);
load caps published at step k apply at step k + 1. The round is cleared at the last step
before the shortage, over all its intervals (`adapter.clear_round`). During the shortage
every entity's cap is its planned grid import for the interval; every other load gets the
default allocation, the supply fraction of its demand. The step after the shortage lifts
every cap. (A shortage from the scenario's first step is cleared at that step, so its first
step goes uncapped.) A step before any load states arrived is skipped (`gridsim.loop`).
"""

from __future__ import annotations

from gridsim.federates.market.adapter import (
    ClearedRound,
    clear_round,
    lifted_caps,
    load_caps,
    log_signer,
)
from gridsim.federates.market.settings import MarketSettings
from gridsim.ledger.store import Ledger
from gridsim.loop import Inputs, Runtime

NEEDED = ("load_states",)
PORTS = ("load_states", "policy")


def run(rt: Runtime) -> dict:
    """Clear before the shortage, cap loads during it; returns the summary part."""
    config = rt.config
    settings = MarketSettings.from_parameters(config.parameters)
    inputs = Inputs(rt, PORTS)
    ledger = Ledger(log_signer(config.seed, config.name), config.run_dir / "ledger")
    cleared: ClearedRound | None = None
    step_s = config.clock.step_s
    rt.enter()
    for step in rt.step_times():
        t = step.time_s
        inputs.read()
        if missing := inputs.missing(NEEDED):
            inputs.skip(step, missing)
            continue
        loads = inputs["load_states"]
        if cleared is None and settings.round_due(t, step_s):
            policy = inputs.get("policy")
            cleared = clear_round(settings if policy is None else settings.with_policy(policy),
                                  loads, t, config.seed, config.clock.start, ledger)
            for port, message in cleared.messages:
                rt.publish(port, message)
        if cleared is None:
            continue
        if (k := settings.interval_after(t, step_s)) is not None:
            rt.publish("load_caps", load_caps(loads, cleared.round, k,
                                              settings.supply_fraction, t))
        elif settings.lifts_after(t, step_s):
            rt.publish("load_caps", lifted_caps(loads, t))
    return {"rounds": 0 if cleared is None else 1, **(cleared.summary if cleared else {}),
            "skipped_steps": inputs.skipped}
