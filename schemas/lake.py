"""The lake layout: three Delta Lake tables, partitioned by tenant, then UTC date.

::

    <lake>/raw/         _delta_log/ + tenant=<t>/date=<YYYY-MM-DD>/<file>.parquet
    <lake>/events/      _delta_log/ + tenant=<t>/date=<YYYY-MM-DD>/<file>.parquet
    <lake>/quarantine/  _delta_log/ + tenant=<t>/date=<YYYY-MM-DD>/<file>.parquet
    <lake>/_audit/      _delta_log/ + one row per `driftnet forget` (receipts)
    <lake>/_loader/     loader state that is not a table (sessions)
    <lake>/_derived/sessions/    _delta_log/ + tenant=<t>/<file>.parquet: stored session rows
    <lake>/_derived/identities/  _delta_log/ + tenant=<t>/<file>.parquet: stored identity parts

``date`` is the UTC date of ``received_at``. A table is what its Delta log says: a data file
under a partition directory is part of the table only once a commit has added it (and until
one removes it), so readers list a table's files from the log, never by globbing. Partition
columns live in the log and the directory names, not inside the data files (the Delta
convention); every Delta reader, and DuckDB with ``hive_partitioning``, puts them back.

The commits of the loader record, per transport partition, the last offset they contain
(Delta application transactions: :func:`loader_app_id`), so the table itself says where a
restarted loader resumes. Commits that remove files (maintenance, retention, forget,
replay) all carry the one :data:`MAINTENANCE_APP_ID`: Delta's conflict check then refuses
the later of two such commits that raced, so two of them can never both remove (and
rewrite) the same file.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final, Literal

import pyarrow as pa

from schemas.event import EVENT_SCHEMA
from schemas.quarantine import QUARANTINE_SCHEMA
from schemas.raw import RAW_SCHEMA

Table = Literal["raw", "events", "quarantine"]
TABLES: Final[tuple[Table, ...]] = ("raw", "events", "quarantine")

PARTITION_COLUMNS: Final = ("tenant", "date")
"""Partition columns of every table, outermost first."""

ROW_SCHEMAS: Final[dict[Table, pa.Schema]] = {
    "raw": RAW_SCHEMA, "events": EVENT_SCHEMA, "quarantine": QUARANTINE_SCHEMA,
}
"""The canonical row schema of each table (``tenant`` included, ``date`` not)."""

STATS_COLUMNS: Final[dict[Table, tuple[str, ...]]] = {
    "raw": ("received_at",),
    "events": ("received_at", "derived_ts"),
    "quarantine": ("received_at",),
}
"""Columns whose min/max go into the Delta log (data skipping by time). Only timestamps:
statistics of id columns would copy personal identifiers into the log, where
``driftnet forget`` could not remove them."""

LOADER_STATE_DIR: Final = "_loader"
"""Lake sub-directory holding loader state that is not a table (never a table itself)."""

AUDIT_TABLE: Final = "_audit"
"""Delta table of `driftnet forget` receipts (operators only, no tenant partitions)."""

DERIVED_SESSIONS_TABLE: Final = "_derived/sessions"
"""Delta table of stored session rows (analytics/stored_sessions.py), partitioned by tenant:
derived data, rebuilt from events whenever it is dropped."""


DERIVED_IDENTITIES_TABLE: Final = "_derived/identities"
"""Delta table of stored identity parts (anonymous id -> user), built with the stored
sessions, from the same closed days."""

DERIVED_TABLES: Final = (DERIVED_IDENTITIES_TABLE, DERIVED_SESSIONS_TABLE)
"""The derived tables, in the order a build writes them."""


def derived_sessions_app_id(tenant: str) -> str:
    """Application id whose version is the tenant's stored-sessions cutoff (days since
    1970-01-01; 0: nothing stored)."""
    return f"driftnet-sessions:{tenant}"


MAINTENANCE_APP_ID: Final = "driftnet-maintenance"
"""Application id carried by every commit that removes files (see module docstring)."""

UNATTRIBUTED_TENANT: Final = "_unattributed"
"""Pseudo-tenant of quarantined transport records that name no tenant (corrupt bundles).
Not a valid tenant id, so it can never collide with one; only operators see it."""


def loader_app_id(source: str, partition: int) -> str:
    """Delta application id of a loader's commits for one transport partition; its version
    is the last transport offset the table holds the rows of."""
    return f"driftnet-loader/{source}/{partition}"


def delta_schema(table: Table) -> pa.Schema:
    """The Delta table's schema: the row schema plus the ``date`` partition column."""
    schema = ROW_SCHEMAS[table]
    return schema.append(pa.field("date", pa.date32(), nullable=False))


def file_schema(table: Table) -> pa.Schema:
    """The schema of the table's data files: the row schema without partition columns."""
    schema = ROW_SCHEMAS[table]
    return schema.remove(schema.get_field_index("tenant"))


def partition_path(tenant: str, date: dt.date) -> str:
    """Relative directory of one tenant-day inside a table."""
    return f"tenant={tenant}/date={date.isoformat()}"


_PARTITION_RE = re.compile(r"^tenant=(?P<tenant>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/")


def parse_partition(relative_path: str) -> tuple[str, dt.date] | None:
    """(tenant, date) of a data file path relative to its table, None if not partitioned."""
    m = _PARTITION_RE.match(relative_path)
    if m is None:
        return None
    return m["tenant"], dt.date.fromisoformat(m["date"])


def table_configuration(table: Table, log_retention_days: int = 7,
                        deleted_file_retention_hours: int = 168) -> dict[str, str]:
    """Delta table properties set when a table is created."""
    return {
        # Data skipping statistics: timestamps only (see STATS_COLUMNS for why).
        "delta.dataSkippingStatsColumns": ",".join(STATS_COLUMNS[table]),
        "delta.checkpointInterval": "100",
        "delta.logRetentionDuration": f"interval {log_retention_days} days",
        "delta.deletedFileRetentionDuration": f"interval {deleted_file_retention_hours} hours",
        "delta.enableDeletionVectors": "false",
    }
