"""The embedded log: a crash-safe, single-partition record log in SQLite (WAL mode).

The default transport when no Kafka is configured, so ``driftnet up`` runs on a laptop with
nothing else. Offsets are SQLite AUTOINCREMENT row ids (never reused, even after the
committed prefix is deleted); a consumer group's next offset lives in the same file, so a
commit is one durable transaction. One consumer per group at a time (a file lock makes a
second one fail loudly instead of double-processing).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from ingest.transport.base import RebalanceListener, Record
from ingest.transport.config import EmbeddedLogSettings
from schemas.errors import ConfigError, TransportError

SOURCE = "log"
PARTITION = 0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    offset INTEGER PRIMARY KEY AUTOINCREMENT,
    key BLOB,
    value BLOB NOT NULL,
    produced_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, partition)
);
"""


_INSERT = "INSERT INTO records (key, value, produced_at_ms) VALUES (?, ?, ?)"


def _connect(settings: EmbeddedLogSettings) -> sqlite3.Connection:
    path = Path(settings.path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False,
            timeout=settings.busy_timeout_ms / 1000,
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={settings.synchronous}")
        conn.execute(f"PRAGMA busy_timeout={settings.busy_timeout_ms}")
        conn.executescript(_SCHEMA)
        conn.execute("INSERT OR IGNORE INTO log_meta VALUES ('log_id', ?)",
                     (uuid.uuid4().hex[:16],))
    except (sqlite3.Error, OSError) as exc:
        raise TransportError(f"cannot open the embedded log: {exc}", path=str(path)) from exc
    return conn


def _head(conn: sqlite3.Connection) -> int:
    """The next offset the log will assign."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    return (int(row[0]) if row else 0) + 1


class EmbeddedProducer:
    """Appends bundles to the log; ``produce`` commits one transaction per call (group commit)."""

    source = SOURCE

    def __init__(self, settings: EmbeddedLogSettings) -> None:
        self._conn = _connect(settings)
        self._lock = threading.Lock()

    partitions = 1
    """The embedded log has one partition: nothing to route."""

    def produce(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Append ``records`` in one durable transaction."""
        now = int(time.time() * 1000)
        with self._lock:
            if len(records) == 1:  # the usual group: one statement, one transaction, one fsync
                key, value = records[0]
                try:
                    self._conn.execute(_INSERT, (key, value, now))
                except sqlite3.Error as exc:
                    raise TransportError(f"embedded log write failed: {exc}") from exc
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(_INSERT, [(k, v, now) for k, v in records])
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise TransportError(f"embedded log write failed: {exc}") from exc

    def head(self) -> int:
        """The next offset the log will assign."""
        with self._lock:
            return _head(self._conn)

    def close(self) -> None:
        """Close the SQLite connection."""
        with self._lock:
            self._conn.close()


class EmbeddedConsumer:
    """Reads the log as one member of a consumer group; commits trim what every group has read."""

    source = SOURCE

    def __init__(
        self,
        settings: EmbeddedLogSettings,
        group_id: str = "driftnet-loader",
        listener: RebalanceListener | None = None,
        poll_interval_s: float = 0.02,
    ) -> None:
        self._group = group_id
        self._poll_interval_s = poll_interval_s
        self._lock_file = self._take_group_lock(Path(settings.path), group_id)
        self._conn = _connect(settings)
        committed = self.committed(PARTITION)
        self._position = committed if committed is not None else self._first_offset()
        self._listener = listener
        self._assigned = False
        row = self._conn.execute("SELECT value FROM log_meta WHERE key = 'log_id'").fetchone()
        self.stream_id = f"{SOURCE}-{row[0]}"
        """Identifies this log file: a new log (offsets from 1 again) is a new stream."""

    @staticmethod
    def _take_group_lock(path: Path, group_id: str) -> IO[bytes]:
        lock_path = path.with_name(f"{path.name}.{group_id}.lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(lock_path, "ab")  # noqa: SIM115 - held for the consumer's lifetime
        except OSError as exc:
            raise TransportError(f"cannot open the embedded log's lock file: "
                                 f"{exc.strerror or exc}", path=str(lock_path)) from exc
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            fh.close()
            raise ConfigError(
                "another loader already consumes this embedded log with the same group "
                "(the embedded log has one partition; run Kafka to scale loaders out)",
                lock=str(lock_path),
            ) from exc
        return fh

    def _first_offset(self) -> int:
        row = self._conn.execute("SELECT min(offset) FROM records").fetchone()
        return int(row[0]) if row and row[0] is not None else _head(self._conn)

    def _ensure_assigned(self) -> None:
        if not self._assigned:
            self._assigned = True
            if self._listener is not None:
                self._listener.on_assigned({PARTITION})

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Records from the current position on; waits up to ``timeout_s`` for the first."""
        self._ensure_assigned()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                rows = self._conn.execute(
                    "SELECT offset, key, value FROM records WHERE offset >= ? "
                    "ORDER BY offset LIMIT ?",
                    (self._position, max_records),
                ).fetchall()
            except sqlite3.Error as exc:
                raise TransportError(f"embedded log read failed: {exc}") from exc
            if rows:
                self._position = int(rows[-1][0]) + 1
                return [Record(PARTITION, int(o), bytes(v), k) for o, k, v in rows]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(self._poll_interval_s, remaining))

    def seek(self, partition: int, offset: int) -> None:
        """Read from ``offset`` on (from the first record kept, when it was trimmed)."""
        if partition != PARTITION:
            raise ValueError(f"the embedded log has only partition {PARTITION}")
        self._position = max(offset, self._first_offset())

    def rewind(self, partition: int) -> None:
        """Read again from the committed offset."""
        if partition != PARTITION:
            raise ValueError(f"the embedded log has only partition {PARTITION}")
        committed = self.committed(PARTITION)
        self._position = committed if committed is not None else self._first_offset()

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Durably store the group's next offset, then trim records every group has read."""
        if set(offsets) - {PARTITION}:
            raise ValueError(f"the embedded log has only partition {PARTITION}")
        if PARTITION not in offsets:
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "INSERT INTO group_offsets (group_id, partition, next_offset) VALUES (?, ?, ?) "
                "ON CONFLICT (group_id, partition) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                (self._group, PARTITION, offsets[PARTITION]),
            )
            self._conn.execute(
                "DELETE FROM records WHERE offset < "
                "(SELECT min(next_offset) FROM group_offsets WHERE partition = ?)",
                (PARTITION,),
            )
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise TransportError(f"embedded log commit failed: {exc}") from exc

    def committed(self, partition: int) -> int | None:
        """The group's committed next offset."""
        row = self._conn.execute(
            "SELECT next_offset FROM group_offsets WHERE group_id = ? AND partition = ?",
            (self._group, partition),
        ).fetchone()
        return int(row[0]) if row else None

    def lag(self) -> int:
        """Records appended but not yet committed by this group."""
        committed = self.committed(PARTITION)
        start = committed if committed is not None else self._first_offset()
        return max(0, _head(self._conn) - start)

    def partition_lag(self) -> dict[int, int]:
        """:meth:`lag` of the one partition."""
        return {PARTITION: self.lag()}

    def close(self) -> None:
        """Close the connection and release the group lock."""
        self._conn.close()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()


def log_lag(settings: EmbeddedLogSettings, group_id: str = "driftnet-loader") -> int:
    """Lag of a group on an embedded log, without joining it (for status and the demo)."""
    if not Path(settings.path).exists():
        return 0
    conn = _connect(settings)
    try:
        row = conn.execute(
            "SELECT next_offset FROM group_offsets WHERE group_id = ? AND partition = ?",
            (group_id, PARTITION),
        ).fetchone()
        head = _head(conn)
        if row is None:
            first = conn.execute("SELECT min(offset) FROM records").fetchone()[0]
            return 0 if first is None else head - int(first)
        return max(0, head - int(row[0]))
    finally:
        conn.close()


def remove_log(settings: EmbeddedLogSettings) -> None:
    """Delete an embedded log and its side files (tests and the demo's temporary runs)."""
    base = Path(settings.path)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{base}{suffix}")
