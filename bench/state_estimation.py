"""Time per estimate and accuracy of the WLS state estimator, on the offline chain.

The feeder, sensor and estimator numerics are chained in one process without HELICS
(`gridsim.federates.chain`): the same functions the federates call, so the estimator's figures are
those of the federation minus the transport. Sensor as in ``scenarios/ieee123-se.yaml``:
pseudo-measurements of every load at 30 % error, the substation's |V|, P and Q, |V| meters
on a share of the nodes with a given sigma.

timing, IEEE 123
    The feeder stepped through a day (96 steps of 15 min from 2026-07-01 00:00; with
    ``--steps N``, N consecutive steps centred on noon, so that warm starts are those of the
    federation), sensor at 37 % / sigma 0.005 p.u., one `EstimatorChain` warm-started from
    step to step. Per estimate: ``EstimatorChain.solve_s`` (building the measurement set and
    estimating, bad-data rounds included; a network rebuild after a topology change is
    not in it and is reported apart). Repeated R times with fresh sensor and estimator
    chains on the same feeder messages and seed; median of the per-repetition figures.
timing, IEEE 9500
    One feeder snapshot (its loads are constant), the same sensor settings, 5 estimates with
    sensor seeds 0..4, warm-started in sequence, in a child process with a time limit per
    estimate (``--time-limit``, default 60 s): past it the child is stopped and the
    benchmark reports how far the estimate got. The network build, the state size, the
    number of measurements, convergence and where the time of each estimate goes
    (factorizations, bad-data rounds, observability check) are reported.
accuracy, IEEE 123
    For metered share 0, 10, 37, 100 % x sigma_v 0.001, 0.005, 0.01 p.u.: mean and max
    |V| error (p.u.) and mean angle error (degrees) over the same steps as the timing, every
    cell with the same sensor seed; errors of observable nodes against the feeder's truth,
    aggregated as the estimator federate's scoring does (mean of per-step means, max of
    per-step maxima).
|V| sigma (the accuracy the estimator publishes, `federates/wls/uncertainty.py`)
    Timing: every `VoltageUncertainty.of_estimate` call is timed, and the symbolic part
    inside it (`uncertainty._Structure`, redone when the meter plan or the topology changes)
    (timers on the classes, in this process and the IEEE 9500 child only); per estimate,
    its time is the added cost, and ``solve_s`` minus it the estimate without. Calibration,
    per accuracy cell: the median sigma, and the normalized errors (|V| error / sigma) of
    every observable node and step: their RMS (1 if sigma is right) and the share within 2
    sigma (0.954 for a normal error).

Usage: ``.venv/bin/python bench/state_estimation.py [--steps N] [--repeat R] [--json OUT]
[--skip-9500] [--time-limit S]``. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
START = datetime(2026, 7, 1)
STEP_S = 900.0
DAY_STEPS = 96
SEED = 123
SENSOR = {"metered_fraction": 0.37, "sigma_v_pu": 0.005, "pseudo_rel_error": 0.3}
COVERAGES = (0.0, 0.10, 0.37, 1.0)
SIGMAS = (0.001, 0.005, 0.01)
SEEDS_9500 = (0, 1, 2, 3, 4)
SIGMA_TIMES: list[float] = []
"""Durations of `VoltageUncertainty.of_estimate` calls in this process (`time_sigma`)..."""
STRUCTURE_TIMES: list[float] = []
"""...and of the symbolic part within them, redone when the meter plan changes."""
TARGET_123_MS = 30.0
TARGET_9500_S = 1.0
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Reported: SciPy's SuperLU solves many right-hand sides at once through the BLAS, whose
threads compete with everything else on a small machine (see bench/README.md)."""


# -- feeder, sensor, estimator -------------------------------------------------------------


def time_sigma() -> None:
    """Time every `VoltageUncertainty.of_estimate` call of this process into `SIGMA_TIMES`,
    and the symbolic part (`uncertainty._Structure`) into `STRUCTURE_TIMES` (the estimator is
    rebuilt on every topology change, so the timers go on the classes)."""
    from gridsim.federates.wls import uncertainty

    def timer(cls: type, name: str, into: list[float]) -> None:
        inner = getattr(cls, name)

        def timed(self, *args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(self, *args, **kwargs)
            finally:
                into.append(time.perf_counter() - t)

        setattr(cls, name, timed)

    timer(uncertainty.VoltageUncertainty, "of_estimate", SIGMA_TIMES)
    timer(uncertainty._Structure, "__init__", STRUCTURE_TIMES)


def normalized_errors(chain, result, feeder: dict) -> np.ndarray:
    """(|V| estimated - |V| true) / sigma per observable node; empty without sigma."""
    if result.vmag_sigma is None:
        return np.zeros(0)
    net = chain.estimator.net
    true = dict(zip(feeder["voltages_magnitude"].ids, feeder["voltages_magnitude"].values))
    v = np.abs(net.node_voltages(result.v))
    sigma = net.node_voltages(result.vmag_sigma)
    return np.array([(v[i] - true[node]) / sigma[i] for i, node in enumerate(net.ids)
                     if np.isfinite(sigma[i]) and node in true])


def window(n_steps: int) -> range:
    """N consecutive steps of the day, centred on noon (the whole day for 96)."""
    first = min(max(DAY_STEPS // 2 - n_steps // 2, 0), DAY_STEPS - n_steps)
    return range(first, first + n_steps)


def feeder_messages(name: str, steps: range, start: datetime = START) -> dict:
    """The feeder's messages at each step of `steps`, stepped from step 0 as the federate
    does (controls and taps evolve from the start of the day)."""
    from gridsim.federates.chain import feeder_step
    from gridsim.federates.feeder.model import FeederModel
    from gridsim.feeders import resolve

    t0 = time.perf_counter()
    model = FeederModel(resolve(name, Path("."), "bench"), start, STEP_S)
    t1 = time.perf_counter()
    out, topology = {}, None
    for k in range(steps.stop):
        messages = feeder_step(model, k * STEP_S, topology)
        topology = messages["topology"]
        if k in steps:
            out[k] = messages
    t2 = time.perf_counter()
    return {"messages": out, "compile_s": t1 - t0, "stepping_s": t2 - t1,
            "nodes": len(topology.ids),
            "revisions": sorted({m["topology"].revision for m in out.values()})}


def angle_errors_deg(chain, result, feeder: dict) -> np.ndarray:
    """|angle estimated - angle true| per observable node, degrees, wrapped to [0, 180]."""
    net = chain.estimator.net
    unobservable = set(net.nodes_of(result.unobservable))
    true = dict(zip(feeder["voltages_angle"].ids, feeder["voltages_angle"].values))
    est = np.degrees(np.angle(net.node_voltages(result.v)))
    pairs = [(est[i], true[node]) for i, node in enumerate(net.ids)
             if node not in unobservable and node in true]
    diff = np.array([e - t for e, t in pairs])
    return np.abs((diff + 180.0) % 360.0 - 180.0)


def run_chain(feeder: dict, sensor_params: dict, seed: int, score: bool) -> dict:
    """One sensor chain and one estimator chain over the steps of `feeder`, warm-started.

    ``solve_s`` is the chain's own figure per estimate; ``call_s`` the wall time of the
    whole `EstimatorChain.estimate` call, which also rebuilds the network model when the
    topology revision changed (``rebuilt``).
    """
    from gridsim.federates.chain import EstimatorChain, SensorChain

    sensor = SensorChain(sensor_params, seed)
    chain = EstimatorChain()
    out = {key: [] for key in ("step", "solve_s", "call_s", "rebuilt", "iterations",
                               "converged", "removed", "unobservable", "measurements",
                               "chi2_failed", "sigma_s")}
    if score:
        out.update(v_err_mean=[], v_err_max=[], angle_err_mean_deg=[], sigma_median=[],
                   z=[])
    for k, messages in feeder["messages"].items():
        measured = sensor.measure(k, messages, k * STEP_S)
        revision = chain.estimator.net.revision if chain.estimator is not None else None
        t0, calls = time.perf_counter(), len(SIGMA_TIMES)
        result = chain.estimate(messages["topology"], measured)
        out["call_s"].append(time.perf_counter() - t0)
        out["sigma_s"].append(float(sum(SIGMA_TIMES[calls:])))
        out["step"].append(k)
        out["solve_s"].append(chain.solve_s[-1])
        out["rebuilt"].append(revision != messages["topology"].revision)
        out["iterations"].append(result.iterations)
        out["converged"].append(bool(result.converged))
        out["removed"].append(list(result.removed))
        out["unobservable"].append(len(result.unobservable))
        out["measurements"].append(len(result.measurements))
        out["chi2_failed"].append(result.chi2_threshold is not None
                                  and result.objective > result.chi2_threshold)
        if score:
            dv = chain.node_errors(result, messages)
            da = angle_errors_deg(chain, result, messages)
            out["v_err_mean"].append(float(dv.mean()))
            out["v_err_max"].append(float(dv.max()))
            out["angle_err_mean_deg"].append(float(da.mean()))
            if result.vmag_sigma is not None:
                out["sigma_median"].append(float(np.nanmedian(result.vmag_sigma)))
                out["z"] += normalized_errors(chain, result, messages).tolist()
    out["states"] = chain.estimator.net.n
    return out


# -- IEEE 9500, in a child process with a time limit ---------------------------------------


def child_9500(limit_s: float) -> None:
    """The IEEE 9500 measurements; one JSON line per event on stdout (see `measure_9500`)."""
    from gridsim.federates.chain import EstimatorChain, SensorChain
    from gridsim.federates.wls.adapter import rebuild_estimator

    def emit(event: str, **data) -> None:
        print(json.dumps({"event": event, **data}), flush=True)

    feeder = feeder_messages("ieee9500", range(1), START + timedelta(hours=12))
    messages = feeder["messages"][0]
    truth_v = np.asarray(messages["voltages_magnitude"].values)
    emit("setup", compile_s=feeder["compile_s"], stepping_s=feeder["stepping_s"],
         nodes=feeder["nodes"], deenergized_nodes=int((truth_v < 0.1).sum()))
    chain = EstimatorChain()
    t0 = time.perf_counter()
    chain.estimator = rebuild_estimator(None, messages["topology"], chain.s_base_kva,
                                        chain.settings)
    net = chain.estimator.net
    emit("build", build_s=time.perf_counter() - t0, states=net.n, nodes=len(net.ids),
         zero_injection=len(net.zero_injection), slack=len(net.slack),
         floating=len(net.floating))

    est = chain.estimator
    phase: dict = {}
    started = [0.0]

    def timed(attr: str, progress: bool = False) -> None:
        inner = getattr(est, attr)

        def wrapper(*args, **kwargs):
            if attr == "solve" and "measurements" not in phase:
                phase["measurements"] = len(args[0])
            t = time.perf_counter()
            if progress:
                emit("progress", elapsed_s=t - started[0], running=attr, **phase)
            try:
                out = inner(*args, **kwargs)
                if attr == "solve":  # (x, lu, iterations, converged): each Gauss-Newton run
                    phase.setdefault("gauss_newton", []).append(
                        [time.perf_counter() - t, out[2], bool(out[3])])
                return out
            finally:
                phase[attr + "_s"] = phase.get(attr + "_s", 0.0) + time.perf_counter() - t
                phase[attr + "_n"] = phase.get(attr + "_n", 0) + 1
                if progress:
                    emit("progress", elapsed_s=time.perf_counter() - started[0], running=None,
                         **phase)

        setattr(est, attr, wrapper)  # the instance only: the class is left alone

    timed("estimate")
    timed("solve", progress=True)
    timed("_factor")
    timed("_largest_normalized_residual", progress=True)
    timed("unobservable")
    for seed in SEEDS_9500:
        measured = SensorChain(SENSOR, seed).measure(0, messages)
        phase.clear()
        emit("begin", seed=seed, limit_s=limit_s)
        started[0], calls, builds = time.perf_counter(), len(SIGMA_TIMES), len(STRUCTURE_TIMES)
        record = {"seed": seed}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = chain.estimate(messages["topology"], measured)
            except Exception as exc:  # noqa: BLE001 -- reported, the next seed goes on
                record["error"] = f"{type(exc).__name__}: {exc}"
            record["wall_s"] = time.perf_counter() - started[0]
        if "error" not in record:
            errors = chain.node_errors(result, messages)
            record.update(
                solve_s=chain.solve_s[-1], converged=bool(result.converged),
                iterations=result.iterations, removed=list(result.removed),
                unobservable=len(result.unobservable), objective=result.objective,
                chi2_threshold=result.chi2_threshold, dof=result.dof,
                measurements_final=len(result.measurements),
                v_err_mean=float(errors.mean()), v_err_max=float(errors.max()),
                sigma_method=est.uncertainty.method,
                sigma_median=float(np.nanmedian(result.vmag_sigma))
                if result.vmag_sigma is not None else None,
                sigma_max=float(np.nanmax(result.vmag_sigma))
                if result.vmag_sigma is not None else None)
        if len(SIGMA_TIMES) > calls:
            phase["sigma_s"] = float(sum(SIGMA_TIMES[calls:]))
            phase["sigma_n"] = len(SIGMA_TIMES) - calls
            phase["sigma_symbolic_s"] = float(sum(STRUCTURE_TIMES[builds:]))
        record["phases"] = dict(phase)
        record["warnings"] = sorted({f"{w.category.__name__}: {w.message} "
                                     f"({Path(w.filename).name}:{w.lineno})" for w in caught})
        emit("estimate", **record)
    emit("done")


def on_event(out: dict, kind: str, event: dict, current: int | None, log) -> int | None:
    """File one event of the IEEE 9500 child; returns the seed now being estimated."""
    if kind == "begin":
        out["progress"] = []
        log(f"  IEEE 9500: estimate with sensor seed {event['seed']} ...")
        return event["seed"]
    if kind == "progress":
        out["progress"].append(event)
        return current
    if kind == "estimate":
        event["last_progress"] = out["progress"][-1] if out["progress"] else None
        out["estimates"].append(event)
        log(f"  IEEE 9500: seed {event['seed']}: {event['wall_s']:.2f} s, "
            + (f"error {event['error']}" if "error" in event else
               f"converged {event['converged']}, {event['iterations']} iterations"))
        return None
    out[kind] = event  # setup, build
    log(f"  IEEE 9500: {kind} {event}")
    return current


def measure_9500(limit_s: float, log) -> dict:
    """Run `child_9500` and collect its events; stop it when an estimate passes the limit
    (or the set-up passes 5 minutes)."""
    with tempfile.TemporaryFile(mode="w+") as stderr:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child-9500",
                                 "--time-limit", str(limit_s)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        lines: queue.Queue = queue.Queue()

        def read() -> None:
            for text in proc.stdout:
                lines.put(text)
            lines.put(None)  # the child's stdout closed: it ended

        threading.Thread(target=read, daemon=True).start()
        out: dict = {"estimates": [], "progress": [], "limit_s": limit_s}
        deadline = time.monotonic() + 300.0
        current = None
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                what = (f"estimate with seed {current} still running after {limit_s:g} s"
                        if current is not None else
                        f"nothing from the child for {limit_s:g} s after an estimate"
                        if out["estimates"] else "set-up still running after 300 s")
                out["stopped"] = what
                log(f"  IEEE 9500: {what}; stopping the child")
                proc.kill()
                break
            if line is None:
                out["ended_early"] = True
                break
            if not line.strip().startswith("{"):
                continue
            event = json.loads(line)
            kind = event.pop("event")
            if kind == "done":
                break
            current = on_event(out, kind, event, current, log)
            if kind in ("begin", "estimate"):  # the limit runs from here
                deadline = time.monotonic() + limit_s
        proc.wait()
        stderr.seek(0)
        out["returncode"] = proc.returncode
        if proc.returncode not in (0, -9) or out.get("ended_early"):
            out["stderr_tail"] = stderr.read()[-3000:]
        if "stopped" in out:  # the estimate that did not finish
            out["unfinished"] = {"seed": current, "last_progress":
                                 out["progress"][-1] if out["progress"] else None}
    return out


# -- facts and statistics ------------------------------------------------------------------


def machine_facts() -> dict:
    import opendssdirect
    import scipy

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "nproc": os.cpu_count(), "cpu_affinity": affinity,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "scipy": scipy.__version__,
        "opendssdirect": getattr(opendssdirect, "__version__", "?"),
        "blas_threads_env": {k: os.environ[k] for k in BLAS_THREAD_VARS if k in os.environ},
    }


def stats(values: list) -> dict:
    """Median, min and max; None throughout if any value is None (nothing to measure)."""
    if any(v is None for v in values):
        return {"median": None, "min": None, "max": None, "values": values}
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


def timing_figures(run: dict) -> dict:
    """One repetition's figures, ms."""
    s = np.asarray(run["solve_s"]) * 1e3
    sig = np.asarray(run["sigma_s"]) * 1e3
    rebuild = [(c - s_) * 1e3 for c, s_, r in zip(run["call_s"], run["solve_s"],
                                                   run["rebuilt"]) if r]
    return {"median_ms": float(np.median(s)), "p90_ms": float(np.percentile(s, 90)),
            "max_ms": float(s.max()), "mean_ms": float(s.mean()),
            "first_ms": float(s[0]),
            "rest_median_ms": float(np.median(s[1:])) if len(s) > 1 else None,
            "iterations_mean": float(np.mean(run["iterations"])),
            "sigma_median_ms": float(np.median(sig)),
            "without_sigma_median_ms": float(np.median(s - sig)),
            "first_build_ms": rebuild[0], "rebuilds": len(rebuild) - 1,
            "rebuild_median_ms": float(np.median(rebuild[1:])) if len(rebuild) > 1 else 0.0,
            "call_mean_ms": float(np.mean(run["call_s"])) * 1e3,
            "not_converged": run["converged"].count(False),
            "removals": sum(len(r) for r in run["removed"]),
            "max_unobservable": max(run["unobservable"]),
            "chi2_failed": sum(run["chi2_failed"]),
            "chi2_failed_median_ms": float(np.median(s[np.asarray(run["chi2_failed"])]))
            if any(run["chi2_failed"]) else None,
            "chi2_passed_median_ms": float(np.median(s[~np.asarray(run["chi2_failed"])]))
            if not all(run["chi2_failed"]) else None}


# -- report --------------------------------------------------------------------------------


def report_machine(machine: dict, steps: range, repeat: int) -> None:
    first, last = START + timedelta(seconds=steps.start * STEP_S), \
        START + timedelta(seconds=(steps.stop - 1) * STEP_S)
    print()
    print(f"gridsim state estimation: WLS estimator on the offline chain (no HELICS); sensor "
          f"seed {SEED}")
    print(f"IEEE 123 steps: {len(steps)} consecutive of 15 min, {first:%H:%M} to {last:%H:%M} "
          f"on {first:%Y-%m-%d}" + ("" if len(steps) == DAY_STEPS else
                                   f" (steps {steps.start}..{steps.stop - 1} of the day)"))
    aff, load = machine["cpu_affinity"], machine["loadavg"]
    print(f"machine: nproc {machine['nproc']}" + (f" (usable {aff})" if aff else "")
          + (f", load avg {load[0]:.2f}" if load else "") + f"; {machine['platform']}")
    env = machine["blas_threads_env"]
    print(f"         Python {machine['python']}, NumPy {machine['numpy']}, SciPy "
          f"{machine['scipy']}, OpenDSSDirect.py {machine['opendssdirect']}; BLAS threads: "
          + (", ".join(f"{k}={v}" for k, v in env.items()) if env else "library default"))


def report_123(feeder: dict, runs: list[dict], derived: dict, repeat: int) -> None:
    n = len(runs[0]["solve_s"])
    print()
    print(f"IEEE 123 timing: {n} estimates x {repeat} repetitions; per estimate "
          f"(EstimatorChain.solve_s: measurement set + estimate); median [min .. max] of the "
          f"per-repetition figures")
    print(f"  states {runs[0]['states']}, measurements {min(runs[0]['measurements'])}.."
          f"{max(runs[0]['measurements'])} per estimate, topology revisions "
          f"{len(feeder['revisions'])} in the window")

    def row(label, key, unit="ms"):
        s = derived[key]
        if s["median"] is None:
            print(f"  {label:<62}     none")
            return
        print(f"  {label:<62} {s['median']:8.2f} {unit} [{s['min']:7.2f} .. {s['max']:7.2f}]")

    row("median", "median_ms")
    row("p90", "p90_ms")
    row("max", "max_ms")
    row("mean", "mean_ms")
    row("first estimate (cold start, from the no-load state)", "first_ms")
    row("median without the first", "rest_median_ms")
    row("iterations per estimate, mean", "iterations_mean", "  ")
    row("|V| sigma (uncertainty), added per estimate, median", "sigma_median_ms")
    row("per estimate without the |V| sigma (solve_s minus it), median",
        "without_sigma_median_ms")
    row("network build before the first estimate (not in solve_s)", "first_build_ms")
    row(f"rebuild on a topology change (x{derived['rebuilds']['median']:.0f}, not in "
        f"solve_s), median", "rebuild_median_ms")
    row("whole EstimatorChain.estimate call incl. rebuilds, mean", "call_mean_ms")
    row("estimates passing the chi-square test, median", "chi2_passed_median_ms")
    row(f"estimates failing it (x{derived['chi2_failed']['median']:.0f}: normalized "
        f"residuals), median", "chi2_failed_median_ms")
    r = runs[0]
    print(f"  not converged {r['converged'].count(False)} of {n}, meters removed "
          f"{sum(len(x) for x in r['removed'])}, max unobservable nodes "
          f"{max(r['unobservable'])} (first repetition; all repetitions compute the same)")


def describe_phases(ph: dict) -> str:
    """Where an IEEE 9500 estimate's time went (the child's instance timers)."""
    parts = [f"{ph.get('measurements', '?')} measurements"]
    if "solve_n" in ph:
        parts.append(f"{ph['solve_n']} Gauss-Newton run(s) {ph['solve_s']:.2f} s")
    if ph.get("gauss_newton"):
        dt, iterations, converged = ph["gauss_newton"][0]
        parts.append(f"the first {dt:.2f} s, {iterations} iterations, "
                     + ("converged" if converged else "NOT converged"))
    if "_factor_n" in ph:
        parts.append(f"of which {ph['_factor_n']} LU factorizations {ph['_factor_s']:.2f} s")
    if "_largest_normalized_residual_n" in ph:
        parts.append(f"{ph['_largest_normalized_residual_n']} bad-data test(s) "
                     f"{ph['_largest_normalized_residual_s']:.2f} s")
    if "unobservable_n" in ph:
        parts.append(f"observability check {ph['unobservable_s']:.3f} s")
    if "sigma_n" in ph:
        parts.append(f"|V| sigma {ph['sigma_s']:.3f} s (symbolic part "
                     f"{ph.get('sigma_symbolic_s', 0.0):.3f} s)")
    return ", ".join(parts)


def report_9500(res: dict) -> None:
    print()
    limit = res["limit_s"]
    print(f"IEEE 9500 timing: one snapshot (constant loads), sensor seeds "
          f"{', '.join(map(str, SEEDS_9500))} warm-started in sequence, limit {limit:g} s "
          f"per estimate")
    if "setup" in res:
        s = res["setup"]
        print(f"  feeder: compile {s['compile_s']:.2f} s, one power flow + messages "
              f"{s['stepping_s']:.2f} s; {s['nodes']} nodes, {s['deenergized_nodes']} with "
              f"true |V| < 0.1 p.u. (de-energized)")
    if "build" in res:
        b = res["build"]
        print(f"  network build (Network.from_topology + WLSEstimator): {b['build_s']:.3f} s; "
              f"state size {b['states']} complex states ({2 * b['states']} real) for "
              f"{b['nodes']} nodes, {b['zero_injection']} zero-injection states, "
              f"{b.get('floating', 0)} floating islands")
    for e in res["estimates"]:
        ph = e["phases"]
        if "error" in e:
            head = f"FAILED after {e['wall_s']:.2f} s: {e['error']}"
        else:
            chi2 = (f"objective {e['objective']:.0f} vs chi-square threshold "
                    f"{e['chi2_threshold']:.0f} (dof {e['dof']})"
                    if e.get("chi2_threshold") is not None else "no chi-square test")
            head = (f"{e['solve_s']:.2f} s, converged {e['converged']}, {e['iterations']} "
                    f"iterations, {len(e['removed'])} removed, {e['unobservable']} "
                    f"unobservable, |V| error mean {e['v_err_mean']:.4f} max "
                    f"{e['v_err_max']:.4f} p.u.; {chi2}")
        print(f"  seed {e['seed']}: {head}")
        build = (f", measurement set {e['solve_s'] - ph['estimate_s']:.3f} s"
                 if "error" not in e and "estimate_s" in ph else "")
        print(f"          {describe_phases(ph)}{build}")
        if "error" not in e and e.get("sigma_median") is not None:
            print(f"          |V| sigma ({e['sigma_method']}): median {e['sigma_median']:.5f}, "
                  f"max {e['sigma_max']:.5f} p.u.")
        if "error" not in e and e["removed"]:
            print(f"          removed: {', '.join(e['removed'])}")
        for w in e["warnings"]:
            print(f"          warning: {w}")
    done = [e for e in res["estimates"] if "error" not in e]
    added = [e["phases"].get("sigma_s", 0.0) for e in done]
    kept = [a - e["phases"].get("sigma_symbolic_s", 0.0) for e, a in zip(done, added)]
    if done:
        print(f"  |V| sigma added per estimate: median {statistics.median(added):.3f} s "
              f"[{min(added):.3f} .. {max(added):.3f}], each seed a new meter plan; with the "
              f"symbolic part kept (a run's plan stays) {statistics.median(kept):.3f} s "
              f"[{min(kept):.3f} .. {max(kept):.3f}]")
        print(f"  per estimate without it (solve_s minus it): median "
              f"{statistics.median([e['solve_s'] - a for e, a in zip(done, added)]):.3f} s")
    if "stopped" in res:
        print(f"  STOPPED: {res['stopped']}")
        last = (res.get("unfinished") or {}).get("last_progress")
        if last:
            running = {"solve": "a Gauss-Newton run",
                       "_largest_normalized_residual": "a bad-data test"}.get(last["running"])
            print(f"          last report {last['elapsed_s']:.2f} s into the estimate: "
                  f"{describe_phases(last)}"
                  + (f"; then started {running}, which did not finish" if running else ""))
    if res.get("stderr_tail"):
        print(f"  child process ended without finishing (exit code {res['returncode']}):")
        print("    " + res["stderr_tail"].strip().replace("\n", "\n    "))


def report_accuracy(grid: dict, n_steps: int) -> None:
    print()
    print(f"IEEE 123 accuracy over the {n_steps} steps (sensor seed {SEED} in every cell): "
          f"|V| error, p.u., mean (max)")
    head = "".join(f"{f'sigma {s:g}':>22}" for s in SIGMAS)
    print(f"  {'metered':<10}{head}")
    for c in COVERAGES:
        cells = "".join(f"{grid[(c, s)]['v_err_mean']:>11.5f} ({grid[(c, s)]['v_err_max']:.4f})"
                        for s in SIGMAS)
        print(f"  {f'{c:.0%}':<10}{cells}")
    print("  mean angle error, degrees")
    for c in COVERAGES:
        cells = "".join(f"{grid[(c, s)]['angle_err_mean_deg']:>22.4f}" for s in SIGMAS)
        print(f"  {f'{c:.0%}':<10}{cells}")
    print("  |V| sigma published: median p.u. / RMS of error/sigma / share within 2 sigma")
    print(f"  {'':<10}" + "".join(f"{f'sigma {s:g}':>24}" for s in SIGMAS))

    def calibration(g: dict) -> str:
        if g["sigma_median"] is None:
            return "none"
        return f"{g['sigma_median']:.5f} / {g['z_rms']:.2f} / {g['z_within_2']:.1%}"

    for c in COVERAGES:
        cells = "".join(f"{calibration(grid[(c, s)]):>24}" for s in SIGMAS)
        print(f"  {f'{c:.0%}':<10}{cells}")
    print("  not converged / meters removed / max unobservable nodes / iterations mean")
    for c in COVERAGES:
        cells = "".join(
            f"{'{} / {} / {} / {:.1f}'.format(g['not_converged'], g['removals'], g['max_unobservable'], g['iterations_mean']):>22}"  # noqa: E501
            for g in (grid[(c, s)] for s in SIGMAS))
        print(f"  {f'{c:.0%}':<10}{cells}")


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=DAY_STEPS,
                        help="consecutive IEEE 123 steps centred on noon (default 96: the day)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="repetitions of the IEEE 123 timing (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="write all raw numbers here")
    parser.add_argument("--skip-9500", action="store_true", help="leave out IEEE 9500")
    parser.add_argument("--time-limit", type=float, default=60.0,
                        help="seconds one IEEE 9500 estimate may take (default 60)")
    parser.add_argument("--child-9500", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    time_sigma()
    if args.child_9500:
        child_9500(args.time_limit)
        return 0
    sys.stdout.reconfigure(line_buffering=True)
    if not 1 <= args.steps <= DAY_STEPS or args.repeat < 1:
        parser.error(f"--steps must be in 1..{DAY_STEPS} and --repeat >= 1")

    def log(text):
        print(text, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    machine = machine_facts()
    steps = window(args.steps)
    log(f"IEEE 123: stepping the feeder through steps {steps.start}..{steps.stop - 1}")
    feeder = feeder_messages("ieee123", steps)

    runs = []
    for i in range(args.repeat):
        runs.append(run_chain(feeder, SENSOR, SEED, score=False))
        f = timing_figures(runs[-1])
        log(f"  timing {i + 1}/{args.repeat}: median {f['median_ms']:.2f} ms, max "
            f"{f['max_ms']:.2f} ms")
    per_rep = [timing_figures(r) for r in runs]
    derived = {k: stats([f[k] for f in per_rep]) for k in per_rep[0]}

    res_9500 = None
    if not args.skip_9500:
        log("IEEE 9500: child process")
        res_9500 = measure_9500(args.time_limit, log)

    grid, grid_runs = {}, {}
    for c in COVERAGES:
        for s in SIGMAS:
            run = run_chain(feeder, {**SENSOR, "metered_fraction": c, "sigma_v_pu": s},
                            SEED, score=True)
            grid_runs[f"{c}/{s}"] = run
            grid[(c, s)] = {
                "v_err_mean": float(np.mean(run["v_err_mean"])),
                "v_err_max": float(np.max(run["v_err_max"])),
                "angle_err_mean_deg": float(np.mean(run["angle_err_mean_deg"])),
                "not_converged": run["converged"].count(False),
                "removals": sum(len(r) for r in run["removed"]),
                "max_unobservable": max(run["unobservable"]),
                "iterations_mean": float(np.mean(run["iterations"])),
                "solve_median_ms": float(np.median(run["solve_s"])) * 1e3,
                "sigma_median": float(np.median(run["sigma_median"]))
                if run["sigma_median"] else None,
                "z_rms": float(np.sqrt(np.mean(np.square(run["z"])))) if run["z"] else None,
                "z_within_2": float(np.mean(np.abs(run["z"]) <= 2.0)) if run["z"] else None}
            log(f"  accuracy {c:.0%} / sigma {s:g}: mean {grid[(c, s)]['v_err_mean']:.5f} "
                f"max {grid[(c, s)]['v_err_max']:.4f} p.u.")

    report_machine(machine, steps, args.repeat)
    report_123(feeder, runs, derived, args.repeat)
    if res_9500 is not None:
        report_9500(res_9500)
    report_accuracy(grid, len(steps))

    med_123 = derived["median_ms"]["median"]
    conv_123 = all(all(r["converged"]) for r in runs)
    ok_123 = med_123 < TARGET_123_MS and conv_123
    print()
    print("targets (medians; an estimate that failed or did not converge fails its target)")
    print(f"  IEEE 123 per estimate < {TARGET_123_MS:g} ms: {med_123:.2f} ms"
          + ("" if conv_123 else " (not every estimate converged)")
          + f"  {'PASS' if ok_123 else 'FAIL'}")
    ok_9500 = None
    if res_9500 is not None:
        done = [e for e in res_9500["estimates"] if "error" not in e]
        good = [e for e in done if e["converged"]]
        complete = len(good) == len(SEEDS_9500)
        med = statistics.median([e["solve_s"] for e in done]) if done else None
        ok_9500 = complete and med is not None and med < TARGET_9500_S
        shown = f"{med:.2f} s" if med is not None else "no estimate finished"
        print(f"  IEEE 9500 per estimate < {TARGET_9500_S:g} s: {shown} ({len(done)} of "
              f"{len(SEEDS_9500)} finished, {len(good)} converged"
              + (", stopped at the time limit" if "stopped" in res_9500 else "")
              + f")  {'PASS' if ok_9500 else 'FAIL'}")
    else:
        print("  IEEE 9500: skipped (--skip-9500)")
    wall = time.perf_counter() - t_start
    print(f"benchmark wall time {wall:.0f} s")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": machine, "seed": SEED, "sensor": SENSOR, "steps": list(steps),
            "repeat": args.repeat, "feeder_123": {k: v for k, v in feeder.items()
                                                   if k != "messages"},
            "targets": {"ieee123_median_ms": TARGET_123_MS, "ieee123_met": ok_123,
                        "ieee9500_median_s": TARGET_9500_S, "ieee9500_met": ok_9500},
            "timing_123": {"derived": derived, "runs": runs},
            "ieee9500": res_9500,
            "accuracy_123": {"cells": [{"coverage": c, "sigma_v_pu": s, **grid[(c, s)]}
                                       for c in COVERAGES for s in SIGMAS],
                             "runs": grid_runs},
            "wall_s": wall,
        }, indent=2))
        log(f"raw numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
