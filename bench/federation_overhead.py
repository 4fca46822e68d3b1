"""Per-step overhead of the federation against a bare OpenDSS loop, measured in one run.

The same day of a scenario (default ``scenarios/ieee123-feeder.yaml``: IEEE 123, 96 steps of
15 min) is run three ways in every repetition, in rotating order so that none always goes first:

bare loop
    A fresh Python process with opendssdirect only: compile the feeder's master file and
    overlays, ``set mode=daily stepsize=... number=1 maxcontroliter=30``, set the clock one
    step before the start, then per step ``Solve`` and read ``AllBusMagPu`` and
    ``AllBusVolts``. Timed: the step loop, and the whole process (interpreter, import, compile).
model loop
    A fresh process stepping gridsim's `FeederModel` and doing everything the feeder
    federate does per step except HELICS: solve, ``sync_network``, voltages, the statistics
    of the summary, reading every state and building every linked message with
    ``model_dump_json`` (the feeder adapter's ``step_messages``, published to a sink instead
    of HELICS). It separates gridsim's own per-step work from the co-simulation transport.
federation
    ``gridsim run SCENARIO --out TMP --quiet`` (broker, feeder, recorder processes). Read
    from ``timing.json``: ``wall_s``, ``startup_s`` and the feeder's ``stepping_s``; the
    ``gridsim run`` process's wall time is measured here. The recorded messages are then
    replayed into a fresh `RunStore` to time the recorder's SQLite work on its own.

Differences are taken within a repetition (paired) and the medians of those are reported.
The per-step voltage extremes of all three variants are compared, so a variant that computes
something else is caught.

Usage: ``.venv/bin/python bench/federation_overhead.py [--repeat N] [--warmup W]
[--scenario FILE] [--json OUT]``. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIO = REPO / "scenarios" / "ieee123-feeder.yaml"
TARGET_STARTUP_S = 1.0
TARGET_OVERHEAD_MS = 1.0
TARGET_RATIO = 5.0
"""Feeder stepping at most this many times the bare loop."""

# The bare loop's process: nothing but opendssdirect (and json to report back).
BARE_CHILD = r"""
import time
t_start = time.perf_counter()
import json, sys
import opendssdirect as dss
t_import = time.perf_counter()
a = json.loads(sys.argv[1])
dss.Basic.AllowChangeDir(False)
dss.Text.Command(f'compile "{a["master"]}"')
for overlay in a["overlays"]:
    dss.Text.Command(f'redirect "{overlay}"')
dss.Text.Command(f"set mode={a['mode']} stepsize={a['step_s']:g}s number=1 "
                 f"maxcontroliter={a['max_control_iter']}")
dss.Solution.DblHour(a["start_hour"] - a["step_s"] / 3600)
t_compiled = time.perf_counter()
mags = []
for k in range(a["n_steps"]):
    dss.Solution.Solve()
    if not dss.Solution.Converged():
        raise SystemExit(f"bare loop: no convergence at step {k}")
    mags.append(dss.Circuit.AllBusMagPu())
    volts = dss.Circuit.AllBusVolts()
t_loop = time.perf_counter()
energized = [[v for v in m if v > 0.1] for m in mags]
print(json.dumps({
    "import_s": t_import - t_start, "compile_s": t_compiled - t_import,
    "loop_s": t_loop - t_compiled,
    "v_max": [max(e) for e in energized], "v_min": [min(e) for e in energized]}))
"""

# The model loop's process: the feeder federate's per-step work with a sink for HELICS.
MODEL_CHILD = r"""
import time
t_start = time.perf_counter()
import json, sys
from pathlib import Path
from gridsim.build import RunSettings, federate_config
from gridsim.feeders import FeederSource
from gridsim import runtime  # noqa: F401 -- imports helics, as the federate does
from gridsim.federates.feeder.adapter import FeederRecord, step_messages
from gridsim.federates.feeder.model import FeederModel
from gridsim.wiring import load_federation
from datetime import datetime
t_import = time.perf_counter()
a = json.loads(sys.argv[1])
federation = load_federation(a["scenario"])
config = federate_config(federation, a["feeder"], RunSettings(run_dir=Path(a["run_dir"])))
clock, p = config["clock"], config["parameters"]


class Sink:
    # What the feeder loop uses of its Runtime, with publish = serialize only.
    def __init__(self, outputs):
        self.outputs = outputs
        self.dump_s = 0.0
        self.messages = 0
        self.bytes = 0

    def wanted(self, port):
        return self.outputs[port]["linked"]

    def publish(self, port, message):
        t = time.perf_counter()
        text = message.model_dump_json()
        self.dump_s += time.perf_counter() - t
        self.messages += 1
        self.bytes += len(text)


sink = Sink(config["outputs"])
model = FeederModel(FeederSource.from_json(config["feeder"]),
                    datetime.fromisoformat(clock["start"]), clock["step_s"], mode=p["mode"],
                    max_control_iter=p["max_control_iter"], load_scale=p["load_scale"],
                    pv_scale=p["pv_scale"])
stats = FeederRecord()
rejected = []
phase = dict(solve_s=0.0, sync_network_s=0.0, voltages_stats_s=0.0, publish_s=0.0)
t_ready = time.perf_counter()
for k in range(clock["n_steps"]):
    t = k * clock["period_s"] + clock["offset_s"]
    t0 = time.perf_counter()
    model.solve()
    t1 = time.perf_counter()
    changed = model.sync_network()
    t2 = time.perf_counter()
    v_pu = model.voltages_pu()
    stats.add(v_pu, rejected)
    t3 = time.perf_counter()
    for port, message in step_messages(model, t, v_pu, changed, sink.wanted).items():
        sink.publish(port, message)
    t4 = time.perf_counter()
    phase["solve_s"] += t1 - t0
    phase["sync_network_s"] += t2 - t1
    phase["voltages_stats_s"] += t3 - t2
    phase["publish_s"] += t4 - t3
t_loop = time.perf_counter()
phase["states_and_build_s"] = phase.pop("publish_s") - sink.dump_s
phase["model_dump_json_s"] = sink.dump_s
print(json.dumps({
    "import_s": t_import - t_start, "setup_s": t_ready - t_import, "loop_s": t_loop - t_ready,
    "phases": phase, "messages": sink.messages, "bytes": sink.bytes,
    "v_max": stats.v_max, "v_min": stats.v_min}))
"""


# -- the three variants -------------------------------------------------------------------


def run_child(code: str, args: dict) -> dict:
    """Run `code` in a fresh interpreter; its last stdout line is JSON. Adds process_wall_s."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=REPO,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child process failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


def gridsim_command() -> list[str]:
    exe = Path(sys.executable).parent / "gridsim"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from gridsim.cli.main import main; main()"]


def run_federation(scenario: Path, feeder: str, recorder: str | None, work: Path) -> dict:
    """One `gridsim run`; timing.json's figures, the process wall, the recorder replay."""
    out = work / "run"
    t0 = time.perf_counter()
    proc = subprocess.run([*gridsim_command(), "run", str(scenario), "--out", str(out),
                           "--quiet"], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"gridsim run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    timing = json.loads((out / "timing.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    feeder_part = summary["federates"][feeder]
    feeder_timing = timing["federates"][feeder]
    result = {
        "process_wall_s": wall,
        "wall_s": timing["wall_s"],
        "startup_s": timing["startup_s"],
        "stepping_s": feeder_timing["stepping_s"],
        "feeder_startup_s": feeder_timing["startup_s"],
        "feeder_run_s": feeder_timing["run_s"],
        "federates": timing["federates"],
        "v_max": feeder_part["v_max_pu_per_step"],
        "v_min": feeder_part["v_min_pu_per_step"],
    }
    if recorder:
        db = out / summary["federates"][recorder]["file"]
        result["recorder_replay"] = replay_recorder(db, work / "replay.sqlite")
    shutil.rmtree(out, ignore_errors=True)
    return result


def replay_recorder(db_path: Path, target: Path) -> dict:
    """Time the recorder's database work alone: every recorded message into a new RunStore.

    Per step, as the recorder does: one ``add`` per message, then ``commit``; ``close`` (index,
    checkpoint) is timed apart. Reading the source database is not timed.
    """
    from gridsim.federates.recorder.store import RunStore

    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    facts = dict(src.execute("SELECT key, value FROM run"))
    rows = src.execute("SELECT t.topic, t.type, m.step, m.time_s, m.payload FROM messages m "
                       "JOIN topics t USING (topic_id) ORDER BY m.rowid").fetchall()
    src.close()
    by_step: dict[int, list] = {}
    for row in rows:
        by_step.setdefault(row[2], []).append(row)
    t0 = time.perf_counter()
    store = RunStore(target, facts)
    t1 = time.perf_counter()
    for step_rows in by_step.values():
        for topic, type_name, step, time_s, payload in step_rows:
            store.add(topic, type_name, step, time_s, payload)
        store.commit()
    t2 = time.perf_counter()
    store.close()
    t3 = time.perf_counter()
    for path in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
        path.unlink(missing_ok=True)
    return {"open_s": t1 - t0, "steps_s": t2 - t1, "close_s": t3 - t2,
            "messages": len(rows), "bytes": sum(len(r[4]) for r in rows)}


# -- set-up, facts, statistics -------------------------------------------------------------


def scenario_facts(scenario: Path) -> dict:
    """What the children need: feeder files, clock, feeder parameters, federate names."""
    from gridsim.federates.feeder.model import start_hour
    from gridsim.wiring import load_federation

    federation = load_federation(scenario)
    sc = federation.scenario
    feeders = [n for n, f in federation.federates.items() if f.type == "feeder"]
    recorders = [n for n, f in federation.federates.items() if f.type == "recorder"]
    if len(feeders) != 1:
        raise SystemExit(f"{scenario}: needs exactly one feeder federate, has {len(feeders)}")
    params = federation.federates[feeders[0]].parameters
    if params.get("load_scale", 1.0) != 1.0 or params.get("pv_scale", 1.0) != 1.0:
        raise SystemExit(f"{scenario}: the bare loop does not apply load_scale/pv_scale")
    return {
        "scenario": str(scenario), "name": sc.name, "feeder_name": federation.feeder.name,
        "feeder": feeders[0], "recorder": recorders[0] if recorders else None,
        "federates": list(federation.federates),
        "master": str(federation.feeder.master),
        "overlays": [str(p) for p in federation.feeder.scripts],
        "mode": params["mode"], "max_control_iter": params["max_control_iter"],
        "step_s": sc.step_s, "n_steps": sc.n_steps,
        "start_hour": start_hour(sc.start, params["mode"]),
    }


def machine_facts() -> dict:
    import helics
    import opendssdirect

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        dss_version = opendssdirect.Basic.Version().split(" revision")[0]
    except Exception:  # noqa: BLE001 -- informational only
        dss_version = "?"
    return {
        "nproc": os.cpu_count(), "cpu_affinity": affinity,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "helics": helics.helicsGetVersion(),
        "opendssdirect": getattr(opendssdirect, "__version__", "?"),
        "dss_c_api": dss_version,
    }


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def max_abs_diff(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        return float("inf")
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


# -- the run ------------------------------------------------------------------------------


def measure(facts: dict, repeat: int, warmup: int, log) -> list[dict]:
    bare_args = {k: facts[k] for k in ("master", "overlays", "mode", "max_control_iter",
                                       "step_s", "n_steps", "start_hour")}
    variants = ["bare", "model", "federation"]
    reps = []
    with tempfile.TemporaryDirectory(prefix="gridsim-bench-") as tmp:
        work = Path(tmp)
        for i in range(warmup + repeat):
            order = variants[i % 3:] + variants[:i % 3]
            rep = {"warmup": i < warmup, "order": order}
            for variant in order:
                if variant == "bare":
                    rep["bare"] = run_child(BARE_CHILD, bare_args)
                elif variant == "model":
                    rep["model"] = run_child(MODEL_CHILD, {"scenario": facts["scenario"],
                                                           "feeder": facts["feeder"],
                                                           "run_dir": str(work)})
                else:
                    rep["federation"] = run_federation(Path(facts["scenario"]), facts["feeder"],
                                                       facts["recorder"], work)
            label = "warm-up" if rep["warmup"] else f"{i - warmup + 1}/{repeat}"
            log(f"  run {label}: bare {rep['bare']['loop_s'] * 1e3:.1f} ms, "
                f"model {rep['model']['loop_s'] * 1e3:.1f} ms, "
                f"federation stepping {rep['federation']['stepping_s'] * 1e3:.1f} ms, "
                f"wall {rep['federation']['process_wall_s']:.2f} s")
            reps.append(rep)
    return reps


def derive(reps: list[dict], n_steps: int) -> dict:
    """Per-repetition figures (paired differences) and their median/min/max."""
    per_rep: dict[str, list[float]] = {}

    def add(key, value):
        per_rep.setdefault(key, []).append(value)

    for r in (r for r in reps if not r["warmup"]):
        b, m, f = r["bare"], r["model"], r["federation"]
        add("bare_loop_s", b["loop_s"])
        add("bare_process_wall_s", b["process_wall_s"])
        add("bare_import_s", b["import_s"])
        add("bare_compile_s", b["compile_s"])
        add("model_loop_s", m["loop_s"])
        add("model_setup_s", m["setup_s"])
        for name, value in m["phases"].items():
            add(f"model_{name}", value)
        add("fed_stepping_s", f["stepping_s"])
        add("fed_startup_s", f["startup_s"])
        add("fed_wall_s", f["wall_s"])
        add("fed_process_wall_s", f["process_wall_s"])
        add("fed_after_stepping_s", f["wall_s"] - f["startup_s"] - f["stepping_s"])
        if "recorder_replay" in f:
            add("recorder_store_s", f["recorder_replay"]["steps_s"])
            add("recorder_close_s", f["recorder_replay"]["close_s"])
        add("overhead_ms", (f["stepping_s"] - b["loop_s"]) / n_steps * 1e3)
        add("model_work_ms", (m["loop_s"] - b["loop_s"]) / n_steps * 1e3)
        add("transport_ms", (f["stepping_s"] - m["loop_s"]) / n_steps * 1e3)
        add("end_to_end_ms", (f["process_wall_s"] - b["process_wall_s"]) / n_steps * 1e3)
        add("stepping_ratio", f["stepping_s"] / b["loop_s"])
    return {k: {**stats(v), "values": v} for k, v in per_rep.items()}


def physics_check(reps: list[dict]) -> float:
    """Largest per-step |v_max|/|v_min| difference between the variants, p.u."""
    worst = 0.0
    for r in reps:
        for other in ("model", "federation"):
            for key in ("v_max", "v_min"):
                worst = max(worst, max_abs_diff(r["bare"][key], r[other][key]))
    return worst


def report(facts: dict, machine: dict, d: dict, dv: float, repeat: int, warmup: int) -> bool:
    n = facts["n_steps"]
    print()
    print(f"gridsim federation overhead: {facts['name']} ({facts['feeder_name']}), {n} steps "
          f"of {facts['step_s']:g} s, federates {', '.join(facts['federates'])}")
    print(f"{repeat} repetitions (+{warmup} warm-up not counted), variants interleaved; "
          f"median [min .. max]")
    aff = machine["cpu_affinity"]
    load = machine["loadavg"]
    print(f"machine: nproc {machine['nproc']}" + (f" (usable {aff})" if aff else "")
          + (f", load avg {load[0]:.2f}" if load else "") + f"; {machine['platform']}")
    print(f"         Python {machine['python']}, HELICS {machine['helics']}, OpenDSSDirect.py "
          f"{machine['opendssdirect']} ({machine['dss_c_api']})")
    print()

    def row(label, key, per_step=False):
        s = d[key]
        extra = f"  {s['median'] / n * 1e3:7.3f} ms/step" if per_step else ""
        print(f"  {label:<46} {s['median']:8.3f} s  [{s['min']:7.3f} .. {s['max']:7.3f}]{extra}")

    print("wall times")
    row("bare OpenDSS loop (solve + 2 reads)", "bare_loop_s", True)
    row("gridsim model loop, no HELICS", "model_loop_s", True)
    row("federation: feeder stepping_s", "fed_stepping_s", True)
    row("federation: start-up (startup_s)", "fed_startup_s")
    row("federation: wall_s (timing.json)", "fed_wall_s")
    row("federation: after stepping (wall-start-step)", "fed_after_stepping_s")
    row("federation: `gridsim run` process wall", "fed_process_wall_s")
    row("bare: process wall (python+import+compile)", "bare_process_wall_s")
    row("bare: import opendssdirect", "bare_import_s")
    row("bare: compile", "bare_compile_s")
    if "recorder_store_s" in d:
        row("recorder SQLite work alone (replay)", "recorder_store_s", True)
    print()
    print("model loop per step, by phase (median ms/step)")
    phases = ["solve_s", "sync_network_s", "voltages_stats_s", "states_and_build_s",
              "model_dump_json_s"]
    print("  " + ", ".join(f"{p.removesuffix('_s')} {d['model_' + p]['median'] / n * 1e3:.3f}"
                           for p in phases))
    print()

    def ms(label, key):
        s = d[key]
        print(f"  {label:<64} {s['median']:7.3f} ms  [{s['min']:6.3f} .. {s['max']:6.3f}]")

    print("per-step overhead (paired within each repetition)")
    ms("(feeder stepping_s - bare loop) / steps", "overhead_ms")
    ms("  of which gridsim model work: (model loop - bare loop) / steps", "model_work_ms")
    ms("  of which HELICS + runtime: (stepping_s - model loop) / steps", "transport_ms")
    ms("end to end: (gridsim run wall - bare process wall) / steps", "end_to_end_ms")
    ratio = d["stepping_ratio"]
    print(f"  feeder stepping / bare loop: {ratio['median']:.1f}x "
          f"[{ratio['min']:.1f} .. {ratio['max']:.1f}]")
    print(f"physics check: per-step voltage extremes of the three variants agree to "
          f"{dv:.1e} p.u." + ("" if dv < 1e-9 else "  <-- MISMATCH"))
    print()
    startup = d["fed_startup_s"]["median"]
    overhead = d["overhead_ms"]["median"]
    ok_startup = startup <= TARGET_STARTUP_S
    ok_overhead = overhead <= TARGET_OVERHEAD_MS
    ok_ratio = ratio["median"] <= TARGET_RATIO
    print("targets (medians)")
    print(f"  start-up <= {TARGET_STARTUP_S:g} s: {startup:.3f} s  "
          f"{'PASS' if ok_startup else 'FAIL'}")
    print(f"  overhead <= {TARGET_OVERHEAD_MS:g} ms/step: {overhead:.3f} ms/step  "
          f"{'PASS' if ok_overhead else 'FAIL'}")
    print(f"  feeder stepping <= {TARGET_RATIO:g}x the bare loop: {ratio['median']:.1f}x  "
          f"{'PASS' if ok_ratio else 'FAIL'}")
    return ok_startup and ok_overhead and ok_ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="counted repetitions (default 5)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="uncounted repetitions first, to warm caches (default 1)")
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO,
                        help="scenario with one feeder federate "
                             "(default scenarios/ieee123-feeder.yaml)")
    parser.add_argument("--json", type=Path, default=None, help="write all raw numbers here")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # the report after the progress lines
    if args.repeat < 1 or args.warmup < 0:
        parser.error("--repeat must be >= 1 and --warmup >= 0")

    def log(text):
        print(text, file=sys.stderr, flush=True)

    facts = scenario_facts(args.scenario.resolve())
    machine = machine_facts()
    log(f"measuring {facts['name']}: {args.warmup} warm-up + {args.repeat} repetitions")
    try:
        reps = measure(facts, args.repeat, args.warmup, log)
    except RuntimeError as exc:
        log(f"error: {exc}")
        return 1
    derived = derive(reps, facts["n_steps"])
    dv = physics_check(reps)
    ok = report(facts, machine, derived, dv, args.repeat, args.warmup)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "scenario": facts, "machine": machine, "repeat": args.repeat,
            "warmup": args.warmup,
            "targets": {"startup_s": TARGET_STARTUP_S, "overhead_ms_per_step":
                        TARGET_OVERHEAD_MS, "stepping_ratio": TARGET_RATIO, "met": ok},
            "physics_max_abs_diff_pu": dv, "derived": derived, "runs": reps,
        }, indent=2))
        log(f"raw numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
