"""Dropping a tenant's stored sessions when its events change under them (shared by ingest's
forget, replay and retention, and by the analytics build that lost a race with them).

The stored sessions and identities (``<lake>/_derived/``, built by
analytics/stored_sessions.py) are computed from events. ``driftnet forget``, ``driftnet
replay`` and retention change events, so they drop the tenant's stored rows: one Delta
commit per table that removes them and resets the tenant's cutoff to 0 (readers then compute
every session from events until the next maintenance pass stores them again).

Forget (and a build that overlapped a forget) then deletes the files at once, as forget does
with its own files: a person's rows must not wait for vacuum. It deletes the files its
commit removed and those earlier builds superseded, never a file the table holds after its
commit (a build may have committed meanwhile) nor one that no commit added yet unless it is
older than :data:`~schemas.delta.UNCOMMITTED_GRACE_S` (a build between its write and its
commit). Replay and retention leave the files to vacuum, as they do with the events files
they remove: a connection made before them keeps reading its snapshot.
"""

from __future__ import annotations

import contextlib

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from schemas.delta import unreferenced_files
from schemas.errors import LakeError
from schemas.lake import DERIVED_TABLES, derived_sessions_app_id
from schemas.storage import LakeLocation

_ATTEMPTS = 5


def drop_stored_sessions(lake: LakeLocation, tenant: str, *, delete_files: bool = True) -> int:
    """Remove ``tenant``'s stored sessions and identities from the tables; the number of
    files removed. ``delete_files`` (forget) deletes them and the tenant's superseded files
    at once; otherwise they stay on storage until vacuum."""
    return sum(_drop(lake, table, tenant, delete_files) for table in reversed(DERIVED_TABLES))


def _drop(lake: LakeLocation, table: str, tenant: str, delete_files: bool) -> int:
    root = lake.join(table)
    try:
        delta = DeltaTable(root, storage_options=dict(lake.storage_options) or None)
    except TableNotFoundError:
        return 0
    for _ in range(_ATTEMPTS):
        adds = pa.table(delta.get_add_actions(flatten=True))
        paths = [p for p, t in zip(adds["path"].to_pylist(),
                                   adds["partition.tenant"].to_pylist(), strict=True)
                 if t == tenant] if adds.num_rows else []
        if not paths and not delta.transaction_version(derived_sessions_app_id(tenant)):
            return 0
        try:
            delta.delete(f"tenant = '{tenant}'", commit_properties=CommitProperties(
                app_transactions=[Transaction(derived_sessions_app_id(tenant), 0)]))
            break
        except CommitFailedError:
            # a build committed since the table was read (same application id): drop
            # what it stored too
            delta.update_incremental()
        except DeltaError as exc:
            raise LakeError(f"dropping the stored sessions of {tenant} failed: {exc}",
                            tenant=tenant) from exc
    else:
        raise LakeError(f"dropping the stored sessions of {tenant} kept conflicting with "
                        "builds; try again", tenant=tenant)
    if delete_files:
        fs, base = lake.filesystem()
        delta.update_incremental()
        for relative in unreferenced_files(delta, fs, f"{base}/{table}",
                                           f"{base}/{table}/tenant={tenant}"):
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(f"{base}/{table}/{relative}")
    return len(paths)
