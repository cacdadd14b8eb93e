"""Opening the lake's tables for writing, and committing file actions to them.

Tables are created on first use (by whichever process gets there first; a creation race is
harmless) and their schema is evolved when the code adds columns. Every commit goes through
:func:`commit`: one Delta transaction of add/remove actions, optionally recording
application transactions, with checkpoints left to the maintenance task so a loader's
commit never pays for one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.schema import Field as DeltaField
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    PostCommitHookProperties,
    RemoveAction,
    Transaction,
)

from ingest.lake.errors import ConcurrentCommitError, LakeSchemaError, LakeWriteError
from schemas.delta import open_table, table_uri
from schemas.errors import LakeError
from schemas.lake import PARTITION_COLUMNS, TABLES, Table, delta_schema, table_configuration
from schemas.storage import LakeLocation

log = logging.getLogger(__name__)

NO_HOOKS = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)
"""Commits of the loader and of maintenance leave checkpoints and log cleanup to
housekeeping (one place, on its own schedule)."""


def _create(lake: LakeLocation, table: Table, log_retention_days: int,
            deleted_file_retention_hours: int) -> None:
    try:
        DeltaTable.create(
            table_uri(lake, table), delta_schema(table), mode="ignore",
            partition_by=list(PARTITION_COLUMNS),
            configuration=table_configuration(table, log_retention_days,
                                              deleted_file_retention_hours),
            storage_options=dict(lake.storage_options) or None)
    except CommitFailedError:
        log.info("table %s was created concurrently", table)  # someone else won the race


def _evolve(delta: DeltaTable, table: Table) -> None:
    """Add the columns the code's schema has and the table lacks (new columns only).

    A column whose type changed (``items`` was JSON text before it became a list of
    structs) is not converted: files of both types in one table could not be read
    together, and rewriting a lake is the operator's decision. LakeSchemaError says so.
    """
    present = {f.name: f for f in delta.schema().fields}
    changed = [f.name for f in delta_schema(table) if f.name in present
               and present[f.name].type != DeltaField.from_arrow(f).type]
    if changed:
        raise LakeSchemaError(
            f"table {table} was made by an older driftnet: columns {changed} have another "
            f"type now. Load into a new lake, or rebuild this table: stop the loaders, move "
            f"<lake>/{table} aside, then `driftnet replay` each tenant's dates from the raw "
            f"archive (docs/lake.md)", table=table,
            columns={c: str(present[c].type) for c in changed})
    missing = [f for f in delta_schema(table) if f.name not in present]
    if missing:
        log.info("adding columns %s to table %s", [f.name for f in missing], table)
        delta.alter.add_columns([DeltaField.from_arrow(f.with_nullable(True))
                                 for f in missing])
        delta.update_incremental()


def open_for_write(lake: LakeLocation, table: Table, *, log_retention_days: int = 7,
                   deleted_file_retention_hours: int = 168) -> DeltaTable:
    """The table, created if missing and with every column the code knows."""
    try:
        delta = open_table(lake, table)
        if delta is None:
            if lake.is_local:
                lake.path.mkdir(parents=True, exist_ok=True)
            _create(lake, table, log_retention_days, deleted_file_retention_hours)
            delta = open_table(lake, table)
        if delta is None:
            raise LakeError("table could not be created", lake=lake.uri, table=table)
        _evolve(delta, table)
    except (DeltaError, OSError) as exc:
        raise LakeWriteError(f"cannot open table {table}: {exc}", lake=lake.uri) from exc
    return delta


def open_all(lake: LakeLocation, **kwargs: int) -> dict[Table, DeltaTable]:
    """Every data table, opened for writing."""
    return {t: open_for_write(lake, t, **kwargs) for t in TABLES}


def commit(delta: DeltaTable, table: Table, actions: Sequence[AddAction | RemoveAction], *,
           operation: str, app_transactions: Mapping[str, int] | None = None) -> int:
    """Commit ``actions`` to ``delta`` as one transaction; return the new version.

    ``app_transactions`` maps application ids to the versions this commit records. When
    another writer committed with one of those ids since ``delta`` was loaded, Delta refuses
    the commit: :class:`ConcurrentCommitError` (the caller re-reads the table and decides
    again). Other failures are :class:`LakeWriteError` (transient: retry later).
    """
    txns = [Transaction(app_id, version) for app_id, version in (app_transactions or {}).items()]
    try:
        delta.create_write_transaction(
            list(actions), "append", delta_schema(table), partition_by=list(PARTITION_COLUMNS),
            commit_properties=CommitProperties(
                custom_metadata={"driftnet.operation": operation},
                app_transactions=txns or None),
            post_commithook_properties=NO_HOOKS)
    except CommitFailedError as exc:
        text = str(exc)
        if "oncurrent" in text:
            raise ConcurrentCommitError(f"{operation}: a concurrent commit won: {text}",
                                        table=table) from exc
        raise LakeWriteError(f"{operation}: commit to {table} failed: {text}") from exc
    except (DeltaError, OSError) as exc:
        raise LakeWriteError(f"{operation}: commit to {table} failed: {exc}") from exc
    delta.update_incremental()
    return delta.version()


def refresh(delta: DeltaTable) -> DeltaTable:
    """``delta`` brought up to the table's latest version."""
    try:
        delta.update_incremental()
    except TableNotFoundError as exc:
        raise LakeError("table disappeared", table=delta.table_uri) from exc
    except (DeltaError, OSError) as exc:
        raise LakeWriteError(f"cannot read table {delta.table_uri}: {exc}") from exc
    return delta
