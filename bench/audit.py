"""The auditor's time per market round, for 10, 100 and 1,000 entities.

Run: ``.venv/bin/python bench/audit.py [--entities 10 100 1000] [--intervals 4] [--repeat 3]``.

For each size: entities drawn from synthetic feeder loads (5-60 kW, seed 2026), their bids
by decision guidance at half their demand, each bid signed with the entity's round key and
logged, the log checkpointed, the market cleared with ``proportional`` payments, and the
messages the market publishes built by the market federate's own adapter (not timed).
Timed, median of ``--repeat`` fresh auditors: `Auditor.check_update` (checkpoint and
witness, every entry's signature, attribution, replay), `Auditor.check_clearing` (bids
against the log, certificate, payments) and the metering check of one step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from gridsim.build import FEDERATE_ENV  # loads no NumPy

for _var, _value in FEDERATE_ENV.items():  # one BLAS thread, as in every federate process
    os.environ.setdefault(_var, _value)

import numpy as np  # noqa: E402

from gridsim import messages as m  # noqa: E402
from gridsim.federates.auditor.adapter import witness_signer  # noqa: E402
from gridsim.federates.auditor.checks import Auditor, check_metering  # noqa: E402
from gridsim.federates.market.adapter import (  # noqa: E402
    ledger_messages,
    log_signer,
    registration_message,
    round_clearing,
    sign_bids,
)
from gridsim.federates.market.entities import default_bounds, generate_entities  # noqa: E402
from gridsim.federates.market.session import run_round  # noqa: E402
from gridsim.ledger.store import Ledger  # noqa: E402

SEED = 2026


def market_messages(n_entities: int, n_intervals: int):
    """Registration, update, disclosures, clearing and one step's load states."""
    rng = np.random.default_rng(SEED)
    loads = [(f"load{i}", f"bus{i}", float(rng.uniform(5, 60))) for i in range(n_entities)]
    entities = generate_entities(loads, n_intervals, rng, start_hour=12.0)
    demand = np.array([[kw] * n_intervals for _, _, kw in loads])
    ub = default_bounds(demand, 0.5)
    t0 = time.perf_counter()
    rnd = run_round(entities, ub, "proportional")
    market_s = time.perf_counter() - t0
    ids = [e.entity_id for e in entities]
    ledger = Ledger(log_signer(SEED, "bench"))
    signed = sign_bids(ledger, SEED, ids, rnd)
    update, disclosed = ledger_messages(0.0, 0, signed)
    registration = registration_message(0.0, ids, SEED, ledger.signer.verifier)
    clearing = round_clearing(rnd, ids, ub, signed, t=0.0, round_=0, horizon_start_s=0.0,
                              interval_s=3600.0, payment_rule="proportional")
    caps = {op.entity_id: float(op.import_kw[0]) for op in rnd.operations}
    loads_msg = m.LoadStates(time_s=0.0, ids=ids, bus=[b for _, b, _ in loads],
                             p_kw=[caps[i] for i in ids], q_kvar=[0.0] * len(ids),
                             demand_kw=[kw for _, _, kw in loads], cap_kw=[caps[i] for i in ids])
    return registration, update, disclosed, clearing, loads_msg, market_s


def time_audit(messages, repeat: int) -> dict:
    registration, update, disclosed, clearing, loads, _ = messages
    rows: dict[str, list[float]] = {"update": [], "clearing": [], "metering": [], "total": []}
    for _ in range(repeat):
        auditor = Auditor(registration, witness_signer(1, "bench"))
        t0 = time.perf_counter()
        findings, _ = auditor.check_update(update, disclosed)
        t1 = time.perf_counter()
        findings += auditor.check_clearing(clearing)
        t2 = time.perf_counter()
        findings += check_metering(clearing, loads, 0.0)[1]
        t3 = time.perf_counter()
        assert findings == [], findings
        for key, value in zip(rows, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            rows[key].append(value)
    return {k: statistics.median(v) for k, v in rows.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--intervals", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"auditor time per round, {args.intervals} intervals, median of {args.repeat} "
          f"(machine: nproc {os.cpu_count()})")
    print(f"{'entities':>9} {'log+bids s':>11} {'clearing s':>11} {'metering s':>11} "
          f"{'total s':>9} {'bids/s':>8}   (market round, untimed part: s)")
    for n in args.entities:
        messages = market_messages(n, args.intervals)
        figures = time_audit(messages, args.repeat)
        print(f"{n:>9} {figures['update']:>11.3f} {figures['clearing']:>11.3f} "
              f"{figures['metering']:>11.4f} {figures['total']:>9.3f} "
              f"{n / figures['update']:>8.0f}   ({messages[-1]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
