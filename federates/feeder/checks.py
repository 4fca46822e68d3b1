"""What `gridsim validate` checks of a feeder before any process starts (the component
definition's ``scenario_check``): the model compiles, its time series can drive the
scenario, and the run is not unreasonably large.

- **It compiles.** The master file and every overlay are read into a fresh OpenDSS context,
  its outputs sent to a temporary folder. An OpenDSS error becomes one line naming the file
  and the line OpenDSS names.
- **The shapes fit the mode.** In daily mode a load or PV system with a yearly shape and no
  daily one runs at its nominal value all day and night (a SMART-DS feeder: 1.1665 p.u.,
  all PV at full output at 02:00). That is refused, naming the mode parameter.
- **The size.** Steps x nodes is bounded by `MAX_NODE_STEPS`, above which results.sqlite
  grows to several gigabytes and the run takes hours; a scenario that means it says
  ``allow_long_run: true``.

Only OpenDSS is loaded here, not SciPy: the checking process goes on to load HELICS, which
must come first (`gridsim.runtime`).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from typing import Any

import opendssdirect as dss

from gridsim.feeders import FeederSource

MAX_NODE_STEPS = 20_000_000
"""Steps x nodes a run may have without ``allow_long_run``: IEEE 123 for two years at
15-minute steps, IEEE 9500 for three weeks."""

_FILE_LINE = re.compile(r'\[file: "(?P<file>[^"]*)", line: (?P<line>\d+)\]')


def check_scenario(name: str, parameters: Mapping[str, Any], feeder: FeederSource,
                   n_steps: int, allow_long_run: bool) -> list[tuple[str, str, str]]:
    """Problems as ``(file, field, message)``: the file is the model's file for an OpenDSS
    error, else "" (the scenario)."""
    ctx = dss.NewContext()
    with tempfile.TemporaryDirectory(prefix="gridsim-check-") as outputs:
        ctx.Basic.AllowChangeDir(False)
        ctx.Basic.DataPath(outputs)
        for script in (feeder.master, *feeder.scripts):
            try:
                ctx.Text.Command(f'redirect "{script}"')
            except Exception as exc:  # noqa: BLE001 -- OpenDSS's errors, and bad bytes
                return [_compile_problem(script, exc)]
        problems = []
        if parameters.get("mode") == "daily":
            problems += _yearly_only(ctx, name)
        nodes = len(ctx.Circuit.AllNodeNames())
    if nodes == 0:
        return [(str(feeder.master), "", "the model defines no circuit")]
    if n_steps * nodes > MAX_NODE_STEPS and not allow_long_run:
        problems.append(("", "duration", f"{n_steps:,} steps x {nodes:,} nodes is "
                         f"{n_steps * nodes:,} node-steps, over the {MAX_NODE_STEPS:,} a run "
                         f"may have unless the scenario says allow_long_run: true"))
    return problems


def _compile_problem(script, exc: Exception) -> tuple[str, str, str]:
    text = " ".join(str(exc).split())
    if isinstance(exc, UnicodeDecodeError):
        return str(script), "", "not a text file OpenDSS can read (not UTF-8)"
    found = _FILE_LINE.search(str(exc))
    if found:
        message = _FILE_LINE.sub("", text).strip()
        return found["file"], f"line {found['line']}", f"OpenDSS: {message}"
    return str(script), "", f"OpenDSS: {text}"


def _yearly_only(ctx, name: str) -> list[tuple[str, str, str]]:
    """Loads and PV systems with a yearly shape but no daily one (module doc)."""
    counts = {}
    for label, iface, daily in (("loads", ctx.Loads, ctx.Loads.Daily),
                                ("PV systems", ctx.PVsystems, ctx.PVsystems.daily)):
        total = stranded = 0
        more = iface.First()
        while more:
            total += 1
            yearly = iface.Yearly() if label == "loads" else iface.yearly()
            if yearly and not daily():
                stranded += 1
            more = iface.Next()
        if stranded:
            counts[label] = (stranded, total)
    if not counts:
        return []
    which = ", ".join(f"{n} of {total} {label}" for label, (n, total) in counts.items())
    return [("", f"federates.{name}.parameters.mode",
             f"{which} have a yearly shape and no daily one: in daily mode they would run "
             f"at their nominal value all day; set mode: yearly")]
