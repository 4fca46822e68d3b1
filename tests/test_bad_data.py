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

from gridsim.federates.chain import EstimatorChain, SensorChain, feeder_step
from gridsim.federates.feeder.model import FeederModel
from gridsim.federates.sensor.sensing import SensorConfig
from gridsim.feeders import resolve

TRIALS = 20
OFFSET_PU = 0.05
SENSOR = {"metered_fraction": 0.37, "sigma_v_pu": 0.005, "pseudo_rel_error": 0.3}


@pytest.fixture(scope="module")
def feeder_messages() -> dict:
    model = FeederModel(resolve("ieee123", Path("."), "test"), datetime(2026, 7, 1, 12), 900)
    return feeder_step(model, 0.0)


def sensor_messages(feeder: dict, seed: int, bad: bool = False) -> tuple[dict, str | None]:
    """What the sensor publishes for the feeder's state with the trial's seed, and the
    |V| meter made to read 0.05 p.u. high (drawn with the same seed), if `bad`."""
    chain = SensorChain(SENSOR, seed)
    chain.measure(0, feeder)  # chooses the meters
    node = None
    if bad:
        meters = chain.sensor.plan.readings["v"]
        node = meters[int(np.random.default_rng(seed).integers(len(meters)))]
        chain.sensor.config = SensorConfig.from_parameters({**SENSOR, "bad_data": [
            {"id": node, "quantity": "v", "offset": OFFSET_PU, "from_step": 1}]})
    return chain.measure(1, feeder), node


def estimate(feeder: dict, measured: dict):
    return EstimatorChain().estimate(feeder["topology"], measured)


def test_a_ten_sigma_meter_error_is_found_and_named(feeder_messages):
    named = []
    for seed in range(TRIALS):
        measured, node = sensor_messages(feeder_messages, seed, bad=True)
        result = estimate(feeder_messages, measured)
        named.append(f"voltages_magnitude:{node}" in result.removed)
    assert sum(named) >= TRIALS - 1, f"named in {sum(named)} of {TRIALS} trials"


def test_clean_measurements_raise_at_most_one_false_alarm(feeder_messages):
    removals = 0
    for seed in range(TRIALS):
        result = estimate(feeder_messages, sensor_messages(feeder_messages, seed)[0])
        removals += len(result.removed)
    assert removals <= 1, f"{removals} meters removed from clean measurements"
