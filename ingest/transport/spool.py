"""The spool: a bounded, crash-safe FIFO of transport records on local disk (SQLite, WAL).

While the Kafka broker is unreachable the collector keeps acknowledging hits by writing
their bundles here (one durable transaction per group commit, like the embedded log), and a
background thread drains the spool to the broker, oldest first, once it is back. Only a
full spool refuses records: :class:`SpoolFullError` becomes 503 + Retry-After at the HTTP
edge, so nothing the collector acknowledged is ever dropped.

One process owns a spool file at a time (a file lock), so two collectors can never drain
the same records twice.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from schemas.errors import ConfigError, TransportError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key BLOB,
    value BLOB NOT NULL,
    spooled_at_ms INTEGER NOT NULL
);
"""


class SpoolFullError(TransportError):
    """The spool cannot take these records: the broker has been away too long. Retry later."""


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """A record waiting in the spool; ``id`` orders the spool and removes it once delivered."""

    id: int
    key: bytes | None
    value: bytes

    @property
    def nbytes(self) -> int:
        """Bytes the record counts against the spool's limit."""
        return len(self.value) + (len(self.key) if self.key is not None else 0)


@dataclass(frozen=True, slots=True)
class SpoolDepth:
    """How much the spool holds."""

    records: int
    bytes: int


def _nbytes(key: bytes | None, value: bytes) -> int:
    return len(value) + (len(key) if key is not None else 0)


class Spool:
    """A bounded FIFO of ``(key, value)`` records; every method is thread-safe."""

    def __init__(self, path: Path, max_bytes: int, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._lock_file = self._take_lock(self.path)
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None,
                                         check_same_thread=False, timeout=10)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            self._conn.executescript(_SCHEMA)
            row = self._conn.execute(
                "SELECT count(*), coalesce(sum(length(value) + coalesce(length(key), 0)), 0) "
                "FROM spool"
            ).fetchone()
        except sqlite3.Error as exc:
            self._release_lock()
            raise TransportError(f"cannot open the spool: {exc}", path=str(self.path)) from exc
        self._records, self._bytes = int(row[0]), int(row[1])

    @staticmethod
    def _take_lock(path: Path) -> IO[bytes]:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = path.with_name(f"{path.name}.lock")
        fh = open(lock_path, "ab")  # noqa: SIM115 - held for the spool's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            fh.close()
            raise ConfigError(
                "another collector already uses this spool; give each collector its own "
                "(DRIFTNET_KAFKA__SPOOL_PATH)", spool=str(path),
            ) from exc
        return fh

    def _release_lock(self) -> None:
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()

    @property
    def depth(self) -> SpoolDepth:
        """Records and bytes waiting."""
        with self._lock:
            return SpoolDepth(self._records, self._bytes)

    def oldest_age_s(self) -> float | None:
        """Seconds the oldest waiting record has been in the spool (None when empty)."""
        with self._lock:
            if self._records == 0:
                return None
            try:
                row = self._conn.execute("SELECT min(spooled_at_ms) FROM spool").fetchone()
            except sqlite3.Error as exc:
                raise TransportError(f"spool read failed: {exc}", spool=str(self.path)) from exc
        if row is None or row[0] is None:
            return None
        return max(0.0, time.time() - int(row[0]) / 1000)

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Durably append all ``records``, or none: raises SpoolFullError past ``max_bytes``."""
        size = sum(_nbytes(k, v) for k, v in records)
        now = int(time.time() * 1000)
        with self._lock:
            if self._bytes + size > self.max_bytes:
                # No path among the values: the message reaches HTTP clients in the 503.
                raise SpoolFullError(
                    "the broker is unreachable and the spool is full",
                    held_bytes=self._bytes, refused_bytes=size, max_bytes=self.max_bytes,
                )
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    "INSERT INTO spool (key, value, spooled_at_ms) VALUES (?, ?, ?)",
                    [(k, v, now) for k, v in records],
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise TransportError(f"spool write failed: {exc}", spool=str(self.path)) from exc
            self._records += len(records)
            self._bytes += size

    def peek(self, max_records: int, max_bytes: int) -> list[SpooledRecord]:
        """The oldest records, up to ``max_records`` and about ``max_bytes`` (at least one)."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT id, key, value FROM spool ORDER BY id LIMIT ?", (max_records,)
                ).fetchall()
            except sqlite3.Error as exc:
                raise TransportError(f"spool read failed: {exc}", spool=str(self.path)) from exc
        out: list[SpooledRecord] = []
        size = 0
        for rid, key, value in rows:
            record = SpooledRecord(int(rid), key, bytes(value))
            if out and size + record.nbytes > max_bytes:
                break
            out.append(record)
            size += record.nbytes
        return out

    def remove(self, records: Iterable[SpooledRecord]) -> None:
        """Delete delivered records."""
        done = list(records)
        if not done:
            return
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("DELETE FROM spool WHERE id = ?", [(r.id,) for r in done])
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise TransportError(f"spool delete failed: {exc}", spool=str(self.path)) from exc
            self._records -= len(done)
            self._bytes -= sum(r.nbytes for r in done)

    def close(self) -> None:
        """Close the file and release the lock (what is spooled stays for the next start)."""
        with self._lock:
            self._conn.close()
            self._release_lock()
