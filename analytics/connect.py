"""Tenant-scoped DuckDB connections over the lake.

A connection for tenant ``t`` has views ``events``, ``raw`` and ``quarantine`` over exactly
``t``'s partitions (``events`` without the rows dedupe flagged; ``events_all`` with them),
plus ``session_events`` and ``sessions`` built on ``events`` (SQL in analytics/views.py),
and is then locked: DuckDB may only read ``t``'s directories, external access (other
files, INSTALL, http) is off, and the configuration cannot be changed back. So no SQL a
session runs can read another tenant's rows. DuckDB would still let it write *into*
``t``'s directories (COPY TO, ATTACH, EXPORT): the SQL entry points refuse those
statements first (analytics/readonly.py).
``all_tenants=True`` (operators) spans every tenant instead.

Views are bound when the connection is made; files that land later are visible to views
that already had files. A tenant with no files yet gets empty, typed views (reconnect to
see new data; the REPL's ``.refresh`` does that).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics.errors import AnalyticsError, TenantScopeError
from analytics.views import DERIVED_VIEWS
from schemas.columns import sql_type
from schemas.event import EVENT_SCHEMA
from schemas.lake import TABLES, Table, all_tenants_glob, tenant_dir, tenant_glob
from schemas.quarantine import QUARANTINE_SCHEMA
from schemas.raw import RAW_SCHEMA
from schemas.tenants import is_tenant_id

SCHEMAS: dict[Table, pa.Schema] = {
    "events": EVENT_SCHEMA, "raw": RAW_SCHEMA, "quarantine": QUARANTINE_SCHEMA,
}
VIEWS: tuple[str, ...] = (*TABLES, "events_all", *(name for name, _ in DERIVED_VIEWS))


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _empty_view(schema: pa.Schema) -> str:
    cols = ", ".join(f"CAST(NULL AS {sql_type(f.type)}) AS {f.name}" for f in schema)
    return f"SELECT {cols}, CAST(NULL AS DATE) AS date WHERE false"


def _has_files(root: Path) -> bool:
    return root.is_dir() and any(root.glob("**/*.parquet"))


def _parquet_view(glob: str | Sequence[Path]) -> str:
    source = (_sql_str(glob) if isinstance(glob, str)
              else "[" + ", ".join(_sql_str(str(p)) for p in glob) + "]")
    return (f"SELECT * FROM read_parquet({source}, hive_partitioning = true, "
            f"hive_types = {{'date': DATE}}, union_by_name = true)")


def _pinned(root: Path, directory: Path, files: Sequence[str | Path]) -> list[Path]:
    """Absolute paths of pinned files, each checked to lie inside ``directory``."""
    paths = [(root / f).resolve() for f in files]
    for path in paths:
        if not path.is_relative_to(directory.resolve()):
            raise TenantScopeError("pinned file outside the scope of the connection",
                                   file=str(path), scope=str(directory))
    return paths


def connect(
    lake: str | Path,
    tenant: str | None = None,
    *,
    all_tenants: bool = False,
    threads: int | None = None,
    memory_limit: str | None = None,
    files: Mapping[Table, Sequence[str | Path]] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake views of one tenant (or all, for operators).

    ``files`` pins the views to exactly these files (paths relative to the lake, as in
    an export manifest); a table it does not name is empty. Raises TenantScopeError when
    neither a valid tenant nor ``all_tenants`` is given, or a pinned file is out of scope.
    """
    root = Path(lake).resolve()
    if not root.is_dir():
        raise AnalyticsError("lake directory not found", lake=str(lake))
    if all_tenants == (tenant is not None):
        raise TenantScopeError("give exactly one of a tenant or all_tenants=True")
    if tenant is not None and not is_tenant_id(tenant):
        raise TenantScopeError("not a valid tenant id", tenant=tenant)
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
        if tenant is not None:
            directory = tenant_dir(root, table, tenant)
            glob = tenant_glob(root, table, tenant)
        else:
            directory = root / table
            glob = all_tenants_glob(root, table)
        allowed.append(str(directory) + "/")
        if files is not None:
            pinned = _pinned(root, directory, files.get(table, ()))
            body = _parquet_view(pinned) if pinned else _empty_view(SCHEMAS[table])
        else:
            body = _parquet_view(glob) if _has_files(directory) else _empty_view(SCHEMAS[table])
        con.execute(f"CREATE VIEW {'events_all' if table == 'events' else table} AS {body}")
    # Retries the loader flagged stay in the lake (events_all) but not in what analysts see.
    con.execute("CREATE VIEW events AS SELECT * FROM events_all WHERE is_duplicate IS NOT TRUE")
    for name, view_sql in DERIVED_VIEWS:
        con.execute(f"CREATE VIEW {name} AS {view_sql}")
    con.execute("SET allowed_directories = " + "[" + ", ".join(map(_sql_str, allowed)) + "]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con
