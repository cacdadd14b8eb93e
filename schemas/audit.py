"""The audit log: one receipt per `driftnet forget`, in the Delta table ``<lake>/_audit``.

A receipt says what was asked (the identifier only as a salted hash), what matched in each
table, which table versions the deletion made, which data files were rewritten, and when the
old files were physically deleted. Export reproduction reads it to explain why a pinned
file is gone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import unquote

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from schemas.columns import TIMESTAMP
from schemas.delta import open_table
from schemas.lake import AUDIT_TABLE
from schemas.storage import LakeLocation

RECEIPT_SCHEMA = pa.schema([
    pa.field("receipt_id", pa.string(), nullable=False),
    pa.field("tenant", pa.string(), nullable=False),
    pa.field("identifier_kind", pa.string(), nullable=False),
    pa.field("identifier_hash", pa.string(), nullable=False),
    pa.field("requested_at", TIMESTAMP, nullable=False),
    pa.field("completed_at", TIMESTAMP, nullable=False),
    pa.field("files_deleted_at", TIMESTAMP),
    pa.field("rows_removed", pa.string(), nullable=False),
    pa.field("table_versions", pa.string(), nullable=False),
    pa.field("files_rewritten", pa.int64(), nullable=False),
    pa.field("files_deleted", pa.string(), nullable=False),
    pa.field("session_states_removed", pa.int64(), nullable=False),
    pa.field("event_keys", pa.string(), nullable=False),
])
"""Columns of ``_audit``. JSON text columns: ``rows_removed`` ({table: rows}),
``table_versions`` ({table: [before, after]}), ``files_deleted`` (paths relative to the
lake), ``event_keys`` (dedupe keys of the removed events, [[hi, lo], ...]: hashes of event
ids, so that running loaders forget them too)."""


@dataclass(frozen=True)
class Deletion:
    """A data file physically deleted by a forget."""

    receipt_id: str
    deleted_at: dt.datetime


def receipts(lake: LakeLocation) -> pa.Table:
    """Every receipt, oldest first (an empty table when none was written)."""
    delta = open_table(lake, AUDIT_TABLE)
    if delta is None:
        return RECEIPT_SCHEMA.empty_table()
    return read_receipts(lake, delta).sort_by("completed_at")


def read_receipts(lake: LakeLocation, delta: DeltaTable,
                  columns: list[str] | None = None) -> pa.Table:
    """The receipts of the audit table's snapshot ``delta``, read by pyarrow on this thread.

    Not ``DeltaTable.to_pyarrow_table``: its reader threads were still running when a command
    that failed right after exited, and about one such exit in 40 aborted (SIGABRT, exit 134)
    after printing its one-line error."""
    names = pa.table(delta.get_add_actions(flatten=True))["path"].to_pylist()
    schema = RECEIPT_SCHEMA if columns is None else pa.schema(
        [RECEIPT_SCHEMA.field(c) for c in columns])
    if not names:
        return schema.empty_table()
    fs, root = lake.filesystem()
    paths = [f"{root}/{AUDIT_TABLE}/{unquote(n)}" for n in names]
    return pq.read_table(paths, filesystem=fs, columns=columns, schema=schema,
                         use_threads=False, pre_buffer=False)


def forgotten_files(lake: LakeLocation) -> dict[str, Deletion]:
    """Data files (relative to the lake) that a forget deleted, with when and by which."""
    out: dict[str, Deletion] = {}
    for row in receipts(lake).to_pylist():
        for path in orjson.loads(row["files_deleted"]):
            out[path] = Deletion(row["receipt_id"], row["files_deleted_at"] or
                                 row["completed_at"])
    return out
