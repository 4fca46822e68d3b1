"""Our DOPF algorithms against distopf's LinDistFlow DOPF on IEEE 123, midday steps.

Run: ``.venv/bin/python bench/dopf_peer.py [--hours 10 11 12 13 14] [--repeat 5]
[--iterations 3] [--weight-reactive W] [--json OUT]``.

Each step is ``scenarios/ieee123-dopf.yaml`` at that hour (three times the bundled PV,
light load, regulators at 121 V), solved by OpenDSS; every algorithm's setpoints are
applied to OpenDSS and the same step solved again (`distopf_peer.StepReplay`):
"real max" is OpenDSS's largest |V| with them. Rows:

- ``central`` and ``primal-dual`` in the closed loop: linearized at the operating point,
  solved, applied, re-linearized at the result, ``--iterations`` times, the objective's
  reactive reference held at the step's output (so every iteration solves one problem);
  ``central 1x`` is the first of those solves alone;
- ``distopf``: one solve of distopf's LinDistFlow model of the same circuit
  (`distopf_peer`; it is no linearization at the operating point, so it has
  nothing to re-linearize).

Times are medians of ``--repeat`` runs: "prepare" is the linearization and problem (ours)
or reading the circuit and building distopf's model; "solve" is the algorithm's solve of
the last problem (ours, cvxpy problem cached as in the federate) or distopf's
``cvxpy_solve`` (cvxpy problem built anew from distopf's matrices, then solved). "cost" is
the objective both minimize (`PeerSettings.cost`); "bias" is by how much distopf's voltages
exceed OpenDSS's without control at most.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as gridsim.build.FEDERATE_ENV sets it

import distopf_peer as peer  # noqa: E402 -- beside this script
import numpy as np  # noqa: E402

from gridsim import feeders  # noqa: E402
from gridsim.federates.dopf.algorithms import make  # noqa: E402
from gridsim.federates.feeder.model import FeederModel  # noqa: E402
from gridsim.wiring import load_federation  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def v_max_of(messages: dict) -> float:
    return float(max(messages["voltages_magnitude"].values))


def closed_loop(replay: peer.StepReplay, params: dict, name: str, iterations: int,
                repeat: int) -> list[dict]:
    """Rows for the first solve and the last one of the closed loop."""
    algorithm, messages = make(name), replay.restore()
    q_ref = np.asarray(replay.first["pv_states"].q_kvar)
    settings = peer.PeerSettings.from_parameters(params)
    rows = []
    for iteration in range(1, iterations + 1):
        start = time.perf_counter()
        pv = messages["pv_states"]
        problem = peer.held_reference_problem(messages, params, q_ref)
        prepare_s = time.perf_counter() - start
        solution = algorithm.solve(problem)
        messages = replay.apply(list(pv.ids), problem.available_kw - solution.curt, solution.q)
        if iteration in (1, iterations):
            times = [algorithm.solve(problem).solve_time_s for _ in range(repeat)]
            rows.append({
                "algorithm": name if iteration > 1 or iterations == 1 else f"{name} 1x",
                "iterations": iteration, "status": solution.status,
                "prepare_ms": 1000 * prepare_s, "solve_ms": 1000 * statistics.median(times),
                "curtailment_kw": float(solution.curt.sum()),
                "q_abs_kvar": float(np.abs(solution.q).sum()),
                "cost": settings.cost(solution.curt, solution.q, q_ref),
                "predicted_max_pu": float(problem.voltages_pu(solution.x).max()),
                "real_max_pu": v_max_of(messages)})
    return rows


def distopf_row(replay: peer.StepReplay, params: dict, repeat: int) -> dict:
    settings = peer.PeerSettings.from_parameters(params)
    runs = [peer.solve_at(replay, settings) for _ in range(repeat)]
    solution, messages = runs[-1]
    return {"algorithm": "distopf", "iterations": 1, "status": solution.status,
            "prepare_ms": 1000 * statistics.median(s.build_time_s for s, _ in runs),
            "solve_ms": 1000 * statistics.median(s.solve_time_s for s, _ in runs),
            "curtailment_kw": float(solution.curt_kw.sum()),
            "q_abs_kvar": float(np.abs(solution.q_kvar).sum()), "cost": solution.objective,
            "predicted_max_pu": max(solution.v_pu.values(), default=float("nan")),
            "real_max_pu": v_max_of(messages), "opened": solution.opened}


def step(hour: float, args, federation, source) -> dict:
    feeder = federation.federates["feeder"].parameters
    params = dict(federation.federates["dopf"].parameters)
    if args.weight_reactive is not None:
        params["weight_reactive"] = args.weight_reactive
    start = datetime(2026, 7, 1, int(hour), int(round(60 * (hour % 1))))
    model = FeederModel(source, start, 900, pv_scale=feeder["pv_scale"],
                        load_scale=feeder["load_scale"])
    replay = peer.StepReplay(model)
    _, _, v_distopf = peer.power_flow(replay.restore()["pv_states"])
    v_dss = dict(zip(replay.first["voltages_magnitude"].ids,
                     replay.first["voltages_magnitude"].values))
    rows = closed_loop(replay, params, "central", args.iterations, args.repeat)
    rows += closed_loop(replay, params, "primal-dual", args.iterations, args.repeat)[-1:]
    rows.append(distopf_row(replay, params, args.repeat))
    return {"time": start.strftime("%H:%M"), "no_control_max_pu": v_max_of(replay.first),
            "bias_pu": max(v_distopf[n] - v_dss[n] for n in v_distopf), "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[10, 11, 12, 13, 14])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--weight-reactive", type=float, default=None,
                        help="override the scenario's weight_reactive")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    federation = load_federation(REPO / "scenarios" / "ieee123-dopf.yaml")
    source = feeders.resolve("ieee123", REPO / "scenarios", "bench",
                             extra=federation.scenario.feeder_overlays)
    params = federation.federates["dopf"].parameters
    weight = params["weight_reactive"] if args.weight_reactive is None else args.weight_reactive
    print(f"IEEE 123, scenarios/ieee123-dopf.yaml; v_max {params['v_max']}, weight_reactive "
          f"{weight}, cost_curtailment {params['cost_curtailment']}; times: median of "
          f"{args.repeat}; nproc {os.cpu_count()}")
    header = (f"{'time':5s} {'algorithm':13s} {'it':>2s} {'prepare ms':>10s} {'solve ms':>8s} "
              f"{'curt kW':>8s} {'|q| kvar':>8s} {'cost':>8s} {'pred max':>8s} {'real max':>8s}")
    print(header)
    print("-" * len(header))
    steps = []
    for hour in args.hours:
        result = step(hour, args, federation, source)
        steps.append(result)
        print(f"{result['time']:5s} {'no control':13s} {'':>2s} {'':>10s} {'':>8s} {'':>8s} "
              f"{'':>8s} {'':>8s} {'':>8s} {result['no_control_max_pu']:8.4f}   "
              f"(distopf bias {result['bias_pu']:+.4f})")
        for r in result["rows"]:
            flag = "" if r["status"] == "optimal" else f"  {r['status']}"
            print(f"{'':5s} {r['algorithm']:13s} {r['iterations']:2d} {r['prepare_ms']:10.1f} "
                  f"{r['solve_ms']:8.1f} {r['curtailment_kw']:8.1f} {r['q_abs_kvar']:8.1f} "
                  f"{r['cost']:8.3f} {r['predicted_max_pu']:8.4f} {r['real_max_pu']:8.4f}{flag}")
    if args.json:
        args.json.write_text(json.dumps(steps, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
