"""The estimator federate's loop (`gridsim.federates.wls.federate.run`) in process.

No broker: `FakeFederation` hands the loop the messages of the small network of test_wls.py
step by step and keeps what it publishes. The question here is the loop's conduct, not the
numerics: a numerical failure of one estimate must not stop the federate.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_wls import BASE_V, topology, true_state, with_stray_bus

from gridsim import messages as m
from gridsim.fake_runtime import FakeFederation, config_for
from gridsim.federates.wls import adapter, federate
from gridsim.federates.wls.estimator import EstimationError, WLSEstimator
from gridsim.network import Network

STEP_S = 900.0
PARAMETERS = {"s_base_kva": 1000.0, "max_iterations": 20, "tolerance": 1e-9, "bad_data": True,
              "chi2_confidence": 0.95, "lnr_threshold": 4.0, "max_removals": 10,
              "uncertainty": True}
INPUTS = {"topology": "Topology", "voltages_magnitude": "VoltagesMagnitude",
          "powers_real": "PowersReal", "powers_imag": "PowersImaginary"}
OUTPUTS = {"voltages_magnitude": "VoltagesMagnitude", "voltages_angle": "VoltagesAngle",
           "diagnostics": "EstimatorDiagnostics"}


def run_loop(steps: list[dict[str, m.Message]]) -> tuple[dict, list, dict]:
    """The loop at offset 2 s, fed step k's messages at k x step (as the feeder and sensor
    would); returns its summary, what it published as (step, port, message), its timing."""
    config = config_for("wls", parameters=PARAMETERS, inputs=INPUTS, outputs=OUTPUTS,
                        step_s=STEP_S, n_steps=len(steps), offset_s=2.0)
    fake = FakeFederation([config])
    for port in INPUTS:
        fake.script(f"script/{port}", [(k * STEP_S, messages[port])
                                       for k, messages in enumerate(steps)])
    summary = fake.run({"wls": federate.run})["wls"]
    rt = fake.members["wls"]
    published = [(config.clock.step_index(t), port, msg) for t, port, msg in rt.published]
    return summary, published, rt.timing


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
    summary, published, timing = run_loop([step_inputs(seed) for seed in range(3)])
    by_step = {k: {port: msg for kk, port, msg in published if kk == k} for k in range(3)}
    assert set(by_step[1]) == {"diagnostics"}
    failed = by_step[1]["diagnostics"]
    assert failed.converged is False and "singular" in failed.error
    assert failed.measurements > 0
    for k in (0, 2):
        assert set(by_step[k]) == {"voltages_magnitude", "voltages_angle", "diagnostics"}
        assert by_step[k]["diagnostics"].converged and by_step[k]["diagnostics"].error is None
    assert summary["estimates"] == 2 and summary["failed"] == 1
    assert summary["not_converged"] == 1
    assert len(timing["solve_s_per_step"]) == 3


def test_a_really_singular_network_does_not_stop_the_federate():
    """Without any stand-in: a topology with a bus nothing connects (a zero row of Y and a
    zero constraint row) makes every estimate fail; the federate reports each step."""
    inputs = step_inputs(0)
    inputs["topology"] = with_stray_bus(inputs["topology"])
    with pytest.raises(EstimationError):
        WLSEstimator(Network.from_topology(inputs["topology"])).estimate(
            adapter.measurement_set(Network.from_topology(inputs["topology"]), inputs))
    summary, published, _ = run_loop([inputs, inputs])
    assert [port for _, port, _ in published] == ["diagnostics", "diagnostics"]
    assert all(not d.converged and d.error for _, _, d in published)
    assert summary["failed"] == 2 and summary["estimates"] == 0
