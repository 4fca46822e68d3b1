"""Federate loops in process (`gridsim.fake_runtime`): the coordinator's rules, the rule for
inputs that have not arrived, and a whole closed loop that must match the broker's run.

::

    producer (offset 0) --count--> consumer (offset 1 s)
         \\                                 |
          `--count--> listener (event-driven) <--echo--'
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from gridsim import messages as m
from gridsim.fake_runtime import FakeFederation, config_for
from gridsim.federates.dopf import federate as dopf
from gridsim.federates.feeder import federate as feeder
from gridsim.federates.recorder import federate as recorder
from gridsim.federates.truth import federate as truth
from gridsim.loop import FederateConfig, InputPort, Inputs

STEP_S = 60.0
N_STEPS = 5


def producer(rt) -> dict:
    rt.enter()
    for step in rt.step_times():
        rt.publish("count", m.PowersReal(time_s=step.time_s, ids=["k"], values=[step.index],
                                         units="kW"))
    return {}


def consumer(rt) -> dict:
    """Echoes the count it sees at each of its steps, scaled by 10."""
    inputs = Inputs(rt, ["count"])
    seen = []
    rt.enter()
    for step in rt.step_times():
        inputs.read()
        if missing := inputs.missing(["count"]):
            inputs.skip(step, missing)
            continue
        seen.append((step.granted_s, inputs["count"].values[0]))
        rt.publish("echo", m.PowersReal(time_s=step.time_s, ids=["k"],
                                        values=[10 * inputs["count"].values[0]], units="kW"))
    return {"seen": seen, "skipped_steps": inputs.skipped}


def listener(rt) -> dict:
    """Event-driven: woken by every update of either input."""
    woken = []
    rt.enter()
    while (t := rt.next_event()) is not None:
        woken.append((t, sorted(port for port, _, _ in rt.raw_updates())))
    return {"woken": woken}


def toy(consumer_topic: str = "producer/count") -> FakeFederation:
    """The three federates of the module's drawing; `consumer_topic` feeds the consumer."""
    counts = {"count": "PowersReal"}
    configs = [
        config_for("producer", parameters={}, inputs={}, outputs=counts, step_s=STEP_S,
                   n_steps=N_STEPS),
        config_for("consumer", parameters={}, inputs=counts,
                   outputs={"echo": "PowersReal"}, step_s=STEP_S, n_steps=N_STEPS,
                   offset_s=1.0),
        config_for("listener", parameters={}, inputs={"count": "PowersReal",
                                                      "echo": "PowersReal"},
                   outputs={}, step_s=STEP_S, n_steps=N_STEPS),
    ]
    configs[1] = _relink(configs[1], {"count": consumer_topic})
    configs[2] = _relink(configs[2], {"count": "producer/count", "echo": "consumer/echo"})
    return FakeFederation(configs)


def _relink(config: FederateConfig, topics: dict[str, str]) -> FederateConfig:
    """The same configuration with its inputs fed by the named topics."""
    return replace(config, inputs={port: InputPort(spec.type, (topics[port],))
                                   for port, spec in config.inputs.items()})


def test_a_chain_of_offsets_sees_the_same_step_and_an_event_federate_every_update():
    """The consumer at k x 60 + 1 s sees the producer's step k; the listener is woken at
    k x 60 s by the count and at k x 60 + 1 s by the echo, in time order."""
    result = toy().run({"producer": producer, "consumer": consumer, "listener": listener})
    assert result["consumer"]["seen"] == [(k * STEP_S + 1.0, k) for k in range(N_STEPS)]
    assert result["consumer"]["skipped_steps"] == 0
    expected = [(k * STEP_S + dt, [port]) for k in range(N_STEPS)
                for dt, port in ((0.0, "count"), (1.0, "echo"))]
    assert result["listener"]["woken"] == expected


def test_a_federate_granted_only_some_steps_leaves_after_the_last():
    """``step_times(only=...)``: the producer publishes at steps 1 and 3 only and then
    leaves; the others run to the end and see its last count kept."""
    def sparse(rt) -> dict:
        rt.enter()
        granted = []
        for step in rt.step_times(only=[3, 1]):
            granted.append((step.index, step.granted_s))
            rt.publish("count", m.PowersReal(time_s=step.time_s, ids=["k"],
                                             values=[step.index], units="kW"))
        return {"granted": granted}

    result = toy().run({"producer": sparse, "consumer": consumer, "listener": listener})
    assert result["producer"]["granted"] == [(1, STEP_S), (3, 3 * STEP_S)]
    assert result["consumer"]["seen"] == [(k * STEP_S + 1.0, v) for k, v in
                                          ((1, 1), (2, 1), (3, 3), (4, 3))]
    assert result["consumer"]["skipped_steps"] == 1


def test_a_needed_input_that_never_arrives_skips_the_step():
    """Inputs the producer never publishes on: every consumer step is skipped and counted,
    nothing is published."""
    fake = toy(consumer_topic="nobody/count")
    result = fake.run({"producer": producer, "consumer": consumer, "listener": listener})
    assert result["consumer"] == {"seen": [], "skipped_steps": N_STEPS}
    assert fake.members["consumer"].published == []


def test_a_failing_loop_stops_every_other_and_its_error_is_raised():
    def broken(rt):
        rt.enter()
        for step in rt.step_times():
            if step.index == 2:
                raise ValueError("step 2 is broken")
        return {}

    with pytest.raises(ValueError, match="step 2 is broken"):
        toy().run({"producer": broken, "consumer": consumer, "listener": listener})


def test_the_dopf_skips_steps_without_a_topology_and_says_why(tmp_path, repo_root):
    """The DOPF of the bundled DOPF scenario, alone, with every input but the topology:
    each step publishes a 'skipped' diagnostic naming the topology, and nothing else."""
    fake = FakeFederation.from_system(repo_root / "scenarios" / "ieee123-dopf.yaml", tmp_path,
                                      members=["dopf"])
    summary = fake.run({"dopf": dopf.run})["dopf"]
    published = fake.members["dopf"].published
    n_steps = fake.members["dopf"].config.clock.n_steps
    assert summary["skipped_steps"] == n_steps and summary["solves"] == 0
    assert {port for _, port, _ in published} == {"diagnostics"}
    assert all(d.status == "skipped" and not d.applied and "topology" in d.reason
               for _, _, d in published)


def test_the_dopf_closed_loop_in_process_matches_the_run_over_helics(tmp_path, repo_root,
                                                                   bundled_run):
    """``scenarios/ieee123-dopf.yaml`` (feeder, truth, DOPF, recorder) run in process gives
    the same figures as ``gridsim run`` of it: the loops cannot tell the runtimes apart."""
    fake = FakeFederation.from_system(repo_root / "scenarios" / "ieee123-dopf.yaml", tmp_path)
    parts = fake.run({"feeder": feeder.run, "estimator": truth.run, "dopf": dopf.run,
                      "recorder": recorder.run})
    broker = json.loads((bundled_run("ieee123-dopf") / "summary.json").read_text())
    expected = broker["federates"]
    assert parts["dopf"]["statuses"] == expected["dopf"]["statuses"] == {"optimal": 96}
    for name, key in (("feeder", "v_max_pu_per_step"), ("feeder", "v_min_pu_per_step"),
                      ("dopf", "input_v_max_pu_per_step"), ("dopf", "objective_per_step")):
        assert len(parts[name][key]) == len(expected[name][key]) == 96
        for ours, theirs in zip(parts[name][key], expected[name][key]):
            assert math.isclose(ours, theirs, rel_tol=1e-7, abs_tol=1e-9), (name, key)
    assert parts["recorder"]["messages"] == expected["recorder"]["messages"]
    assert parts["recorder"]["steps"] == expected["recorder"]["steps"] == 96
