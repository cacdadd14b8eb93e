"""Tenant-scoped DuckDB connections over the lake.

A connection for tenant ``t`` has views ``events``, ``raw`` and ``quarantine`` over exactly
``t``'s data files of each table's current Delta snapshot (``events`` without the rows
dedupe flagged; ``events_all`` with them), plus ``session_events`` and ``sessions`` built on
``events`` (SQL in analytics/views.py). The file list comes from the Delta log
(schemas/delta.py), never from a glob, so files a commit has not added (or has removed:
compaction, retention, forget) are never read.

DuckDB's own Parquet reader reads exactly that file list through a read-only filesystem
registered with the connection (analytics/snapshot_fs.py: ``dnsnap://`` knows those files
and opens them for reading only); the connection itself is then given no other path:
external access is off (no file, no URL, no INSTALL), no directory is allowed but
``dnsnap://`` and its own private spill directory, Python objects are not looked up by
name, and the configuration is locked. So whatever SQL a session runs, and whatever a
Python caller does with the connection and its relations, it can neither read another
tenant's rows nor write anything into the lake (COPY TO, ATTACH, EXPORT, a relation's
``to_parquet``). The SQL entry points also refuse those statements up front with a clear
message (analytics/readonly.py). ``all_tenants=True`` (operators) spans every tenant
instead.

Views are bound to the snapshot taken when the connection is made; reconnect to see newer
data (the REPL's ``.refresh`` does that). ``files`` or ``versions`` pin a connection to an
export manifest's inputs instead.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow.fs as pafs

from analytics.errors import AnalyticsError, TenantScopeError
from analytics.money import RATES_SCHEMA, FxRates
from analytics.snapshot_fs import SCHEME, SnapshotFileSystem
from analytics.stored_sessions import (
    identities_view_sql,
    prepare_recent,
    sessions_base_sql,
    stored,
    stored_view_sql,
)
from analytics.views import DERIVED_VIEWS, derived_views, sessions_sql
from schemas.columns import sql_type
from schemas.delta import DataFile, read_files_select, table_snapshot
from schemas.lake import ROW_SCHEMAS, TABLES, Table
from schemas.sql import quote_ident
from schemas.storage import LakeLocation
from schemas.tenants import is_tenant_id

log = logging.getLogger(__name__)

VIEWS: tuple[str, ...] = (*TABLES, "events_all", *(name for name, _ in DERIVED_VIEWS))


def _columns(table: Table) -> list[tuple[str, str]]:
    """(name, SQL type) of a view's columns: the row schema, then ``date``."""
    return [(f.name, sql_type(f.type)) for f in ROW_SCHEMAS[table]] + [("date", "DATE")]


def _empty_view(table: Table) -> str:
    cols = ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in _columns(table))
    return f"SELECT {cols} WHERE false"


def pinned_uris(lake: LakeLocation, table: Table, tenant: str | None,
                files: Sequence[str | Path]) -> list[str]:
    """URIs of pinned files (paths relative to the lake), each inside the scope.

    Raises TenantScopeError for any other path (absolute, ``..``, another tenant's or
    table's, a URL, a NUL or other unprintable character) before any file is touched, so an
    export manifest naming such a path learns nothing about it (verify_inputs calls this
    before it checksums a file)."""
    scope = f"{table}/tenant={tenant}/" if tenant is not None else f"{table}/"
    out = []
    for f in files:
        relative = posixpath.normpath(str(f).replace("\\", "/"))
        if (relative.startswith(("/", "..")) or "://" in relative
                or not relative.isprintable()
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


def _relative(lake: LakeLocation, uri: str) -> str:
    prefix = lake.uri.rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise TenantScopeError("file outside the lake", file=uri)
    return uri[len(prefix):]


def _snapshot_view(con: duckdb.DuckDBPyConnection, snapfs: SnapshotFileSystem,
                   lake: LakeLocation, table: Table, files: Mapping[str, int | None]
                   ) -> tuple[str, list[tuple[str, str]]]:
    """A SELECT of ``files`` (URI -> size) of ``table`` through the connection's snapshot
    filesystem and DuckDB's Parquet reader: the table's columns (missing ones NULL), then
    ``date``; and those columns' (name, SQL type)."""
    relative = {_relative(lake, uri): size for uri, size in files.items()}
    snapfs.allow(relative)
    return read_files_select(con, table, [f"{SCHEME}://{r}" for r in relative],
                             partitions=True)


def _empty_select(columns: Sequence[tuple[str, str]]) -> str:
    listed = ", ".join(f"CAST(NULL AS {t}) AS {quote_ident(n)}" for n, t in columns)
    return f"SELECT {listed} WHERE false"


def _stored_view(snapfs: SnapshotFileSystem, lake: LakeLocation, uris: Sequence[str]) -> str:
    relative = [_relative(lake, u) for u in uris]
    snapfs.allow(dict.fromkeys(relative))
    return stored_view_sql([f"{SCHEME}://{r}" for r in relative])


def _on_storage(fs: pafs.FileSystem, root: str, lake: LakeLocation, uris: Sequence[str]
                ) -> bool:
    """Whether every file of ``uris`` (of the lake) is on storage."""
    infos = fs.get_file_info([f"{root}/{_relative(lake, u)}" for u in uris])
    return all(i.type == pafs.FileType.File for i in infos)


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
    if not location.exists():
        raise AnalyticsError("lake directory not found" if location.is_local
                             else "no lake at this location (no object under the prefix)",
                             lake=str(lake))
    # A private spill directory (mode 0700) per connection: DuckDB lets a session read its
    # temp directory, and the default (<cwd>/.tmp) is shared, so a tenant could read another
    # session's spill files while it spills. Removed when the connection is collected.
    spill = tempfile.mkdtemp(prefix="driftnet-spill-")
    config: dict[str, str | bool | int | float | list[str]] = {"temp_directory": spill}
    if threads is not None:
        config["threads"] = threads
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    try:
        con = duckdb.connect(":memory:", config=config)
    except duckdb.Error as exc:  # e.g. a memory limit DuckDB cannot read
        shutil.rmtree(spill, ignore_errors=True)
        raise AnalyticsError(f"cannot open DuckDB with these settings: {exc}",
                             memory_limit=memory_limit) from exc
    weakref.finalize(con, shutil.rmtree, spill, True)
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB's Python client prints its progress bar to stdout, which would corrupt
    # `driftnet sql --format csv > file` on slow queries; keep tracking it (for
    # con.query_progress(), e.g. export's progress bar) but never print it.
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    con.execute("SET parquet_metadata_cache = true")
    oldest: dt.date | None = None
    fs, root = location.filesystem()
    snapfs = SnapshotFileSystem(fs, root, {})
    con.register_filesystem(snapfs)
    # DuckDB binds a view when it is created, and binding a read over hundreds of files
    # opens each of them: the derived views would bind ``events_all`` about 25 times
    # (80 ms each on 305 files). Views are kept as SQL and bound again when queried, so
    # they are created over empty stand-ins of the same columns, and the real reads of
    # the tables replace the stand-ins last.
    reads: dict[str, str] = {}
    event_dates: set[dt.date] = set()
    event_files: Sequence[DataFile] = ()
    for table in TABLES:
        view = "events_all" if table == "events" else table
        paths: dict[str, int | None]
        if files is not None:
            paths = dict.fromkeys(pinned_uris(location, table, tenant, files.get(table, ())))
        else:
            snapshot = table_snapshot(location, table, tenant).files
            paths = {f.uri: f.size for f in snapshot}
            if table == "events" and snapshot:
                event_files = snapshot
                event_dates = {f.date for f in snapshot}
                oldest = min(event_dates)
        if paths:
            reads[view], columns = _snapshot_view(con, snapfs, location, table, paths)
            con.execute(f"CREATE VIEW {view} AS {_empty_select(columns)}")
        else:
            con.execute(f"CREATE VIEW {view} AS {_empty_view(table)}")
    # Retries the loader flagged stay in the lake (events_all) but not in what analysts see.
    con.execute("CREATE VIEW events AS SELECT * FROM events_all WHERE is_duplicate IS NOT TRUE")
    fx = rates.table() if rates is not None else RATES_SCHEMA.empty_table()
    con.register("fx_rates_input", fx)
    con.execute("CREATE TABLE fx_rates AS SELECT * FROM fx_rates_input ORDER BY currency, date")
    con.unregister("fx_rates_input")
    store = (stored(location, tenant) if stored_sessions and tenant is not None
             and files is None and oldest is not None else None)
    if store is not None and not store.covers(event_files):
        store = None  # closed days got rows after the build: compute (maintenance rebuilds)
    if store is not None and not _on_storage(fs, root, location,
                                             (*store.uris, *store.identity_uris)):
        # A forget deleted them after `stored` read the log: compute, as without them.
        log.info("stored sessions of %s are gone from storage: computing them", tenant)
        store = None
    recent = False
    if store is not None:
        # Sessions with an event received after the cutoff are computed at query time;
        # their lists are filled once the real reads are in place.
        recent = any(d > store.cutoff for d in event_dates)
        prepare_recent(con, store.cutoff, fill=False)
        for stored_name, uris in (("lake_stored_sessions", store.uris),
                                  ("lake_stored_identities", store.identity_uris)):
            if uris:
                con.execute(f"CREATE VIEW {stored_name} AS "
                            f"{_stored_view(snapfs, location, uris)}")
    for name, view_sql in derived_views(rates.reporting_currency if rates else None):
        body = view_sql
        if name == "sessions_base" and store is not None and oldest is not None:
            relation = ("lake_stored_sessions" if store.uris
                        else f"({sessions_sql()} LIMIT 0)")
            body = sessions_base_sql(relation, store.cutoff, oldest, recent)
        elif name == "identities" and store is not None:
            body = identities_view_sql(
                "lake_stored_identities" if store.identity_uris else None, store.cutoff)
        con.execute(f"CREATE VIEW {name} AS {body}")
    for name, read in reads.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {read}")
    if store is not None and recent:
        prepare_recent(con, store.cutoff, fill=True)
    # The snapshot filesystem is the one way in; the spill directory stays usable.
    con.execute(f"SET allowed_directories = ['{SCHEME}://']")
    con.execute("SET enable_external_access = false")
    con.execute("SET python_enable_replacements = false")
    con.execute("SET lock_configuration = true")
    return con
