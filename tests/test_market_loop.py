"""The market's and the auditor's loops in process (`gridsim.fake_runtime`), no broker.

The paper's two-entity logic on IEEE 13 loads: entity 671 (1,155 kW, one block at
1.5 $/kWh) and entity 692 (170 kW at 7.5 $/kWh), half their demand supplied from 01:00 to
03:00 in two 1 h intervals, 15 min steps. The feeder and the regulator are scripted: the
feeder's load states draw what a feeder following the market's caps draws, the regulator
switches to ``uniform-price`` with a 1 $/kWh price cap at 00:30, before the round.

Worked out by hand: 692 may receive 170 - 85 = 85 kW of rights and values them at 7.5
$/kWh, 671 gives them up at 1.5 $/kWh and keeps using the rest, so its value is the
marginal one and the price is 1.5 $/kWh (published capped at 1). Caps: 671 at 577.5 - 85 =
492.5 kW, 692 at 170 kW, every other load at half its demand. Uniform price: 692 pays
1.5 x 85 kW x 2 h = 255 $ to 671. Loss per hour without the market
0.5 x (1.5 x 1155 + 7.5 x 170) = 1,503.75 $, with it 6 x 85 = 510 $ less.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from gridsim import messages as m
from gridsim.fake_runtime import FakeFederation
from gridsim.federates.auditor.federate import run as auditor_loop
from gridsim.federates.market.federate import run as market_loop
from gridsim.federates.market.settings import MarketSettings
from gridsim.loop import Runtime

STEP_S = 900.0
LOADS = [("671", "671", 1155.0), ("634a", "634", 160.0), ("645", "645", 170.0),
         ("692", "675", 170.0), ("611", "611", 170.0)]
"""(load, bus, demand kW): a few IEEE 13 loads at their nominal demand."""
SHORTAGE_STEPS = range(4, 12)  # 01:00 to 02:45
CAPS_KW = {"671": 492.5, "634a": 80.0, "645": 85.0, "692": 170.0, "611": 85.0}

SCENARIO = {
    "name": "market-loop", "feeder": "ieee13", "start": "2026-07-01T00:00:00",
    "duration": "4h", "step": "15m", "seed": 7,
    "federates": {
        "feeder": {"type": "feeder"},
        "regulator": {"type": "regulator"},
        "market": {"type": "market", "parameters": {
            "shortage_start_h": 1, "shortage_hours": 2, "supply_fraction": 0.5,
            "entity_definitions": [
                {"load": "671", "blocks": [{"name": "all", "share": 1.0, "value": 1.5}]},
                {"load": "692", "blocks": [{"name": "all", "share": 1.0, "value": 7.5}]}]}},
        "auditor": {"type": "auditor"},
    },
    "links": ["feeder.load_states -> market.load_states",
              "regulator.policy -> market.policy",
              "market.load_caps -> feeder.load_caps",
              "market.registration -> auditor.registration",
              "market.ledger -> auditor.ledger",
              "market.disclosures -> auditor.disclosures",
              "market.clearing -> auditor.clearing",
              "feeder.load_states -> auditor.load_states"],
}


def load_states(step: int, draw: dict[str, float] | None = None) -> m.LoadStates:
    """What a feeder following the caps publishes at `step` (before, during and after the
    shortage); `draw` overrides what some loads draw."""
    capped = step in SHORTAGE_STEPS
    ids = [load for load, _, _ in LOADS]
    p_kw = [CAPS_KW[load] if capped else kw for load, _, kw in LOADS]
    p_kw = [(draw or {}).get(load, p) for load, p in zip(ids, p_kw)]
    return m.LoadStates(time_s=step * STEP_S, ids=ids, bus=[bus for _, bus, _ in LOADS],
                        p_kw=p_kw, q_kvar=[0.0] * len(ids),
                        demand_kw=[kw for _, _, kw in LOADS],
                        cap_kw=[CAPS_KW[load] if capped else None for load in ids])


def policy(revision: int, **fields) -> m.Policy:
    base = {"payment_rule": "proportional", "price_cap_per_kwh": None,
            "fairness_premium": 0.0, "v_min_pu": 0.95, "v_max_pu": 1.05}
    return m.Policy(revision=revision, **(base | fields))


class Tampering:
    """A runtime that changes one port's messages before they are published: a dishonest
    market, the rest of its loop untouched."""

    def __init__(self, rt: Runtime, port: str, change):
        self._rt, self._port, self._change = rt, port, change

    def __getattr__(self, name: str):
        return getattr(self._rt, name)

    def publish(self, port: str, message) -> None:
        self._rt.publish(port, self._change(message) if port == self._port else message)


def run_market(tmp_path, *, first_step: int = 0,
               draw: dict[int, dict[str, float]] | None = None, market=market_loop):
    """Run market and auditor over the scripted feeder and regulator; returns the
    federation and the summaries."""
    path = tmp_path / "market-loop.yaml"
    path.write_text(yaml.safe_dump(SCENARIO, sort_keys=False))
    federation = FakeFederation.from_system(path, tmp_path / "run",
                                            members=["market", "auditor"])
    federation.script("feeder/load_states", [(k * STEP_S, load_states(k, (draw or {}).get(k)))
                                             for k in range(first_step, 16)])
    federation.script("regulator/policy", [
        (0.5, policy(0, time_s=0.0)),
        (1800.5, policy(1, time_s=1800.0, payment_rule="uniform-price",
                        price_cap_per_kwh=1.0))])
    summaries = federation.run({"market": market, "auditor": auditor_loop})
    return federation, summaries


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return run_market(tmp_path_factory.mktemp("clean"))


def published(federation: FakeFederation, member: str, port: str) -> list:
    return [(t, msg) for t, p, msg in federation.members[member].published if p == port]


def test_round_clears_the_papers_logic_under_the_regulators_policy(clean):
    federation, summaries = clean
    market = summaries["market"]
    assert market["rounds"] == 1 and market["entities"] == 2 and market["skipped_steps"] == 0
    assert market["payment_rule"] == "uniform-price"
    assert market["loss_without_market_usd_per_h"] == pytest.approx(1503.75)
    assert market["loss_with_market_usd_per_h"] == pytest.approx(1503.75 - 510.0)
    assert market["checks"] == {"budget_balance": True, "individual_rationality": True,
                                "certificate": True}
    ((t, clearing),) = published(federation, "market", "clearing")
    assert t == 3 * STEP_S + 2.5 and clearing.time_s == 3 * STEP_S  # the last step before
    assert clearing.entities == ["671", "692"] and clearing.horizon_start_s == 3600.0
    assert clearing.bounds_kw == [[577.5, 577.5], [85.0, 85.0]]
    np.testing.assert_allclose(clearing.kw, [[-85.0, -85.0], [85.0, 85.0]])
    assert clearing.prices_per_kwh == [1.0, 1.0]  # 1.5 $/kWh, capped
    assert clearing.payments == pytest.approx([-255.0, 255.0])
    assert clearing.certificate.kw == clearing.kw
    assert clearing.certificate.price_usd_per_kw == pytest.approx([1.5, 1.5])
    assert clearing.certificate.objective_usd == pytest.approx(1020.0)
    assert [port for _, port, _ in federation.members["market"].published
            if port != "load_caps"] == ["ledger", "disclosures", "registration", "clearing"]


def test_caps_apply_at_the_next_step_and_are_lifted_after_the_shortage(clean):
    federation, _ = clean
    caps = published(federation, "market", "load_caps")
    steps = [round((t - 2.5) / STEP_S) for t, _ in caps]
    assert steps == [k - 1 for k in SHORTAGE_STEPS] + [SHORTAGE_STEPS[-1]]
    for (_, message), k in zip(caps, steps):
        assert message.time_s == k * STEP_S
        expected = ([CAPS_KW[load] for load in message.ids] if k + 1 in SHORTAGE_STEPS
                    else [None] * len(message.ids))
        assert message.cap_kw == pytest.approx(expected), k


def test_auditor_finds_nothing_in_a_clean_round(clean):
    federation, summaries = clean
    auditor = summaries["auditor"]
    assert auditor["findings"] == 0 and auditor["findings_by_code"] == {}
    assert auditor["rounds"] == 1 and auditor["cosigned_checkpoints"] == 1
    assert auditor["metering_checks"] == 2 * len(SHORTAGE_STEPS)
    assert auditor["skipped_steps"] == 0
    reports = [msg for _, msg in published(federation, "auditor", "findings")]
    assert len(reports) == 2 + len(SHORTAGE_STEPS)
    assert all(report.findings == [] for report in reports)
    assert reports[0].cosigned_checkpoint is not None


def unbalanced(clearing: m.MarketClearing) -> m.MarketClearing:
    """Entity 692 pays $10 less: better off, so still rational."""
    return clearing.model_copy(update={"payments": [clearing.payments[0],
                                                    clearing.payments[1] - 10.0]})


def cheaper(clearing: m.MarketClearing) -> m.MarketClearing:
    """A certificate whose prices are not dual feasible any more."""
    certificate = clearing.certificate.model_copy(update={
        "price_usd_per_kw": [p - 0.5 for p in clearing.certificate.price_usd_per_kw]})
    return clearing.model_copy(update={"certificate": certificate})


def misshapen(clearing: m.MarketClearing) -> m.MarketClearing:
    """A certificate with a cut multiplier missing."""
    certificate = clearing.certificate.model_copy(update={
        "cut_dual": clearing.certificate.cut_dual[:-1]})
    return clearing.model_copy(update={"certificate": certificate})


@pytest.mark.parametrize("change, code", [(unbalanced, "payments.not_balanced"),
                                          (cheaper, "clearing.certificate"),
                                          (misshapen, "clearing.certificate")])
def test_a_tampered_clearing_is_found_under_its_code(tmp_path, change, code):
    def tampering_market(rt):
        return market_loop(Tampering(rt, "clearing", change))

    federation, summaries = run_market(tmp_path, market=tampering_market)
    assert summaries["auditor"]["findings_by_code"] == {code: 1}
    (finding,) = [f for _, report in published(federation, "auditor", "findings")
                  for f in report.findings]
    assert finding.where == "round 0"


def test_consumption_above_the_right_is_found(tmp_path):
    _, summaries = run_market(tmp_path, draw={5: {"692": 180.0}})
    assert summaries["auditor"]["findings_by_code"] == {"physical.over_right": 1}


def test_steps_before_the_feeder_are_skipped(tmp_path):
    """No load states before step 2: the market skips steps 0 and 1 and publishes nothing
    for them; the round is the same."""
    federation, summaries = run_market(tmp_path, first_step=2)
    assert summaries["market"]["skipped_steps"] == 2
    assert summaries["auditor"]["skipped_steps"] == 0
    assert min(t for t, _, _ in federation.members["market"].published) > 2 * STEP_S
    assert summaries["auditor"]["findings"] == 0


def test_auditor_loads_no_market_code_and_no_scipy():
    """The auditor checks with the contract alone: neither the market federate's modules
    nor SciPy (its LP) are imported by the auditor's loop or `gridsim audit`."""
    code = ("import sys, gridsim.federates.auditor.federate, gridsim.federates.auditor.replay;"
            "print([m for m in sys.modules if m.startswith(('gridsim.federates.market', "
            "'scipy', 'helics'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_settings_from_the_definitions_defaults_and_under_a_policy():
    definition = Path(__file__).resolve().parent.parent / "federates" / "market" / \
        "component_definition.json"
    defaults = {p["port_id"]: p["default"]
                for p in json.loads(definition.read_text())["static_inputs"]}
    settings = MarketSettings.from_parameters(defaults)
    assert (settings.entity_count, settings.entity_definitions) == (36, ())
    assert (settings.payment_rule, settings.price_cap_usd_per_kwh) == ("proportional", None)
    ruled = settings.with_policy(policy(1, payment_rule="shapley", price_cap_per_kwh=2.0,
                                        fairness_premium=0.1))
    assert (ruled.payment_rule, ruled.price_cap_usd_per_kwh, ruled.fairness_premium) == (
        "shapley", 2.0, 0.1)
    assert dataclasses.replace(ruled, payment_rule="proportional", price_cap_usd_per_kwh=None,
                               fairness_premium=0.0) == settings


def test_shortage_timing_in_steps():
    """Defaults: 12:00 to 16:00 in 1 h intervals; 15 min steps, caps apply a step later."""
    settings = MarketSettings.from_parameters({
        "entities": 36, "entity_definitions": [], "shortage_start_h": 12,
        "shortage_hours": 4, "supply_fraction": 0.5, "interval_h": 1.0,
        "payment_rule": "proportional", "price_cap": None, "fairness_premium": 0.0})
    due = [k for k in range(96) if settings.round_due(k * STEP_S, STEP_S)]
    assert due == list(range(47, 64))  # from the step before; cleared once, at the first
    caps = {k: settings.interval_after(k * STEP_S, STEP_S) for k in range(96)}
    assert [k for k, interval in caps.items() if interval is not None] == list(range(47, 63))
    assert [caps[k] for k in (47, 50, 51, 62)] == [0, 0, 1, 3]
    assert [k for k in range(96) if settings.lifts_after(k * STEP_S, STEP_S)] == [63]
