"""The loader loop: poll, batch per transport partition, flush on size or age, commit after.

A partition's batch is due when it holds ``max_batch_records`` records or
``max_batch_bytes`` bytes, or ``flush_interval_s`` after its first record arrived, so an
event is queryable about a second after its beacon. When one is due, the batches of every
partition the loader holds records of go through the pipeline together: a pipeline pass
has a fixed cost (binding its SQL) that one pass per partition would pay once per
partition. Files are then written, and offsets committed, partition by partition: offsets
are committed only once that partition's files are durable (see writer.py for why a crash
cannot duplicate or lose rows), and a partition whose commit fails costs only its own files.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc

from ingest.loader.config import LoaderSettings
from ingest.loader.errors import LakeWriteError
from ingest.loader.pipeline import BatchTables, Pipeline
from ingest.loader.writer import LakeWriter
from ingest.transport.base import Consumer, RebalanceListener, Record
from schemas.errors import TransportError
from schemas.tenants import Tenants

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[RebalanceListener], Consumer]


@dataclass
class _Buffer:
    records: list[Record] = field(default_factory=list)
    nbytes: int = 0
    since: float = 0.0


@dataclass
class LoaderStats:
    """Counters of what the loader did (logged, and exposed for status and tests)."""

    records: int = 0
    hits: int = 0
    events: int = 0
    duplicates: int = 0
    quarantined: int = 0
    files: int = 0
    flushes: int = 0
    commits_failed: int = 0


class Loader:
    """Consumes the transport and writes the lake until stopped."""

    def __init__(self, consumer_factory: ConsumerFactory, settings: LoaderSettings,
                 tenants: Tenants | None = None, pipeline: Pipeline | None = None,
                 writer: LakeWriter | None = None) -> None:
        self.settings = settings
        self.pipeline = pipeline or Pipeline(settings, tenants)
        self.writer = writer or LakeWriter(Path(settings.lake), settings.zstd_level)
        self._consumer_factory = consumer_factory
        self._consumer: Consumer | None = None
        self._buffers: dict[int, _Buffer] = {}
        self.stats = LoaderStats()
        self.ready = threading.Event()

    # -- RebalanceListener
    def on_assigned(self, partitions: set[int]) -> None:
        """Remove files of batches that never committed before reading these partitions."""
        assert self._consumer is not None
        source = self._consumer.source
        for p in sorted(partitions):
            committed = self._consumer.committed(p)
            # Events about to be deleted must not count as seen when the batch is re-read.
            self.pipeline.forget(self.writer.uncommitted_files(source, p, committed))
            self.writer.recover(source, p, committed)

    def on_revoked(self, partitions: set[int]) -> None:
        """Flush and commit what we hold of partitions being taken away."""
        held = sorted(p for p in partitions if p in self._buffers)
        if not held:
            return
        try:
            self._flush(held)
        except LakeWriteError as exc:
            log.warning("abandoning batches of revoked partitions %s: %s", held, exc)
        for p in held:
            self._buffers.pop(p, None)

    # -- loop
    def run(self, stop: threading.Event) -> None:
        """Poll and load until ``stop`` is set; then flush what is buffered and close."""
        self.pipeline.seed_dedupe(Path(self.settings.lake))
        self._consumer = self._consumer_factory(self)
        self.ready.set()
        next_stats = time.monotonic() + self.settings.stats_interval_s
        try:
            while not stop.is_set():
                self._step()
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.settings.stats_interval_s
                    self._log_stats()
            if self._buffers:
                self._flush_with_retry(sorted(self._buffers))
        finally:
            self._consumer.close()
            self.pipeline.close()

    def _log_stats(self) -> None:
        """One INFO line of counters and the consumer lag (metrics before /metrics exists)."""
        assert self._consumer is not None
        try:
            lag: int | str = self._consumer.lag()
        except TransportError as exc:
            lag = f"unknown ({exc})"
        s = self.stats
        log.info("loader %s: records=%d hits=%d events=%d quarantined=%d files=%d flushes=%d "
                 "commits_failed=%d lag=%s", self._consumer.source, s.records, s.hits, s.events,
                 s.quarantined, s.files, s.flushes, s.commits_failed, lag)

    def _step(self) -> None:
        assert self._consumer is not None
        now = time.monotonic()
        timeout = self.settings.poll_timeout_s
        for buf in self._buffers.values():
            timeout = min(timeout, max(0.0, buf.since + self.settings.flush_interval_s - now))
        records = self._consumer.poll(self.settings.max_batch_records, timeout)
        now = time.monotonic()
        for record in records:
            if record.partition not in self._buffers:
                self._buffers[record.partition] = _Buffer(since=now)
            buf = self._buffers[record.partition]
            buf.records.append(record)
            buf.nbytes += len(record.value)
        self.stats.records += len(records)
        if any(len(buf.records) >= self.settings.max_batch_records
               or buf.nbytes >= self.settings.max_batch_bytes
               or now - buf.since >= self.settings.flush_interval_s
               for buf in self._buffers.values()):
            self._flush_with_retry(sorted(self._buffers))

    def _flush_with_retry(self, partitions: list[int]) -> None:
        assert self._consumer is not None
        delay = 0.5
        while True:
            try:
                abandoned = self._flush(partitions)
                break
            except LakeWriteError as exc:
                # Partitions committed before the failure are no longer buffered.
                log.error("lake write failed, retrying in %.1fs: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        if abandoned:
            # Those batches were abandoned: read them again from the committed offset.
            time.sleep(delay)
            for p in abandoned:
                self._consumer.rewind(p)

    def _flush(self, partitions: list[int]) -> list[int]:
        """Load the buffered batches of ``partitions``; return those abandoned at commit."""
        assert self._consumer is not None
        buffers = {p: self._buffers[p] for p in partitions if p in self._buffers}
        for p in [p for p, buf in buffers.items() if not buf.records]:
            del buffers[p], self._buffers[p]
        if not buffers:
            return []
        source = self._consumer.source
        tables = self.pipeline.process([r for buf in buffers.values() for r in buf.records],
                                       source)
        abandoned: list[int] = []
        for p, buf in buffers.items():
            part = tables if len(buffers) == 1 else tables.for_partition(p)
            if not self._write_and_commit(source, p, buf.records[0].offset,
                                          buf.records[-1].offset, part):
                abandoned.append(p)
        return abandoned

    def _write_and_commit(self, source: str, partition: int, first: int, last: int,
                          tables: BatchTables) -> bool:
        """Write one partition's batch, then commit it; False when it had to be abandoned."""
        assert self._consumer is not None
        files = self.writer.write_batch(source, partition, first, last, {
            "raw": tables.raw, "events": tables.events, "quarantine": tables.quarantine,
        })
        try:
            self._consumer.commit({partition: last + 1})
        except TransportError as exc:
            # Someone else owns the partition now (or the log is gone): our files must go,
            # the new owner re-reads the batch from the committed offset.
            self.stats.commits_failed += 1
            log.warning("commit of %s p%d up to %d failed, abandoning the batch: %s",
                        source, partition, last, exc)
            self.writer.abandon(source, partition, files)
            self._buffers.pop(partition, None)
            return False
        self._buffers.pop(partition, None)
        self.writer.committed(source, partition)
        self.pipeline.remember(tables)
        self.stats.flushes += 1
        self.stats.hits += tables.raw.num_rows
        self.stats.events += tables.events.num_rows
        self.stats.duplicates += int(pc.sum(tables.events["is_duplicate"]).as_py() or 0)
        self.stats.quarantined += tables.quarantine.num_rows
        self.stats.files += len(files)
        log.debug("flushed %s p%d %d..%d: %d hits, %d events, %d quarantined, %d files",
                  source, partition, first, last, tables.raw.num_rows, tables.events.num_rows,
                  tables.quarantine.num_rows, len(files))
        return True
