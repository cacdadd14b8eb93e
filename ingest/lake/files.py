"""Data files: zstd Parquet under ``<table>/tenant=<t>/date=<d>/``, with Delta statistics.

A data file is written completely (and, on a local disk, fsynced with its directory)
before any commit names it, so a commit never refers to a partial file. A file that no
commit names is not part of the table; vacuum removes such leftovers.

Files hold the row schema without the partition columns (Delta's convention); their
statistics in the log are the row count and the min/max of the time columns only (see
schemas.lake.STATS_COLUMNS).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

from schemas.lake import STATS_COLUMNS, Table, file_schema, partition_path
from schemas.storage import LakeLocation

_MS = dt.timedelta(milliseconds=1)


@dataclass(frozen=True)
class WrittenFile:
    """A data file on storage, ready to be added by a commit."""

    table: Table
    path: str
    """Relative to the table root."""
    size: int
    rows: int
    tenant: str
    date: dt.date
    stats: str

    def add_action(self, data_change: bool = True) -> AddAction:
        """The Delta ``add`` action for this file."""
        return AddAction(self.path, self.size,
                         {"tenant": self.tenant, "date": self.date.isoformat()},
                         int(time.time() * 1000), data_change, self.stats)


def file_name(kind: str) -> str:
    """A unique data file name; ``kind`` says what wrote it (loader, compaction, ...)."""
    return f"{kind}-{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(8)}.parquet"


def _iso_ms(value: dt.datetime, ceil: bool) -> str:
    """Delta statistics hold milliseconds: floor a min, ceil a max, so both stay bounds."""
    truncated = value.replace(microsecond=value.microsecond // 1000 * 1000)
    if ceil and truncated != value:
        truncated += _MS
    return truncated.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class _Stats:
    columns: tuple[str, ...]
    rows: int = 0
    mins: dict[str, Any] = field(default_factory=dict)
    maxs: dict[str, Any] = field(default_factory=dict)
    nulls: dict[str, int] = field(default_factory=dict)

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        self.rows += batch.num_rows
        for name in self.columns:
            if name not in batch.schema.names:
                self.nulls[name] = self.nulls.get(name, 0) + batch.num_rows
                continue
            column = batch.column(name)
            self.nulls[name] = self.nulls.get(name, 0) + column.null_count
            bounds = pc.min_max(column).as_py()
            low, high = bounds["min"], bounds["max"]
            if low is not None and (name not in self.mins or low < self.mins[name]):
                self.mins[name] = low
            if high is not None and (name not in self.maxs or high > self.maxs[name]):
                self.maxs[name] = high

    def json(self) -> str:
        return orjson.dumps({
            "numRecords": self.rows,
            "minValues": {k: _iso_ms(v, ceil=False) for k, v in self.mins.items()},
            "maxValues": {k: _iso_ms(v, ceil=True) for k, v in self.maxs.items()},
            "nullCount": self.nulls,
        }).decode()


def data_rows(table: Table, rows: pa.Table | pa.RecordBatch,
              schema: pa.Schema | None = None) -> pa.Table:
    """``rows`` (with or without the tenant column) shaped as the table's data files (or as
    ``schema``, a subset of their columns)."""
    schema = schema or file_schema(table)
    data = pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else rows
    present = set(data.column_names)
    missing = [f for f in schema if f.name not in present]
    for f in missing:
        data = data.append_column(f, pa.nulls(data.num_rows, f.type))
    data = data.select(schema.names)
    return data if data.schema.equals(schema) else data.cast(schema)


class FileWriter:
    """Writes data files of one lake (local directory or object store)."""

    def __init__(self, lake: LakeLocation, zstd_level: int = 3,
                 row_group_rows: int = 128 * 1024, column_statistics: bool = True,
                 null_columns: bool = True) -> None:
        """For the loader's small files, which compaction soon rewrites: with
        ``column_statistics=False`` only the time columns get Parquet statistics, and with
        ``null_columns=False`` nullable columns that hold no value are left out of the file
        (Delta, DuckDB's ``union_by_name`` and every reader of the table read them as NULL).
        An event row has values in a third of its columns; the others would cost most of
        the time of writing a small file."""
        self.lake = lake
        self.zstd_level = zstd_level
        self.row_group_rows = row_group_rows
        self.column_statistics = column_statistics
        self.null_columns = null_columns
        self._fs, self._root = lake.filesystem()
        self._dirs: set[Path] = set()

    def write(self, table: Table, tenant: str, date: dt.date,
              rows: pa.Table | Iterable[pa.RecordBatch], kind: str = "l") -> WrittenFile:
        """Write ``rows`` (a table, or batches in file order) as one new data file."""
        relative = f"{partition_path(tenant, date)}/{file_name(kind)}"
        full = f"{self._root}/{table}/{relative}"
        schema = file_schema(table)
        stats = _Stats(STATS_COLUMNS[table])
        batches: Iterable[pa.Table | pa.RecordBatch] = (
            [rows] if isinstance(rows, pa.Table) else rows)
        if not self.null_columns and isinstance(rows, pa.Table):
            rows = data_rows(table, rows)
            empty = {f.name for f, column in zip(schema, rows.columns, strict=True)
                     if f.nullable and column.null_count == len(column)}
            schema = pa.schema([f for f in schema if f.name not in empty])
            batches = [rows.drop_columns(sorted(empty))]
        if self.lake.is_local:
            path = Path(full)
            if not path.parent.is_dir():
                path.parent.mkdir(parents=True, exist_ok=True)
                self._dirs.update((path.parent, path.parent.parent, path.parent.parent.parent))
            with open(path, "wb") as sink:
                self._write_parquet(sink, table, schema, batches, stats)
                sink.flush()
                os.fsync(sink.fileno())
            size = path.stat().st_size
        else:
            with self._fs.open_output_stream(full) as sink:
                self._write_parquet(sink, table, schema, batches, stats)
            size = self._fs.get_file_info(full).size
        return WrittenFile(table, relative, size, stats.rows, tenant, date, stats.json())

    def _write_parquet(self, sink: Any, table: Table, schema: pa.Schema,
                       batches: Iterable[pa.Table | pa.RecordBatch], stats: _Stats) -> None:
        statistics: bool | list[str] = (True if self.column_statistics
                                        else list(STATS_COLUMNS[table]))
        with pq.ParquetWriter(sink, schema, compression="zstd",
                              compression_level=self.zstd_level,
                              write_statistics=statistics) as writer:
            for batch in batches:
                data = data_rows(table, batch, schema)
                stats.add(data)
                writer.write_table(data, row_group_size=self.row_group_rows)

    def sync(self) -> None:
        """Make new partition directories durable (local lakes; files are fsynced as written)."""
        for directory in sorted(self._dirs, key=lambda p: len(p.parts), reverse=True):
            try:
                fd = os.open(directory, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._dirs.clear()

    def delete(self, table: Table, relative: str) -> None:
        """Remove a data file that no commit names (best effort)."""
        with contextlib.suppress(FileNotFoundError, OSError):
            self._fs.delete_file(f"{self._root}/{table}/{relative}")
