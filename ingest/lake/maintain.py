"""The maintenance task: compaction, retention, checkpoints and vacuum, continuously.

One task per lake (inside ``driftnet up``; ``driftnet maintain`` for Kafka deployments).
Every ``interval_s`` a pass goes over the three tables: it removes expired tenant-days
(retention.py), merges the small files of open days and sorts closed days (compact.py),
checkpoints the Delta log and, every ``vacuum_interval_s``, vacuums (housekeeping.py).

It never blocks ingestion: loaders only append, and Delta lets appends commit whatever
maintenance does meanwhile. Maintenance commits all carry one application id, so if a
`forget` or a replay removed files concurrently, the later of the two commits is refused;
the pass then drops what it wrote and tries again next time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import duckdb
from deltalake import DeltaTable
from deltalake.transaction import AddAction, RemoveAction

from ingest.lake.compact import (
    SORTED_KIND,
    kind_of,
    merge,
    plan_partition,
    rewrite_sorted,
)
from ingest.lake.config import MaintainSettings
from ingest.lake.errors import ConcurrentCommitError, LakeWriteError
from ingest.lake.files import FileWriter, WrittenFile
from ingest.lake.housekeeping import Housekeeping
from ingest.lake.retention import expired
from ingest.lake.state import StateCompaction, compact_state, open_state
from ingest.lake.tables import commit, open_for_write, refresh
from ingest.metrics.lake import MaintainMetrics
from schemas.delta import DataFile, open_table, snapshot_files
from schemas.derived import drop_stored_sessions
from schemas.errors import DriftnetError
from schemas.lake import DERIVED_TABLES, MAINTENANCE_APP_ID, TABLES, Table, loader_app_id
from schemas.storage import LakeLocation
from schemas.tenants import Tenants

log = logging.getLogger(__name__)


@dataclass
class TableReport:
    """What one pass did to one table."""

    files_before: int = 0
    files_after: int = 0
    merged: int = 0
    """Files merged away (inputs of merges)."""
    sorted_days: int = 0
    expired_files: int = 0
    vacuumed: int = 0
    checkpoint: bool = False
    conflicts: int = 0
    max_files_per_partition: int = 0


@dataclass
class PassReport:
    """What one maintenance pass did, per table."""

    tables: dict[Table, TableReport] = field(default_factory=dict)
    state: StateCompaction = field(default_factory=StateCompaction)
    """The pass over the loaders' session state table."""
    seconds: float = 0.0


def remove_action(f: DataFile, data_change: bool) -> RemoveAction:
    """The Delta ``remove`` action of a data file."""
    return RemoveAction(f.path, data_change, int(time.time() * 1000), f.size,
                        {"tenant": f.tenant, "date": f.date.isoformat()})


def maintenance_commit(delta: DeltaTable, table: Table,
                       actions: Sequence[AddAction | RemoveAction], operation: str) -> int:
    """Commit actions that remove files, under the maintenance application id."""
    current = delta.transaction_version(MAINTENANCE_APP_ID) or 0
    return commit(delta, table, actions, operation=operation,
                  app_transactions={MAINTENANCE_APP_ID: current + 1})


class Maintainer:
    """Runs maintenance passes over one lake."""

    def __init__(self, lake: LakeLocation, settings: MaintainSettings | None = None,
                 tenants: Tenants | None = None, zstd_level: int = 3,
                 clock: Callable[[], dt.datetime] | None = None,
                 state_retention_days: float = 400,
                 after_pass: Sequence[Callable[[dt.datetime], object]] = (),
                 metrics: MaintainMetrics | None = None) -> None:
        self.lake = lake
        self.metrics = metrics
        self.after_pass = tuple(after_pass)
        """Called with the pass's time after each pass (the stored sessions' build, wired
        by driftnet: ingest does not know analytics)."""
        self.state_retention_days = state_retention_days
        self.settings = settings or MaintainSettings()
        self.tenants = tenants
        self.writer = FileWriter(lake, zstd_level)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._tables: dict[Table, DeltaTable] = {}
        self._housekeeping = {t: Housekeeping(self.settings) for t in TABLES}
        self._state_keeping = Housekeeping(self.settings)
        self._derived_keeping: dict[str, Housekeeping] = {}
        self._con: duckdb.DuckDBPyConnection | None = None
        self.passes = 0

    def _table(self, name: Table) -> DeltaTable:
        if name not in self._tables:
            self._tables[name] = open_for_write(
                self.lake, name, log_retention_days=self.settings.log_retention_days,
                deleted_file_retention_hours=self.settings.vacuum_retention_hours)
        return refresh(self._tables[name])

    def run(self, stop: threading.Event, nice: int = 10) -> None:
        """Run passes every ``interval_s`` until ``stop``; errors are logged, not fatal."""
        if nice:  # Linux: a thread has its own nice value; ingestion keeps the CPU first
            with contextlib.suppress(AttributeError, OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        while not stop.is_set():
            try:
                report = self.run_once()
                self._log(report)
            except DriftnetError as exc:
                log.warning("maintenance pass failed, retrying next pass: %s", exc)
                if self.metrics is not None:
                    self.metrics.failures.inc()
            except Exception:
                log.exception("maintenance pass failed")
                if self.metrics is not None:
                    self.metrics.failures.inc()
            stop.wait(self.settings.interval_s)

    def _log(self, report: PassReport) -> None:
        for name, t in report.tables.items():
            if t.merged or t.sorted_days or t.expired_files or t.vacuumed:
                log.info("maintain %s: %d -> %d files (merged %d, sorted days %d, expired %d, "
                         "vacuumed %d, max %d per tenant-day) in %.1fs", name, t.files_before,
                         t.files_after, t.merged, t.sorted_days, t.expired_files, t.vacuumed,
                         t.max_files_per_partition, report.seconds)

    def run_once(self, vacuum: bool | None = None) -> PassReport:
        """One pass over every table. ``vacuum`` forces (True) or skips (False) vacuum."""
        started = time.monotonic()
        report = PassReport()
        for name in TABLES:
            report.tables[name] = self._maintain_table(name, vacuum)
        report.state = self._maintain_state(vacuum)
        self._maintain_derived(vacuum)
        for hook in self.after_pass:
            hook(self._clock())
        self.passes += 1
        report.seconds = time.monotonic() - started
        if self.metrics is not None:
            self.metrics.pass_done(report.tables.items(), report.seconds)
        return report

    def _maintain_state(self, vacuum: bool | None) -> StateCompaction:
        """Collapse the session state table's rows per partition (ingest/lake/state.py)."""
        if self._con is None:
            self._con = duckdb.connect(config={"threads": 1, "memory_limit":
                                               self.settings.sort_memory_limit})
        raw = self._table("raw")

        def held(stream: str, partition: int) -> int | None:
            return raw.transaction_version(loader_app_id(stream, partition))

        report = compact_state(self.lake, self._con, held, min_files=self.settings.fanout,
                               retention_days=self.state_retention_days,
                               now_us=int(self._clock().timestamp() * 1e6))
        delta = open_state(self.lake)
        if delta is not None:
            self._state_keeping.checkpoint(delta)
            if vacuum is not False:
                self._state_keeping.vacuum(delta, time.monotonic(), force=bool(vacuum))
        return report

    def _maintain_derived(self, vacuum: bool | None) -> None:
        """Checkpoint and vacuum the stored sessions' tables (analytics/stored_sessions.py):
        the files their builds supersede, and those retention and replay drop, stay until
        then."""
        for table in DERIVED_TABLES:
            delta = open_table(self.lake, table)
            if delta is None:
                continue
            keeper = self._derived_keeping.setdefault(table, Housekeeping(self.settings))
            keeper.checkpoint(delta)
            if vacuum is not False:
                keeper.vacuum(delta, time.monotonic(), force=bool(vacuum))

    def _maintain_table(self, name: Table, vacuum: bool | None) -> TableReport:
        rep = TableReport()
        delta = self._table(name)
        files = snapshot_files(delta, self.lake, name)
        rep.files_before = len(files)
        now = self._clock()
        gone = expired(files, self.tenants, now.date())
        if gone:
            try:
                maintenance_commit(delta, name, [remove_action(f, True) for f in gone],
                                   "retention")
                rep.expired_files = len(gone)
                if name == "events":
                    # Stored sessions and identities summarise the expired days too (an
                    # identity link seen only there): dropped, the next pass rebuilds them
                    # from the events left; queries compute them meanwhile. Their files stay
                    # until vacuum, as the expired ones do: open connections read them.
                    for tenant in sorted({f.tenant for f in gone}):
                        drop_stored_sessions(self.lake, tenant, delete_files=False)
            except ConcurrentCommitError as exc:
                rep.conflicts += 1
                log.info("retention of %s deferred: %s", name, exc)
            delta = self._table(name)
            files = snapshot_files(delta, self.lake, name)
        self._compact(name, files, now, rep)
        delta = self._table(name)
        keeper = self._housekeeping[name]
        rep.checkpoint = keeper.checkpoint(delta)
        if vacuum is not False:
            rep.vacuumed = len(keeper.vacuum(delta, time.monotonic(), force=bool(vacuum)))
        after = snapshot_files(self._table(name), self.lake, name)
        rep.files_after = len(after)
        counts: dict[tuple[str, dt.date], int] = defaultdict(int)
        for f in after:
            counts[(f.tenant, f.date)] += 1
        rep.max_files_per_partition = max(counts.values(), default=0)
        return rep

    def _compact(self, name: Table, files: list[DataFile], now: dt.datetime,
                 rep: TableReport) -> None:
        by_partition: dict[tuple[str, dt.date], list[DataFile]] = defaultdict(list)
        for f in files:
            by_partition[(f.tenant, f.date)].append(f)
        merges: list[list[DataFile]] = []
        sorts: list[list[DataFile]] = []
        for (tenant, date), members in sorted(by_partition.items()):
            plan = plan_partition(tenant, date, members, now, self.settings)
            merges.extend(plan.merges)
            if plan.sort is not None:
                sorts.append(plan.sort)
        budget = self.settings.max_merge_bytes_per_pass
        removed: list[DataFile] = []
        added: list[WrittenFile] = []
        try:
            for group in merges:
                if budget <= 0:
                    break
                merged = merge(self.lake, self.writer, name, group)
                if merged is None:
                    continue
                budget -= sum(f.size for f in group)
                removed.extend(group)
                added.append(merged)
            self.writer.sync()
        except (OSError, DriftnetError) as exc:
            self._discard(name, added)
            raise LakeWriteError(f"merging files of {name} failed: {exc}") from exc
        if added and self._commit_rewrite(name, removed, added, "compact", rep):
            rep.merged += len(removed)
        for day in sorts[: self.settings.max_closed_days_per_pass]:
            try:
                written = rewrite_sorted(self.lake, self.writer, name, day, self.settings)
                self.writer.sync()
            except (OSError, DriftnetError) as exc:
                raise LakeWriteError(f"sorting a day of {name} failed: {exc}") from exc
            if written and self._commit_rewrite(name, day, written, "sort", rep):
                rep.sorted_days += 1

    def _commit_rewrite(self, name: Table, removed: Sequence[DataFile],
                        added: Sequence[WrittenFile], operation: str, rep: TableReport) -> bool:
        """Replace ``removed`` by ``added`` if every removed file is still in the table.

        The check runs on the snapshot the commit is made against; a commit that removed
        files after it carries the maintenance application id too, so Delta refuses ours.
        """
        delta = self._table(name)
        active = {f.path for f in snapshot_files(delta, self.lake, name)}
        if any(f.path not in active for f in removed):
            rep.conflicts += 1
            log.info("%s of %s skipped: some of its files were removed meanwhile", operation,
                     name)
            self._discard(name, added)
            return False
        actions: list[AddAction | RemoveAction] = [remove_action(f, False) for f in removed]
        actions += [w.add_action(data_change=False) for w in added]
        try:
            maintenance_commit(delta, name, actions, operation)
            return True
        except ConcurrentCommitError as exc:
            rep.conflicts += 1
            log.info("%s of %s deferred to the next pass: %s", operation, name, exc)
            self._discard(name, added)
            return False

    def _discard(self, name: Table, written: Sequence[WrittenFile]) -> None:
        for w in written:
            self.writer.delete(name, w.path)


@dataclass
class DaySort:
    """One table-day that `driftnet compact` rewrote."""

    table: Table
    tenant: str
    date: dt.date
    files_before: int
    files_after: int
    rows: int


def sort_days(lake: LakeLocation, *, tenant: str | None = None, before: dt.date,
              settings: MaintainSettings | None = None, zstd_level: int = 3,
              progress: Callable[[DaySort], None] | None = None) -> list[DaySort]:
    """Rewrite every tenant-day earlier than ``before`` that is not sorted yet, now (what
    maintenance does to a day once it is closed)."""
    lake.must_exist()
    maintainer = Maintainer(lake, settings, zstd_level=zstd_level)
    done: list[DaySort] = []
    for name in TABLES:
        delta = maintainer._table(name)
        by_partition: dict[tuple[str, dt.date], list[DataFile]] = defaultdict(list)
        for f in snapshot_files(delta, lake, name, tenant):
            if f.date < before:
                by_partition[(f.tenant, f.date)].append(f)
        for (t, date), files in sorted(by_partition.items()):
            if all(kind_of(f.path) == SORTED_KIND for f in files) and len(files) == 1:
                continue
            written = rewrite_sorted(lake, maintainer.writer, name, files, maintainer.settings)
            maintainer.writer.sync()
            rep = TableReport()
            if written and maintainer._commit_rewrite(name, files, written, "sort", rep):
                record = DaySort(name, t, date, len(files), len(written),
                                 sum(w.rows for w in written))
                done.append(record)
                if progress is not None:
                    progress(record)
    return done
