"""The loader's metrics: every event accounted for, per tenant, and how the loader keeps up.

Per tenant, what the loader wrote from the hits it read::

    driftnet_loader_events_received_total = driftnet_loader_events_written_total
                                          + driftnet_loader_events_duplicate_total
                                          + driftnet_loader_events_quarantined_total (all reasons)

``received`` counts the rows a batch produced (one events row per parsed event, one
quarantine row per event or hit that failed); ``written`` the events rows dedupe did not
flag; ``duplicate`` the ones it flagged (written, with ``is_duplicate``). All are counted
from the rows a commit added, so a batch re-read after a crash is not counted twice.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ingest.metrics.tenants import TenantLabels
from schemas.lake import Table
from schemas.quarantine import ReasonCode

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds: a small batch takes milliseconds, a big flush of many tenants seconds."""

_REASONS = frozenset(c.value for c in ReasonCode)


class LoaderMetrics:
    """Counters, histograms and gauges of one loader, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, tenants: TenantLabels) -> None:
        self.registry = registry
        self.tenants = tenants
        self.records = Counter("driftnet_loader_records", "Transport records (bundles of "
                               "hits) polled.", registry=registry)
        self.hits = Counter("driftnet_loader_hits", "Hits written to the raw table, by "
                            "tenant.", ["tenant"], registry=registry)
        self.received = Counter("driftnet_loader_events_received", "Events (and failed hits) "
                                "the loader turned into rows: written + duplicate + "
                                "quarantined.", ["tenant"], registry=registry)
        self.written = Counter("driftnet_loader_events_written", "Events written to the "
                               "events table and not flagged duplicate.", ["tenant"],
                               registry=registry)
        self.duplicate = Counter("driftnet_loader_events_duplicate", "Events written with "
                                 "is_duplicate (a retry of an event id seen in the dedupe "
                                 "window).", ["tenant"], registry=registry)
        self.quarantined = Counter("driftnet_loader_events_quarantined", "Rows written to the "
                                   "quarantine table, by reason.", ["tenant", "reason"],
                                   registry=registry)
        self.skipped = Counter("driftnet_loader_rows_skipped", "Rows of re-read records the "
                               "table already held (after a crash or rebalance), not written "
                               "again.", ["table"], registry=registry)
        self.files = Counter("driftnet_loader_files_written", "Data files the loader added.",
                             ["table"], registry=registry)
        self.flushes = Counter("driftnet_loader_flushes", "Batches written to the lake.",
                               registry=registry)
        self.processing_failures = Counter(
            "driftnet_loader_processing_failures", "Batches aborted for a reason outside their "
            "data (retried; nothing written).", registry=registry)
        self.write_failures = Counter("driftnet_loader_write_failures", "Lake appends that "
                                      "failed (retried).", registry=registry)
        self.offset_commit_failures = Counter(
            "driftnet_loader_offset_commit_failures", "Transport offset commits that failed "
            "(harmless: the lake says where to resume).", registry=registry)
        self.batch_seconds = Histogram("driftnet_loader_batch_seconds", "Time to decode, "
                                       "parse, enrich and dedupe one batch.",
                                       buckets=DURATION_BUCKETS, registry=registry)
        self.write_seconds = Histogram("driftnet_loader_write_seconds", "Time to append one "
                                       "batch to the lake (files and commits of every table) "
                                       "and commit the transport offsets.",
                                       buckets=DURATION_BUCKETS, registry=registry)
        self.commit_seconds = Histogram("driftnet_loader_commit_seconds", "Time of one Delta "
                                        "commit (files already written).", ["table"],
                                        buckets=DURATION_BUCKETS, registry=registry)
        self.last_flush = Gauge("driftnet_loader_last_flush_timestamp_seconds", "When the "
                                "loader last wrote a batch (Unix time).", registry=registry)
        self.flush_interval = Gauge("driftnet_loader_flush_interval_seconds", "The adaptive "
                                    "flush interval now in use.", registry=registry)
        self.lag_records = Gauge("driftnet_loader_lag_records", "Records in the transport "
                                 "not yet in the lake, per assigned partition.", ["partition"],
                                 registry=registry)
        self.lag_seconds = Gauge("driftnet_loader_lag_seconds", "While records wait: age of "
                                 "the newest hit the loader wrote from the partition (since "
                                 "start when it wrote none); 0 when nothing waits.",
                                 ["partition"], registry=registry)
        self._started = time.time()
        self._newest: dict[int, float] = {}
        self._lag_partitions: set[int] = set()

    def batch(self, written: Mapping[Table, pa.Table], skipped: Mapping[Table, int],
              files: Mapping[Table, int], commit_seconds: Mapping[Table, float]) -> None:
        """Count what one append added to the lake."""
        raw = written.get("raw")
        events = written.get("events")
        quarantine = written.get("quarantine")
        hits = _per_tenant(raw)
        kept = _per_tenant(events, "is_duplicate", False)
        dupes = _per_tenant(events, "is_duplicate", True)
        failed = _per_tenant_reason(quarantine)
        received: Tally[str] = Tally()
        received.update(kept)
        received.update(dupes)
        for (tenant, _), n in failed.items():
            received[tenant] += n
        label = self.tenants.labels({t: received[t] + hits[t] for t in {*received, *hits}})
        for tenant, n in hits.items():
            self.hits.labels(label[tenant]).inc(n)
        for tenant, n in received.items():
            self.received.labels(label[tenant]).inc(n)
        for tenant, n in kept.items():
            self.written.labels(label[tenant]).inc(n)
        for tenant, n in dupes.items():
            self.duplicate.labels(label[tenant]).inc(n)
        for (tenant, reason), n in failed.items():
            self.quarantined.labels(label[tenant],
                                    reason if reason in _REASONS else "unknown").inc(n)
        for table, n in skipped.items():
            if n:
                self.skipped.labels(table).inc(n)
        for table, n in files.items():
            self.files.labels(table).inc(n)
        for table, seconds in commit_seconds.items():
            self.commit_seconds.labels(table).observe(seconds)
        self.flushes.inc()
        self.last_flush.set(time.time())
        if raw is not None and raw.num_rows:
            self._remember_newest(raw)

    def _remember_newest(self, raw: pa.Table) -> None:
        grouped = raw.group_by("source_partition").aggregate([("received_at", "max")])
        for p, newest in zip(grouped["source_partition"].to_pylist(),
                             grouped["received_at_max"].to_pylist(), strict=True):
            if newest is not None:
                self._newest[int(p)] = max(self._newest.get(int(p), 0.0), newest.timestamp())

    def lag(self, lags: Mapping[int, int]) -> None:
        """Set the lag gauges from the transport's lag per assigned partition."""
        now = time.time()
        for p in self._lag_partitions - set(lags):
            self.lag_records.remove(str(p))
            self.lag_seconds.remove(str(p))
        for p, records in lags.items():
            self.lag_records.labels(str(p)).set(records)
            behind = now - self._newest.get(p, self._started) if records else 0.0
            self.lag_seconds.labels(str(p)).set(max(0.0, behind))
        self._lag_partitions = set(lags)


def _per_tenant(table: pa.Table | None, flag: str | None = None,
                value: bool = False) -> Tally[str]:
    """Rows per tenant (of those whose boolean ``flag`` column is ``value``)."""
    if table is None or table.num_rows == 0:
        return Tally()
    if flag is not None:
        column = pc.fill_null(table[flag], False)
        table = table.filter(column if value else pc.invert(column))
    if table.num_rows == 0:
        return Tally()
    counts = pc.value_counts(table["tenant"]).to_pylist()
    return Tally({c["values"]: c["counts"] for c in counts})


def _per_tenant_reason(table: pa.Table | None) -> Tally[tuple[str, str]]:
    if table is None or table.num_rows == 0:
        return Tally()
    grouped = table.group_by(["tenant", "reason"]).aggregate([("reason", "count")])
    return Tally({(t, r): n for t, r, n in zip(
        grouped["tenant"].to_pylist(), grouped["reason"].to_pylist(),
        grouped["reason_count"].to_pylist(), strict=True)})
