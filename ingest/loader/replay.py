"""Replay: rebuild a tenant's ``events`` and ``quarantine`` days from the raw archive.

The raw archive keeps every hit byte for byte, so a fixed parser (or a changed limit, a new
enrichment) can recover history: ``driftnet replay --tenant t --from D1 --to D2`` runs the
current pipeline over the day's raw rows (in transport order, as the loader read them) and
replaces the day's ``events`` and ``quarantine`` files with the rebuilt ones, one Delta
commit per table: a reader sees the old day or the new day, never a mix. Rows carry the
``pipeline_version`` that produced them. Dedupe starts from the events of the days before
``D1`` in the window, sessions from each visitor's latest session and highest index in the
events before ``D1`` (within the session state's retention), as the live loader had them.

A day still being written must not be replayed (a batch landing during the replay would be
replaced away): replay refuses today's UTC date unless forced, and gives up a day whose raw
files changed while it was being rebuilt, or that a loader is committing right now. Its
commits carry the maintenance application id, so they cannot race compaction or forget.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.transaction import AddAction, RemoveAction

from ingest.enrich import default_chain
from ingest.enrich.config import EnrichSettings
from ingest.enrich.sessionize import states_from_events
from ingest.lake.errors import ConcurrentCommitError
from ingest.lake.files import FileWriter, WrittenFile
from ingest.lake.maintain import maintenance_commit, remove_action
from ingest.lake.tables import open_for_write, refresh
from ingest.lake.writer import split_by_partition
from ingest.loader.config import LoaderSettings
from ingest.loader.pipeline import Pipeline, conform
from schemas.delta import DataFile, read_files_sql, snapshot_files
from schemas.derived import drop_stored_sessions
from schemas.errors import DriftnetError
from schemas.lake import Table
from schemas.raw import RAW_SCHEMA
from schemas.storage import LakeLocation
from schemas.tenants import Tenants, is_tenant_id

log = logging.getLogger(__name__)

_CHUNK_ROWS = 50_000
_LINEAGE = "source, source_partition, source_offset, source_index"
_OUTPUTS: tuple[Table, ...] = ("events", "quarantine")


class ReplayError(DriftnetError):
    """A day could not be replayed; nothing of that day was changed."""


@dataclass
class DayReport:
    """What replaying one day did."""

    date: dt.date
    raw_files: int = 0
    hits: int = 0
    events_before: int = 0
    events_after: int = 0
    quarantined_before: int = 0
    quarantined_after: int = 0


@dataclass
class ReplayReport:
    """What a replay did, day by day."""

    tenant: str
    days: list[DayReport] = field(default_factory=list)


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _rows(files: list[DataFile]) -> int:
    return sum(f.rows or 0 for f in files)


def replay(
    lake: str | Path | LakeLocation,
    tenant: str,
    start: dt.date,
    end: dt.date,
    settings: LoaderSettings,
    tenants: Tenants | None = None,
    force: bool = False,
    progress: Callable[[DayReport], None] | None = None,
    enrich: EnrichSettings | None = None,
) -> ReplayReport:
    """Rebuild ``tenant``'s events and quarantine for every day from ``start`` to ``end``.

    Sessions are assigned with state kept in memory (never the live loader's session
    store), seeded from the tenant's events before ``start``.
    """
    if not is_tenant_id(tenant):
        raise ReplayError("not a valid tenant id", tenant=tenant)
    if end < start:
        raise ReplayError("--to is before --from", start=str(start), end=str(end))
    today = dt.datetime.now(dt.UTC).date()
    if end >= today and not force:
        raise ReplayError("refusing to replay today's UTC date while loaders may still write "
                          "it; replay closed days, or pass --force when no loader runs",
                          end=str(end))
    location = LakeLocation.parse(lake)
    location.must_exist()
    enrich = enrich or EnrichSettings()
    enrich = enrich.model_copy(update={"sessions": enrich.sessions.model_copy(
        update={"state": None})})
    pipeline = Pipeline(settings, tenants, chain=default_chain(enrich, tenants, lake=None),
                        enrich=enrich)
    day_replay = _DayReplay(location, tenant, pipeline, FileWriter(location, settings.zstd_level))
    try:
        day_replay.seed(start, settings.dedupe_window_hours)
        day_replay.seed_sessions(start, enrich.sessions.state_retention_days)
        report = ReplayReport(tenant)
        for day in _days(start, end):
            day_report = day_replay.run(day)
            report.days.append(day_report)
            if progress is not None:
                progress(day_report)
        drop_stored_sessions(location, tenant, delete_files=False)  # from the events rebuilt
        return report
    finally:
        pipeline.close()


class _DayReplay:
    def __init__(self, lake: LakeLocation, tenant: str, pipeline: Pipeline,
                 writer: FileWriter) -> None:
        self.lake = lake
        self.tenant = tenant
        self.pipeline = pipeline
        self.writer = writer
        self.tables = {t: open_for_write(lake, t) for t in ("raw", "events", "quarantine")}

    def _files(self, table: Table, day: dt.date) -> list[DataFile]:
        delta = refresh(self.tables[table])
        return [f for f in snapshot_files(delta, self.lake, table, self.tenant) if f.date == day]

    def seed(self, start: dt.date, window_hours: float) -> None:
        days = int(window_hours // 24) + 1
        first = start - dt.timedelta(days=days)
        files = [f.uri for f in snapshot_files(refresh(self.tables["events"]), self.lake,
                                               "events", self.tenant)
                 if first <= f.date < start]
        until = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
        self.lake.register_duckdb(self.pipeline.con)
        self.pipeline.deduper.seed_files(files, until=until)

    def seed_sessions(self, start: dt.date, retention_days: float) -> int:
        """Give the replay's session store each visitor's state as the events before
        ``start`` left it: a visit across midnight goes on, indexes go on from the highest."""
        store = self.pipeline.session_store
        if store is None:
            return 0
        first = start - dt.timedelta(days=math.ceil(retention_days))
        files = [f.uri for f in snapshot_files(refresh(self.tables["events"]), self.lake,
                                               "events", self.tenant)
                 if first <= f.date < start]
        if not files:
            return 0
        self.lake.register_duckdb(self.pipeline.con)
        events = f"({read_files_sql(self.pipeline.con, 'events', files, partitions=True)})"
        return store.replace([], states_from_events(self.pipeline.con, events))

    def _raw_chunks(self, files: list[DataFile]) -> Iterator[pa.Table]:
        con = duckdb.connect(config={"threads": 1})
        try:
            self.lake.register_duckdb(con)
            source = read_files_sql(con, "raw", [f.uri for f in files], partitions=True)
            reader = con.sql(f"{source} ORDER BY {_LINEAGE}").to_arrow_reader(_CHUNK_ROWS)
            assert reader is not None
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                yield conform(pa.Table.from_batches([batch]), RAW_SCHEMA)
        finally:
            con.close()

    def run(self, day: dt.date) -> DayReport:
        report = DayReport(day)
        raw_files = self._files("raw", day)
        report.raw_files = len(raw_files)
        before = {t: self._files(t, day) for t in _OUTPUTS}
        report.events_before = _rows(before["events"])
        report.quarantined_before = _rows(before["quarantine"])
        if not raw_files:
            return report
        written: dict[Table, list[WrittenFile]] = {t: [] for t in _OUTPUTS}
        committed: list[Table] = []
        try:
            for raw in self._raw_chunks(raw_files):
                tables = self.pipeline.process_raw(raw)
                report.hits += raw.num_rows
                outputs: dict[Table, pa.Table] = {"events": tables.events,
                                                  "quarantine": tables.quarantine}
                for table, rows in outputs.items():
                    for tenant, date, part in split_by_partition(rows):
                        written[table].append(self.writer.write(table, tenant, date, part,
                                                                kind="r"))
                self.pipeline.remember(tables)
            self.writer.sync()
            self._check_unchanged(day, raw_files)
            for table in _OUTPUTS:  # both checked before either is swapped
                self._check_current(table, before[table])
            for table in _OUTPUTS:
                self._swap(table, before[table], written[table])
                committed.append(table)
        except BaseException as exc:
            # The files of a swapped table are in its current version: never deleted.
            for table, files in written.items():
                if table not in committed:
                    for w in files:
                        self.writer.delete(table, w.path)
            if committed and isinstance(exc, Exception):
                left = [t for t in _OUTPUTS if t not in committed]
                raise ReplayError(
                    f"the day's {' and '.join(committed)} were replaced, its "
                    f"{' and '.join(left)} not ({exc}); run the replay of the day again",
                    date=str(day)) from exc
            raise
        report.events_after = sum(w.rows for w in written["events"])
        report.quarantined_after = sum(w.rows for w in written["quarantine"])
        log.info("replayed %s %s: %d hits -> %d events (was %d), %d quarantined (was %d)",
                 self.tenant, day, report.hits, report.events_after, report.events_before,
                 report.quarantined_after, report.quarantined_before)
        return report

    def _check_unchanged(self, day: dt.date, raw_files: list[DataFile]) -> None:
        now = self._files("raw", day)
        if {f.path for f in now} != {f.path for f in raw_files}:
            raise ReplayError("raw files of the day changed during the replay (a loader is "
                              "still writing it); nothing was swapped", date=str(day))

    def _check_current(self, table: Table, old: list[DataFile]) -> DeltaTable:
        """The table, refreshed, if it still holds every file of the day replay read."""
        delta: DeltaTable = refresh(self.tables[table])
        current = {f.path for f in snapshot_files(delta, self.lake, table, self.tenant)}
        if any(f.path not in current for f in old):
            raise ReplayError("files of the day were changed by maintenance meanwhile; run "
                              "the replay again", table=table)
        return delta

    def _swap(self, table: Table, old: list[DataFile], new: list[WrittenFile]) -> None:
        delta = self._check_current(table, old)
        actions: list[AddAction | RemoveAction] = [remove_action(f, True) for f in old]
        actions += [w.add_action(data_change=True) for w in new]
        try:
            maintenance_commit(delta, table, actions, "replay")
        except ConcurrentCommitError as exc:
            raise ReplayError("maintenance committed meanwhile; run the replay again",
                              table=table) from exc
