"""Feeder, sensor and estimator chained in one process, without HELICS.

For experiments, tests and benchmarks that run the federates' numerics many times over
(seeded trials, accuracy tables, timing): the same adapters the federate loops call, with
the messages handed over directly instead of through a broker. (To run the loops
themselves in process, use `gridsim.fake_runtime.FakeFederation`.) It lives beside the
federates, not in the core: the core imports no federate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from gridsim import messages as m
from gridsim.federates.feeder.adapter import step_messages
from gridsim.federates.feeder.model import FeederModel
from gridsim.federates.sensor.adapter import reading_messages, start_sensor, truth_of
from gridsim.federates.sensor.sensing import SensorConfig
from gridsim.federates.wls.adapter import measurement_set, rebuild_estimator
from gridsim.federates.wls.estimator import Estimate, Settings, WLSEstimator


def feeder_step(model: FeederModel, t: float, topology: m.Topology | None = None) -> dict:
    """Solve the next step and return every message the feeder would publish.

    The topology is always included: the one given if the network did not change.
    """
    model.solve()
    changed = model.sync_network()
    messages = step_messages(model, t, model.voltages_pu(), changed, lambda port: True)
    if "topology" not in messages:
        messages["topology"] = topology
    return messages


class SensorChain:
    """The sensor federate's numerics: meters chosen on the first feeder messages."""

    def __init__(self, parameters: dict, seed: int):
        self.config = SensorConfig.from_parameters(parameters)
        self.rng = np.random.default_rng(seed)
        self.sensor = None

    def measure(self, step: int, feeder: dict, time_s: float = 0.0) -> dict[str, m.Message]:
        """The sensor's output messages for one step of feeder messages."""
        if self.sensor is None:
            self.sensor = start_sensor(self.config, self.rng, feeder)
        return reading_messages(self.sensor.measure(step, truth_of(feeder)), time_s)

@dataclass
class EstimatorChain:
    """The WLS federate's numerics, warm-started from step to step like the federate."""

    settings: Settings = field(default_factory=Settings)
    s_base_kva: float = 1000.0
    estimator: WLSEstimator | None = None
    solve_s: list[float] = field(default_factory=list)

    def estimate(self, topology: m.Topology, measured: dict) -> Estimate:
        """One estimate; the wall time of building the measurements and estimating is kept."""
        if self.estimator is None or self.estimator.net.revision != topology.revision:
            self.estimator = rebuild_estimator(self.estimator, topology, self.s_base_kva,
                                               self.settings)
        t0 = time.perf_counter()
        result = self.estimator.estimate(measurement_set(self.estimator.net,
                                                       {"topology": topology, **measured}))
        self.solve_s.append(time.perf_counter() - t0)
        return result

    def node_errors(self, result: Estimate, feeder: dict) -> np.ndarray:
        """| |V| estimated - |V| true | per observable node, p.u."""
        net = self.estimator.net
        true = dict(zip(feeder["voltages_magnitude"].ids, feeder["voltages_magnitude"].values))
        unobservable = set(net.nodes_of(result.unobservable))
        v = np.abs(net.node_voltages(result.v))
        return np.array([abs(v[i] - true[node]) for i, node in enumerate(net.ids)
                         if node not in unobservable and node in true])
