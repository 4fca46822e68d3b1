"""The market contract (`gridsim.contracts`): what an entity signs reads back as the same
bid, the certificate crosses the wire under its field names and still verifies, and
malformed bids or certificates are refused with ValueError instead of breaking arithmetic.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gridsim import messages as m
from gridsim.contracts.bid import (
    CONTENT_FIELDS,
    bid_content,
    bid_from_content,
    bid_of_entry,
    sign_bid_for_round,
)
from gridsim.contracts.certificate import PrimalDual, certificate_message, verify_certificate
from gridsim.contracts.clearing import clearing_message
from gridsim.federates.market.clearing import clear
from gridsim.federates.market.conformance import battery_shift, three_entities
from gridsim.federates.market.guidance import guidance
from gridsim.ledger.identity import EntryError, LedgerEntry, make_keys, read_bid


def bids_of(case):
    return [guidance(entity, ub).bid for entity, ub in zip(case.entities, case.ub_kw)]


@pytest.fixture(scope="module", params=[battery_shift, three_entities],
                ids=["battery", "three"])
def market(request):
    bids = bids_of(request.param())
    return bids, clear(bids)


def same_bid(a, b) -> bool:
    return a.entity_id == b.entity_id and all(
        np.array_equal(getattr(a, name), getattr(b, name)) for name in CONTENT_FIELDS)


def test_a_signed_bid_reads_back_as_the_same_bid(market):
    bids, _ = market
    for bid in bids:
        entry = sign_bid_for_round(make_keys(1, bid.entity_id, 3), 3, bid)
        round_, content = read_bid(LedgerEntry.from_json(entry.to_json()))
        assert round_ == 3 and content["round"] == 3
        assert set(content) == {"round", *CONTENT_FIELDS}
        assert same_bid(bid_of_entry(bid.entity_id, entry), bid)
        assert same_bid(bid_from_content(bid.entity_id,
                                         json.loads(json.dumps(bid_content(bid)))), bid)


@pytest.mark.parametrize("change", [
    lambda c: c.pop("slope_usd_per_kw"),
    lambda c: c.update(min_kw="many"),
    lambda c: c.update(slope_usd_per_kw=[row[:-1] for row in c["slope_usd_per_kw"]]),
    lambda c: c.update(group=[g + 1 for g in c["group"]]),
    lambda c: c.update(group_interval=c["group_interval"] + [0]),
    lambda c: c.update(min_kw=3.0),
], ids=["missing", "not numbers", "slopes short", "groups from 1", "groups extra", "scalar"])
def test_a_malformed_bid_is_refused(market, change):
    bids, _ = market
    content = bid_content(bids[0])
    change(content)
    with pytest.raises(ValueError):
        bid_from_content("x", content)


def test_malformed_entry_bytes_are_refused():
    entry = LedgerEntry(b"not json", bytes(64), bytes(32), bytes(32))
    with pytest.raises(EntryError):
        bid_of_entry("x", entry)


def test_the_certificate_crosses_the_wire_and_verifies(market):
    bids, clearing = market
    wire = m.Certificate.model_validate_json(certificate_message(clearing).model_dump_json())
    solution = PrimalDual.from_message(wire, bids)
    for name in ("kw", "group_value_usd", "price_usd_per_kw", "cut_dual",
                 "upper_dual_usd_per_kw", "lower_dual_usd_per_kw"):
        np.testing.assert_array_equal(getattr(solution, name), getattr(clearing, name))
    assert solution.objective_usd == clearing.objective_usd
    assert verify_certificate(bids, solution).ok


def test_a_certificate_for_other_bids_is_refused(market):
    bids, clearing = market
    wire = certificate_message(clearing)
    with pytest.raises(ValueError, match="kw"):
        PrimalDual.from_message(wire, bids[:-1])
    short = wire.model_copy(update={"cut_dual": wire.cut_dual[:-1]})
    with pytest.raises(ValueError, match="cut_dual"):
        PrimalDual.from_message(short, bids)


def test_the_clearing_message_carries_the_round_as_given(market):
    bids, clearing = market
    ub = -np.array([b.min_kw for b in bids])
    payments = np.arange(len(bids), dtype=float) - (len(bids) - 1) / 2
    message = clearing_message(
        time_s=900.0, round_=2, horizon_start_s=3600.0, interval_s=3600.0,
        entities=[b.entity_id for b in bids], bounds_kw=ub, solution=clearing,
        values_usd=clearing.value_usd, prices_usd_per_kwh=clearing.price_usd_per_kw,
        payment_rule="uniform-price", payments_usd=payments,
        standalone_values_usd=np.zeros(len(bids)), full_values_usd=np.ones(len(bids)),
        bid_indices=range(len(bids)), bids=[{"entry": i} for i in range(len(bids))])
    assert message.round == 2 and message.status == "optimal"
    assert message.kw == clearing.kw.tolist() == message.certificate.kw
    assert message.bounds_kw == ub.tolist() and message.payments == payments.tolist()
    assert message.bid_indices == list(range(len(bids)))
    assert m.MarketClearing.model_validate_json(message.model_dump_json()) == message
