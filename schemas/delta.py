"""Reading the lake's Delta tables: versions and the data files of a snapshot.

A table's content is the set of data files its Delta log lists at a version; files under a
table directory that the log does not list (superseded by compaction, removed by retention
or forget, or written by a loader that crashed before committing) are not part of it.
Readers therefore always start from :func:`table_files` (DuckDB then reads exactly those
files with its own Parquet reader), never from a glob.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from schemas.columns import sql_type
from schemas.errors import LakeError
from schemas.lake import ROW_SCHEMAS, TABLES, Table
from schemas.sql import quote
from schemas.storage import LakeLocation

UNCOMMITTED_GRACE_S: Final = 3600.0
"""How old a data file that no commit added must be before forget (or a drop of stored
sessions) deletes it. A younger one may be a writer's between its write and its commit (a
loader's flush writes every file of a batch, then commits; a state append, a merge, a build
of stored sessions do the same): deleting it would make that commit name a missing file,
and the table unreadable. An hour is far beyond any commit's latency; vacuum deletes the
files of a writer that died before committing."""


@dataclass(frozen=True)
class DataFile:
    """One data file of a table snapshot."""

    table: Table
    path: str
    """Relative to the table root, e.g. ``tenant=acme/date=2026-12-01/x.parquet``."""
    uri: str
    """Absolute: a local path, or a URL on object storage."""
    size: int
    tenant: str
    date: dt.date
    rows: int | None


@dataclass(frozen=True)
class Snapshot:
    """The files of one table at one version (version None: the table does not exist yet)."""

    table: Table
    version: int | None
    files: tuple[DataFile, ...]


def table_uri(lake: LakeLocation, table: str) -> str:
    """URI of a table of the lake (what delta-rs opens)."""
    return lake.join(table)


def open_table(lake: LakeLocation, table: str, version: int | None = None
               ) -> DeltaTable | None:
    """The Delta table at ``version`` (default: latest), or None when it does not exist."""
    try:
        return DeltaTable(table_uri(lake, table), version=version,
                          storage_options=dict(lake.storage_options) or None)
    except TableNotFoundError:
        return None
    except DeltaError as exc:
        if version is not None:
            raise LakeError("that version of the table cannot be read: its log entries were "
                            "cleaned up, or it never existed", table=table, version=version
                            ) from exc
        raise LakeError(f"cannot read the lake: {exc}", lake=lake.uri, table=table) from exc
    except OSError as exc:
        raise LakeError(f"cannot read the lake: {exc}", lake=lake.uri, table=table) from exc


def snapshot_files(delta: DeltaTable, lake: LakeLocation, table: Table,
                   tenant: str | None = None) -> list[DataFile]:
    """Data files of a loaded table (one tenant's, or all), sorted by path."""
    adds = pa.table(delta.get_add_actions(flatten=True))
    if adds.num_rows == 0:
        return []
    if tenant is not None:
        adds = adds.filter(pc.equal(adds["partition.tenant"], tenant))
    root = table_uri(lake, table)
    rows = adds["num_records"].to_pylist() if "num_records" in adds.column_names else None
    out = [
        DataFile(table, path, f"{root}/{path}", size, t, d, rows[i] if rows else None)
        for i, (path, size, t, d) in enumerate(zip(
            adds["path"].to_pylist(), adds["size_bytes"].to_pylist(),
            adds["partition.tenant"].to_pylist(), _dates(adds["partition.date"]), strict=True))
    ]
    return sorted(out, key=lambda f: f.path)


def _dates(column: pa.ChunkedArray) -> list[dt.date]:
    if pa.types.is_date(column.type):
        return list(column.to_pylist())
    return [dt.date.fromisoformat(v) for v in column.to_pylist()]


def table_snapshot(lake: LakeLocation, table: Table, tenant: str | None = None,
                   version: int | None = None) -> Snapshot:
    """The files of ``table`` (of one tenant, or all) at ``version`` (default: latest)."""
    delta = open_table(lake, table, version)
    if delta is None:
        return Snapshot(table, None, ())
    return Snapshot(table, delta.version(), tuple(snapshot_files(delta, lake, table, tenant)))


def unreferenced_files(delta: DeltaTable, fs: pafs.FileSystem, table_dir: str, under: str,
                       now: float | None = None) -> list[str]:
    """Data files on storage below ``under`` (a folder of the table whose storage path is
    ``table_dir``) that the table's current version does not hold and that no writer can
    still commit, relative to ``table_dir``, sorted: files a commit removed (superseded,
    expired, dropped) at any age, and files no commit added once they are
    :data:`UNCOMMITTED_GRACE_S` old. ``delta`` must be loaded after the caller's own commit;
    a file committed after that is young, so it is kept too."""
    adds = pa.table(delta.get_add_actions(flatten=True))
    active = set(adds["path"].to_pylist()) if adds.num_rows else set()
    # Lite vacuum's dry run lists the log's tombstones (files a commit removed): none of
    # them can be added again, whatever their age.
    removed = set(delta.vacuum(retention_hours=0, dry_run=True,
                               enforce_retention_duration=False))
    oldest_ns = round(((time.time() if now is None else now) - UNCOMMITTED_GRACE_S) * 1e9)
    found = []
    for info in fs.get_file_info(pafs.FileSelector(under, recursive=True,
                                                   allow_not_found=True)):
        relative = info.path[len(table_dir) + 1:]
        if (info.type != pafs.FileType.File or not relative.endswith(".parquet")
                or relative.startswith("_delta_log/") or relative in active):
            continue
        if relative in removed or (info.mtime_ns is not None and info.mtime_ns <= oldest_ns):
            found.append(relative)
    return sorted(found)


def lake_tenants(lake: LakeLocation) -> list[str]:
    """Tenant ids that have data in any table."""
    found: set[str] = set()
    for table in TABLES:
        delta = open_table(lake, table)
        if delta is None:
            continue
        adds = pa.table(delta.get_add_actions(flatten=True))
        if adds.num_rows:
            found.update(pc.unique(adds["partition.tenant"]).to_pylist())
    return sorted(found)


def read_files_sql(con: duckdb.DuckDBPyConnection, table: Table, paths: Sequence[str], *,
                   partitions: bool = False, filename: bool = False) -> str:
    """A SELECT of a table's rows from ``paths`` with every column of the table's schema.

    Data files hold the columns that had a value when they were written (a loader's small
    file leaves out empty ones; older files lack columns added since): a column no file
    has reads as NULL, one the code does not know (written by newer code) comes last.
    ``partitions`` adds ``tenant`` and ``date`` from the paths; ``filename`` the file's path.
    """
    return read_files_select(con, table, paths, partitions=partitions, filename=filename)[0]


def read_files_select(con: duckdb.DuckDBPyConnection, table: Table, paths: Sequence[str], *,
                      partitions: bool = False, filename: bool = False
                      ) -> tuple[str, list[tuple[str, str]]]:
    """:func:`read_files_sql`, and the (name, SQL type) of the columns it selects."""
    options = ["union_by_name = true"]
    if partitions:
        options.append("hive_partitioning = true, "
                       "hive_types = {'tenant': VARCHAR, 'date': DATE}")
    else:
        options.append("hive_partitioning = false")
    if filename:
        options.append("filename = true")
    source = (f"read_parquet([{', '.join(quote(p) for p in paths)}], "
              f"{', '.join(options)})")
    present = {str(r[0]): str(r[1])
               for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    fields = list(ROW_SCHEMAS[table])
    if not partitions:
        fields = [f for f in fields if f.name != "tenant"]
    known = [(f.name, sql_type(f.type)) for f in fields]
    if partitions:
        known.append(("date", "DATE"))
    names = {n for n, _ in known}
    select = [n if n in present else f"CAST(NULL AS {t}) AS {n}" for n, t in known]
    columns = [(n, present.get(n, t)) for n, t in known]
    select += [n for n in present if n not in names]
    columns += [(n, t) for n, t in present.items() if n not in names]
    return f"SELECT {', '.join(select)} FROM {source}", columns
