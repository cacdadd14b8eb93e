"""Deterministic file writers: same rows in, same bytes out.

Parquet settings are fixed here (zstd level 3, fixed row-group size cut independently of
how DuckDB batches its output, format 2.6, statistics on) so a file depends only on its
rows and the pyarrow version (recorded in the manifest). Columns a format cannot hold
(CSV: lists, blobs...) and JSON Lines rows (DuckDB's ``to_json``) are shaped in SQL,
set-at-a-time, before they reach this module (columns.py).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from analytics.export.spec import ExportFormat

ROW_GROUP_ROWS = 131_072
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "version": "2.6",
                   "write_statistics": True, "use_dictionary": True}


@dataclass(frozen=True)
class Written:
    """A finished output file."""

    path: Path
    rows: int
    bytes: int
    sha256: str


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as fh:
        return sha256_stream(fh, chunk)


def sha256_stream(stream: Any, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of what a binary stream (a file, a pyarrow input stream) holds."""
    digest = hashlib.sha256()
    while block := stream.read(chunk):
        digest.update(block)
    return digest.hexdigest()


def _rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterable[pa.Table]:
    """Tables of exactly ``rows`` rows (the last one shorter), whatever the input batching."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending = rest.to_batches()
            count = rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)


def write_batches(reader: pa.RecordBatchReader, fmt: ExportFormat, path: Path,
                  on_rows: object = None) -> Written:
    """Write every batch of ``reader`` to ``path`` (atomically: temp file, fsync, rename).

    ``on_rows(n)``, when given, is called after each chunk with the rows just written.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        rows = _write(reader, fmt, tmp, on_rows)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return Written(path, rows, path.stat().st_size, sha256_file(path))


def unwritable_field(schema: pa.Schema, fmt: ExportFormat) -> pa.Field | None:
    """The first column of ``schema`` whose type ``fmt`` cannot hold (None: none is known
    to fail; a value can still, e.g. bytes that are no UTF-8 in CSV)."""
    for field in schema:
        try:
            if fmt == "parquet":
                pq.ParquetWriter(pa.BufferOutputStream(), pa.schema([field])).close()
            elif fmt == "csv":
                one = pa.table([pa.nulls(1, field.type)], schema=pa.schema([field]))
                pacsv.write_csv(one, pa.BufferOutputStream())
        except pa.ArrowException:
            return field
    return None


def _write(reader: pa.RecordBatchReader, fmt: ExportFormat, tmp: Path, on_rows: object) -> int:
    rows = 0
    with open(tmp, "wb") as fh:
        if fmt == "parquet":
            with pq.ParquetWriter(fh, reader.schema, **PARQUET_OPTIONS) as writer:
                for table in _rebatch(reader, ROW_GROUP_ROWS):
                    writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                    rows += table.num_rows
                    if callable(on_rows):
                        on_rows(table.num_rows)
        elif fmt == "csv":
            with pacsv.CSVWriter(fh, reader.schema) as csv_writer:
                for batch in reader:
                    csv_writer.write_batch(batch)
                    rows += batch.num_rows
                    if callable(on_rows):
                        on_rows(batch.num_rows)
        else:  # jsonl: one pre-rendered JSON text column
            for batch in reader:
                lines = batch.column(0).to_pylist()
                if lines:
                    fh.write(("\n".join(lines) + "\n").encode())
                rows += batch.num_rows
                if callable(on_rows):
                    on_rows(batch.num_rows)
        fh.flush()
        os.fsync(fh.fileno())
    return rows
