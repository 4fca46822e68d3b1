"""The run database: one SQLite file per run, committed every step.

Schema (query it directly; ``gridsim export`` flattens it to CSV):

``run(key, value)``
    Facts about the run: scenario, seed, start, step_s, n_steps, gridsim_version.
``topics(topic_id, topic, federate, port, type)``
    Every recorded publication, e.g. ``feeder/voltages_magnitude``.
``messages(topic_id, step, time_s, payload)``
    Every message received, as the JSON text that crossed the broker (`gridsim.messages`).
``samples`` (view)
    Ids-aligned numeric arrays of every message, one value per row: ``topic_id, step,
    time_s, field, id, value``. For ``MeasurementArray`` messages ``field`` is ``'values'``
    (and ``'accuracy'`` when given); for device states it is the array's name (``'p_kw'``,
    ``'tap'``, ...). ``id`` is the node or device id.
``samples_named`` (view)
    ``samples`` with the topic's name: ``topic, step, time_s, field, id, value``.

Example: the voltage magnitude at node 150.1 over the run::

    SELECT step, value FROM samples_named
    WHERE topic = 'feeder/voltages_magnitude' AND field = 'values' AND id = '150.1'
    ORDER BY step;

Why views: unpacking every array into rows while recording costs about 2 us a value (2,000
values a step on IEEE 123), more than everything else the federation does in a step; SQLite's
JSON functions unpack the stored messages when they are queried instead.

The database runs in WAL mode while recording, so a crash loses at most the step being
written; `RunStore.close` adds the index and checkpoints it back into a single file.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS topics (
    topic_id INTEGER PRIMARY KEY, topic TEXT UNIQUE NOT NULL,
    federate TEXT NOT NULL, port TEXT NOT NULL, type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    topic_id INTEGER NOT NULL REFERENCES topics, step INTEGER NOT NULL,
    time_s REAL NOT NULL, payload TEXT NOT NULL);
CREATE VIEW IF NOT EXISTS samples AS
    SELECT m.topic_id, m.step, m.time_s, f.key AS field, i.value AS id,
           json_extract(f.value, '$[' || i.key || ']') AS value
    FROM messages m, json_each(m.payload, '$.ids') i, json_each(m.payload) f
    WHERE f.type = 'array' AND f.key <> 'ids'
      AND json_array_length(f.value) = json_array_length(m.payload, '$.ids')
      AND json_type(f.value, '$[0]') IN ('real', 'integer', 'null');
CREATE VIEW IF NOT EXISTS samples_named AS
    SELECT t.topic, s.step, s.time_s, s.field, s.id, s.value
    FROM samples s JOIN topics t USING (topic_id);
"""

INDEXES = """
CREATE INDEX IF NOT EXISTS messages_by_topic ON messages (topic_id, step);
"""
"""Built when recording ends, so that inserts during the run stay cheap."""


@dataclass(frozen=True)
class RecorderSettings:
    """The recorder's parameters, parsed."""

    filename: str = "results.sqlite"
    """Database file, relative to the run directory."""

    @classmethod
    def from_parameters(cls, parameters: Mapping) -> RecorderSettings:
        return cls(filename=parameters["filename"])


class RunStore:
    """Writes messages of a run into its SQLite database (replacing an older one)."""

    def __init__(self, path: Path, run_facts: dict[str, object]):
        self.path = Path(path)
        for stale in (self.path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.executemany("INSERT OR REPLACE INTO run VALUES (?, ?)",
                            [(k, str(v)) for k, v in run_facts.items()])
        self._topic_ids: dict[str, int] = {}
        self.messages = 0
        self.db.execute("BEGIN")

    def topic_id(self, topic: str, type_name: str) -> int:
        """The id of `topic`, registering it on first use."""
        if topic not in self._topic_ids:
            federate, _, port = topic.partition("/")
            cur = self.db.execute(
                "INSERT INTO topics (topic, federate, port, type) VALUES (?, ?, ?, ?)",
                (topic, federate, port, type_name))
            self._topic_ids[topic] = cur.lastrowid
        return self._topic_ids[topic]

    def add(self, topic: str, type_name: str, step: int, time_s: float, payload: str) -> None:
        """Record one message (JSON text)."""
        tid = self.topic_id(topic, type_name)
        self.db.execute("INSERT INTO messages VALUES (?, ?, ?, ?)", (tid, step, time_s, payload))
        self.messages += 1

    def commit(self) -> None:
        """Make everything recorded so far durable."""
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    def close(self) -> None:
        """Commit, index, fold the WAL back into the database file and close."""
        self.db.execute("COMMIT")
        self.db.executescript(INDEXES)
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.close()


def numeric_arrays(message: dict) -> dict[str, list]:
    """The arrays of `message` aligned with its ``ids`` whose items are numbers (or null).

    The same rule as the ``samples`` view, for code that reads payloads itself.
    """
    ids = message.get("ids")
    if not isinstance(ids, list) or not ids:
        return {}
    out = {}
    for field, values in message.items():
        if field == "ids" or not isinstance(values, list) or len(values) != len(ids):
            continue
        first = values[0]
        if first is None or (isinstance(first, (int, float)) and not isinstance(first, bool)):
            out[field] = values
    return out


def export_csv(db_path: Path, out_dir: Path) -> list[Path]:
    """One wide CSV per (topic, field): a row per message, a column per id.

    Files are named ``<federate>.<port>.<field>.csv``; returns their paths.
    """
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: dict[tuple[str, str], tuple[dict[str, None], list]] = {}
    for topic, step, time_s, payload in db.execute(
            "SELECT t.topic, m.step, m.time_s, m.payload FROM messages m "
            "JOIN topics t USING (topic_id) ORDER BY t.topic, m.step, m.time_s"):
        message = json.loads(payload)
        for field, values in numeric_arrays(message).items():
            ids, rows = tables.setdefault((topic, field), ({}, []))
            ids.update(dict.fromkeys(message["ids"]))
            rows.append((step, time_s, dict(zip(message["ids"], values))))
    db.close()
    written = []
    for (topic, field), (ids, rows) in sorted(tables.items()):
        path = out_dir / f"{topic.replace('/', '.')}.{field}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "time_s", *ids])
            for step, time_s, values in rows:
                writer.writerow([step, time_s, *(values.get(node, "") for node in ids)])
        written.append(path)
    return written
