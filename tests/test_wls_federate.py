"""The estimator federate's loop (`gridsim.federates.wls.federate.run`) on a stand-in runtime.

No broker: a stub runtime hands the loop the messages of the small network of test_wls.py
step by step and keeps what it publishes. The question here is the loop's conduct, not the
numerics: a numerical failure of one estimate must not stop the federate.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_wls import BASE_V, topology, true_state, with_stray_bus

from gridsim import messages as m
from gridsim.federates.wls import federate
from gridsim.federates.wls.estimator import EstimationError, WLSEstimator
from gridsim.network import Network

STEP_S = 900.0
PARAMETERS = {"s_base_kva": 1000.0, "max_iterations": 20, "tolerance": 1e-9, "bad_data": True,
              "chi2_confidence": 0.95, "lnr_threshold": 4.0, "max_removals": 10}


class StubRuntime:
    """What `run` uses of `FederateRuntime`: inputs per step, publications kept."""

    def __init__(self, steps: list[dict[str, m.Message]]):
        self.parameters = PARAMETERS
        self.step_s = STEP_S
        self.timing: dict = {}
        self.steps = steps
        self.current: dict[str, m.Message] = {}
        self.published: list[tuple[int, str, m.Message]] = []
        self.k = 0

    def enter(self) -> None:
        pass

    def step_times(self):
        for k, inputs in enumerate(self.steps):
            self.k, self.current = k, inputs
            yield k, k * STEP_S + 2.0

    def step_index(self, t: float) -> int:
        return int((t + 1e-6) // STEP_S)

    def updates(self, port: str):
        return [("feeder", self.current[port])] if port in self.current else []

    def publish(self, port: str, message: m.Message) -> None:
        self.published.append((self.k, port, message))


def step_inputs(seed: int) -> dict[str, m.Message]:
    """Exact measurements of the test network: every |V|, every device P and Q."""
    msg, y = topology()
    v = true_state(msg, y, seed)
    s_kva = v * np.conj(y @ v) / 1000.0
    devices = list(msg.device_nodes)
    at = [msg.ids.index(n) for n in devices]
    return {
        "topology": msg,
        "voltages_magnitude": m.VoltagesMagnitude(
            ids=msg.ids, values=(np.abs(v) / BASE_V).tolist(), units="pu",
            accuracy=[1e-3] * len(msg.ids)),
        "powers_real": m.PowersReal(ids=devices, values=s_kva[at].real.tolist(), units="kW",
                                    accuracy=[0.1] * len(devices)),
        "powers_imag": m.PowersImaginary(ids=devices, values=s_kva[at].imag.tolist(),
                                         units="kvar", accuracy=[0.1] * len(devices)),
    }


def test_a_failed_estimate_publishes_diagnostics_only_and_the_loop_goes_on(monkeypatch):
    """Step 1's estimate fails numerically: that step publishes diagnostics with converged
    false and the reason, no voltages; steps 0 and 2 estimate as usual."""
    real = WLSEstimator.estimate
    calls = []

    def flaky(self, ms):
        calls.append(len(calls))
        if len(calls) == 2:
            self.x = self.x_prior.copy()
            raise EstimationError("augmented system not factorizable: Factor is exactly "
                                  "singular")
        return real(self, ms)

    monkeypatch.setattr(WLSEstimator, "estimate", flaky)
    rt = StubRuntime([step_inputs(seed) for seed in range(3)])
    summary = federate.run(rt)
    by_step = {k: {port: msg for kk, port, msg in rt.published if kk == k} for k in range(3)}
    assert set(by_step[1]) == {"diagnostics"}
    failed = by_step[1]["diagnostics"]
    assert failed.converged is False and "singular" in failed.error
    assert failed.measurements > 0
    for k in (0, 2):
        assert set(by_step[k]) == {"voltages_magnitude", "voltages_angle", "diagnostics"}
        assert by_step[k]["diagnostics"].converged and by_step[k]["diagnostics"].error is None
    assert summary["estimates"] == 2 and summary["failed"] == 1
    assert summary["not_converged"] == 1
    assert len(rt.timing["solve_s_per_step"]) == 3


def test_a_really_singular_network_does_not_stop_the_federate():
    """Without any stand-in: a topology with a bus nothing connects (a zero row of Y and a
    zero constraint row) makes every estimate fail; the federate reports each step."""
    inputs = step_inputs(0)
    inputs["topology"] = with_stray_bus(inputs["topology"])
    with pytest.raises(EstimationError):
        WLSEstimator(Network.from_topology(inputs["topology"])).estimate(
            federate.measurement_set(Network.from_topology(inputs["topology"]), inputs))
    rt = StubRuntime([inputs, inputs])
    summary = federate.run(rt)
    assert [port for _, port, _ in rt.published] == ["diagnostics", "diagnostics"]
    assert all(not d.converged and d.error for _, _, d in rt.published)
    assert summary["failed"] == 2 and summary["estimates"] == 0
