"""Bad-data detection on IEEE 123: feeder, sensor and estimator code, without a broker.

The feeder's noon state (real OpenDSS) is turned into its messages; the sensor's own code
makes 20 seeded measurement sets (37% |V| meters, sigma 0.005 p.u., pseudo-measurements of
every load at 30%, the substation's |V|, P and Q); the estimator's own code estimates. In
each "bad" trial one |V| meter, drawn with the trial's seed, reads 0.05 p.u. (10 sigma) too
high: it must be removed and named in at least 19 of 20 trials. The same 20 measurement sets
without the error may lead to at most one removal in all.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from gridsim.federates.feeder import federate as feeder_loop
from gridsim.federates.feeder.model import FeederModel
from gridsim.federates.sensor.federate import OUTPUTS, message_of, start_sensor, truth_of
from gridsim.federates.sensor.sensing import SensorConfig
from gridsim.federates.wls.estimator import Settings, WLSEstimator
from gridsim.federates.wls.federate import _measurements
from gridsim.federates.wls.network import Network
from gridsim.feeders import resolve

from gridsim import messages as m

TRIALS = 20
OFFSET_PU = 0.05


class _Capture:
    """Stands in for the HELICS runtime of the feeder loop: keeps what it publishes."""

    def __init__(self):
        self.messages: dict[str, m.Message] = {}

    def wanted(self, port: str) -> bool:
        return True

    def publish(self, port: str, message) -> None:
        self.messages[port] = message


@pytest.fixture(scope="module")
def feeder_messages() -> dict[str, m.Message]:
    model = FeederModel(resolve("ieee123", Path("."), "test"), datetime(2026, 7, 1, 12), 900)
    model.solve()
    changed = model.sync_network()
    capture = _Capture()
    feeder_loop._publish(capture, model, 0.0, model.voltages_pu(), changed)
    return capture.messages


def sensor_messages(feeder: dict, seed: int, bad_node: str | None = None) -> dict:
    """What the sensor publishes for the feeder's state, with the trial's seed."""
    rng = np.random.default_rng(seed)
    params = {"metered_fraction": 0.37, "sigma_v_pu": 0.005, "pseudo_rel_error": 0.3}
    config = SensorConfig.from_parameters(params)
    sensor = start_sensor(config, rng, feeder)
    if bad_node is None:
        readings = sensor.measure(0, truth_of(feeder))
    else:
        node = sensor.plan.readings["v"][int(rng.integers(len(sensor.plan.readings["v"])))] \
            if bad_node == "draw" else bad_node
        config = SensorConfig.from_parameters({**params, "bad_data": [
            {"id": node, "quantity": "v", "offset": OFFSET_PU, "from_step": 0}]})
        sensor.config = config
        readings = sensor.measure(0, truth_of(feeder))
        readings["bad"] = node
    out = {port: message_of(cls, readings[q], units, 0.0,
                            flags=cls in (m.PowersReal, m.PowersImaginary))
           for q, (port, cls, units) in OUTPUTS.items()}
    out["bad"] = readings.get("bad")
    return out


def estimate(feeder: dict, measured: dict):
    net = Network.from_topology(feeder["topology"])
    latest = {"topology": feeder["topology"], **measured}
    return WLSEstimator(net, Settings()).estimate(_measurements(net, latest))


def test_a_ten_sigma_meter_error_is_found_and_named(feeder_messages):
    named = []
    for seed in range(TRIALS):
        measured = sensor_messages(feeder_messages, seed, bad_node="draw")
        result = estimate(feeder_messages, measured)
        named.append(f"voltages_magnitude:{measured['bad']}" in result.removed)
    assert sum(named) >= TRIALS - 1, f"named in {sum(named)} of {TRIALS} trials"


def test_clean_measurements_raise_at_most_one_false_alarm(feeder_messages):
    removals = 0
    for seed in range(TRIALS):
        result = estimate(feeder_messages, sensor_messages(feeder_messages, seed))
        removals += len(result.removed)
    assert removals <= 1, f"{removals} meters removed from clean measurements"
