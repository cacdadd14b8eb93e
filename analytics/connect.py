"""Tenant-scoped DuckDB connections over the lake.

A connection for tenant ``t`` has views ``events``, ``raw`` and ``quarantine`` over exactly
``t``'s data files of each table's current Delta snapshot (``events`` without the rows
dedupe flagged; ``events_all`` with them), plus ``session_events`` and ``sessions`` built on
``events`` (SQL in analytics/views.py). DuckDB reads the files with its own Parquet reader;
the file list comes from the Delta log (schemas/delta.py), never from a glob, so files a
commit has not added (or has removed: compaction, retention, forget) are never read.

The connection is then locked: DuckDB may only read ``t``'s directories, external access
(other files, INSTALL, http) is off, Python objects are not looked up by name, and the
configuration cannot be changed back. On an object store (``s3://``...) DuckDB reads the
files through Arrow datasets bound to exactly the snapshot's files of ``t`` (DuckDB's own
S3 support is an extension that may not be installable); with external access off, no SQL
can name another object. So no
SQL a session runs can read another tenant's rows. DuckDB would still let it write *into*
``t``'s directories (COPY TO, ATTACH, EXPORT): the SQL entry points refuse those
statements first (analytics/readonly.py); a file planted there would not be part of any
table anyway. ``all_tenants=True`` (operators) spans every tenant instead.

Views are bound to the snapshot taken when the connection is made; reconnect to see newer
data (the REPL's ``.refresh`` does that). ``files`` or ``versions`` pin a connection to an
export manifest's inputs instead.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from analytics.errors import AnalyticsError, TenantScopeError
from analytics.views import DERIVED_VIEWS
from schemas.columns import sql_type
from schemas.delta import read_files_sql, table_snapshot
from schemas.lake import ROW_SCHEMAS, TABLES, Table
from schemas.storage import LakeLocation
from schemas.tenants import is_tenant_id

VIEWS: tuple[str, ...] = (*TABLES, "events_all", *(name for name, _ in DERIVED_VIEWS))


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _columns(table: Table) -> list[tuple[str, str]]:
    """(name, SQL type) of a view's columns: the row schema, then ``date``."""
    return [(f.name, sql_type(f.type)) for f in ROW_SCHEMAS[table]] + [("date", "DATE")]


def _empty_view(table: Table) -> str:
    cols = ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in _columns(table))
    return f"SELECT {cols} WHERE false"


def _pinned(lake: LakeLocation, table: Table, tenant: str | None,
            files: Sequence[str | Path]) -> list[str]:
    """URIs of pinned files (paths relative to the lake), each inside the scope."""
    scope = f"{table}/tenant={tenant}/" if tenant is not None else f"{table}/"
    out = []
    for f in files:
        relative = posixpath.normpath(str(f).replace("\\", "/"))
        if (relative.startswith(("/", "..")) or "://" in relative
                or not relative.startswith(scope)):
            raise TenantScopeError("pinned file outside the scope of the connection",
                                   file=str(f), scope=scope)
        uri = lake.join(relative)
        if lake.is_local:
            path = Path(uri).resolve()  # a symlink must not lead out of the scope either
            if not path.is_relative_to(Path(lake.join(scope)).resolve()):
                raise TenantScopeError("pinned file outside the scope of the connection",
                                       file=str(f), scope=scope)
            uri = str(path)
        out.append(uri)
    return out


def _dataset_view(con: duckdb.DuckDBPyConnection, lake: LakeLocation, table: Table,
                  uris: Sequence[str]) -> str:
    """A SELECT of ``uris`` (files of ``table`` on an object store) through an Arrow dataset:
    the table's columns (missing ones NULL), then ``date``."""
    fs, root = lake.filesystem()
    prefix = lake.uri.rstrip("/") + "/"
    paths = [f"{root}/{u[len(prefix):]}" for u in uris]
    schema = pa.schema([*ROW_SCHEMAS[table], pa.field("date", pa.date32())])
    dataset = ds.dataset(
        paths, schema=schema, format="parquet", filesystem=fs,
        partitioning=ds.partitioning(pa.schema([("tenant", pa.string()),
                                                ("date", pa.date32())]), flavor="hive"),
        partition_base_dir=f"{root}/{table}")
    name = f"lake_{table}_files"
    con.register(name, dataset)
    return f"SELECT * FROM {name}"


def connect(
    lake: str | Path | LakeLocation,
    tenant: str | None = None,
    *,
    all_tenants: bool = False,
    threads: int | None = None,
    memory_limit: str | None = None,
    files: Mapping[Table, Sequence[str | Path]] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake views of one tenant (or all, for operators).

    ``files`` pins the views to exactly these data files (paths relative to the lake, as in
    an export manifest); a table it does not name is empty. Raises TenantScopeError when
    neither a valid tenant nor ``all_tenants`` is given, or a pinned file is out of scope.
    """
    location = LakeLocation.parse(lake)
    if all_tenants == (tenant is not None):
        raise TenantScopeError("give exactly one of a tenant or all_tenants=True")
    if tenant is not None and not is_tenant_id(tenant):
        raise TenantScopeError("not a valid tenant id", tenant=tenant)
    if location.is_local and not location.path.is_dir():
        raise AnalyticsError("lake directory not found", lake=str(lake))
    config: dict[str, str | bool | int | float | list[str]] = {}
    if threads is not None:
        config["threads"] = threads
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB's Python client prints its progress bar to stdout, which would corrupt
    # `driftnet sql --format csv > file` on slow queries; keep tracking it (for
    # con.query_progress(), e.g. export's progress bar) but never print it.
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    allowed: list[str] = []
    for table in TABLES:
        scope = location.join(table, f"tenant={tenant}") if tenant else location.join(table)
        allowed.append(scope + "/")
        if files is not None:
            paths = _pinned(location, table, tenant, files.get(table, ()))
        else:
            paths = [f.uri for f in table_snapshot(location, table, tenant).files]
        if not paths:
            body = _empty_view(table)
        elif location.is_local:
            body = read_files_sql(con, table, paths, partitions=True)
        else:
            body = _dataset_view(con, location, table, paths)
        con.execute(f"CREATE VIEW {'events_all' if table == 'events' else table} AS {body}")
    # Retries the loader flagged stay in the lake (events_all) but not in what analysts see.
    con.execute("CREATE VIEW events AS SELECT * FROM events_all WHERE is_duplicate IS NOT TRUE")
    for name, view_sql in DERIVED_VIEWS:
        con.execute(f"CREATE VIEW {name} AS {view_sql}")
    con.execute("SET allowed_directories = " + "[" + ", ".join(map(_sql_str, allowed)) + "]")
    con.execute("SET enable_external_access = false")
    con.execute("SET python_enable_replacements = false")
    con.execute("SET lock_configuration = true")
    return con
