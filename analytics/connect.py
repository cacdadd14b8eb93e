"""Tenant-scoped DuckDB connections over the lake.

A connection for tenant ``t`` has views ``events``, ``raw`` and ``quarantine`` over exactly
``t``'s data files of each table's current Delta snapshot (``events`` without the rows
dedupe flagged; ``events_all`` with them), plus ``session_events`` and ``sessions`` built on
``events`` (SQL in analytics/views.py). The file list comes from the Delta log
(schemas/delta.py), never from a glob, so files a commit has not added (or has removed:
compaction, retention, forget) are never read.

The views read the files through Arrow datasets bound to exactly that file list (pyarrow's
local or object-store filesystem), registered with the connection; the connection itself
is then given no path at all: external access is off (no file, no URL, no INSTALL), no
directory is allowed but its own private spill directory, Python objects are not looked up
by name, and the configuration is locked. So whatever SQL a session runs, and whatever a
Python caller does with the connection and its relations, it can neither read another
tenant's rows nor write anything into the lake (COPY TO, ATTACH, EXPORT, a relation's
``to_parquet``): the lake is not reachable from DuckDB except through the datasets. The SQL
entry points also refuse those statements up front with a clear message
(analytics/readonly.py). ``all_tenants=True`` (operators) spans every tenant instead.

Views are bound to the snapshot taken when the connection is made; reconnect to see newer
data (the REPL's ``.refresh`` does that). ``files`` or ``versions`` pin a connection to an
export manifest's inputs instead.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from analytics.errors import AnalyticsError, TenantScopeError
from analytics.money import RATES_SCHEMA, FxRates
from analytics.stored_sessions import (
    identities_view_sql,
    prepare_recent,
    register_stored,
    sessions_base_sql,
    stored,
)
from analytics.views import DERIVED_VIEWS, derived_views, sessions_sql
from schemas.columns import sql_type
from schemas.delta import table_snapshot
from schemas.lake import DERIVED_IDENTITIES_TABLE, ROW_SCHEMAS, TABLES, Table
from schemas.storage import LakeLocation
from schemas.tenants import is_tenant_id

VIEWS: tuple[str, ...] = (*TABLES, "events_all", *(name for name, _ in DERIVED_VIEWS))


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
    """A SELECT of ``uris`` (data files of ``table``) through an Arrow dataset: the table's
    columns (missing ones NULL), then ``date``."""
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
    rates: FxRates | None = None,
    stored_sessions: bool = True,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake views of one tenant (or all, for operators).

    ``files`` pins the views to exactly these data files (paths relative to the lake, as in
    an export manifest); a table it does not name is empty. Raises TenantScopeError when
    neither a valid tenant nor ``all_tenants`` is given, or a pinned file is out of scope.
    ``stored_sessions`` (one tenant, not pinned) reads the session rows of closed days
    from the lake's stored sessions (analytics/stored_sessions.py) instead of computing
    them. ``rates`` adds ``revenue_converted`` in its reporting currency to ``sessions``,
    ``orders`` and ``users`` (analytics/money.py); the rates are the table ``fx_rates``.
    """
    location = LakeLocation.parse(lake)
    if all_tenants == (tenant is not None):
        raise TenantScopeError("give exactly one of a tenant or all_tenants=True")
    if tenant is not None and not is_tenant_id(tenant):
        raise TenantScopeError("not a valid tenant id", tenant=tenant)
    if location.is_local and not location.path.is_dir():
        raise AnalyticsError("lake directory not found", lake=str(lake))
    # A private spill directory (mode 0700) per connection: DuckDB lets a session read its
    # temp directory, and the default (<cwd>/.tmp) is shared, so a tenant could read another
    # session's spill files while it spills. Removed when the connection is collected.
    spill = tempfile.mkdtemp(prefix="driftnet-spill-")
    config: dict[str, str | bool | int | float | list[str]] = {"temp_directory": spill}
    if threads is not None:
        config["threads"] = threads
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(":memory:", config=config)
    weakref.finalize(con, shutil.rmtree, spill, True)
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB's Python client prints its progress bar to stdout, which would corrupt
    # `driftnet sql --format csv > file` on slow queries; keep tracking it (for
    # con.query_progress(), e.g. export's progress bar) but never print it.
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    oldest: dt.date | None = None
    for table in TABLES:
        if files is not None:
            paths = _pinned(location, table, tenant, files.get(table, ()))
        else:
            snapshot = table_snapshot(location, table, tenant).files
            paths = [f.uri for f in snapshot]
            if table == "events" and snapshot:
                oldest = min(f.date for f in snapshot)
        body = _dataset_view(con, location, table, paths) if paths else _empty_view(table)
        con.execute(f"CREATE VIEW {'events_all' if table == 'events' else table} AS {body}")
    # Retries the loader flagged stay in the lake (events_all) but not in what analysts see.
    con.execute("CREATE VIEW events AS SELECT * FROM events_all WHERE is_duplicate IS NOT TRUE")
    fx = rates.table() if rates is not None else RATES_SCHEMA.empty_table()
    con.register("fx_rates_input", fx)
    con.execute("CREATE TABLE fx_rates AS SELECT * FROM fx_rates_input ORDER BY currency, date")
    con.unregister("fx_rates_input")
    store = (stored(location, tenant) if stored_sessions and tenant is not None
             and files is None and oldest is not None else None)
    for name, view_sql in derived_views(rates.reporting_currency if rates else None):
        body = view_sql
        if name == "sessions_base" and store is not None and oldest is not None:
            recent = prepare_recent(con, store.cutoff)
            relation = f"({sessions_sql()} LIMIT 0)"
            if store.uris:
                register_stored(con, location, store.uris, "lake_stored_sessions_files")
                relation = "lake_stored_sessions_files"
            body = sessions_base_sql(relation, store.cutoff, oldest, recent)
        elif name == "identities" and store is not None:
            parts = None
            if store.identity_uris:
                register_stored(con, location, store.identity_uris, "lake_stored_identity_files",
                                DERIVED_IDENTITIES_TABLE)
                parts = "lake_stored_identity_files"
            body = identities_view_sql(parts, store.cutoff)
        con.execute(f"CREATE VIEW {name} AS {body}")
    con.execute("SET allowed_directories = []")  # the spill directory stays usable
    con.execute("SET enable_external_access = false")
    con.execute("SET python_enable_replacements = false")
    con.execute("SET lock_configuration = true")
    return con
