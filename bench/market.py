"""Market benchmark: clearing time by market size, and decision-guidance time per entity.

Run: ``.venv/bin/python bench/market.py [--sizes 10,100,1000] [--intervals 24]
[--repeat 5] [--seed 2024] [--battery-share 0.3] [--json OUT]``.

Entities come from `generate_entities` (fixed seed) on synthetic feeder loads of 5-100 kW;
the shortage supplies 50-80% of the demand along the day (``0.65 + 0.15 cos``). Bids are
made once for the largest market (each entity's guidance timed) and the smaller markets
take the first entities. Each market is cleared ``--repeat`` times, interleaved by size:
with the default tie-break, without it, and the certificate check alone. Medians with
min and max; the targets over 24 intervals: 1,000 entities in 0.5 s, 10,000 in 10 s
(``--sizes 10,100,1000,10000``; making 10,000 bids takes about 3.5 minutes).

Measured (2 shared cores, seed 2024; medians of three runs, each the median of 5): clear
0.009 s for 10 entities, 0.057 s for 100, 0.89 s for 1,000 (289 with a battery; 0.69 s
without the tie-break, certificate check 26 ms), against 0.013, 0.074 and 2.09 s for the
code before the staged LP, run in the same session. With ``--battery-share 0.1``: 0.20 s
(before 0.36 s); ``--battery-share 0``: 0.078 s (before 0.092 s). Other draws of 1,000
entities take 0.83-1.10 s (seeds 1-3); docs/market.md says what bounds the time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from gridsim.build import FEDERATE_ENV  # loads no NumPy

for _var, _value in FEDERATE_ENV.items():  # one BLAS thread, as in every federate process
    os.environ.setdefault(_var, _value)

import numpy as np  # noqa: E402

from gridsim.contracts.certificate import verify_certificate  # noqa: E402
from gridsim.federates.market.clearing import clear  # noqa: E402
from gridsim.federates.market.entities import (  # noqa: E402
    default_bounds,
    demand_matrix,
    generate_entities,
)
from gridsim.federates.market.guidance import guidance  # noqa: E402

TARGETS_S = {1000: 0.5, 10000: 10.0}
"""Clearing time targets by number of entities (24 intervals)."""


def make_bids(n_entities: int, n_intervals: int, seed: int, battery_share: float = 0.3):
    """Entities, bids and the guidance time of each entity (s)."""
    rng = np.random.default_rng(seed)
    loads = [(f"load{i}", f"bus{i}", float(rng.uniform(5.0, 100.0))) for i in range(n_entities)]
    entities = generate_entities(loads, n_intervals, rng, battery_share=battery_share)
    hours = np.arange(n_intervals) * 24.0 / n_intervals
    ub = default_bounds(demand_matrix(entities), 0.65 + 0.15 * np.cos(2 * np.pi * hours / 24))
    bids, seconds = [], []
    for entity, bound in zip(entities, ub):
        start = time.perf_counter()
        bids.append(guidance(entity, bound).bid)
        seconds.append(time.perf_counter() - start)
    return entities, bids, seconds


def stats(values: list[float]) -> dict:
    return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--intervals", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--battery-share", type=float, default=0.3,
                        help="share of entities with a battery (generate_entities' default)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(f"machine: nproc {os.cpu_count()}, Python {platform.python_version()}")
    entities, bids, guidance_s = make_bids(sizes[-1], args.intervals, args.seed,
                                           args.battery_share)
    coupled = np.array([e.battery is not None for e in entities])
    print(f"\ndecision guidance, {args.intervals} intervals, per entity [min .. max]:")
    guidance_stats = {}
    for label, mask in (("no battery (exact cuts)", ~coupled), ("battery (joint cuts)", coupled)):
        values = list(np.asarray(guidance_s)[mask])
        if values:
            guidance_stats[label] = stats(values) | {"entities": len(values)}
            cuts = np.median([len(b.intercept_usd) for b, m in zip(bids, mask) if m])
            print(f"  {label:26s} {len(values):5d} entities  "
                  f"{1000 * statistics.median(values):7.1f} ms  [{1000 * min(values):.1f} .. "
                  f"{1000 * max(values):.1f}]  median cuts {cuts:.0f}")
    rows: dict[int, dict[str, list[float]]] = {k: {} for k in sizes}
    certified: dict[int, bool] = {}
    for _ in range(args.repeat):
        for k in sizes:
            market = bids[:k]
            seconds, result = timed(clear, market)
            rows[k].setdefault("clear", []).append(seconds)
            rows[k].setdefault("clear without tie-break", []).append(
                timed(clear, market, tie_break=False)[0])
            seconds, check = timed(verify_certificate, market, result)
            rows[k].setdefault("verify certificate", []).append(seconds)
            certified[k] = certified.get(k, True) and check.ok and result.price_rule == "midpoint"
    print(f"\nclearing over {args.intervals} intervals, median of {args.repeat} [min .. max]:")
    print(f"  {'entities':>8s} {'batteries':>9s} {'clear':>20s} {'no tie-break':>20s} "
          f"{'certificate':>18s}  midpoint+verified")
    for k in sizes:
        cells = [f"{statistics.median(v):7.3f} s [{min(v):.2f}..{max(v):.2f}]"
                 for v in rows[k].values()]
        print(f"  {k:8d} {int(coupled[:k].sum()):9d} " + " ".join(f"{c:>20s}" for c in cells)
              + f"  {certified[k]}")
    print()
    for k in sizes:
        if k in TARGETS_S:
            took = statistics.median(rows[k]["clear"])
            print(f"target (clear {k} entities in {TARGETS_S[k]:g} s): "
                  f"{'PASS' if took <= TARGETS_S[k] else 'FAIL'} ({took:.3f} s)")
    if args.json:
        args.json.write_text(json.dumps({
            "intervals": args.intervals, "seed": args.seed, "repeat": args.repeat,
            "battery_share": args.battery_share,
            "guidance": guidance_stats, "guidance_s": guidance_s,
            "clearing": {str(k): {name: stats(v) for name, v in rows[k].items()}
                         for k in sizes},
            "certified": {str(k): v for k, v in certified.items()},
            "machine": {"nproc": os.cpu_count(), "python": platform.python_version()}},
            indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
