"""The loader loop: poll, batch per transport partition, flush on size or age, commit after.

A partition's batch is due when it holds ``max_batch_records`` records or
``max_batch_bytes`` bytes, or when its first record has waited the flush interval. When
one is due, the batches of every partition the loader holds records of go through the
pipeline together (a pipeline pass has a fixed cost, binding its SQL, that one pass per
partition would pay once per partition) and are appended to the lake in one commit per
table (ingest/lake/writer.py: exactly once, whatever moment a crash hits). Transport
offsets are committed afterwards, for lag and log trimming only: on (re)assignment a
partition resumes from what the lake's raw table says it holds.

State that outlives a batch is the lake's too, so any loader can take any partition over:
the session state of the visitors routed to a partition is appended to the lake's state
table with every flush, ahead of the data (ingest/lake/state.py), and loaded as of the raw
table's offset when the partition is assigned; the dedupe window is seeded from the lake's
events at every assignment, so it holds what the partition's earlier owner wrote.

The flush interval adapts to the number of tenant-days a flush writes: every flush adds
one file per table and tenant-day, so a loader serving hundreds of tenants waits longer
(up to ``max_flush_interval_s``) to keep the rate of new files near ``target_files_per_s``;
with few tenants it flushes every ``flush_interval_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from ingest.failures import ProcessingUnavailable
from ingest.lake.errors import LakeWriteError
from ingest.lake.forget import ForgetReceipts
from ingest.lake.state import SessionStateTable
from ingest.lake.writer import AppendResult, LakeWriter
from ingest.loader.config import LoaderSettings
from ingest.loader.pipeline import BatchTables, Pipeline
from ingest.metrics.loader import LoaderMetrics
from ingest.transport.base import Consumer, RebalanceListener, Record
from schemas.errors import TransportError
from schemas.storage import LakeLocation
from schemas.tenants import Tenants

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[RebalanceListener], Consumer]

LAG_AFTER_FLUSH_S = 1.0
"""After a flush the lag is measured again within this long (then every lag_poll_s)."""


@dataclass
class _Buffer:
    records: list[Record] = field(default_factory=list)
    nbytes: int = 0
    since: float = 0.0


@dataclass
class LoaderStats:
    """Counters of what the loader did (logged; /metrics has them per tenant and reason)."""

    records: int = 0
    hits: int = 0
    events: int = 0
    duplicates: int = 0
    quarantined: int = 0
    files: int = 0
    flushes: int = 0
    skipped_rows: int = 0
    """Rows of re-read records that the lake already held (after a crash or rebalance)."""
    commits_failed: int = 0
    """Transport offset commits that failed (harmless: the lake says where to resume)."""
    processing_failures: int = 0
    """Batches aborted for a reason outside their data (retried, nothing written)."""


class Loader:
    """Consumes the transport and writes the lake until stopped."""

    def __init__(self, consumer_factory: ConsumerFactory, settings: LoaderSettings,
                 tenants: Tenants | None = None, pipeline: Pipeline | None = None,
                 writer: LakeWriter | None = None, metrics: LoaderMetrics | None = None
                 ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.lake = LakeLocation.parse(settings.lake)
        self.pipeline = pipeline or Pipeline(settings, tenants)
        self.writer = writer or LakeWriter(self.lake, settings.zstd_level,
                                           write_threads=settings.write_threads)
        self._consumer_factory = consumer_factory
        self._consumer: Consumer | None = None
        self._buffers: dict[int, _Buffer] = {}
        self._interval = settings.flush_interval_s
        self._stop = threading.Event()
        self._forgets = ForgetReceipts(self.lake)
        self.state = SessionStateTable(self.lake)
        self._store = self.pipeline.session_store
        if self._store is not None:
            self._store.track_changes = True
        self._owned: set[int] = set()
        self._processing_delay = 0.5
        self._next_lag = 0.0
        self.stats = LoaderStats()
        self.ready = threading.Event()

    # -- RebalanceListener
    def on_assigned(self, partitions: set[int]) -> None:
        """Resume each partition after the last record the lake's raw table holds."""
        assert self._consumer is not None
        stream = self._consumer.stream_id
        held: dict[int, int | None] = {}
        for p in sorted(partitions):
            self._buffers.pop(p, None)
            last = held[p] = self.writer.held("raw", stream, p)
            if last is not None:
                self._consumer.seek(p, last + 1)
                log.info("partition %d of %s resumes at offset %d (from the lake)", p, stream,
                         last + 1)
        self._owned |= set(partitions)
        self._load_state(stream, held)
        # What earlier owners of these partitions wrote is in the lake now: seed from it.
        self.pipeline.seed_dedupe(self.lake)

    def _load_state(self, stream: str, held: dict[int, int | None]) -> None:
        """Take over the session state of these partitions as of what raw holds of them."""
        if self._store is None:
            return
        states = self.state.load(self.pipeline.con, stream, held)
        self._store.replace(held, states)

    def on_revoked(self, partitions: set[int]) -> None:
        """Flush what we hold of partitions being taken away."""
        held = sorted(p for p in partitions if p in self._buffers)
        try:
            if held:
                self._flush(held)
        except (LakeWriteError, ProcessingUnavailable) as exc:
            # The next owner resumes from what the lake holds: nothing is lost.
            log.warning("could not flush revoked partitions %s: %s", held, exc)
            for p in held:
                self._buffers.pop(p, None)
        finally:
            self._owned -= set(partitions)
            if self._store is not None:
                self._store.drop_partitions(partitions)

    # -- loop
    def run(self, stop: threading.Event) -> None:
        """Poll and load until ``stop`` is set; then flush what is buffered and close."""
        self._stop = stop
        self._forgets.seen_until_now()
        self._consumer = self._consumer_factory(self)
        self.ready.set()
        next_stats = time.monotonic() + self.settings.stats_interval_s
        next_forget = time.monotonic() + self.settings.forget_poll_s
        try:
            while not stop.is_set():
                self._step()
                if self.metrics is not None and time.monotonic() >= self._next_lag:
                    self._measure_lag(self.metrics)
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.settings.stats_interval_s
                    self._log_stats()
                if time.monotonic() >= next_forget:
                    next_forget = time.monotonic() + self.settings.forget_poll_s
                    self._apply_forgets()
            if self._buffers:
                self._flush_with_retry(sorted(self._buffers), final=True)
        finally:
            self._consumer.close()
            self.pipeline.close()

    def _apply_forgets(self) -> None:
        """Drop what forget requests removed from the lake from this loader's memory too: the
        dedupe keys of the removed events, and (reloaded from the lake, where forget deleted
        them) the session state of the partitions this loader owns."""
        keys = self._forgets.new_event_keys()
        if keys.num_rows == 0 and not self._forgets.changed:
            return
        self.pipeline.deduper.forget(keys)
        if self._consumer is not None and self._owned:
            stream = self._consumer.stream_id
            self._load_state(stream, {p: self.writer.held("raw", stream, p)
                                      for p in sorted(self._owned)})

    def _log_stats(self) -> None:
        """One INFO line of counters and the consumer lag (/metrics has them per tenant)."""
        assert self._consumer is not None
        try:
            lag: int | str = self._consumer.lag()
        except TransportError as exc:
            lag = f"unknown ({exc})"
        s = self.stats
        log.info("loader %s: records=%d hits=%d events=%d quarantined=%d files=%d flushes=%d "
                 "flush_interval=%.1fs lag=%s", self._consumer.source, s.records, s.hits,
                 s.events, s.quarantined, s.files, s.flushes, self._interval, lag)

    def _measure_lag(self, metrics: LoaderMetrics) -> None:
        """The transport's lag per partition into the gauges (on the loop's thread: Kafka's
        consumer is not thread-safe)."""
        assert self._consumer is not None
        self._next_lag = time.monotonic() + self.settings.lag_poll_s
        try:
            lags = self._consumer.partition_lag()
        except TransportError as exc:
            log.debug("lag unknown: %s", exc)
            return
        metrics.lag(lags)

    def _step(self) -> None:
        assert self._consumer is not None
        now = time.monotonic()
        timeout = self.settings.poll_timeout_s
        for buf in self._buffers.values():
            timeout = min(timeout, max(0.0, buf.since + self._interval - now))
        records = self._consumer.poll(self.settings.max_batch_records, timeout)
        now = time.monotonic()
        for record in records:
            if record.partition not in self._buffers:
                self._buffers[record.partition] = _Buffer(since=now)
            buf = self._buffers[record.partition]
            buf.records.append(record)
            buf.nbytes += len(record.value)
        self.stats.records += len(records)
        if self.metrics is not None and records:
            self.metrics.records.inc(len(records))
        if any(len(buf.records) >= self.settings.max_batch_records
               or buf.nbytes >= self.settings.max_batch_bytes
               or now - buf.since >= self._interval
               for buf in self._buffers.values()):
            self._flush_with_retry(sorted(self._buffers))

    def _flush_with_retry(self, partitions: list[int], final: bool = False) -> None:
        """Flush; on a lake write failure retry with backoff until it works or we stop.

        The batch is processed once; only its append is retried (the append skips what an
        earlier attempt committed). Stopping gives the batch up: the next run reads it again
        from what the lake holds.
        """
        try:
            batch = self._process(partitions)
        except ProcessingUnavailable as exc:
            # Not the data's fault (out of memory, a file error): nothing was written or
            # quarantined; the records are back in their buffers and go again after a pause.
            self.stats.processing_failures += 1
            if self.metrics is not None:
                self.metrics.processing_failures.inc()
            self._processing_delay = min(30.0, max(1.0, self._processing_delay * 2))
            log.error("%s; retrying in %.0fs", exc, self._processing_delay)
            self._stop.wait(self._processing_delay)
            return
        self._processing_delay = 0.5
        if batch is None:
            return
        delay = 0.5
        while True:
            try:
                self._write(*batch)
                return
            except LakeWriteError as exc:
                if self.metrics is not None:
                    self.metrics.write_failures.inc()
                if self._stop.is_set() and not final:
                    log.error("lake write failed while stopping; the batch will be read again "
                              "on restart: %s", exc)
                    return
                log.error("lake write failed, retrying in %.1fs: %s", delay, exc)
                if self._stop.wait(delay) and final:
                    log.error("stopping with an unwritten batch; it will be read again")
                    return
                delay = min(delay * 2, 30.0)

    def _flush(self, partitions: list[int]) -> None:
        """Process and write the buffered batches of ``partitions`` once."""
        batch = self._process(partitions)
        if batch is not None:
            self._write(*batch)

    def _process(self, partitions: list[int]
                 ) -> tuple[dict[int, int], BatchTables, pa.Table | None] | None:
        """Run the buffered records of ``partitions`` through the pipeline; take them out of
        the buffers. Returns the last offset per partition, the tables and the session states
        the batch changed, or None."""
        assert self._consumer is not None
        buffers = {p: self._buffers.pop(p) for p in partitions if p in self._buffers}
        records = [r for buf in buffers.values() for r in buf.records]
        if not records:
            return None
        started = time.perf_counter()
        try:
            tables = self.pipeline.process(records, self._consumer.source)
        except ProcessingUnavailable:
            self._buffers.update(buffers)
            if self._store is not None:  # sessionize may have moved on: back to the lake's state
                self._store.take_changes()
                stream = self._consumer.stream_id
                self._load_state(stream, {p: self.writer.held("raw", stream, p)
                                          for p in sorted(self._owned)})
            raise
        if self.metrics is not None:
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
        states = self._store.take_changes() if self._store is not None else None
        last = {p: buf.records[-1].offset for p, buf in buffers.items() if buf.records}
        return last, tables, states

    def _write(self, last: dict[int, int], tables: BatchTables,
               states: pa.Table | None = None) -> None:
        """Append a processed batch to the lake (session state first), then commit the
        transport offsets."""
        assert self._consumer is not None
        started = time.perf_counter()
        source = self._consumer.source
        if states is not None and states.num_rows:
            self.state.append(self._consumer.stream_id, states, last)
        result = self.writer.append(self._consumer.stream_id, {
            "raw": tables.raw, "events": tables.events, "quarantine": tables.quarantine,
        }, last)
        try:
            self._consumer.commit({p: o + 1 for p, o in last.items()})
        except TransportError as exc:
            # The lake holds the batch; the transport offset only trails it (lag, trimming).
            self.stats.commits_failed += 1
            if self.metrics is not None:
                self.metrics.offset_commit_failures.inc()
            log.warning("transport commit of %s up to %s failed (the lake holds the batch): %s",
                        source, last, exc)
        self.pipeline.remember(tables)
        self._count(tables, result)
        self._adapt_interval(result)
        if self.metrics is not None:
            self.metrics.write_seconds.observe(time.perf_counter() - started)
            self.metrics.batch(result.written, result.skipped,
                               {t: len(f) for t, f in result.files.items()},
                               result.commit_seconds)
            self.metrics.flush_interval.set(self._interval)
            # Measured again soon after a flush, at most once a second (Kafka's lag costs a
            # few broker requests); else every lag_poll_s.
            self._next_lag = min(self._next_lag, time.monotonic() + LAG_AFTER_FLUSH_S)

    def _count(self, tables: BatchTables, result: AppendResult) -> None:
        self.stats.flushes += 1
        self.stats.hits += result.rows.get("raw", 0)
        self.stats.events += result.rows.get("events", 0)
        self.stats.quarantined += result.rows.get("quarantine", 0)
        self.stats.skipped_rows += sum(result.skipped.values())
        if tables.events.num_rows:
            self.stats.duplicates += int(pc.sum(tables.events["is_duplicate"]).as_py() or 0)
        self.stats.files += result.file_count

    def _adapt_interval(self, result: AppendResult) -> None:
        s = self.settings
        tenant_days = max((len(files) for files in result.files.values()), default=0)
        wanted = tenant_days / s.target_files_per_s
        self._interval = min(s.max_flush_interval_s, max(s.flush_interval_s, wanted))
