"""Comparing runs (`gridsim compare`): their summaries side by side, the figures that differ,
and per-step differences of recorded streams.

A summary is flattened into figures by dotted path (``federates.feeder.v_max_pu``); a list
of numbers becomes one figure holding the list, compared element by element. Two values
*differ beyond* a tolerance ``T`` when they are numbers (or lists of numbers of the same
length) with ``|b - a| > T * max(1, |a|)`` somewhere (so ``T`` is relative for large values
and absolute near zero), or when they are anything else and not equal. ``T = 0`` asks for
exact equality: the use in CI, against a stored golden ``summary.json``.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridsim.errors import InputError

IGNORED = ("gridsim_version",)
"""Figures that tell the runs apart without being results."""


def load_summary(path: Path) -> dict:
    """A run's summary: ``path`` is a run directory or a ``summary.json`` file."""
    file = path / "summary.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise InputError(str(file), "", "no summary (not a run directory or summary.json)") \
            from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(file), "", f"not a readable summary: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(str(file), "", "not a summary (expected a mapping)")
    return data


def flatten(summary: dict, prefix: str = "") -> dict[str, Any]:
    """Figures by dotted path; lists are kept whole."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, path))
        elif path not in IGNORED:
            out[path] = value
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def deviation(a: Any, b: Any) -> float:
    """How far `b` is from `a`: the largest ``|b - a| / max(1, |a|)`` over numbers (or the
    elements of equal-length lists of numbers); 0 for equal non-numbers, inf otherwise."""
    if _number(a) and _number(b):
        pairs = [(a, b)]
    elif (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
          and all(_number(x) for x in a + b)):
        pairs = list(zip(a, b))
    else:
        return 0.0 if type(a) is type(b) and a == b else math.inf
    worst = 0.0
    for x, y in pairs:
        if x == y:
            continue
        if not (math.isfinite(x) and math.isfinite(y)):
            return math.inf
        worst = max(worst, abs(y - x) / max(1.0, abs(x)))
    return worst


@dataclass(frozen=True)
class Row:
    """One figure across the runs, and how far the others are from the first."""

    path: str
    values: tuple[Any, ...]
    deviation: float


def compare(summaries: list[dict]) -> list[Row]:
    """Every figure of any of the summaries, in path order; a missing one is None."""
    flat = [flatten(s) for s in summaries]
    paths = sorted(set().union(*flat))
    rows = []
    for path in paths:
        values = tuple(f.get(path) for f in flat)
        rows.append(Row(path, values, max(deviation(values[0], v) for v in values[1:])))
    return rows


def show(value: Any) -> str:
    """A value for the table: lists by their length and range."""
    if isinstance(value, list):
        numbers = [v for v in value if _number(v)]
        if numbers and len(numbers) == len(value):
            return f"[{len(value)}: {min(numbers):.6g} .. {max(numbers):.6g}]"
        return f"[{len(value)} items]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def stream_differences(databases: list[Path], topic: str, field: str = "values"
                       ) -> list[tuple[int, float, str]]:
    """Per step, the largest ``|value - first run's value|`` over the ids of `topic`'s
    `field` in every other run's ``results.sqlite``, and the id where it is."""
    series = []
    for db_path in databases:
        if not db_path.is_file():
            raise InputError(str(db_path), "", "no results database in this run directory")
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            try:
                rows = db.execute(
                    "SELECT step, id, value FROM samples_named WHERE topic = ? AND field = ?",
                    (topic, field)).fetchall()
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            raise InputError(str(db_path), "", f"not a readable results database ({exc})") \
                from None
        if not rows:
            raise InputError(str(db_path), topic, f"no recorded {field!r} of this stream")
        series.append({(step, ident): value for step, ident, value in rows})
    by_step: dict[int, list[tuple[str, float]]] = {}
    for (step, ident), value in series[0].items():
        by_step.setdefault(step, []).append((ident, value))
    out = []
    for step in sorted(by_step):
        worst, where = 0.0, ""
        for other in series[1:]:
            for ident, value in by_step[step]:
                theirs = other.get((step, ident))
                gap = math.inf if theirs is None or value is None else abs(theirs - value)
                if gap > worst:
                    worst, where = gap, ident
        out.append((step, worst, where))
    return out
