"""Compaction: merge a closed day's many small files into one file per table.

The loader flushes about once a second, so a busy tenant-day holds tens of thousands of
small files, and every query pays to open them. ``driftnet compact`` rewrites each closed
day of each table as one Parquet file (rows in transport order, the loader's schema and
writer settings), then swaps the day in atomically (see swap.py). Rows, their columns and
their ``is_duplicate`` flags are unchanged; only the file layout changes.

A day is skipped while a loader intent (an uncommitted batch) names one of its files, and
today's UTC date is refused unless forced, for the reason replay refuses it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.loader.swap import swap_in
from schemas.errors import DriftnetError
from schemas.lake import LOADER_STATE_DIR, TABLES, Table

log = logging.getLogger(__name__)


class CompactError(DriftnetError):
    """Compaction was refused."""


@dataclass
class DayCompaction:
    """One table-tenant-day that was compacted."""

    table: Table
    tenant: str
    date: dt.date
    files_before: int
    rows: int


def _pending_files(lake: Path) -> set[Path]:
    """Files named by loader intents (batches that may not be committed)."""
    pending: set[Path] = set()
    for intent in (lake / LOADER_STATE_DIR).glob("*/p*.json"):
        try:
            doc = orjson.loads(intent.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        pending.update(lake / rel for rel in doc.get("files", []))
    return pending


def _unified_schema(files: list[Path]) -> pa.Schema:
    return pa.unify_schemas([pq.read_schema(f) for f in files],
                            promote_options="permissive")


def _compact_day(directory: Path, staging: Path, zstd_level: int) -> int:
    files = sorted(directory.glob("*.parquet"))
    schema = _unified_schema(files)
    digest = hashlib.sha256("\n".join(f.name for f in files).encode()).hexdigest()[:16]
    target = staging / f"compacted-{digest}.parquet"
    rows = 0
    with pq.ParquetWriter(str(target), schema, compression="zstd",
                          compression_level=zstd_level) as writer:
        for f in files:  # names sort by transport partition and offset: arrival order
            table = pq.read_table(f)
            for name in schema.names:
                if name not in table.column_names:
                    table = table.append_column(schema.field(name),
                                                pa.nulls(table.num_rows, schema.field(name).type))
            writer.write_table(table.select(schema.names).cast(schema))
            rows += table.num_rows
    return rows


def compact(
    lake: Path,
    tenant: str | None = None,
    before: dt.date | None = None,
    zstd_level: int = 3,
    force: bool = False,
    progress: Callable[[DayCompaction], None] | None = None,
) -> list[DayCompaction]:
    """Compact every day earlier than ``before`` (default: yesterday and older)."""
    today = dt.datetime.now(dt.UTC).date()
    before = before or today
    if before > today and not force:
        raise CompactError("refusing to compact today's UTC date while loaders may write it; "
                           "pass --force when no loader runs", before=str(before))
    lake = Path(lake)
    pending = _pending_files(lake)
    done: list[DayCompaction] = []
    for table in TABLES:
        pattern = f"tenant={tenant}" if tenant else "tenant=*"
        for day_dir in sorted((lake / table).glob(f"{pattern}/date=*")):
            try:
                day = dt.date.fromisoformat(day_dir.name.removeprefix("date="))
            except ValueError:
                continue
            files = list(day_dir.glob("*.parquet"))
            if day >= before or len(files) < 2:
                continue
            if any(f in pending for f in files):
                log.info("skipping %s: a loader batch on it is not committed yet", day_dir)
                continue
            staging = lake / LOADER_STATE_DIR / "compact" / uuid.uuid4().hex
            staging.mkdir(parents=True)
            try:
                rows = _compact_day(day_dir, staging, zstd_level)
                swap_in(staging, day_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            record = DayCompaction(table, day_dir.parent.name.removeprefix("tenant="), day,
                                   len(files), rows)
            done.append(record)
            if progress is not None:
                progress(record)
    return done
