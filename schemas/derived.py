"""Dropping a tenant's stored sessions when its events change under them (shared by ingest's
forget and replay, and by the analytics build that lost a race with them).

The stored sessions and identities (``<lake>/_derived/``, built by
analytics/stored_sessions.py) are computed from events. ``driftnet forget`` and
``driftnet replay`` rewrite events, so they drop the tenant's stored rows: one Delta commit
per table that removes them and resets the tenant's cutoff to 0 (readers then compute
every session from events until the next maintenance pass stores them again), then the
files themselves are deleted at once, as forget does with its own files (a person's rows
must not wait for vacuum).
"""

from __future__ import annotations

import contextlib

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import DeltaError, TableNotFoundError

from schemas.errors import LakeError
from schemas.lake import DERIVED_TABLES, derived_sessions_app_id
from schemas.storage import LakeLocation


def drop_stored_sessions(lake: LakeLocation, tenant: str) -> int:
    """Remove ``tenant``'s stored sessions and identities and their files; the number of
    files."""
    return sum(_drop(lake, table, tenant) for table in reversed(DERIVED_TABLES))


def _drop(lake: LakeLocation, table: str, tenant: str) -> int:
    root = lake.join(table)
    try:
        delta = DeltaTable(root, storage_options=dict(lake.storage_options) or None)
    except TableNotFoundError:
        return 0
    adds = pa.table(delta.get_add_actions(flatten=True))
    paths = [p for p, t in zip(adds["path"].to_pylist(), adds["partition.tenant"].to_pylist(),
                               strict=True) if t == tenant] if adds.num_rows else []
    if not paths and not delta.transaction_version(derived_sessions_app_id(tenant)):
        return 0
    try:
        delta.delete(f"tenant = '{tenant}'", commit_properties=CommitProperties(
            app_transactions=[Transaction(derived_sessions_app_id(tenant), 0)]))
    except DeltaError as exc:
        raise LakeError(f"dropping the stored sessions of {tenant} failed: {exc}",
                        tenant=tenant) from exc
    fs, base = lake.filesystem()
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            fs.delete_file(f"{base}/{table}/{path}")
    # Earlier builds' files too: each build overwrites the tenant's rows, and the files it
    # superseded stay on storage (no vacuum runs here); none of the tenant's is active now.
    selector = pafs.FileSelector(f"{base}/{table}/tenant={tenant}", recursive=True,
                                 allow_not_found=True)
    for info in fs.get_file_info(selector):
        if info.type == pafs.FileType.File:
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(info.path)
    return len(paths)
