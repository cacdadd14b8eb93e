"""Query results out: table, csv, json or parquet, streamed in Arrow batches."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import shutil
import sys
from pathlib import Path
from typing import BinaryIO, Literal

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from analytics.errors import AnalyticsError
from schemas.sql import quote_ident

Format = Literal["table", "csv", "json", "parquet"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json", "parquet")
BATCH_ROWS = 65_536


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _reader(rel: duckdb.DuckDBPyRelation) -> pa.RecordBatchReader:
    return rel.to_arrow_reader(BATCH_ROWS)


_NESTED = ("[", "STRUCT", "MAP", "UNION")


def is_nested(kind: str) -> bool:
    """Whether a DuckDB type (its name) is nested: lists (``INTEGER[]``, ``INTEGER[3]``),
    structs, maps, unions."""
    return any(marker in kind for marker in _NESTED)


def as_json_text(name: str) -> str:
    """SQL: the column ``name`` as JSON text, under its own name."""
    quoted = quote_ident(name)
    return f"to_json({quoted})::VARCHAR AS {quoted}"


def _flat(rel: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """``rel`` with nested columns (lists, structs, maps) as JSON text: CSV has no nested
    values, and a cell must still say what the value was."""
    types = [str(t) for t in rel.types]
    if not any(is_nested(t) for t in types):
        return rel
    return rel.project(", ".join(as_json_text(name) if is_nested(kind) else quote_ident(name)
                                 for name, kind in zip(rel.columns, types, strict=True)))


def _rows(batch: pa.RecordBatch) -> list[dict[str, object]]:
    """The batch as Python rows; timestamps and dates outside Python's range (year 0, year
    275760: what a client with a broken clock may send) as ISO text, not an error."""
    try:
        rows: list[dict[str, object]] = batch.to_pylist()
        return rows
    except (OverflowError, ValueError):
        pass
    columns = []
    for column in batch.columns:
        kind = column.type
        if pa.types.is_date(kind):
            days = column.cast(pa.int32())
            text = np.datetime_as_string(
                days.to_numpy(zero_copy_only=False).astype("datetime64[D]"), unit="D")
            suffix, raw = "", days
        elif pa.types.is_timestamp(kind):
            micros = column.cast(pa.timestamp("us", tz=kind.tz)).cast(pa.int64())
            text = np.datetime_as_string(
                micros.to_numpy(zero_copy_only=False).astype("datetime64[us]"), unit="us")
            suffix, raw = ("+00:00" if kind.tz else ""), micros
        else:
            columns.append(column)
            continue
        columns.append(pa.array([None if v is None else f"{t}{suffix}"
                                 for v, t in zip(raw.to_pylist(), text, strict=True)],
                                pa.string()))
    safe: list[dict[str, object]] = pa.RecordBatch.from_arrays(
        columns, names=batch.schema.names).to_pylist()
    return safe


REORDERING: tuple[str, ...] = (
    "\u061c", "\u200e", "\u200f", "\u2028", "\u2029", *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)))
"""Characters of logged text that reorder or break what a terminal shows: bidirectional
marks, embeddings, overrides and isolates (U+202E turns "gpj.exe" around), line and
paragraph separators. Text output shows them escaped (``\\u202e``)."""


def _escaped_for_terminal(table: pa.Table) -> pa.Table:
    """``table`` with :data:`REORDERING` escaped in its text columns (DuckDB's box escapes
    control characters, not these)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = table.column(i)
            for char in REORDERING:
                column = pc.replace_substring(column, char, f"\\u{ord(char):04x}")
            table = table.set_column(i, field, column)
    return table


def write_result(
    rel: duckdb.DuckDBPyRelation,
    fmt: Format,
    out: BinaryIO | None = None,
    output: Path | None = None,
    max_rows: int = 100,
) -> int:
    """Write a query result; return the number of rows written (table: rows shown)."""
    if fmt == "table":
        head = rel.limit(max_rows + 1).to_arrow_table()
        shown = _escaped_for_terminal(head.slice(0, max_rows))
        # Render with DuckDB's box drawing, on a private connection (no lake access needed).
        with duckdb.connect() as render:
            render.execute("SET TimeZone = 'UTC'")  # as every other output, whatever TZ says
            render.from_arrow(shown).show(max_rows=max_rows,
                                          max_width=shutil.get_terminal_size().columns)
        if head.num_rows > max_rows:
            print(f"(more than {max_rows} rows; raise --max-rows or use --format "
                  "csv/json/parquet for all)")
        return int(shown.num_rows)
    if output is not None:
        with open(output, "wb") as fh:
            written: int = write_result(rel, fmt, fh)
            return written
    stream = out or sys.stdout.buffer
    if fmt == "parquet":
        if out is None and sys.stdout.isatty():
            raise AnalyticsError("parquet output needs --output FILE (or a pipe)")
        reader = _reader(rel)
        rows = 0
        with pq.ParquetWriter(stream, reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    if fmt == "csv":
        reader = _reader(_flat(rel))
        rows = 0
        # pyarrow quotes every header name; write the header as the csv module would.
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(reader.schema.names)
        stream.write(header.getvalue().encode())
        options = pacsv.WriteOptions(include_header=False)
        with pacsv.CSVWriter(stream, reader.schema, write_options=options) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    if fmt == "json":
        rows = 0
        stream.write(b"[")
        for batch in _reader(rel):
            for row in _rows(batch):
                stream.write(b",\n" if rows else b"\n")
                stream.write(orjson.dumps(row, default=_json_default,
                                          option=orjson.OPT_NON_STR_KEYS))
                rows += 1
        stream.write(b"\n]\n" if rows else b"]\n")
        stream.flush()
        return rows
    raise AnalyticsError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
