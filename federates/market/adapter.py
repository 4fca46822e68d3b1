"""The market's messages and its numerics, either way (no HELICS): entities from the
feeder's `LoadStates`, a round's signed ledger and published messages, load caps and the
summary.

A round (`clear_round`): entities from the loads (written in the scenario, or drawn with the
seed), each load's demand at the clearing step as the forecast for every interval
(persistence), the default allocation ``supply_fraction x demand``, `session.run_round`,
then every entity signs its bid with a fresh key for the round, attested by its long-term
key (`gridsim.ledger`); the market, as log operator, appends the bids, signs a checkpoint and
keeps the ledger in ``RUN/ledger``, with the registration and clearing it published.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridsim import messages as m
from gridsim.contracts.bid import sign_bid_for_round
from gridsim.contracts.certificate import verify_certificate
from gridsim.contracts.clearing import clearing_message
from gridsim.federates.market.core import in_core
from gridsim.federates.market.definitions import entities_from_definitions
from gridsim.federates.market.entities import Entity, default_bounds, generate_entities
from gridsim.federates.market.session import Round, run_round
from gridsim.federates.market.settings import MarketSettings
from gridsim.ledger.checkpoint import NoteSigner, NoteVerifier
from gridsim.ledger.identity import Disclosure, derive_secret, make_keys, make_registry
from gridsim.ledger.store import CheckpointRecord, Ledger

ENTITY_STREAM = 0x6D6B74
"""Second word of the seed sequence of the entities' draws: ``[seed, ENTITY_STREAM]``."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def log_signer(seed: int, name: str) -> NoteSigner:
    """The market's log key (derived from its seed), named ``gridsim-market/NAME``."""
    key = Ed25519PrivateKey.from_private_bytes(derive_secret(seed, "log", "market"))
    return NoteSigner(f"gridsim-market/{name}", key)


def choose_loads(loads: m.LoadStates, count: int, seed: int) -> list[int]:
    """Positions of the loads that become entities: `count` of those drawing power, drawn
    with the scenario's seed, in feeder order."""
    drawing = [i for i, kw in enumerate(loads.demand_kw) if kw > 0]
    rng = np.random.default_rng([seed, ENTITY_STREAM])
    chosen = rng.choice(len(drawing), size=min(count, len(drawing)), replace=False)
    return sorted(drawing[i] for i in chosen)


def market_entities(settings: MarketSettings, loads: m.LoadStates, seed: int,
                    start_hour: float) -> tuple[list[Entity], list[int]]:
    """The round's entities and the position of each one's load in `loads`."""
    if settings.entity_definitions:
        entities = entities_from_definitions(
            settings.entity_definitions, dict(zip(loads.ids, loads.demand_kw)),
            dict(zip(loads.ids, loads.bus)), settings.n_intervals, settings.interval_h,
            start_hour)
        position = {load: i for i, load in enumerate(loads.ids)}
        return entities, [position[e.entity_id] for e in entities]
    positions = choose_loads(loads, settings.entity_count, seed)
    rng = np.random.default_rng([seed, ENTITY_STREAM, 1])
    entities = generate_entities(
        [(loads.ids[i], loads.bus[i], loads.demand_kw[i]) for i in positions],
        settings.n_intervals, rng, interval_h=settings.interval_h, start_hour=start_hour)
    return entities, positions


@dataclass(frozen=True)
class SignedBids:
    """A round's bids in the log: each entity's entry, its index and the disclosure that
    attributes it (for the auditor only), and the checkpoint signed after them."""

    first_index: int
    indices: list[int]
    entries: list[dict]
    disclosures: dict[int, Disclosure]
    checkpoint: CheckpointRecord


def sign_bids(ledger: Ledger, seed: int, ids: list[str], rnd: Round,
              round_: int = 0) -> SignedBids:
    """Each entity signs its bid with the round's key; the log appends them in entity
    order and signs a checkpoint."""
    first = len(ledger.entries)
    indices, entries, disclosures = [], [], {}
    for entity_id, advice in zip(ids, rnd.guidance):
        keys = make_keys(seed, entity_id, round_)
        signed = sign_bid_for_round(keys, round_, advice.bid)
        index = ledger.append(signed)
        indices.append(index)
        entries.append(signed.to_json())
        disclosures[index] = keys.disclosure
    return SignedBids(first, indices, entries, disclosures, ledger.checkpoint())


def ledger_messages(t: float, round_: int,
                    signed: SignedBids) -> tuple[m.LedgerUpdate, m.Disclosures]:
    """What the log appended (to all) and the disclosures (to the auditor only)."""
    update = m.LedgerUpdate(
        time_s=t, round=round_, first_index=signed.first_index, entries=signed.entries,
        checkpoint=signed.checkpoint.note,
        consistency_proof=[_b64(h) for h in signed.checkpoint.proof])
    disclosed = m.Disclosures(time_s=t, round=round_, indices=list(signed.disclosures),
                              disclosures=[d.to_json() for d in signed.disclosures.values()])
    return update, disclosed


def registration_message(t: float, ids: list[str], seed: int,
                         log_key: NoteVerifier) -> m.Registration:
    """The entities with their long-term public keys, and the log's key."""
    return m.Registration(
        time_s=t, entities=ids, loads=ids,
        public_keys=[_b64(k) for k in make_registry(seed, ids).values()],
        log_name=log_key.name, log_public_key=_b64(log_key.public_key))


def round_clearing(rnd: Round, ids: list[str], ub_kw: np.ndarray, signed: SignedBids, *,
                   t: float, round_: int, horizon_start_s: float, interval_s: float,
                   payment_rule: str) -> m.MarketClearing:
    """The `MarketClearing` of a round (`gridsim.contracts.clearing.clearing_message`)."""
    return clearing_message(
        time_s=t, round_=round_, horizon_start_s=horizon_start_s, interval_s=interval_s,
        entities=ids, bounds_kw=ub_kw, solution=rnd.clearing,
        values_usd=rnd.clearing.value_usd, prices_usd_per_kwh=rnd.prices_usd_per_kwh,
        payment_rule=payment_rule, payments_usd=rnd.payments_usd,
        standalone_values_usd=[g.standalone_usd for g in rnd.guidance],
        full_values_usd=[g.full_usd for g in rnd.guidance],
        bid_indices=signed.indices, bids=signed.entries)


@dataclass(frozen=True, eq=False)
class ClearedRound:
    """A round as the loop uses it: the numerics, the messages to publish in order (port,
    message) and the summary part."""

    round: Round
    messages: list[tuple[str, m.Message]]
    summary: dict


def clear_round(settings: MarketSettings, loads: m.LoadStates, t: float, seed: int,
                scenario_start: datetime, ledger: Ledger) -> ClearedRound:
    """Clear round 0 at data time `t` (module doc); the ledger keeps its bids on disk."""
    entities, positions = market_entities(settings, loads, seed,
                                          settings.start_hour(scenario_start))
    demand = np.array([[loads.demand_kw[i]] * settings.n_intervals for i in positions])
    ub = default_bounds(demand, settings.supply_fraction)
    rnd = run_round(entities, ub, settings.payment_rule, settings.price_cap_usd_per_kwh,
                    settings.fairness_premium)
    ids = [e.entity_id for e in entities]
    signed = sign_bids(ledger, seed, ids, rnd)
    ledger.save(ledger.directory, signed.disclosures)
    update, disclosed = ledger_messages(t, 0, signed)
    registration = registration_message(t, ids, seed, ledger.signer.verifier)
    clearing = round_clearing(rnd, ids, ub, signed, t=t, round_=0,
                              horizon_start_s=settings.start_s,
                              interval_s=settings.interval_s,
                              payment_rule=settings.payment_rule)
    write_record(ledger.directory, "registration.jsonl", registration)
    write_record(ledger.directory, "clearings.jsonl", clearing)
    return ClearedRound(rnd, [("ledger", update), ("disclosures", disclosed),
                              ("registration", registration), ("clearing", clearing)],
                        summarize(rnd, ids, settings))


def write_record(directory: Path, name: str, message: m.Message) -> None:
    """Append a published message to the ledger directory (for `gridsim audit`)."""
    with open(directory / name, "a") as out:
        out.write(message.model_dump_json() + "\n")


def load_caps(loads: m.LoadStates, rnd: Round, k: int, fraction: float,
              t: float) -> m.LoadCaps:
    """Caps for interval `k`: planned import of each entity, the default share for others."""
    planned = {op.entity_id: float(op.import_kw[k]) for op in rnd.operations}
    caps = [planned.get(load, fraction * float(demand))
            for load, demand in zip(loads.ids, loads.demand_kw)]
    return m.LoadCaps(time_s=t, ids=list(loads.ids), cap_kw=caps)


def lifted_caps(loads: m.LoadStates, t: float) -> m.LoadCaps:
    """Every load's cap removed."""
    return m.LoadCaps(time_s=t, ids=list(loads.ids), cap_kw=[None] * len(loads.ids))


def summarize(rnd: Round, ids: list[str], settings: MarketSettings) -> dict:
    """Deterministic figures of the round for summary.json, with the property checks.
    ``payments_in_core`` is None when there are too many entities to enumerate the
    coalitions (`core.MAX_ENTITIES`)."""
    hours = settings.shortage_hours
    payments = rnd.payments_usd
    gains = rnd.clearing.value_usd - payments
    return {
        "entities": len(ids), "payment_rule": settings.payment_rule,
        "loss_without_market_usd_per_h": rnd.standalone_loss_usd / hours,
        "loss_with_market_usd_per_h": rnd.market_loss_usd / hours,
        "saving_usd_per_h": float(rnd.clearing.objective_usd) / hours,
        "saving_fraction": (float(rnd.clearing.objective_usd) / rnd.standalone_loss_usd
                            if rnd.standalone_loss_usd > 0 else 0.0),
        "prices_usd_per_kwh": rnd.prices_usd_per_kwh.tolist(),
        "payments_usd": dict(zip(ids, payments.tolist())),
        "payments_in_core": in_core([g.bid for g in rnd.guidance], rnd.clearing, payments),
        "checks": {
            "budget_balance": bool(abs(payments.sum()) <= 1e-6 * max(1.0, abs(payments).sum())),
            "individual_rationality": bool(np.all(gains >= -1e-6 * max(1.0, abs(gains).max()))),
            "certificate": bool(verify_certificate([g.bid for g in rnd.guidance],
                                                   rnd.clearing).ok),
        },
    }
