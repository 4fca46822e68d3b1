"""The auditor against a tampering market: each case found under its own code, nothing else.

The messages come from a real federation (``scenarios/ieee123-shortage.yaml``: feeder,
regulator, market, auditor, recorder), read back from the recorder. The clean run has zero
findings; each case then changes what a dishonest market (or entity) would change, keeping
everything else consistent (a re-signed checkpoint by the log's key, a re-solved clearing
for the bids the market claims), and a fresh auditor must name exactly that problem.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3

import pytest
import yaml

from gridsim import messages as m
from gridsim.build import federate_seed
from gridsim.contracts.bid import sign_bid_for_round
from gridsim.contracts.certificate import certificate_message
from gridsim.federates.auditor.adapter import witness_signer
from gridsim.federates.auditor.checks import FINDING_CODES, Auditor, bids_of, check_metering
from gridsim.federates.market.adapter import log_signer
from gridsim.federates.market.clearing import clear
from gridsim.federates.market.payments import settle
from gridsim.ledger.canonical import canonical_bytes
from gridsim.ledger.identity import LedgerEntry, make_keys
from gridsim.ledger.store import Ledger

SEED = 123
MARKET_SEED = federate_seed(SEED, "market")


@pytest.fixture(scope="module")
def clean(run_gridsim, repo_root, tmp_path_factory):
    """The recorded messages of a clean shortage run, and its summary."""
    tmp = tmp_path_factory.mktemp("audit")
    data = yaml.safe_load((repo_root / "scenarios" / "ieee123-shortage.yaml").read_text())
    assert data["seed"] == SEED
    code, _, stderr = run_gridsim("run", repo_root / "scenarios" / "ieee123-shortage.yaml",
                                  "--out", tmp / "run", "--quiet", timeout=300)
    assert code == 0, stderr
    db = sqlite3.connect(tmp / "run" / "results.sqlite")

    def one(topic, model):
        rows = db.execute("SELECT m.payload FROM messages m JOIN topics t ON "
                          "m.topic_id = t.topic_id WHERE t.topic = ?", (topic,)).fetchall()
        assert len(rows) == 1, topic
        return model.model_validate_json(rows[0][0])

    states = {step: m.LoadStates.model_validate_json(payload) for step, payload in db.execute(
        "SELECT m.step, m.payload FROM messages m JOIN topics t ON m.topic_id = t.topic_id "
        "WHERE t.topic = 'feeder/load_states'")}
    summary = json.loads((tmp / "run" / "summary.json").read_text())["federates"]
    return {"registration": one("market/registration", m.Registration),
            "update": one("market/ledger", m.LedgerUpdate),
            "disclosures": one("market/disclosures", m.Disclosures),
            "clearing": one("market/clearing", m.MarketClearing),
            "states": states, "summary": summary, "run_dir": tmp / "run"}


def audit(run: dict, *, update=None, disclosures=None, clearing=None, states=None,
          extra_updates=()) -> set[str]:
    """Codes a fresh auditor finds in the (possibly tampered) messages. A re-solved
    clearing is audited without the run's metering (the feeder followed the real one)."""
    auditor = Auditor(run["registration"], witness_signer(7, "auditor"))
    codes = []
    findings, _ = auditor.check_update(update or run["update"],
                                       disclosures or run["disclosures"])
    codes += [f.code for f in findings]
    for later, later_disclosures in extra_updates:
        codes += [f.code for f in auditor.check_update(later, later_disclosures)[0]]
    clearing = clearing or run["clearing"]
    codes += [f.code for f in auditor.check_clearing(clearing)]
    for step, loads in (run["states"] if states is None else states).items():
        codes += [f.code for f in check_metering(clearing, loads, step * 900.0)[1]]
    return set(codes)


def relogged(entries: list[LedgerEntry], round_: int = 0, before: list[LedgerEntry] = (),
             ) -> m.LedgerUpdate:
    """The update a market would publish for `entries` after `before`, signed by its key."""
    ledger = Ledger(log_signer(MARKET_SEED, "market"))
    for entry in before:
        ledger.append(entry)
    previous = ledger.checkpoint() if before else None
    for entry in entries:
        ledger.append(entry)
    record = ledger.checkpoint()
    return m.LedgerUpdate(
        time_s=0.0, round=round_, first_index=len(before), entries=[e.to_json() for e in entries],
        checkpoint=record.note,
        consistency_proof=[base64.b64encode(h).decode() for h in record.proof]
        if previous else [])


def recleared(clearing: m.MarketClearing, bids, entries: list[dict],
              keep: list[int]) -> m.MarketClearing:
    """The clearing a market would publish for `bids` (of the entities at `keep`)."""
    result = clear(bids)
    settlement = settle(clearing.payment_rule, bids, result)
    pick = lambda values: [values[i] for i in keep]  # noqa: E731
    return clearing.model_copy(update={
        "entities": pick(clearing.entities), "bounds_kw": pick(clearing.bounds_kw),
        "kw": result.kw.tolist(), "payments": settlement.payment_usd.tolist(),
        "values": result.value_usd.tolist(), "bid_indices": pick(clearing.bid_indices),
        "bids": entries, "certificate": certificate_message(result),
        "standalone_values": pick(clearing.standalone_values),
        "full_values": pick(clearing.full_values),
        "prices_per_kwh": (result.price_usd_per_kw / (clearing.interval_s / 3600)).tolist()})


def entries_of(update: m.LedgerUpdate) -> list[LedgerEntry]:
    return [LedgerEntry.from_json(e) for e in update.entries]


def test_clean_run_has_no_findings(clean):
    auditor = clean["summary"]["auditor"]
    assert auditor["findings"] == 0 and auditor["rounds"] == 1
    assert auditor["metering_checks"] == 36 * 16
    assert auditor["cosigned_checkpoints"] == 1
    assert audit(clean) == set()


def test_forged_signature(clean):
    entries = entries_of(clean["update"])
    forged = bytearray(entries[3].signature)
    forged[5] ^= 0x40
    entries[3] = LedgerEntry(entries[3].bid, bytes(forged), entries[3].ephemeral_public,
                             entries[3].commitment)
    clearing = clean["clearing"].model_copy(
        update={"bids": [e.to_json() for e in entries]})
    assert audit(clean, update=relogged(entries), clearing=clearing) == {"bid.bad_signature"}


def test_bid_altered_after_it_was_logged(clean):
    """The market clears with entity 2's bid raised (its cuts doubled): the clearing is
    optimal for what it used, but that is not what the log holds."""
    clearing = clean["clearing"]
    bids = bids_of(clearing)
    raw = [dict(b) for b in clearing.bids]
    entry = LedgerEntry.from_json(raw[2])
    content = json.loads(entry.bid)
    content["bid"]["intercept_usd"] = [2 * a for a in content["bid"]["intercept_usd"]]
    content["bid"]["slope_usd_per_kw"] = [[2 * g for g in row]
                                          for row in content["bid"]["slope_usd_per_kw"]]
    altered = LedgerEntry(canonical_bytes(content), entry.signature,
                          entry.ephemeral_public, entry.commitment)
    raw[2] = altered.to_json()
    bids[2] = bids_of(clearing.model_copy(update={"bids": raw}))[2]
    tampered = recleared(clearing, bids, raw, list(range(len(bids))))
    assert audit(clean, clearing=tampered, states={}) == {"clearing.bid_altered"}


def test_logged_bid_left_out_of_the_clearing(clean):
    clearing = clean["clearing"]
    keep = [i for i in range(len(clearing.entities)) if i != 5]
    bids = [bids_of(clearing)[i] for i in keep]
    tampered = recleared(clearing, bids, [clearing.bids[i] for i in keep], keep)
    assert audit(clean, clearing=tampered, states={}) == {"clearing.bid_omitted"}


def test_bid_replayed_from_an_earlier_round(clean):
    """Round 1 logs entity 0's round-0 bid again next to fresh bids of the others."""
    first = entries_of(clean["update"])
    clearing = clean["clearing"]
    fresh, disclosed = [first[0]], [clean["disclosures"].disclosures[0]]
    for entity, bid in list(zip(clearing.entities, bids_of(clearing)))[1:]:
        keys = make_keys(MARKET_SEED, entity, 1)
        fresh.append(sign_bid_for_round(keys, 1, bid))
        disclosed.append(keys.disclosure.to_json())
    n = len(first)
    later = relogged(fresh, round_=1, before=first)
    later_disclosures = m.Disclosures(time_s=0.0, round=1,
                                      indices=list(range(n, n + len(fresh))),
                                      disclosures=disclosed)
    auditor = Auditor(clean["registration"], witness_signer(7, "auditor"))
    assert auditor.check_update(clean["update"], clean["disclosures"])[0] == []
    findings, cosigned = auditor.check_update(later, later_disclosures)
    assert {f.code for f in findings} == {"bid.replayed"}
    assert [f.where for f in findings] == [f"log index {n}"]
    assert cosigned is not None  # the log itself is consistent


def test_split_view(clean):
    """A second checkpoint of the same size with another root (one bid swapped)."""
    entries = entries_of(clean["update"])
    keys = make_keys(MARKET_SEED, clean["clearing"].entities[1], 0)
    entries[1] = sign_bid_for_round(keys, 0, bids_of(clean["clearing"])[0])
    other = relogged(entries)
    assert audit(clean, extra_updates=[(other, clean["disclosures"])]) == {"log.split_view"}


def test_payments_that_do_not_sum_to_zero(clean):
    payments = list(clean["clearing"].payments)
    payments[4] -= 10.0  # entity 4 pays $10 less: better off, so still rational
    tampered = clean["clearing"].model_copy(update={"payments": payments})
    assert audit(clean, clearing=tampered) == {"payments.not_balanced"}


def test_entity_consuming_above_its_right(clean):
    clearing, states = clean["clearing"], dict(clean["states"])
    step = 50  # 12:30, in the first interval of the shortage
    loads = states[step]
    entity = clearing.entities[7]
    right = clearing.bounds_kw[7][0] + clearing.kw[7][0]
    p_kw = [1.1 * right + 1.0 if load == entity else p for load, p in zip(loads.ids, loads.p_kw)]
    states[step] = loads.model_copy(update={"p_kw": p_kw})
    assert audit(clean, states=states) == {"physical.over_right"}


def test_every_code_is_documented(repo_root):
    text = (repo_root / "docs" / "audit.md").read_text()
    missing = [code for code in FINDING_CODES if f"`{code}`" not in text]
    assert missing == []


def test_offline_audit_of_the_clean_run(clean, run_gridsim):
    code, stdout, stderr = run_gridsim("audit", clean["run_dir"])
    assert code == 0, stdout + stderr
    assert "0 findings; 1 rounds" in stderr and "96 metered steps" in stderr


def test_offline_audit_finds_edited_files(clean, run_gridsim, tmp_path):
    """Payments edited after the run, then a logged bid edited: each named, exit 1."""
    run_dir = tmp_path / "run"
    shutil.copytree(clean["run_dir"], run_dir)
    path = run_dir / "ledger" / "clearings.jsonl"
    clearing = json.loads(path.read_text())
    clearing["payments"][0] += 5.0
    path.write_text(json.dumps(clearing) + "\n")
    code, stdout, _ = run_gridsim("audit", run_dir)
    assert code == 1
    assert {line.split("\t")[0] for line in stdout.splitlines()} == {"payments.not_balanced"}

    entries = run_dir / "ledger" / "entries.jsonl"
    lines = entries.read_text().splitlines()
    entry = json.loads(lines[2])
    entry["signature"] = base64.b64encode(bytes(64)).decode()
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    entries.write_text("\n".join(lines) + "\n")
    code, stdout, _ = run_gridsim("audit", run_dir)
    codes = {line.split("\t")[0] for line in stdout.splitlines()}
    assert code == 1
    assert {"ledger.root_mismatch", "ledger.bad_signature"} <= codes
