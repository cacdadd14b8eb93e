"""Dedupe: flag every event whose (tenant, event_id) the lake already holds.

Trackers retry (Snowplow on most non-2xx, analytics.js on timeouts), so the same event can
arrive twice, seconds to hours apart. The loader keeps the keys of the events written in
the last ``dedupe_window_hours`` in an in-memory DuckDB table, seeded from the lake's recent
``events`` partitions on start. A row whose key is already there, or that repeats a key
earlier in its own batch, gets ``is_duplicate = true``: it stays in the lake (nothing is
lost, retry rates stay measurable through ``events_all``) and the ``events`` view hides it,
at the cost of one boolean filter instead of a query-time dedupe of every row.

Keys are the 128-bit md5 of ``tenant \\0 event_id`` (two UBIGINT halves). Keys are
remembered only once their batch is durable (``remember`` after the commit), so an
abandoned batch leaves no trace. The collector routes a visitor's hits, retries included,
to one transport partition, so the loader owning it sees the retry; the window is seeded
again whenever partitions are assigned, so it also holds what an earlier owner of a
partition wrote. Limits, documented in docs/ARCHITECTURE.md: a retry arriving after the
window is not flagged, nor one the collector routed elsewhere (its visitor unreadable).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from schemas.delta import table_snapshot
from schemas.storage import LakeLocation

log = logging.getLogger(__name__)

_KEY_INPUT = "tenant || chr(0) || event_id"
KEY_SQL = f"md5_number_upper({_KEY_INPUT}) AS k_hi, md5_number_lower({_KEY_INPUT}) AS k_lo"
_SLACK = dt.timedelta(hours=1)
_ORDER = "received_at, source, source_partition, source_offset, source_index, item_index"


class Deduper:
    """Window of recently written event keys, in the pipeline's DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, window_hours: float) -> None:
        self.con = con
        self.window = dt.timedelta(hours=window_hours)
        self.enabled = window_hours > 0
        self._last_prune = time.monotonic()
        # The lake the window was seeded from, and since when the table holds every key the
        # lake has (None: not seeded from a lake, e.g. a replay's own window).
        self._lake: LakeLocation | None = None
        self._since: dt.datetime | None = None
        # The oldest event of the last batch flagged: pruning keeps its window.
        self._position: dt.datetime | None = None
        con.execute("CREATE TABLE IF NOT EXISTS dedupe_seen "
                    "(k_hi UBIGINT, k_lo UBIGINT, received_at TIMESTAMPTZ)")

    def seed(self, lake: LakeLocation) -> int:
        """Replace the window with the keys of events the lake holds from within the window
        (on every partition assignment: an earlier owner of a partition wrote some)."""
        if not self.enabled:
            return 0
        self.con.execute("DELETE FROM dedupe_seen")
        since = dt.datetime.now(dt.UTC) - self.window
        files = [f.uri for f in table_snapshot(lake, "events").files if f.date >= since.date()]
        lake.register_duckdb(self.con)
        count = self.seed_files(files, until=since + self.window)
        self._lake, self._since = lake, since
        return count

    def _extend(self, since: dt.datetime) -> None:
        """Add the lake's keys received from ``since`` up to what the table already holds:
        a batch older than the seed (a backlog) needs them to see its retries."""
        assert self._lake is not None and self._since is not None
        started = time.monotonic()
        files = [f.uri for f in table_snapshot(self._lake, "events").files
                 if since.date() <= f.date <= self._since.date()]
        if files:
            self.con.execute(
                f"INSERT INTO dedupe_seen SELECT {KEY_SQL}, received_at FROM read_parquet(?, "
                "union_by_name = true, hive_partitioning = true) "
                "WHERE received_at >= ? AND received_at < ? AND NOT coalesce(is_duplicate, false)",
                [files, since, self._since])
            log.info("dedupe window extended back to %s for a backlog: %d files in %.1fs",
                     since.isoformat(), len(files), time.monotonic() - started)
        self._since = since

    def seed_files(self, files: list[str], until: dt.datetime | None = None) -> int:
        """Load the keys of the events in ``files`` received in the window before ``until``
        (default now)."""
        if not self.enabled or not files:
            return 0
        started = time.monotonic()
        since = (until or dt.datetime.now(dt.UTC)) - self.window
        self.con.execute(
            f"INSERT INTO dedupe_seen SELECT {KEY_SQL}, received_at FROM read_parquet(?, "
            "union_by_name = true, hive_partitioning = true) WHERE received_at >= ? "
            "AND NOT coalesce(is_duplicate, false)", [files, since])
        count = int(self.con.sql("SELECT count(*) FROM dedupe_seen").fetchall()[0][0])
        log.info("dedupe window seeded with %d event keys from %d files in %.1fs", count,
                 len(files), time.monotonic() - started)
        return count

    def flag(self, events: pa.Table) -> tuple[pa.Table, pa.Table | None]:
        """``events`` with ``is_duplicate`` set, and the keys it adds once durable.

        Only the key and ordering columns go through DuckDB; the flags come back in row
        order and replace one column of ``events`` (no copy of the wide table).
        """
        if events.num_rows == 0:
            return events, None
        index = events.schema.get_field_index("is_duplicate")
        if not self.enabled:
            return events.set_column(index, "is_duplicate",
                                     pa.array([False] * events.num_rows)), None
        oldest = pc.min(events["received_at"]).as_py()
        if oldest is not None:
            self._position = oldest
            # A restart's first records are a little older than its seed: reading the lake
            # again for minutes at the window's far edge is not worth it, an hour is.
            if self._since is not None and oldest - self.window < self._since - _SLACK:
                self._extend(oldest - self.window - _SLACK)
        narrow = events.select(["tenant", "event_id", "is_duplicate", *_ORDER.split(", ")])
        narrow = narrow.append_column("_row", pa.array(range(events.num_rows), pa.int64()))
        self.con.register("dedupe_narrow", narrow)
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE dedupe_batch AS "
                             f"SELECT *, {KEY_SQL} FROM dedupe_narrow")
        finally:
            self.con.unregister("dedupe_narrow")
        # Probe the window with the batch's keys: the batch is the small, build side. A key
        # counts when it was received within the window before the event: the window is
        # pruned only now and then (and a replay of old days never waits for it), so a key
        # of the table may be older than that.
        out = self.con.sql(
            f"WITH hits AS (SELECT DISTINCT b._row FROM dedupe_batch b "
            f"  SEMI JOIN dedupe_seen s ON s.k_hi = b.k_hi AND s.k_lo = b.k_lo "
            f"  AND s.received_at >= b.received_at - ?::INTERVAL) "
            f"SELECT b._row, b.k_hi, b.k_lo, b.received_at, b.source_partition, "
            f"  coalesce(b.is_duplicate, false) OR h._row IS NOT NULL "
            f"  OR (row_number() OVER k > 1 "
            f"      AND first_value(b.received_at) OVER k >= b.received_at - ?::INTERVAL) "
            f"  AS is_duplicate "
            f"FROM dedupe_batch b LEFT JOIN hits h ON b._row = h._row "
            f"WINDOW k AS (PARTITION BY b.k_hi, b.k_lo ORDER BY {_ORDER}) "
            f"ORDER BY b._row", params=[self.window, self.window]).to_arrow_table()
        flags = out["is_duplicate"]
        keys = out.filter(pc.invert(flags)).select(["k_hi", "k_lo", "received_at",
                                                    "source_partition"])
        return events.set_column(index, "is_duplicate", flags), keys

    def forget(self, keys: pa.Table) -> None:
        """Drop keys (``k_hi``, ``k_lo``) from the window: their events left the lake."""
        if not self.enabled or keys.num_rows == 0:
            return
        self.con.register("dedupe_gone", keys)
        try:
            self.con.execute("DELETE FROM dedupe_seen WHERE (k_hi, k_lo) IN "
                             "(SELECT (k_hi, k_lo) FROM dedupe_gone)")
        finally:
            self.con.unregister("dedupe_gone")

    def remember(self, keys: pa.Table) -> None:
        """Add the keys of a batch that is now durable; prune keys older than the window."""
        if not self.enabled or keys.num_rows == 0:
            return
        self.con.register("dedupe_new", keys)
        try:
            self.con.execute("INSERT INTO dedupe_seen SELECT k_hi, k_lo, received_at "
                             "FROM dedupe_new")
        finally:
            self.con.unregister("dedupe_new")
        if time.monotonic() - self._last_prune > 600:
            self._last_prune = time.monotonic()
            # Relative to the keys and to the last batch, not the clock, so a replay of old
            # days, or a loader catching up on a backlog, keeps its window.
            newest = self.con.sql("SELECT max(received_at) FROM dedupe_seen").fetchall()[0][0]
            if newest is None:
                return
            cutoff = min(newest, self._position or newest) - self.window
            self.con.execute("DELETE FROM dedupe_seen WHERE received_at < ?", [cutoff])
            if self._since is not None:
                self._since = max(self._since, cutoff)
