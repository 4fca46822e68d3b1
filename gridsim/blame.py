"""Which federate made a run fail: the rules the supervisor names it by.

One failing federate takes the others down with it (a HELICS global error), and they exit
in any order, so the first process seen to exit is not always the cause. The evidence:

- exit codes: a federate killed by a signal was stopped from outside: it is the one;
- failure records: a gridsim federate that fails writes ``parts/NAME.failed.json`` (the
  time, the error) before it spreads the error (`gridsim.build.FAILURE_SUFFIX`);
- joining: HELICS lets no federate into executing mode before all have asked for it, and a
  gridsim federate's first status line (simulated time 0) comes right after. Until one
  has arrived the federation has not formed, and a federate that exits then, with any
  code, left before it joined: the others were waiting for it. It is named, even when a
  waiting federate then failed with a record of its own, and a clean exit (code 0) before
  joining fails the run at once instead of leaving the others waiting for the watchdog.

Formation is watched only when a federate that is known to send status lines takes part
(a periodic built-in type); a user's federate need not send any, so a federation of those
alone keeps the older rules.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gridsim.build import FAILURE_SUFFIX

if TYPE_CHECKING:
    from gridsim.supervisor import _Child

JOIN_GRACE_S = 1.0
"""How long a clean exit before joining waits for a status line that may be on its way
(the federation formed, and the exit was the federate's normal end) before it fails the
run."""


def formed(federates: list[_Child]) -> bool:
    """Whether any federate has reported a simulated time: every federate has joined."""
    return any(c.sim_time >= 0 for c in federates)


def note_exits(federates: list[_Child], watched: bool, drain) -> None:
    """Mark federates seen to exit since the last call, and whether they left before the
    federation formed. `drain()` reads every status line already written, so that a
    federate that reported and then exited between two looks is not taken for one that
    never joined. Once the federation has formed, nobody left before joining."""
    new = [c for c in federates if c.exited_at is None and c.proc.poll() is not None]
    if new and watched and not formed(federates):
        drain()
    now = time.time()
    for child in new:
        child.exited_at = now
        child.before_join = watched and not formed(federates)
    if formed(federates):
        for child in federates:
            child.before_join = False


def early_clean_exit(federates: list[_Child]) -> _Child | None:
    """A federate that exited with code 0 before joining, `JOIN_GRACE_S` ago or more."""
    now = time.time()
    return next((c for c in federates if c.before_join and c.proc.returncode == 0
                 and now - c.exited_at >= JOIN_GRACE_S), None)


def has_failed(federates: list[_Child]) -> bool:
    """Whether the run has failed: a federate seen to exit non-zero, or cleanly before
    joining (`early_clean_exit`)."""
    return early_clean_exit(federates) is not None or any(
        c.exited_at is not None and c.proc.returncode != 0 for c in federates)


def _record(child: _Child, run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "parts" / f"{child.name}{FAILURE_SUFFIX}").read_text())
    except (OSError, ValueError):
        return None


def culprit(federates: list[_Child], run_dir: Path) -> tuple[_Child, str]:
    """Which federate made the federation fail, and why (the module's rules, in order:
    a signal; an exit before joining, the earliest by its record's time or else the time
    it was seen to exit; the earliest failure record; the first seen to exit)."""
    for child in federates:
        if (child.proc.returncode or 0) < 0:
            return child, f"exited with code {child.proc.returncode} (killed by a signal)"
    records = {c.name: r for c in federates if (r := _record(c, run_dir)) is not None}
    early = [c for c in federates if c.before_join]
    if early:
        child = min(early, key=lambda c: records.get(c.name, {}).get("time", c.exited_at))
        code = child.proc.returncode
        if child.name in records:
            return child, f"{records[child.name]['error']} (exit code {code}, before joining " \
                          f"the federation)"
        return child, f"exited with code {code} before joining the federation"
    if records:
        name, record = min(records.items(), key=lambda item: (item[1]["time"], item[0]))
        child = next(c for c in federates if c.name == name)
        code = child.proc.poll()
        return child, record["error"] if code is None else f"{record['error']} (exit code {code})"
    exited = [c for c in federates if c.exited_at is not None and c.proc.returncode != 0]
    first = min(exited, key=lambda c: c.exited_at) if exited else federates[0]
    return first, f"exited with code {first.proc.returncode}"
