"""Each visitor's latest session, kept in memory between a loader's batches.

One row per (tenant, visitor): the latest session's id, index, start and last event time, and
the highest index handed out so far. The store lives in the loader's memory (an in-memory
SQLite database); what outlives the process is the lake's session state table
(ingest/lake/state.py): the loader appends the rows each batch changed (``take_changes``)
with every flush, and loads the rows of the partitions it is assigned from there
(``replace``). A ``path`` keeps the store in a SQLite file instead (tests, tools).

Within one run of a batch, state computed for one unit of work (the fallback runs row groups
one by one) is staged in memory and seen by the next; it is written in one transaction once
the whole batch went through the chain.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

VisitorKey = tuple[str, str]
"""(tenant, visitor) where visitor is ``a:<anonymous_id>`` or ``u:<user_id>``."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS visitor_session (
    tenant TEXT NOT NULL,
    visitor TEXT NOT NULL,
    session_id TEXT NOT NULL,
    session_index INTEGER NOT NULL,
    start_us INTEGER NOT NULL,
    last_us INTEGER NOT NULL,
    sessions INTEGER NOT NULL,
    source_partition INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, visitor)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS visitor_session_last ON visitor_session (last_us);
"""
_COLS = ("session_id", "session_index", "start_us", "last_us", "sessions")
_UPSERT = f"""
INSERT INTO visitor_session (tenant, visitor, {", ".join(_COLS)}, source_partition)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, visitor) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in (*_COLS, "source_partition"))}
"""
_PRUNE_EVERY_S = 3600.0
_REPLACE_ROWS = 65_536

CHANGES_SCHEMA = pa.schema([
    pa.field("source_partition", pa.int32(), nullable=False),
    pa.field("tenant", pa.string(), nullable=False),
    pa.field("visitor", pa.string(), nullable=False),
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("session_index", pa.int64(), nullable=False),
    pa.field("start_us", pa.int64(), nullable=False),
    pa.field("last_us", pa.int64(), nullable=False),
    pa.field("sessions", pa.int64(), nullable=False),
])
"""A visitor's state with the transport partition its events came from (the lake's state
table without ``stream`` and ``as_of``)."""


@dataclass(frozen=True)
class VisitorState:
    """A visitor's latest session."""

    session_id: str
    session_index: int
    start_us: int
    last_us: int
    sessions: int
    """Highest session index handed out to this visitor."""


class SessionStore:
    """The store; ``path=None`` (the loader's) keeps it in memory."""

    def __init__(self, path: Path | None = None, retention_days: float = 400,
                 busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.retention_us = round(retention_days * 86_400e6)
        self.track_changes = False
        """Keep the states each batch commits for take_changes (the loader sets it)."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # The loader builds its pipeline on one thread and runs it on another.
        self._db = sqlite3.connect(str(path) if path is not None else ":memory:",
                                   isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if path is not None:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SCHEMA)
        self._db.execute("CREATE TEMP TABLE want (tenant TEXT, visitor TEXT)")
        self._lock = threading.Lock()
        self._batch: str | None = None
        self._staged: dict[VisitorKey, VisitorState] = {}
        self._staged_partitions: dict[VisitorKey, int] = {}
        self._changes: dict[VisitorKey, tuple[int, VisitorState]] = {}
        self._last_prune = 0.0

    def begin(self, batch: str) -> None:
        """Start a run of batch ``batch``: forget what an earlier run staged."""
        self._batch = batch
        self._staged = {}
        self._staged_partitions = {}

    def load(self, keys: Iterable[VisitorKey]) -> dict[VisitorKey, VisitorState]:
        """The state of these visitors at the start of this batch (plus what it staged)."""
        assert self._batch is not None, "begin() first"
        found: dict[VisitorKey, VisitorState] = {}
        missing: list[VisitorKey] = []
        for key in keys:
            if key in self._staged:
                found[key] = self._staged[key]
            else:
                missing.append(key)
        if not missing:
            return found
        with self._lock:
            db = self._db
            # One transaction: each INSERT of its own would be one (the temporary table is
            # on disk), ~18 us a visitor instead of ~1.
            db.execute("BEGIN")
            try:
                db.execute("DELETE FROM want")
                db.executemany("INSERT INTO want VALUES (?, ?)", missing)
                rows = db.execute(
                    "SELECT v.tenant, v.visitor, " + ", ".join(f"v.{c}" for c in _COLS)
                    + " FROM want w JOIN visitor_session v USING (tenant, visitor)").fetchall()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        for tenant, visitor, *values in rows:
            found[(tenant, visitor)] = VisitorState(*values)
        return found

    def stage(self, states: Mapping[VisitorKey, VisitorState],
              partitions: Mapping[VisitorKey, int] | None = None) -> None:
        """Remember new states for the rest of this batch's run (with the transport partition
        each visitor's events came from, for the lake's state table)."""
        self._staged.update(states)
        if partitions:
            self._staged_partitions.update(partitions)

    def commit(self) -> None:
        """Write what this batch staged, in one transaction."""
        if self._batch is None:
            return
        parts = self._staged_partitions
        rows = [(t, v, s.session_id, s.session_index, s.start_us, s.last_us, s.sessions,
                 parts.get((t, v), 0)) for (t, v), s in self._staged.items()]
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_UPSERT, rows)
                now = time.time()
                if now - self._last_prune > _PRUNE_EVERY_S:
                    self._last_prune = now
                    db.execute("DELETE FROM visitor_session WHERE last_us < ?",
                               (round(now * 1e6) - self.retention_us,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if self.track_changes:
            for key, state in self._staged.items():
                self._changes[key] = (self._staged_partitions.get(key, 0), state)
        self._staged = {}
        self._staged_partitions = {}

    def take_changes(self) -> pa.Table:
        """The states committed since the last call (CHANGES_SCHEMA), and forget them."""
        changes, self._changes = self._changes, {}
        keys = list(changes)
        values = [s for _, s in changes.values()]
        return pa.table({
            "source_partition": pa.array([p for p, _ in changes.values()], pa.int32()),
            "tenant": pa.array([k[0] for k in keys], pa.string()),
            "visitor": pa.array([k[1] for k in keys], pa.string()),
            "session_id": pa.array([s.session_id for s in values], pa.string()),
            "session_index": pa.array([s.session_index for s in values], pa.int64()),
            "start_us": pa.array([s.start_us for s in values], pa.int64()),
            "last_us": pa.array([s.last_us for s in values], pa.int64()),
            "sessions": pa.array([s.sessions for s in values], pa.int64()),
        }, schema=CHANGES_SCHEMA)

    def replace(self, partitions: Iterable[int], states: pa.Table) -> int:
        """Hold ``states`` (CHANGES_SCHEMA) as the state of these transport partitions,
        dropping what was held for them: what a loader loads from the lake on assignment."""
        columns = ("tenant", "visitor", *_COLS, "source_partition")
        wanted = sorted(set(partitions))
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM visitor_session WHERE source_partition = ?",
                               [(p,) for p in wanted])
                # In slices: Python objects for millions of visitors at once took ~0.5 KB each
                for part in states.select(list(columns)).to_batches(_REPLACE_ROWS):
                    db.executemany(_UPSERT, zip(*(c.to_pylist() for c in part.columns),
                                                strict=True))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self._changes = {k: v for k, v in self._changes.items() if v[0] not in wanted}
        return int(states.num_rows)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the state of partitions this loader no longer owns."""
        self.replace(partitions, CHANGES_SCHEMA.empty_table())

    def forget(self, tenant: str, visitors: Iterable[str]) -> int:
        """Drop these visitors of ``tenant`` (a forget request); how many were held."""
        keys = [(tenant, v) for v in visitors]
        with self._lock:
            before = self._db.total_changes
            self._db.executemany("DELETE FROM visitor_session WHERE tenant = ? AND visitor = ?",
                                 keys)
            removed = int(self._db.total_changes - before)
        for key in keys:
            self._changes.pop(key, None)
        return removed

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
