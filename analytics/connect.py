"""Tenant-scoped DuckDB connections over the lake.

A connection for tenant ``t`` has views ``events``, ``raw`` and ``quarantine`` over exactly
``t``'s partitions (``events`` without the rows dedupe flagged; ``events_all`` with them), and is then locked: DuckDB may only read ``t``'s directories, external
access (other files, COPY, ATTACH, INSTALL, http) is off, and the configuration cannot be
changed back. So no SQL a session runs can read another tenant's rows.
``all_tenants=True`` (operators) spans every tenant instead.

Views are bound when the connection is made; files that land later are visible to views
that already had files. A tenant with no files yet gets empty, typed views (reconnect to
see new data; the REPL's ``.refresh`` does that).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from analytics.errors import AnalyticsError, TenantScopeError
from schemas.columns import sql_type
from schemas.event import EVENT_SCHEMA
from schemas.lake import TABLES, Table, all_tenants_glob, tenant_dir, tenant_glob
from schemas.quarantine import QUARANTINE_SCHEMA
from schemas.raw import RAW_SCHEMA
from schemas.tenants import is_tenant_id

SCHEMAS: dict[Table, pa.Schema] = {
    "events": EVENT_SCHEMA, "raw": RAW_SCHEMA, "quarantine": QUARANTINE_SCHEMA,
}
VIEWS: tuple[str, ...] = (*TABLES, "events_all")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _empty_view(schema: pa.Schema) -> str:
    cols = ", ".join(f"CAST(NULL AS {sql_type(f.type)}) AS {f.name}" for f in schema)
    return f"SELECT {cols}, CAST(NULL AS DATE) AS date WHERE false"


def _has_files(root: Path) -> bool:
    return root.is_dir() and any(root.glob("**/*.parquet"))


def _parquet_view(glob: str) -> str:
    return (f"SELECT * FROM read_parquet({_sql_str(glob)}, hive_partitioning = true, "
            f"hive_types = {{'date': DATE}}, union_by_name = true)")


def connect(
    lake: str | Path,
    tenant: str | None = None,
    *,
    all_tenants: bool = False,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake views of one tenant (or all, for operators).

    Raises TenantScopeError when neither a valid tenant nor ``all_tenants`` is given.
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
    allowed: list[str] = []
    for table in TABLES:
        if tenant is not None:
            directory = tenant_dir(root, table, tenant)
            glob = tenant_glob(root, table, tenant)
        else:
            directory = root / table
            glob = all_tenants_glob(root, table)
        allowed.append(str(directory) + "/")
        body = _parquet_view(glob) if _has_files(directory) else _empty_view(SCHEMAS[table])
        con.execute(f"CREATE VIEW {'events_all' if table == 'events' else table} AS {body}")
    # Retries the loader flagged stay in the lake (events_all) but not in what analysts see.
    con.execute("CREATE VIEW events AS SELECT * FROM events_all WHERE is_duplicate IS NOT TRUE")
    con.execute("SET allowed_directories = " + "[" + ", ".join(map(_sql_str, allowed)) + "]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con
