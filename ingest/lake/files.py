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
import ctypes
import ctypes.util
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
                 row_group_rows: int = 128 * 1024, flush_files: bool = False) -> None:
        """``flush_files`` tunes for the loader's many small files, which compaction rewrites
        within minutes: snappy instead of zstd, Parquet statistics of the time columns only,
        nullable columns without a value left out of the file (Delta, DuckDB's
        ``union_by_name`` and every reader of the table read them as NULL: an event holds
        values in a third of its columns, and the others would cost most of a small file's
        time), and one filesystem sync for all files of a flush instead of one per file.
        Other files (compaction, sorted days, forget, replay) are zstd with full statistics."""
        self.lake = lake
        self.zstd_level = zstd_level
        self.row_group_rows = row_group_rows
        self.flush_files = flush_files
        self._fs, self._root = lake.filesystem()
        self._dirs: set[Path] = set()
        self._unsynced: list[Path] = []

    def write(self, table: Table, tenant: str, date: dt.date,
              rows: pa.Table | Iterable[pa.RecordBatch], kind: str = "l",
              columns: Iterable[str] | None = None) -> WrittenFile:
        """Write ``rows`` (a table, or batches in file order) as one new data file;
        ``columns`` limits the file to those of the table's columns (the others read as
        NULL), e.g. the columns the files being merged have."""
        relative = f"{partition_path(tenant, date)}/{file_name(kind)}"
        full = f"{self._root}/{table}/{relative}"
        schema = file_schema(table)
        if columns is not None:
            keep = set(columns)
            schema = pa.schema([f for f in schema if f.name in keep or not f.nullable])
        stats = _Stats(STATS_COLUMNS[table])
        batches: Iterable[pa.Table | pa.RecordBatch] = (
            [rows] if isinstance(rows, pa.Table) else rows)
        single: pa.Table | None = None
        if self.flush_files and isinstance(rows, pa.Table):
            conformed = data_rows(table, rows)
            present = [i for i, (f, column) in
                       enumerate(zip(schema, conformed.columns, strict=True))
                       if not f.nullable or column.null_count < len(column)]
            single = conformed.select(present)
            schema, batches = single.schema, [single]
        content = single if single is not None else batches
        if self.lake.is_local:
            path = Path(full)
            if not path.parent.is_dir():
                path.parent.mkdir(parents=True, exist_ok=True)
                self._dirs.update((path.parent, path.parent.parent, path.parent.parent.parent))
            with open(path, "wb") as sink:
                self._write_parquet(sink, table, schema, content, stats)
                sink.flush()
                if self.flush_files:
                    self._unsynced.append(path)
                else:
                    os.fsync(sink.fileno())
            size = path.stat().st_size
        else:
            with self._fs.open_output_stream(full) as sink:
                self._write_parquet(sink, table, schema, content, stats)
            size = self._fs.get_file_info(full).size
        return WrittenFile(table, relative, size, stats.rows, tenant, date, stats.json())

    def _write_parquet(self, sink: Any, table: Table, schema: pa.Schema,
                       batches: pa.Table | Iterable[pa.Table | pa.RecordBatch], stats: _Stats
                       ) -> None:
        """``batches`` is a conformed table (a flush file, one call) or batches to conform."""
        if self.flush_files:
            # Cheapest to write (these files live for minutes): no dictionaries, no copy of
            # the Arrow schema in the footer (Parquet's own types say all we need).
            options: dict[str, Any] = {"compression": "snappy", "use_dictionary": False,
                                       "store_schema": False,
                                       "write_statistics": list(STATS_COLUMNS[table])}
        else:
            options = {"compression": "zstd", "compression_level": self.zstd_level}
        if isinstance(batches, pa.Table):
            stats.add(batches)
            pq.write_table(batches, sink, row_group_size=self.row_group_rows, **options)
            return
        with pq.ParquetWriter(sink, schema, **options) as writer:
            for batch in batches:
                data = data_rows(table, batch, schema)
                stats.add(data)
                writer.write_table(data, row_group_size=self.row_group_rows)

    def sync(self) -> None:
        """Make what was written durable before a commit names it (local lakes): files not
        synced yet (one ``syncfs`` of the lake's filesystem for all of them, where Linux
        has it), then new partition directories."""
        if self._unsynced:
            if not _syncfs(self._unsynced[0]):
                for path in self._unsynced:
                    _fsync(path)
            self._unsynced.clear()
        for directory in sorted(self._dirs, key=lambda p: len(p.parts), reverse=True):
            _fsync(directory)
        self._dirs.clear()

    def delete(self, table: Table, relative: str) -> None:
        """Remove a data file that no commit names (best effort)."""
        with contextlib.suppress(FileNotFoundError, OSError):
            self._fs.delete_file(f"{self._root}/{table}/{relative}")


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _syncfs(path: Path) -> bool:
    """Flush the filesystem holding ``path`` (Linux syncfs); False where unavailable."""
    syncfs = getattr(_LIBC, "syncfs", None)
    if syncfs is None:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs failed", str(path))
    finally:
        os.close(fd)
    return True
