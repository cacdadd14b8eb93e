"""Compaction: keep every tenant-day of every table at a bounded number of files.

Two layouts, by the age of the day:

- **open days** (today, and a day until ``closed_after_hours`` after it ended) get
  *size-tiered* merges: files are grouped in tiers by size (below ``small_file_bytes``, then
  each tier ``fanout`` times larger); once a tier holds ``fanout`` files they are merged into
  one file of the next tier. A day that receives a flush a second therefore holds at most
  about ``fanout - 1`` files per tier (five tiers span 256 KB to 256 MB), and each row is
  rewritten about once per tier, not once per flush.
- **closed days** are rewritten once into files of about ``target_file_bytes``, sorted by
  visitor and time (events) or by time (raw, quarantine), so that one visitor's rows sit
  together and Parquet statistics let readers skip the rest. Files a late batch adds
  afterwards are tier-merged like an open day's; when they hold more than a quarter of the
  day's rows, the day is sorted again.

Merged files replace their inputs in one Delta commit (``dataChange = false``: rows are
unchanged), carrying :data:`~schemas.lake.MAINTENANCE_APP_ID` so that it cannot race
another commit that removes files (forget, retention, replay). A loader's appends never
conflict with it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.lake.config import MaintainSettings
from ingest.lake.files import FileWriter, WrittenFile
from schemas.delta import DataFile, read_files_sql
from schemas.lake import Table, file_schema
from schemas.storage import LakeLocation

log = logging.getLogger(__name__)

SORTED_KIND = "s"
"""File name prefix of a closed day's sorted files."""
MERGED_KIND = "c"

SORT_ORDER: dict[Table, str] = {
    "events": "anonymous_id NULLS LAST, user_id NULLS LAST, derived_ts, source_partition, "
              "source_offset, source_index, item_index",
    "raw": "received_at, source, source_partition, source_offset, source_index",
    "quarantine": "received_at, source, source_partition, source_offset, source_index, "
                  "item_index",
}
"""Row order of a closed day's files."""


def kind_of(path: str) -> str:
    """The kind prefix of a data file name (``l`` loader, ``c`` merged, ``s`` sorted...)."""
    name = path.rsplit("/", 1)[-1]
    return name.split("-", 1)[0] if "-" in name else ""


def is_closed(date: dt.date, now: dt.datetime, settings: MaintainSettings) -> bool:
    """True once ``closed_after_hours`` have passed since the UTC day ended."""
    end = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return now >= end + dt.timedelta(hours=settings.closed_after_hours)


def tier(size: int, settings: MaintainSettings) -> int:
    """Size tier of a file: 0 below ``small_file_bytes``, then one per factor ``fanout``."""
    if size < settings.small_file_bytes:
        return 0
    return 1 + int(math.log(size / settings.small_file_bytes, settings.fanout))


def plan_merges(files: Sequence[DataFile], settings: MaintainSettings) -> list[list[DataFile]]:
    """Groups of one partition's files to merge (each group becomes one file)."""
    tiers: dict[int, list[DataFile]] = {}
    for f in files:
        if f.size < settings.target_file_bytes:
            tiers.setdefault(tier(f.size, settings), []).append(f)
    groups: list[list[DataFile]] = []
    for tiered in tiers.values():
        if len(tiered) < settings.fanout:
            continue
        members = sorted(tiered, key=lambda f: f.path)
        group: list[DataFile] = []
        size = 0
        for f in members:
            if group and size + f.size > settings.target_file_bytes:
                if len(group) > 1:
                    groups.append(group)
                group, size = [], 0
            group.append(f)
            size += f.size
        if len(group) > 1:
            groups.append(group)
    return groups


@dataclass(frozen=True)
class PartitionPlan:
    """What a maintenance pass does to one tenant-day of one table."""

    tenant: str
    date: dt.date
    merges: list[list[DataFile]]
    sort: list[DataFile] | None
    """All the day's files, when the day gets its sorted rewrite."""


def plan_partition(tenant: str, date: dt.date, files: Sequence[DataFile], now: dt.datetime,
                   settings: MaintainSettings) -> PartitionPlan:
    """Merges and/or the sorted rewrite one partition needs now."""
    if is_closed(date, now, settings):
        sorted_files = [f for f in files if kind_of(f.path) == SORTED_KIND]
        unsorted = [f for f in files if kind_of(f.path) != SORTED_KIND]
        if unsorted and (not sorted_files or sum(f.rows or 0 for f in unsorted)
                         > sum(f.rows or 0 for f in sorted_files) / 4):
            return PartitionPlan(tenant, date, [], list(files))
        return PartitionPlan(tenant, date, plan_merges(unsorted, settings), None)
    return PartitionPlan(tenant, date, plan_merges(files, settings), None)


def _columns(table: Table, lake: LakeLocation, files: Iterable[DataFile]) -> set[str] | None:
    """The columns the files hold together; None when one holds a column this code does not
    know (written by newer code: such files are left alone)."""
    fs, _ = lake.filesystem()
    known = set(file_schema(table).names)
    found: set[str] = set()
    for f in files:
        with fs.open_input_file(_fs_path(lake, f)) as handle:
            names = set(pq.read_schema(handle).names)
        if names - known:
            return None
        found |= names
    return found


def _fs_path(lake: LakeLocation, f: DataFile) -> str:
    _, root = lake.filesystem()
    return f"{root}/{f.table}/{f.path}"


def merge(lake: LakeLocation, writer: FileWriter, table: Table, group: Sequence[DataFile]
          ) -> WrittenFile | None:
    """One file with the rows of ``group`` (in the order of their paths); None if a file
    holds columns this code does not know (such files are left alone)."""
    columns = _columns(table, lake, group)
    if columns is None:
        log.warning("not merging %d files of %s %s: they hold columns unknown to this "
                    "version", len(group), table, group[0].path.rsplit("/", 1)[0])
        return None
    fs, _ = lake.filesystem()

    def batches() -> Iterator[pa.RecordBatch]:
        for f in group:
            with fs.open_input_file(_fs_path(lake, f)) as handle:
                yield from pq.ParquetFile(handle).iter_batches(batch_size=128 * 1024)

    first = group[0]
    return writer.write(table, first.tenant, first.date, batches(), kind=MERGED_KIND,
                        columns=columns)


def rewrite_sorted(lake: LakeLocation, writer: FileWriter, table: Table,
                   files: Sequence[DataFile], settings: MaintainSettings) -> list[WrittenFile]:
    """The day's rows sorted (SORT_ORDER), in files of about ``target_file_bytes``."""
    if _columns(table, lake, files) is None:
        log.warning("not sorting %s %s: files hold columns unknown to this version", table,
                    files[0].path.rsplit("/", 1)[0])
        return []
    total_rows = sum(f.rows or 0 for f in files)
    total_bytes = sum(f.size for f in files)
    rows_per_file = max(1, int(total_rows * settings.target_file_bytes / max(1, total_bytes)))
    first = files[0]
    with tempfile.TemporaryDirectory(prefix="driftnet-sort-") as spill:
        con = duckdb.connect(config={"memory_limit": settings.sort_memory_limit,
                                     "temp_directory": spill, "threads": 1,
                                     "preserve_insertion_order": True})
        try:
            lake.register_duckdb(con)
            source = read_files_sql(con, table, [f.uri for f in files])
            rel = con.sql(f"{source} ORDER BY {SORT_ORDER[table]}")
            reader = rel.to_arrow_reader(128 * 1024)
            out: list[WrittenFile] = []
            pending: pa.RecordBatch | None = None
            while True:
                chunk, pending = _take_rows(reader, rows_per_file, pending)
                if not chunk:
                    break
                out.append(writer.write(table, first.tenant, first.date, chunk,
                                        kind=SORTED_KIND))
            return out
        finally:
            con.close()


def _take_rows(reader: pa.RecordBatchReader, limit: int, pending: pa.RecordBatch | None
               ) -> tuple[list[pa.RecordBatch], pa.RecordBatch | None]:
    """Up to ``limit`` rows of ``reader`` (starting with ``pending``), and the leftover."""
    taken: list[pa.RecordBatch] = []
    count = 0
    while count < limit:
        if pending is None:
            try:
                pending = reader.read_next_batch()
            except StopIteration:
                break
        room = limit - count
        if pending.num_rows <= room:
            taken.append(pending)
            count += pending.num_rows
            pending = None
        else:
            taken.append(pending.slice(0, room))
            pending = pending.slice(room)
            count = limit
    return taken, pending
