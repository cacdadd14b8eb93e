"""The lake maintenance task's metrics: passes, what they merged, expired and vacuumed, and
the files each table holds."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PASS_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class TableOutcome(Protocol):
    """What a pass did to one table (ingest.lake.maintain.TableReport)."""

    files_after: int
    merged: int
    sorted_days: int
    expired_files: int
    vacuumed: int
    checkpoint: bool
    conflicts: int
    max_files_per_partition: int


class MaintainMetrics:
    """Counters and gauges of one maintenance task, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.passes = Counter("driftnet_maintain_passes", "Maintenance passes completed.",
                              registry=registry)
        self.failures = Counter("driftnet_maintain_pass_failures", "Maintenance passes that "
                                "failed (retried next pass).", registry=registry)
        self.pass_seconds = Histogram("driftnet_maintain_pass_seconds", "Time of one pass "
                                      "over every table.", buckets=PASS_BUCKETS,
                                      registry=registry)
        self.merged = Counter("driftnet_maintain_files_merged", "Small files compaction merged "
                              "away.", ["table"], registry=registry)
        self.sorted_days = Counter("driftnet_maintain_days_sorted", "Closed tenant-days "
                                   "rewritten sorted by visitor and time.", ["table"],
                                   registry=registry)
        self.expired = Counter("driftnet_maintain_files_expired", "Files removed by retention.",
                               ["table"], registry=registry)
        self.vacuumed = Counter("driftnet_maintain_files_vacuumed", "Unreferenced files "
                                "vacuum deleted.", ["table"], registry=registry)
        self.checkpoints = Counter("driftnet_maintain_checkpoints", "Delta log checkpoints "
                                   "written.", ["table"], registry=registry)
        self.conflicts = Counter("driftnet_maintain_conflicts", "Maintenance commits that lost "
                                 "a race with another commit (deferred to the next pass).",
                                 ["table"], registry=registry)
        self.files = Gauge("driftnet_lake_files", "Data files in the table's current "
                           "snapshot (after the last pass).", ["table"], registry=registry)
        self.max_files = Gauge("driftnet_lake_max_files_per_partition", "Most files of one "
                               "tenant-day of the table (after the last pass).", ["table"],
                               registry=registry)
        self.last_pass = Gauge("driftnet_maintain_last_pass_timestamp_seconds", "When the "
                               "last pass completed (Unix time).", registry=registry)

    def pass_done(self, tables: Iterable[tuple[str, TableOutcome]], seconds: float) -> None:
        """Count one completed pass."""
        for table, t in tables:
            self.merged.labels(table).inc(t.merged)
            self.sorted_days.labels(table).inc(t.sorted_days)
            self.expired.labels(table).inc(t.expired_files)
            self.vacuumed.labels(table).inc(t.vacuumed)
            self.checkpoints.labels(table).inc(int(t.checkpoint))
            self.conflicts.labels(table).inc(t.conflicts)
            self.files.labels(table).set(t.files_after)
            self.max_files.labels(table).set(t.max_files_per_partition)
        self.passes.inc()
        self.pass_seconds.observe(seconds)
        self.last_pass.set(time.time())
