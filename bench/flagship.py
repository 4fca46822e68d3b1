"""Flagship benchmark: the whole stack's day (``scenarios/ieee123.yaml``), wall and CPU time.

Run: ``.venv/bin/python bench/flagship.py [--repeat 5] [--scenario PATH] [--json OUT]``.

Each repetition runs ``gridsim run`` as a child process and measures:

- wall: the run's own ``wall_s`` (timing.json: broker start to the last federate's exit)
  and the whole command, start-up included;
- CPU of every process of the run: user + system time of the ``gridsim`` process and all
  its descendants (the broker and every federate, reaped by the supervisor), from
  ``getrusage(RUSAGE_CHILDREN)`` before and after;
- each federate's own compute: ``busy_cpu_s`` in timing.json, the CPU its loop spends
  between a grant and its next request, plus ``setup_cpu_s``, its set-up before it entered
  executing mode (models, compiles); and ``process_cpu_s``, the whole process's CPU, of
  which ``import_cpu_s`` (interpreter and imports: near 0 when the supervisor forked it
  with its modules loaded) and ``connect_cpu_s`` (reading its configuration, joining
  HELICS); the rest of a process's CPU is HELICS's: waiting for grants, moving messages;
- the rest: the supervisor (its imports, the federates' modules it loads before forking
  them, watching) and the broker: all processes' CPU minus the federates'.

Medians with min and max over the repetitions. Targets (the composed-federation issue):
wall under 8 s, and CPU of all processes under 1.5 x the federates' own compute.

``--layers`` instead runs the day once on the scenario's seed and once on seed 7 with the
shortage at 10:00-13:00 (60%), each fed by ``wls`` and by ``truth``, and prints what each
layer promises (`tests/test_flagship.py` checks the same figures): the real maximum |V|,
the steps above 1.0501 p.u., the estimate's mean error over the day and in its worst hour,
meters removed, the market's saving and the auditor's findings.

``--margins 0,0.5,1,1.5,2,3`` instead runs the day once per DOPF ``voltage_margin_sigmas``,
on the scenario's seed and on seed 7 with the shortage at 10:00-13:00 (60%), and prints the
steps whose real maximum |V| is above 1.0501 p.u. and the maximum: how the default margin
was chosen (deterministic figures, one run each).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GRIDSIM = REPO / ".venv" / "bin" / "gridsim"


def cpu_of_children() -> tuple[float, float]:
    """User and system CPU seconds of every reaped descendant so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def one_run(scenario: Path, out: Path) -> dict:
    """One ``gridsim run``: its figures (module doc)."""
    user0, sys0 = cpu_of_children()
    start = time.perf_counter()
    result = subprocess.run([str(GRIDSIM), "run", str(scenario), "--out", str(out), "--quiet"],
                            capture_output=True, text=True, timeout=600)
    command_s = time.perf_counter() - start
    user1, sys1 = cpu_of_children()
    if result.returncode != 0:
        raise SystemExit(f"gridsim run failed ({result.returncode}): {result.stderr[-2000:]}")
    timing = json.loads((out / "timing.json").read_text())
    federates = timing["federates"]
    return {
        "wall_s": timing["wall_s"], "command_s": command_s,
        "cpu_user_s": user1 - user0, "cpu_system_s": sys1 - sys0,
        "cpu_s": (user1 - user0) + (sys1 - sys0),
        "own_compute_s": sum(own_compute(f) for f in federates.values()),
        "federates_cpu_s": sum(f.get("process_cpu_s", 0.0) for f in federates.values()),
        "launch": timing.get("launch", {}),
        "federates": {name: {key: f.get(key) for key in (
            "busy_cpu_s", "setup_cpu_s", "import_cpu_s", "connect_cpu_s", "process_cpu_s",
            "busy_s", "run_s")}
            for name, f in sorted(federates.items())},
    }


def own_compute(federate: dict) -> float:
    """A federate's own compute: its loop's steps and its set-up (module doc)."""
    return federate.get("busy_cpu_s", 0.0) + federate.get("setup_cpu_s", 0.0)


DAYS = {"seed 123": {}, "seed 7, shortage 10-13 h": {
    "seed": 7, "market": {"shortage_start_h": 10, "shortage_hours": 3, "supply_fraction": 0.6}}}
"""The two days the flagship's promises are checked on (`--layers`, `--margins`)."""


def day_scenario(scenario: Path, change: dict, tmp: Path, label: str, **federates) -> Path:
    """The flagship with one of `DAYS`'s changes and `federates`' parameter or type changes
    (``dopf={"voltage_margin_sigmas": 1}``, ``estimator={"type": "truth"}``)."""
    import yaml

    data = yaml.safe_load(scenario.read_text())
    data["feeder_overlays"] = [str(scenario.parent / p) for p in data.get("feeder_overlays", [])]
    data["seed"] = change.get("seed", data["seed"])
    data["federates"]["market"]["parameters"].update(change.get("market", {}))
    for name, values in federates.items():
        spec = data["federates"][name]
        if "type" in values:
            spec["type"] = values["type"]
        spec.setdefault("parameters", {}).update(
            {k: v for k, v in values.items() if k != "type"})
    path = tmp / f"{label}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_day(path: Path) -> dict:
    out = path.with_suffix("")
    subprocess.run([str(GRIDSIM), "run", str(path), "--out", str(out), "--quiet"],
                   check=True, capture_output=True, timeout=600)
    return json.loads((out / "summary.json").read_text())["federates"]


def layers(scenario: Path, tmp: Path) -> None:
    """Each layer's figures on both days, fed by wls and by truth (module doc)."""
    for n, (label, change) in enumerate(DAYS.items()):
        for estimator in ("wls", "truth"):
            parts = run_day(day_scenario(scenario, change, tmp, f"day{n}-{estimator}",
                                         estimator={"type": estimator}))
            v_max = parts["feeder"]["v_max_pu_per_step"]
            est = parts["estimator"]
            line = (f"{label}, {estimator}: max |V| {max(v_max):.4f} p.u., "
                    f"{sum(v > 1.0501 for v in v_max)} steps above 1.0501")
            if estimator == "wls":
                hourly = [sum(est["v_error_mean_pu_per_step"][h:h + 4]) / 4
                          for h in range(0, len(est["v_error_mean_pu_per_step"]), 4)]
                line += (f"; SE mean |V| error {est['v_error_mean_pu']:.5f} p.u., worst hour "
                         f"{max(hourly):.5f}, {est['removals']} meters removed; market saves "
                         f"{parts['market']['saving_usd_per_h']:.1f} $/h; "
                         f"{parts['auditor']['findings']} audit findings")
            print(line)


def margin_sweep(scenario: Path, margins: list[float], tmp: Path) -> None:
    """Steps above 1.0501 p.u. and the real maximum for each margin on two days."""
    for margin in margins:
        cells = []
        for n, (label, change) in enumerate(DAYS.items()):
            v_max = run_day(day_scenario(scenario, change, tmp, f"margin-{margin}-{n}",
                                         dopf={"voltage_margin_sigmas": margin})
                            )["feeder"]["v_max_pu_per_step"]
            cells.append(f"{label}: {sum(v > 1.0501 for v in v_max)} steps, max "
                         f"{max(v_max):.4f}")
        print(f"margin {margin:g} sigma: " + "; ".join(cells))


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scenario", type=Path, default=REPO / "scenarios" / "ieee123.yaml")
    parser.add_argument("--json", type=Path, default=None, help="write all raw numbers here")
    parser.add_argument("--margins", default=None,
                        help="comma-separated DOPF margins (sigmas) to sweep instead")
    parser.add_argument("--layers", action="store_true",
                        help="print each layer's figures on the two days instead")
    args = parser.parse_args(argv)
    if args.layers:
        with tempfile.TemporaryDirectory() as tmp:
            layers(args.scenario.resolve(), Path(tmp))
        return
    if args.margins:
        with tempfile.TemporaryDirectory() as tmp:
            margin_sweep(args.scenario.resolve(),
                         [float(x) for x in args.margins.split(",")], Path(tmp))
        return
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            runs.append(one_run(args.scenario.resolve(), Path(tmp) / f"run{i}"))
            print(f"run {i + 1}/{args.repeat}: wall {runs[-1]['wall_s']:.2f} s, "
                  f"CPU {runs[-1]['cpu_s']:.2f} s", file=sys.stderr)
    print(f"scenario {args.scenario.name}, {args.repeat} runs, "
          f"{platform.machine()} with {platform.python_version()}")
    for key, label in (("wall_s", "wall (run)"), ("command_s", "wall (command)"),
                       ("cpu_s", "CPU, all processes"), ("cpu_system_s", "  of it system"),
                       ("federates_cpu_s", "  of it federates"),
                       ("own_compute_s", "federates' own compute")):
        print(f"{label:24s} {spread([r[key] for r in runs])}")
    rest = [r["cpu_s"] - r["federates_cpu_s"] for r in runs]
    print(f"{'supervisor and broker':24s} {spread(rest)}")
    launches = {mode for r in runs for mode in r["launch"].values()}
    print(f"{'federates started by':24s} {', '.join(sorted(launches)) or 'unknown'}")
    ratio = [r["cpu_s"] / r["own_compute_s"] for r in runs]
    print(f"{'CPU / own compute':24s} {statistics.median(ratio):.2f} "
          f"(min {min(ratio):.2f}, max {max(ratio):.2f})")
    print("per federate, median CPU seconds: own compute (steps + set-up), imports, "
          "configuration and joining HELICS, the rest in HELICS, whole process; and the rest "
          "in HELICS as a share of a core over the time the federate was not computing "
          "(run_s - busy_s): what waiting costs")
    for name in runs[0]["federates"]:
        parts = [r["federates"][name] for r in runs]
        own = [own_compute(f) for f in parts]
        imports, connect, process = ([f[key] or 0.0 for f in parts] for key in (
            "import_cpu_s", "connect_cpu_s", "process_cpu_s"))
        helics = [p - o - i - c for p, o, i, c in zip(process, own, imports, connect)]
        waiting = [h / max(f["run_s"] - f["busy_s"], 1e-9) for h, f in zip(helics, parts)]
        print(f"  {name:12s} " + " ".join(f"{statistics.median(values):6.2f}" for values in (
            own, imports, connect, helics, process))
            + f"   {100 * statistics.median(waiting):5.2f} %")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
