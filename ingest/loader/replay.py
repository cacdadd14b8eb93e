"""Replay: rebuild a tenant's ``events`` and ``quarantine`` days from the raw archive.

The raw archive keeps every hit byte for byte, so a fixed parser (or a changed limit, a new
enrichment) can recover history: ``driftnet replay --tenant t --from D1 --to D2`` runs the
current pipeline over ``raw/tenant=t/date=D`` for each day and swaps the rebuilt ``events``
and ``quarantine`` directories of that day in atomically (Linux ``renameat2`` exchange: a
reader sees the old day or the new day, never a mix). Rows carry the ``pipeline_version``
that produced them. Dedupe starts from the events of the days before ``D1`` in the window.

A day still being written must not be replayed (the swap would drop a batch that lands
during the replay): replay refuses today's UTC date unless forced, and aborts a day whose
raw files changed while it was being rebuilt.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from ingest.enrich import default_chain
from ingest.enrich.config import EnrichSettings
from ingest.loader.config import LoaderSettings
from ingest.loader.pipeline import Pipeline
from ingest.loader.swap import swap_in
from schemas.errors import DriftnetError
from schemas.lake import LOADER_STATE_DIR, Table, partition_dir
from schemas.tenants import Tenants

log = logging.getLogger(__name__)

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


def _count_rows(directory: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in directory.glob("*.parquet"))


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def replay(
    lake: Path,
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
    store), so session indexes count from the replay's first day.
    """
    if end < start:
        raise ReplayError("--to is before --from", start=str(start), end=str(end))
    today = dt.datetime.now(dt.UTC).date()
    if end >= today and not force:
        raise ReplayError("refusing to replay today's UTC date while loaders may still write "
                          "it; replay closed days, or pass --force when no loader runs",
                          end=str(end))
    lake = Path(lake)
    enrich = enrich or EnrichSettings()
    enrich = enrich.model_copy(update={"sessions": enrich.sessions.model_copy(
        update={"state": None})})
    pipeline = Pipeline(settings, tenants, chain=default_chain(enrich, tenants, lake=None),
                        enrich=enrich)
    try:
        _seed_before(pipeline, lake, tenant, start, settings.dedupe_window_hours)
        report = ReplayReport(tenant)
        for day in _days(start, end):
            day_report = _replay_day(pipeline, lake, tenant, day, settings.zstd_level)
            report.days.append(day_report)
            if progress is not None:
                progress(day_report)
        return report
    finally:
        pipeline.close()


def _seed_before(pipeline: Pipeline, lake: Path, tenant: str, start: dt.date,
                 window_hours: float) -> None:
    days = int(window_hours // 24) + 1
    files: list[Path] = []
    for i in range(1, days + 1):
        files += partition_dir(lake, "events", tenant, start - dt.timedelta(days=i)).glob(
            "*.parquet")
    until = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    pipeline.deduper.seed_files([str(f) for f in sorted(files)], until=until)


def _replay_day(pipeline: Pipeline, lake: Path, tenant: str, day: dt.date,
                zstd_level: int) -> DayReport:
    report = DayReport(day)
    raw_dir = partition_dir(lake, "raw", tenant, day)
    raw_files = sorted(raw_dir.glob("*.parquet")) if raw_dir.is_dir() else []
    report.raw_files = len(raw_files)
    targets: dict[Table, Path] = {t: partition_dir(lake, t, tenant, day)
                                  for t in ("events", "quarantine")}
    for table, directory in targets.items():
        if directory.is_dir():
            count = _count_rows(directory)
            if table == "events":
                report.events_before = count
            else:
                report.quarantined_before = count
    if not raw_files:
        return report
    staging = lake / LOADER_STATE_DIR / "replay" / uuid.uuid4().hex
    staged = {t: staging / t / f"date={day.isoformat()}" for t in targets}
    try:
        # File names sort by transport partition and offset: the order the loader read them,
        # so dedupe keeps the same first copy.
        for raw_file in raw_files:
            raw = pq.read_table(raw_file)
            tables = pipeline.process_raw(raw)
            report.hits += raw.num_rows
            for table in ("events", "quarantine"):
                part = tables.events if table == "events" else tables.quarantine
                if part.num_rows:
                    out = staged[table] / raw_file.name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    pq.write_table(part, str(out), compression="zstd",
                                   compression_level=zstd_level)
            pipeline.remember(tables)
        if sorted(raw_dir.glob("*.parquet")) != raw_files:
            raise ReplayError("raw files of the day changed during the replay (a loader is "
                              "still writing it); nothing was swapped", date=str(day))
        for table, directory in targets.items():
            swap_in(staged[table], directory)
            if table == "events":
                report.events_after = _count_rows(directory)
            else:
                report.quarantined_after = _count_rows(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("replayed %s %s: %d hits -> %d events (was %d), %d quarantined (was %d)",
             tenant, day, report.hits, report.events_after, report.events_before,
             report.quarantined_after, report.quarantined_before)
    return report
