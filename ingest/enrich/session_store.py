"""Each visitor's latest session, kept between loader batches and restarts.

One SQLite file per lake (``<lake>/_loader/sessions.sqlite``, WAL, busy timeout), one row
per (tenant, visitor): the latest session's id, index, start and last event time, the
highest index handed out so far, and the key of the batch that wrote the row together with
the row as it was *before* that batch.

Why the "before": the loader computes sessions before its files are durable and commits the
transport offset after. If it crashes in between, the same records are read again (same
partition, same first offset, so the same batch key) and must get the same session ids.
When a batch finds rows written under its own key, it starts from their "before" state,
which makes a re-run idempotent. Within one run of a batch, state computed for one unit of
work (the fallback runs row groups one by one) is staged in memory and seen by the next;
it is written in one transaction once the whole batch went through the chain.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

VisitorKey = tuple[str, str]
"""(tenant, visitor) where visitor is ``a:<anonymous_id>`` or ``u:<user_id>``."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS visitor_session (
    tenant TEXT NOT NULL,
    visitor TEXT NOT NULL,
    batch TEXT NOT NULL,
    session_id TEXT NOT NULL,
    session_index INTEGER NOT NULL,
    start_us INTEGER NOT NULL,
    last_us INTEGER NOT NULL,
    sessions INTEGER NOT NULL,
    prev_session_id TEXT,
    prev_session_index INTEGER,
    prev_start_us INTEGER,
    prev_last_us INTEGER,
    prev_sessions INTEGER,
    PRIMARY KEY (tenant, visitor)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS visitor_session_last ON visitor_session (last_us);
"""
_COLS = ("session_id", "session_index", "start_us", "last_us", "sessions")
_UPSERT = f"""
INSERT INTO visitor_session (tenant, visitor, batch, {", ".join(_COLS)})
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, visitor) DO UPDATE SET
    {", ".join(f"prev_{c} = CASE WHEN visitor_session.batch = excluded.batch "
               f"THEN visitor_session.prev_{c} ELSE visitor_session.{c} END" for c in _COLS)},
    batch = excluded.batch,
    {", ".join(f"{c} = excluded.{c}" for c in _COLS)}
"""
_PRUNE_EVERY_S = 3600.0


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
    """The SQLite store; ``path=None`` keeps state in memory (tests, replays)."""

    def __init__(self, path: Path | None = None, retention_days: float = 400,
                 busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.retention_us = round(retention_days * 86_400e6)
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
        self._last_prune = 0.0

    def begin(self, batch: str) -> None:
        """Start a run of batch ``batch``: forget what an earlier run staged."""
        self._batch = batch
        self._staged = {}

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
            db.execute("DELETE FROM want")
            db.executemany("INSERT INTO want VALUES (?, ?)", missing)
            rows = db.execute(
                "SELECT v.tenant, v.visitor, v.batch, "
                + ", ".join(f"v.{c}" for c in _COLS) + ", "
                + ", ".join(f"v.prev_{c}" for c in _COLS)
                + " FROM want w JOIN visitor_session v USING (tenant, visitor)").fetchall()
        for tenant, visitor, batch, *values in rows:
            # Written by an earlier run of this very batch: start from before it.
            state = values[5:] if batch == self._batch else values[:5]
            if state[0] is not None:
                found[(tenant, visitor)] = VisitorState(*state)
        return found

    def stage(self, states: Mapping[VisitorKey, VisitorState]) -> None:
        """Remember new states for the rest of this batch's run."""
        self._staged.update(states)

    def commit(self) -> None:
        """Write what this batch staged, in one transaction."""
        if self._batch is None:
            return
        rows = [(t, v, self._batch, s.session_id, s.session_index, s.start_us, s.last_us,
                 s.sessions) for (t, v), s in self._staged.items()]
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
        self._staged = {}

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
