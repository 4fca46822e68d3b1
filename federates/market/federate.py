"""The market's loop: entities from the feeder's loads, one round before the shortage, load
caps every step of it, a signed ledger of the bids.

Timing: periodic at offset 2.5 s (after the feeder's step-k states, before a DOPF at 3 s);
load caps published at step k apply at step k + 1. The round is cleared at the last step
before the shortage, over all its intervals, with each load's demand at that step as the
forecast for every interval (persistence). During the shortage every entity's cap is its
planned grid import for the interval; every other load gets the default allocation, the
supply fraction of its demand. The step after the shortage lifts every cap. (A shortage
from the scenario's first step is cleared at that step, so its first step goes uncapped.)

Ledger: every entity signs its bid with a fresh key for the round, attested by its
long-term key (`gridsim.ledger`); the market, as log operator, appends the bids, signs a
checkpoint, keeps the ledger in ``RUN/ledger`` and publishes what it appended.
"""

from __future__ import annotations

import base64

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridsim import messages as m
from gridsim.federates.market.clearing import verify_certificate
from gridsim.federates.market.definitions import entities_from_definitions
from gridsim.federates.market.entities import default_bounds, generate_entities
from gridsim.federates.market.session import Round, bid_content, certificate, run_round
from gridsim.ledger.checkpoint import NoteSigner
from gridsim.ledger.identity import derive_secret, make_keys, make_registry, sign_bid
from gridsim.ledger.store import Ledger
from gridsim.runtime import FederateRuntime

ENTITY_STREAM = 0x6D6B74
"""Second word of the seed sequence of the entities' draws: ``[seed, ENTITY_STREAM]``."""


def run(rt: FederateRuntime) -> dict:
    """Clear before the shortage, cap loads during it; returns the summary part."""
    p = dict(rt.parameters)
    start_s = p["shortage_start_h"] * 3600.0
    interval_s = p["interval_h"] * 3600.0
    n_intervals = int(round(p["shortage_hours"] / p["interval_h"]))
    end_s = start_s + n_intervals * interval_s
    loads: m.LoadStates | None = None
    result: dict | None = None
    ledger = Ledger(_log_signer(rt), rt.run_dir / "ledger")
    rt.enter()
    for _, granted in rt.step_times():
        t = rt.step_index(granted) * rt.step_s
        for _, msg in rt.updates("load_states"):
            loads = msg
        for _, policy in rt.updates("policy") if rt.connected("policy") else []:
            p.update(payment_rule=policy.payment_rule, price_cap=policy.price_cap_per_kwh,
                     fairness_premium=policy.fairness_premium)
        if loads is None:
            continue
        t_next = t + rt.step_s
        if result is None and start_s <= t_next and t < end_s:
            result = _clear(rt, p, loads, t, start_s, interval_s, n_intervals, ledger)
        if result is not None and start_s <= t_next < end_s:
            k = int((t_next - start_s) // interval_s)
            rt.publish("load_caps", _caps(loads, result, k, p["supply_fraction"], t))
        elif result is not None and end_s <= t_next < end_s + rt.step_s:
            rt.publish("load_caps", m.LoadCaps(time_s=t, ids=list(loads.ids),
                                               cap_kw=[None] * len(loads.ids)))
    return {"rounds": 0 if result is None else 1, **(result or {}).get("summary", {})}


def _log_signer(rt: FederateRuntime) -> NoteSigner:
    key = Ed25519PrivateKey.from_private_bytes(derive_secret(rt.seed, "log", "market"))
    return NoteSigner(f"gridsim-market/{rt.name}", key)


def choose_loads(loads: m.LoadStates, count: int, seed: int) -> list[int]:
    """Positions of the loads that become entities: `count` of those drawing power, drawn
    with the scenario's seed, in feeder order."""
    drawing = [i for i, kw in enumerate(loads.demand_kw) if kw > 0]
    rng = np.random.default_rng([seed, ENTITY_STREAM])
    chosen = rng.choice(len(drawing), size=min(count, len(drawing)), replace=False)
    return sorted(drawing[i] for i in chosen)


def _clear(rt: FederateRuntime, p: dict, loads: m.LoadStates, t: float, start_s: float,
           interval_s: float, n_intervals: int, ledger: Ledger) -> dict:
    start_hour = (rt.start.hour + rt.start.minute / 60.0 + start_s / 3600.0) % 24.0
    if p["entity_definitions"]:
        entities = entities_from_definitions(
            p["entity_definitions"], dict(zip(loads.ids, loads.demand_kw)),
            dict(zip(loads.ids, loads.bus)), n_intervals, p["interval_h"], start_hour)
        position = {load: i for i, load in enumerate(loads.ids)}
        positions = [position[e.entity_id] for e in entities]
    else:
        positions = choose_loads(loads, p["entities"], rt.seed)
        rng = np.random.default_rng([rt.seed, ENTITY_STREAM, 1])
        entities = generate_entities(
            [(loads.ids[i], loads.bus[i], loads.demand_kw[i]) for i in positions],
            n_intervals, rng, interval_h=p["interval_h"], start_hour=start_hour)
    demand = np.array([[loads.demand_kw[i]] * n_intervals for i in positions])
    ub = default_bounds(demand, p["supply_fraction"])
    rnd = run_round(entities, ub, p["payment_rule"], p["price_cap"], p["fairness_premium"])
    ids = [e.entity_id for e in entities]
    indices, entries = _publish_ledger(rt, t, ledger, rnd, ids)
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    log_key = ledger.signer.verifier
    registration = m.Registration(
        time_s=t, entities=ids, loads=ids,
        public_keys=[b64(k) for k in make_registry(rt.seed, ids).values()],
        log_name=log_key.name, log_public_key=b64(log_key.public_key))
    clearing = m.MarketClearing(
        time_s=t, round=0, horizon_start_s=start_s, interval_s=interval_s, entities=ids,
        bounds_kw=ub.tolist(), kw=rnd.clearing.kw.tolist(),
        prices_per_kwh=rnd.prices_usd_per_kwh.tolist(), payment_rule=p["payment_rule"],
        payments=rnd.payments_usd.tolist(), values=rnd.clearing.value_usd.tolist(),
        standalone_values=[g.standalone_usd for g in rnd.guidance],
        full_values=[g.full_usd for g in rnd.guidance],
        certificate=m.Certificate(**certificate(rnd.clearing)), status="optimal",
        bid_indices=indices, bids=entries)
    rt.publish("registration", registration)
    rt.publish("clearing", clearing)
    _write_record(ledger, "registration.jsonl", registration)
    _write_record(ledger, "clearings.jsonl", clearing)
    return {"round": rnd, "positions": positions, "summary": summarize(rnd, ids, p)}


def _publish_ledger(rt: FederateRuntime, t: float, ledger: Ledger, rnd: Round,
                    ids: list[str]) -> tuple[list[int], list[dict]]:
    """Each entity signs its bid with the round's key; append, checkpoint, publish the
    update (to all) and the disclosures (to the auditor); returns indices and entries."""
    first = len(ledger.entries)
    indices, entries, disclosures = [], [], {}
    for entity_id, advice in zip(ids, rnd.guidance):
        keys = make_keys(rt.seed, entity_id, 0)
        signed = sign_bid(keys, {"round": 0, **bid_content(advice.bid)})
        index = ledger.append(signed)
        indices.append(index)
        entries.append(signed.to_json())
        disclosures[index] = keys.disclosure
    record = ledger.checkpoint()
    ledger.save(ledger.directory, disclosures)
    rt.publish("ledger", m.LedgerUpdate(
        time_s=t, round=0, first_index=first, entries=entries, checkpoint=record.note,
        consistency_proof=[base64.b64encode(h).decode() for h in record.proof]))
    rt.publish("disclosures", m.Disclosures(
        time_s=t, round=0, indices=list(disclosures),
        disclosures=[d.to_json() for d in disclosures.values()]))
    return indices, entries


def _write_record(ledger: Ledger, name: str, message: m.Message) -> None:
    """Append a published message to the ledger directory (for `gridsim audit`)."""
    with open(ledger.directory / name, "a") as out:
        out.write(message.model_dump_json() + "\n")


def _caps(loads: m.LoadStates, result: dict, k: int, fraction: float, t: float) -> m.LoadCaps:
    """Caps for interval `k`: planned import of each entity, the default share for others."""
    planned = {op.entity_id: float(op.import_kw[k]) for op in result["round"].operations}
    caps = [planned.get(load, fraction * float(demand))
            for load, demand in zip(loads.ids, loads.demand_kw)]
    return m.LoadCaps(time_s=t, ids=list(loads.ids), cap_kw=caps)


def summarize(rnd: Round, ids: list[str], p: dict) -> dict:
    """Deterministic figures of the round for summary.json, with the property checks."""
    hours = p["shortage_hours"]
    payments = rnd.payments_usd
    gains = rnd.clearing.value_usd - payments
    return {
        "entities": len(ids), "payment_rule": p["payment_rule"],
        "loss_without_market_usd_per_h": rnd.standalone_loss_usd / hours,
        "loss_with_market_usd_per_h": rnd.market_loss_usd / hours,
        "saving_usd_per_h": float(rnd.clearing.objective_usd) / hours,
        "saving_fraction": (float(rnd.clearing.objective_usd) / rnd.standalone_loss_usd
                            if rnd.standalone_loss_usd > 0 else 0.0),
        "prices_usd_per_kwh": rnd.prices_usd_per_kwh.tolist(),
        "payments_usd": dict(zip(ids, payments.tolist())),
        "checks": {
            "budget_balance": bool(abs(payments.sum()) <= 1e-6 * max(1.0, abs(payments).sum())),
            "individual_rationality": bool(np.all(gains >= -1e-6 * max(1.0, abs(gains).max()))),
            "certificate": _certificate_ok(rnd),
        },
    }


def _certificate_ok(rnd: Round) -> bool:
    return bool(verify_certificate([g.bid for g in rnd.guidance], rnd.clearing).ok)
