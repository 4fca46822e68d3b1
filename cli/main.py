"""The ``gridsim`` command: run, build, validate, list, export, audit, schema.

Exit codes: 0 success, 1 the federation failed (the message names the federate), 2 bad
input (one line naming the file and the field; never a traceback).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import click

from gridsim import __version__
from gridsim.build import FEDERATE_ENV, RunSettings, runner_json, write_build
from gridsim.cli.report import describe_definition, summary_lines
from gridsim.components import COMBINE_RULES, QUANTITIES, builtin_types, load_definition
from gridsim.errors import InputError
from gridsim.feeders import bundled_names
from gridsim.messages import json_schema
from gridsim.supervisor import RunResult, run_federation
from gridsim.wiring import Federation, load_federation

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"


def _bad_input(exc: InputError) -> NoReturn:
    """Bad input: its one line on stderr, exit code 2."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


def _load(path: str, settings: tuple[str, ...] = (), seed: str | None = None) -> Federation:
    """Load and validate (with ``--set`` and ``--seed``), turning bad input into exit code 2
    with one line."""
    try:
        return load_federation(path, _settings(settings, seed))
    except InputError as exc:
        _bad_input(exc)


def _settings(settings: tuple[str, ...], seed: str | None) -> list[str]:
    """``--set`` settings in order, then ``--seed`` as ``seed=N``."""
    return [*settings, *([f"seed={seed}"] if seed is not None else [])]


def setting_options(command):
    """``--set FIELD=VALUE`` (repeatable) and ``--seed N``, for commands that load a
    scenario."""
    command = click.option(
        "--seed", default=None, metavar="N",
        help="The scenario's seed (same as --set seed=N).")(
        command)
    return click.option(
        "--set", "settings", multiple=True, metavar="FIELD=VALUE",
        help="Change one field of the scenario, e.g. federates.feeder.parameters.pv_scale=2 "
             "(repeatable; VALUE is read as YAML; validated like the file).")(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gridsim")
def cli() -> None:
    """gridsim: HELICS co-simulation of power distribution grids."""


@cli.command()
@click.argument("scenario")
@click.option("--out", "out", default=None,
              help="Run directory (default: runs/NAME-TIMESTAMP-PID). It must be new or empty.")
@click.option("--force", is_flag=True,
              help="Empty --out first if it holds an earlier run.")
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="Wall-clock limit in seconds (default: the scenario's, else 2 s a step).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@setting_options
def run(scenario: str, out: str | None, force: bool, timeout_s: float | None,
        quiet: bool, settings: tuple[str, ...], seed: str | None) -> None:
    """Run SCENARIO (YAML or wiring JSON) as a HELICS federation."""
    # Before anything loads NumPy: forked federates inherit this process's BLAS threads.
    os.environ.update({k: v for k, v in FEDERATE_ENV.items() if k not in os.environ})
    federation = _load(scenario, settings, seed)
    name = federation.scenario.name
    run_dir = Path(out) if out else Path("runs") / (
        f"{name}-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}")
    try:
        prepare_run_dir(run_dir, force)
    except InputError as exc:
        _bad_input(exc)
    (run_dir / "settings.json").write_text(json.dumps(
        {"scenario": scenario, "set": _settings(settings, seed)}, indent=2) + "\n")
    bar = None if quiet else _ProgressBar()
    click.echo(f"gridsim {__version__}: {name} on {federation.feeder.name}, "
               f"{federation.scenario.n_steps} steps, {len(federation.federates)} federates "
               f"-> {run_dir}", err=True)
    result = run_federation(federation, run_dir, timeout_s=timeout_s, progress=bar)
    if bar:
        if result.ok:
            bar(federation.scenario.duration_s, federation.scenario.duration_s)
        bar.close()
    _report(federation, result)
    sys.exit(0 if result.ok else 1)


RUN_MARKERS = ("system.json", "summary.json", "runner.json", "settings.json")
"""Files that show a directory holds an earlier run (`--force` empties only those)."""


def prepare_run_dir(path: Path, force: bool) -> None:
    """Make `path` a new, empty, writable run directory, or say in one line why not.

    An earlier run's files left beside a new run's would be read as the new run's, so a
    directory that is not empty is refused; ``--force`` empties it, but only if it holds
    an earlier run (a mistyped --out must not empty someone's folder)."""
    where = str(path)
    if path.exists() and not path.is_dir():
        raise InputError(where, "--out", "exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise InputError(where, "--out", "is not empty (an earlier run?); choose another "
                                             "directory, or pass --force to empty it")
        if not any((path / marker).exists() for marker in RUN_MARKERS):
            raise InputError(where, "--out", "is not empty and holds no earlier run; "
                                             "--force empties run directories only")
    try:
        if path.is_dir() and force:
            for entry in path.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(where, "--out", f"cannot write there: {exc.strerror}") from None


def _report(federation: Federation, result: RunResult) -> None:
    if result.ok:
        startup = f"{result.startup_s:.2f} s" if result.startup_s is not None else "n/a"
        click.echo(f"ok: {result.summary['n_steps']} steps in {result.wall_s:.2f} s "
                   f"(start-up {startup}); results in {result.run_dir}", err=True)
        for line in summary_lines(federation, result.summary):
            click.echo(f"    {line}", err=True)
        return
    who = f"federate '{result.failed}'" if result.failed else "run"
    click.echo(f"error: {who} failed: {result.reason}", err=True)
    if result.log_tail:
        click.echo(f"--- last lines of logs/{result.failed}.log ---", err=True)
        click.echo(result.log_tail, err=True)
    click.echo(f"recorded data so far is in {result.run_dir}", err=True)


class _ProgressBar:
    """Progress in simulated time: redrawn in place on a terminal, every 10% otherwise."""

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self.last = -1
        self.last_draw = 0.0

    def __call__(self, t: float, duration: float) -> None:
        t = max(t, 0.0)
        frac = min(1.0, (t + 1e-9) / duration) if duration else 0.0
        tenth = int(frac * 10)
        now = time.monotonic()
        if self.tty and now - self.last_draw > 0.1:
            filled = int(frac * 30)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] "
                             f"{t / 3600:6.2f} h / {duration / 3600:.2f} h")
            sys.stderr.flush()
            self.last_draw = now
        elif not self.tty and tenth > self.last:
            sys.stderr.write(f"  {tenth * 10:3d}% ({t / 3600:.2f} h of {duration / 3600:.2f} h)\n")
            self.last = tenth

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


@cli.command()
@click.argument("runs", nargs=-1)
@click.option("--tolerance", type=float, default=None,
              help="Exit 1 if a figure differs by more than this x max(1, |first run's|) "
                   "(0: exactly equal), or a stream by more than this.")
@click.option("--stream", "streams", multiple=True, metavar="TOPIC[:FIELD]",
              help="Also compare a recorded stream step by step, e.g. "
                   "feeder/voltages_magnitude (repeatable).")
@click.option("--all", "show_all", is_flag=True, help="List every figure, equal or not.")
def compare(runs: tuple[str, ...], tolerance: float | None, streams: tuple[str, ...],
            show_all: bool) -> None:
    """Compare RUNS (run directories, or summary.json files such as a stored golden one):
    their figures side by side, the first run against the others."""
    from gridsim import compare as cmp

    try:
        if len(runs) < 2:
            raise InputError("compare", "RUNS", "give at least two runs to compare")
        rows = cmp.compare([cmp.load_summary(Path(r)) for r in runs])
        stream_rows = {}
        for spec in streams:
            topic, _, field = spec.partition(":")
            stream_rows[spec] = cmp.stream_differences(
                [Path(r) / "results.sqlite" for r in runs], topic, field or "values")
    except InputError as exc:
        _bad_input(exc)
    shown = [r for r in rows if show_all or r.deviation > 0]
    header = ["figure", *[Path(r).name or r for r in runs], "deviation"]
    table = [[r.path, *[cmp.show(v) for v in r.values], f"{r.deviation:.3g}"] for r in shown]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table)]
    for line in [header, *table]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())
    differing = [r for r in rows if r.deviation > 0]
    click.echo(f"{len(differing)} of {len(rows)} figures differ")
    drift = [r.path for r in rows if tolerance is not None and r.deviation > tolerance]
    for spec, per_step in stream_rows.items():
        worst = max(per_step, key=lambda s: s[1], default=(None, 0.0, ""))
        click.echo(f"{spec}: largest difference {worst[1]:.6g} at step {worst[0]} "
                   f"({worst[2] or '-'}); {sum(gap > 0 for _, gap, _ in per_step)} of "
                   f"{len(per_step)} steps differ")
        if tolerance is not None and worst[1] > tolerance:
            drift.append(spec)
    if drift:
        click.echo(f"drift beyond {tolerance:g}: {', '.join(drift)}", err=True)
        sys.exit(1)


@cli.command()
@click.argument("scenario")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Folder for system.json, runner.json and federates/*.json.")
@setting_options
def build(scenario: str, out: str, settings: tuple[str, ...], seed: str | None) -> None:
    """Write the federation's wiring, runner and every federate's HELICS config."""
    federation = _load(scenario, settings, seed)
    written = write_build(federation, Path(out), RunSettings(run_dir=Path(".")))
    for path in written.values():
        click.echo(str(path))


@cli.command()
@click.argument("scenario")
@setting_options
def validate(scenario: str, settings: tuple[str, ...], seed: str | None) -> None:
    """Check SCENARIO against the component definitions; exit 2 on the first problem."""
    federation = _load(scenario, settings, seed)
    click.echo(f"ok: {federation.scenario.name}: {len(federation.federates)} federates, "
               f"{len(federation.links)} links ({len(federation.defaulted_links)} defaulted), "
               f"{federation.scenario.n_steps} steps")
    for link in federation.defaulted_links:
        click.echo(f"default link: {link}")


@cli.command("list")
def list_() -> None:
    """Federate types with their ports and parameters; port meanings; bundled feeders and
    scenarios."""
    for type_name, path in builtin_types().items():
        definition = load_definition(path)
        click.echo(f"{type_name} ({definition.version}): {definition.description}")
        for line in describe_definition(definition):
            click.echo(f"    {line}")
    click.echo("port meanings (quantity; ports without one link by type alone):")
    for quantity, meaning in QUANTITIES.items():
        click.echo(f"    {quantity}: {meaning}")
    click.echo("combine rules (inputs that take several links):")
    for rule, meaning in COMBINE_RULES.items():
        click.echo(f"    {rule}: {meaning}")
    click.echo(f"feeders: {', '.join(bundled_names())}")
    if SCENARIOS_DIR.is_dir():
        names = sorted(p.name for p in SCENARIOS_DIR.glob("*.yaml"))
        click.echo(f"scenarios ({SCENARIOS_DIR}): {', '.join(names)}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv"]), default="csv")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: RUN_DIR/export).")
def export(run_dir: str, fmt: str, out: str | None) -> None:
    """Flatten a run's results.sqlite into one CSV per recorded array."""
    from gridsim.federates.recorder.store import export_csv

    db = Path(run_dir) / "results.sqlite"
    if not db.is_file():
        click.echo(f"error: {db}: no results database in this run directory", err=True)
        sys.exit(2)
    try:
        written = export_csv(db, Path(out) if out else Path(run_dir) / "export")
    except sqlite3.DatabaseError as exc:
        click.echo(f"error: {db}: not a readable results database ({exc})", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"error: {out or run_dir}: --out: cannot write there: {exc.strerror}",
                   err=True)
        sys.exit(2)
    for path in written:
        click.echo(str(path))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
def audit(run_dir: str) -> None:
    """Re-verify a run's market ledger, rounds and metering offline (exit 1 on findings)."""
    from gridsim.federates.auditor.replay import audit_run

    try:
        result = audit_run(Path(run_dir))
    except InputError as exc:
        _bad_input(exc)
    for code, where, detail in result.findings:
        click.echo(f"{code}\t{where}\t{detail}")
    click.echo(f"{len(result.findings)} findings; {result.rounds} rounds, {result.checks} "
               f"checks, {result.metered_steps} metered steps", err=True)
    sys.exit(1 if result.findings else 0)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of every message type."""
    click.echo(json.dumps(json_schema(), indent=2))


@cli.command()
@click.argument("scenario")
@click.option("--run-dir", default="runs/helics-run", show_default=True)
def runner(scenario: str, run_dir: str) -> None:
    """Print a helics-run runner for SCENARIO, with paths as given (relative to here)."""
    federation = _load(scenario)
    click.echo(json.dumps(runner_json(federation, scenario, RunSettings(Path(run_dir))),
                          indent=2))


def main() -> None:
    """Console-script entry point."""
    cli()
