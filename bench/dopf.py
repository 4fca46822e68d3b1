"""DOPF benchmark: solve time per algorithm on IEEE 123, the seed's 100-instance test, and a
whole DOPF step on IEEE 9500.

Run: ``.venv/bin/python bench/dopf.py [--instances N] [--seed S] [--json OUT] [--skip-9500]
[--repeat-9500 R]``.

1. IEEE 123: the operating point is the noon state of ``scenarios/ieee123-dopf.yaml`` (three
   times the bundled PV, light load, regulators at 121 V), solved by OpenDSS; the linear
   model and the problem are built exactly as the DOPF federate builds them. Time per solve
   of every registered algorithm on that problem (median of 20 solves).
2. The seed's benchmark: N instances of random changes to loads and PV (each instance scales
   every PV's availability and shifts the voltages by the linear model's response to random
   load changes, so the model has a column for every load), solved by every algorithm;
   objectives compared with ``central``'s, and iteration counts and solve times reported.
3. IEEE 9500 at noon with three times its PV (unless ``--skip-9500``): R + 1 DOPF steps as
   the federate runs them (`solve_step`: linearization, problem, solve, warm-started from
   the step before), each for a PV availability drawn 5% around noon's, for every algorithm,
   PV only and with its 18 regulators and 10 banks as discrete devices; medians of the last
   R steps (the first builds what algorithms cache, and is reported alone).

The IEEE 9500 instance. The DOPF limits the |V| of energized phase conductors outside
floating islands (`limited_nodes`): 9,427 of the 9,501 nodes. Limiting all of them made
every problem infeasible: six nodes are the ungrounded wye neutrals of the DER transformers
(conductor 4, at 0.001-0.009 p.u.), held to ``v_min`` no control can reach; and the 66 nodes
of the floating 480 V deltas behind them (voltage to ground held only by OpenDSS's anti-float
shunts) bound the solution at voltages the linear model moves by up to 0.2 p.u. With that
fixed, the PV-only problem is feasible for ``v_max`` 1.05 (nodes up to 1.081 p.u. before
control; about 140 of them above 1.05): reactive power alone brings them down. ``v_min`` is
0.9 here, not the federate's default 0.95: eight triplex secondaries sit at 0.944-0.950 p.u.
at noon, far from any PV that could raise them while the rest must come down, so with 0.95
the PV-only problem is infeasible (with taps and banks it is feasible, moving six taps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as gridsim.build.FEDERATE_ENV sets it

import numpy as np  # noqa: E402

from gridsim import feeders  # noqa: E402
from gridsim.components import load_definition  # noqa: E402
from gridsim.federates.chain import feeder_step  # noqa: E402
from gridsim.federates.dopf.adapter import (  # noqa: E402
    DOPFSettings,
    build_problem,
    operating_point,
    solve_step,
)
from gridsim.federates.dopf.algorithms import ALGORITHMS, make  # noqa: E402
from gridsim.federates.dopf.sensitivity import (  # noqa: E402
    Devices,
    DiscreteDevices,
    linearize,
)
from gridsim.federates.feeder.model import FeederModel  # noqa: E402
from gridsim.network import Network  # noqa: E402
from gridsim.wiring import load_federation  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def noon_problem():
    """The DOPF problem at noon of the ieee123-dopf scenario, as the federate builds it."""
    federation = load_federation(REPO / "scenarios" / "ieee123-dopf.yaml")
    feeder = federation.federates["feeder"].parameters
    params = federation.federates["dopf"].parameters
    source = feeders.resolve("ieee123", REPO / "scenarios", "bench",
                             extra=federation.scenario.feeder_overlays)
    model = FeederModel(source, datetime(2026, 7, 1, 12), 900, pv_scale=feeder["pv_scale"],
                        load_scale=feeder["load_scale"])
    msgs = feeder_step(model, 0.0)
    net = Network.from_topology(msgs["topology"])
    v = operating_point(net, msgs["voltages_magnitude"], msgs["voltages_angle"])
    loads = msgs["load_states"]
    linear = linearize(net, v, Devices.from_states(net, msgs["pv_states"], loads, loads.ids))
    return build_problem(linear, msgs["pv_states"], loads,
                         DOPFSettings.from_parameters(params)), linear


def instance(base, linear, rng):
    """Random changes: PV availability x U(0.6, 1.4) each, loads x U(0.7, 1.3) each."""
    pv_factor = rng.uniform(0.6, 1.4, base.n_pv)
    load_change_kw = rng.uniform(-0.3, 0.3, linear.vs.shape[1]) * 20.0
    available = base.available_kw * pv_factor
    v0 = (base.v0_pu + linear.vp @ (available - base.available_kw)
          - linear.vs @ load_change_kw)
    return base.replace(v0_pu=v0, available_kw=available)


def timing(problem, repeat: int = 20) -> dict:
    out = {}
    for name in sorted(ALGORITHMS):
        algorithm = make(name)
        algorithm.solve(problem)  # builds and caches what the algorithm caches
        times = [algorithm.solve(problem).solve_time_s for _ in range(repeat)]
        out[name] = {"median_s": statistics.median(times), "min_s": min(times),
                     "max_s": max(times)}
    return out


def ieee9500_step(repeat: int, seed: int) -> dict:
    """Time of DOPF steps on IEEE 9500 (module doc, item 3), in seconds."""
    source = feeders.resolve("ieee9500", REPO / "scenarios", "bench")
    model = FeederModel(source, datetime(2026, 7, 1, 12), 900, pv_scale=3.0)
    msgs = feeder_step(model, 0.0)
    net = Network.from_topology(msgs["topology"])
    pv, regs, caps = msgs["pv_states"], msgs["regulator_states"], msgs["capacitor_states"]
    definition = load_definition(REPO / "federates" / "dopf" / "component_definition.json")
    params = {p.port_id: p.default for p in definition.static_inputs} | {"v_min": 0.9}
    variants = {"PV only": params, "taps and banks": params | {
        "controlled_regulators": list(regs.ids), "controlled_capacitors": list(caps.ids)}}
    runs = {(variant, name): [make(name), None] for variant in variants for name in ALGORITHMS}
    rng = np.random.default_rng(seed)
    available = np.asarray(pv.available_kw)
    times: dict[str, list[float]] = {}
    statuses: dict[str, list[str]] = {}
    nodes: dict[str, list[int]] = {}
    for k in range(repeat + 1):
        next_kw = available * rng.uniform(0.95, 1.05, available.size)
        v = operating_point(net, msgs["voltages_magnitude"], msgs["voltages_angle"])
        for variant, p in variants.items():
            discrete = DiscreteDevices.from_states(net, regs, caps, p["controlled_regulators"],
                                                   p["controlled_capacitors"])
            start = time.perf_counter()
            linear = linearize(net, v, Devices.from_states(net, pv, msgs["load_states"]),
                               discrete)
            if k:
                times.setdefault(f"linearize | {variant}", []).append(
                    time.perf_counter() - start)
        for (variant, name), run in runs.items():
            start = time.perf_counter()
            step = solve_step(net, msgs, DOPFSettings.from_parameters(variants[variant]),
                              run[0], run[1], next_kw)
            elapsed = time.perf_counter() - start
            if step.solution.status == "optimal":
                run[1] = step.solution
            label = f"{name}, {variant}"
            if not k:
                times[f"{name} first step | {variant}"] = [elapsed]
                continue
            times.setdefault(f"{name} solve | {variant}", []).append(step.solve_time_s)
            times.setdefault(f"{name} step | {variant}", []).append(elapsed)
            statuses.setdefault(label, []).append(step.solution.status)
            nodes.setdefault(label, []).append(len(run[0].rows.nodes))
    return {"nodes": len(net.ids), "limited": int(linear.limited.sum()), "pv": len(pv.ids),
            "regulators": len(regs.ids), "banks": len(caps.ids),
            "v0_max_pu": float(linear.v0[linear.limited].max()),
            "v0_min_pu": float(linear.v0[linear.limited].min()), "v_min": params["v_min"],
            "v_max": params["v_max"], "steps": repeat,
            "median_s": {key: statistics.median(v) for key, v in times.items()},
            "min_s": {key: min(v) for key, v in times.items()},
            "max_s": {key: max(v) for key, v in times.items()},
            "statuses": statuses, "nodes_solved": nodes}


def seed_benchmark(base, linear, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    algorithms = {name: make(name) for name in sorted(ALGORITHMS)}
    rows = []
    for _ in range(n):
        problem = instance(base, linear, rng)
        solved = {name: alg.solve(problem) for name, alg in algorithms.items()}
        reference = solved["central"].objective
        rows.append({name: {"status": s.status, "objective": s.objective,
                            "iterations": s.iterations, "solve_time_s": s.solve_time_s,
                            "relative_gap": abs(s.objective - reference)
                            / max(abs(reference), 1e-6)}
                     for name, s in solved.items()})
    summary = {}
    for name in algorithms:
        column = [r[name] for r in rows]
        summary[name] = {
            "optimal": sum(c["status"] == "optimal" for c in column),
            "iterations_median": statistics.median(c["iterations"] for c in column),
            "iterations_max": max(c["iterations"] for c in column),
            "solve_time_median_s": statistics.median(c["solve_time_s"] for c in column),
            "relative_gap_max": max(c["relative_gap"] for c in column),
            "within_0.1pct": sum(c["relative_gap"] <= 1e-3 for c in column),
        }
    return {"instances": n, "by_algorithm": summary, "rows": rows}


def print_9500(big: dict) -> None:
    print(f"\nIEEE 9500 at noon, PV x3: {big['nodes']} nodes ({big['limited']} limited), "
          f"{big['pv']} PV, {big['regulators']} regulators, {big['banks']} banks; limited v0 "
          f"{big['v0_min_pu']:.4f} .. {big['v0_max_pu']:.4f} p.u.; limits {big['v_min']} .. "
          f"{big['v_max']} p.u.")
    variants = ("PV only", "taps and banks")
    print(f"  seconds, median of {big['steps']} steps [min .. max]; first step: the one "
          f"that builds caches\n  {'':24s}" + "".join(f"{v:>26s}" for v in variants))
    whats = ["linearize"] + [f"{name} {what}" for name in sorted(ALGORITHMS)
                             for what in ("solve", "step", "first step")]
    for what in whats:
        cells = []
        for variant in variants:
            key = f"{what} | {variant}"
            cells.append(f"{big['median_s'][key]:7.3f} [{big['min_s'][key]:.3f} .. "
                         f"{big['max_s'][key]:.3f}]")
        print(f"  {what:24s}" + "".join(f"{c:>26s}" for c in cells))
    for label, statuses in big["statuses"].items():
        counts = {s: statuses.count(s) for s in sorted(set(statuses))}
        print(f"  {label:32s} statuses {counts}, nodes solved "
              f"{min(big['nodes_solved'][label])}-{max(big['nodes_solved'][label])}")
    steps = {f"{name}, {variant}": big["median_s"][f"{name} step | {variant}"]
             for name in sorted(ALGORITHMS) for variant in variants}
    print("target (IEEE 9500 step < 2 s, median): " + ", ".join(
        f"{k}: {'PASS' if v < 2.0 else 'FAIL'}" for k, v in steps.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip-9500", action="store_true")
    parser.add_argument("--repeat-9500", type=int, default=3)
    args = parser.parse_args()
    base, linear = noon_problem()
    print(f"DOPF on IEEE 123 (scenarios/ieee123-dopf.yaml at 12:00): {base.n_node} nodes, "
          f"{base.n_pv} PV, {base.n_load} loads; v0 max {base.v0_pu.max():.4f} p.u.")
    print(f"machine: nproc {os.cpu_count()}, Python {platform.python_version()}")
    times = timing(base)
    print("\ntime per solve, median of 20 [min .. max]")
    for name, t in times.items():
        print(f"  {name:12s} {1000 * t['median_s']:8.2f} ms  [{1000 * t['min_s']:.2f} .. "
              f"{1000 * t['max_s']:.2f}]")
    result = seed_benchmark(base, linear, args.instances, args.seed)
    print(f"\nseed benchmark: {args.instances} instances of random load and PV changes")
    for name, s in result["by_algorithm"].items():
        print(f"  {name:12s} optimal {s['optimal']}/{args.instances}, iterations median "
              f"{s['iterations_median']} max {s['iterations_max']}, solve median "
              f"{1000 * s['solve_time_median_s']:.2f} ms, objective within 0.1% of central "
              f"{s['within_0.1pct']}/{args.instances} (largest gap {s['relative_gap_max']:.1e})")
    targets = {"central < 20 ms": times["central"]["median_s"] < 0.020,
               "primal-dual < 10 ms": times["primal-dual"]["median_s"] < 0.010}
    print("\ntargets (IEEE 123): " + ", ".join(
        f"{k}: {'PASS' if v else 'FAIL'}" for k, v in targets.items()))
    big = None
    if not args.skip_9500:
        big = ieee9500_step(args.repeat_9500, args.seed)
        print_9500(big)
    if args.json:
        args.json.write_text(json.dumps({"timing": times, "seed_benchmark": result,
                                         "ieee9500": big}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
