"""DOPF benchmark on IEEE 123: solve time per algorithm, and the seed's 100-instance test.

Run: ``.venv/bin/python bench/dopf.py [--instances N] [--seed S] [--json OUT]``.

The operating point is the noon state of ``scenarios/ieee123-dopf.yaml`` (three times the
bundled PV, light load, regulators at 121 V), solved by OpenDSS; the linear model and the
problem are built exactly as the DOPF federate builds them. Then:

1. Time per solve of every registered algorithm on that problem (median of repeated solves).
3. IEEE 9500 at noon with three times its PV (unless ``--skip-9500``): time of a whole DOPF
   step (linearization, with every regulator and bank as a discrete device, then the solve
   with and without them), median of repeated steps on small random changes of PV.
2. The seed's benchmark: N instances of random changes to loads and PV (each instance scales
   every PV's availability and shifts the voltages by the linear model's response to random
   load changes), solved by every algorithm; objectives compared with ``central``'s, and
   iteration counts and solve times reported.
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

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as in every federate process

import gridsim.federates  # noqa: E402, F401 -- loads HELICS before SciPy (see its docstring)
import numpy as np  # noqa: E402
from gridsim.federates.dopf.algorithms import ALGORITHMS, make  # noqa: E402
from gridsim.federates.dopf.federate import build_problem, operating_point  # noqa: E402
from gridsim.federates.dopf.sensitivity import Devices, linearize  # noqa: E402
from gridsim.federates.feeder.model import FeederModel  # noqa: E402

from gridsim import feeders  # noqa: E402
from gridsim.network import Network  # noqa: E402
from gridsim.offline import feeder_step  # noqa: E402
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
    linear = linearize(net, v, Devices.from_states(net, msgs["pv_states"], msgs["load_states"]))
    return build_problem(linear, msgs["pv_states"], msgs["load_states"], params), linear


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
    """Time of a DOPF step on IEEE 9500 (module doc, item 3)."""
    from gridsim.federates.dopf.discrete import DiscreteProblem, solve_discrete
    from gridsim.federates.dopf.sensitivity import DiscreteDevices

    source = feeders.resolve("ieee9500", REPO / "scenarios", "bench")
    model = FeederModel(source, datetime(2026, 7, 1, 12), 900, pv_scale=3.0)
    msgs = feeder_step(model, 0.0)
    net = Network.from_topology(msgs["topology"])
    v = operating_point(net, msgs["voltages_magnitude"], msgs["voltages_angle"])
    devices = Devices.from_states(net, msgs["pv_states"], msgs["load_states"])
    regs, caps = msgs["regulator_states"], msgs["capacitor_states"]
    discrete = DiscreteDevices.from_states(net, regs, caps, regs.ids, caps.ids)
    params = {"flexible_loads": [], "shed_max_fraction": 0.5, "v_min": 0.9, "v_max": 1.05,
              "cost_curtailment": 1.0, "cost_shedding": 10.0, "weight_reactive": 1e-4}
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {}
    statuses: dict[str, list[str]] = {}
    algorithms = {name: make(name) for name in sorted(ALGORITHMS)}
    for k in range(repeat + 1):  # the first round builds what algorithms cache
        t0 = time.perf_counter()
        linear = linearize(net, v, devices, discrete)
        t_lin = time.perf_counter() - t0
        problem = build_problem(linear, msgs["pv_states"], msgs["load_states"], params)
        problem = problem.replace(available_kw=problem.available_kw
                                  * rng.uniform(0.95, 1.05, problem.n_pv))
        mixed = DiscreteProblem(problem, linear.vt, discrete.tap_position,
                                np.maximum(discrete.tap_position - 2, -discrete.tap_limit),
                                np.minimum(discrete.tap_position + 2, discrete.tap_limit),
                                linear.vc, discrete.cap_state, linear.psub_t, linear.psub_c)
        for name, algorithm in algorithms.items():
            t0 = time.perf_counter()
            status = algorithm.solve(problem).status
            t_solve = time.perf_counter() - t0
            t0 = time.perf_counter()
            d_status = solve_discrete(mixed, algorithm).solution.status
            t_discrete = time.perf_counter() - t0
            if k == 0:
                rows.setdefault(f"{name} first solve (builds)", []).append(t_solve)
                continue
            rows.setdefault("linearize", []).append(t_lin)
            rows.setdefault(f"{name} solve", []).append(t_solve)
            rows.setdefault(f"{name} step (linearize + solve)", []).append(t_lin + t_solve)
            rows.setdefault(f"{name} step with taps and banks", []).append(t_lin + t_discrete)
            statuses.setdefault(name, []).extend([status, d_status])
    return {"nodes": len(net.ids), "pv": problem.n_pv, "regulators": discrete.n_tap,
            "banks": discrete.n_cap, "v0_max_pu": float(problem.v0_pu.max()),
            "median_s": {k: statistics.median(v) for k, v in rows.items()},
            "statuses": {k: sorted(set(v)) for k, v in statuses.items()}}


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
        print(f"\nIEEE 9500 at noon, PV x3: {big['nodes']} nodes, {big['pv']} PV, "
              f"{big['regulators']} regulators, {big['banks']} banks; v0 max "
              f"{big['v0_max_pu']:.4f} p.u.; statuses {big['statuses']}")
        print(f"  median of {args.repeat_9500} steps:")
        for name, value in big["median_s"].items():
            print(f"  {name:40s} {value:8.3f} s")
        steps = {k: v for k, v in big["median_s"].items() if "step" in k}
        print("target (IEEE 9500 step < 2 s): " + ", ".join(
            f"{k}: {'PASS' if v < 2.0 else 'FAIL'}" for k, v in steps.items()))
    if args.json:
        args.json.write_text(json.dumps({"timing": times, "seed_benchmark": result,
                                         "ieee9500": big}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
