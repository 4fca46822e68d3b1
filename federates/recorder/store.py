"""The run database: one SQLite file per run, committed every step.

Schema (query it directly; ``gridsim export`` flattens it to CSV):

``run(key, value)``
    Facts about the run: scenario, seed, start, step_s, n_steps, gridsim_version.
``topics(topic_id, topic, federate, port, type)``
    Every recorded publication, e.g. ``feeder/voltages_magnitude``.
``messages(topic_id, step, time_s, payload)``
    Every message received, as the JSON text that crossed the broker.
``samples(topic_id, step, time_s, field, id, value)``
    Ids-aligned numeric arrays unpacked one value per row: for ``MeasurementArray``
    messages ``field`` is ``'values'`` (and ``'accuracy'`` when given); for device states
    it is the array's name (``'p_kw'``, ``'tap'``, ...). ``id`` is the node or device id.
``samples_named``
    A view of ``samples`` with the topic's name instead of its number.

Example: the voltage magnitude at node 150.1 over the run::

    SELECT step, value FROM samples_named
    WHERE topic = 'feeder/voltages_magnitude' AND id = '150.1' ORDER BY step;

The database runs in WAL mode while recording, so a crash loses at most the step being
written; `RunStore.close` checkpoints it back into a single file.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS topics (
    topic_id INTEGER PRIMARY KEY, topic TEXT UNIQUE NOT NULL,
    federate TEXT NOT NULL, port TEXT NOT NULL, type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    topic_id INTEGER NOT NULL REFERENCES topics, step INTEGER NOT NULL,
    time_s REAL NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    topic_id INTEGER NOT NULL REFERENCES topics, step INTEGER NOT NULL,
    time_s REAL NOT NULL, field TEXT NOT NULL, id TEXT NOT NULL, value REAL);
CREATE INDEX IF NOT EXISTS samples_by_topic ON samples (topic_id, field, id, step);
CREATE INDEX IF NOT EXISTS messages_by_topic ON messages (topic_id, step);
CREATE VIEW IF NOT EXISTS samples_named AS
    SELECT t.topic, s.step, s.time_s, s.field, s.id, s.value
    FROM samples s JOIN topics t USING (topic_id);
"""


class RunStore:
    """Writes messages of a run into its SQLite database."""

    def __init__(self, path: Path, run_facts: dict[str, object], unpack: bool = True):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.executemany("INSERT OR REPLACE INTO run VALUES (?, ?)",
                            [(k, str(v)) for k, v in run_facts.items()])
        self.unpack = unpack
        self._topic_ids: dict[str, int] = {}
        self.messages = 0
        self.samples = 0
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
        """Record one message (JSON text); unpack its ids-aligned arrays into samples."""
        tid = self.topic_id(topic, type_name)
        self.db.execute("INSERT INTO messages VALUES (?, ?, ?, ?)", (tid, step, time_s, payload))
        self.messages += 1
        if self.unpack:
            rows = list(_sample_rows(tid, step, time_s, json.loads(payload)))
            self.db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?)", rows)
            self.samples += len(rows)

    def commit(self) -> None:
        """Make everything recorded so far durable."""
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    def close(self) -> None:
        """Commit, fold the WAL back into the database file and close."""
        self.db.execute("COMMIT")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.close()


def _sample_rows(tid: int, step: int, time_s: float, message: dict):
    ids = message.get("ids")
    if not isinstance(ids, list):
        return
    n = len(ids)
    for field, values in message.items():
        if field == "ids" or not isinstance(values, list) or len(values) != n:
            continue
        if not all(v is None or isinstance(v, (int, float)) for v in values):
            continue
        for node, value in zip(ids, values):
            yield tid, step, time_s, field, node, value


def export_csv(db_path: Path, out_dir: Path) -> list[Path]:
    """One wide CSV per (topic, field): a row per step, a column per id. Returns the files."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    pairs = db.execute("SELECT DISTINCT t.topic, s.field, s.topic_id FROM samples s "
                       "JOIN topics t USING (topic_id) ORDER BY t.topic, s.field").fetchall()
    for topic, field, tid in pairs:
        ids = [r[0] for r in db.execute(
            "SELECT id FROM samples WHERE topic_id = ? AND field = ? GROUP BY id "
            "ORDER BY MIN(rowid)", (tid, field))]
        column = {node: i for i, node in enumerate(ids)}
        rows: dict[tuple[int, float], list] = {}
        for step, time_s, node, value in db.execute(
                "SELECT step, time_s, id, value FROM samples WHERE topic_id = ? AND field = ? "
                "ORDER BY rowid", (tid, field)):
            rows.setdefault((step, time_s), [""] * len(ids))[column[node]] = value
        name = f"{topic.replace('/', '.')}.{field}.csv"
        path = out_dir / name
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "time_s", *ids])
            for (step, time_s), values in rows.items():
                writer.writerow([step, time_s, *values])
        written.append(path)
    db.close()
    return written
