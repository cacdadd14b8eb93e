"""The stored ``sessions``: session rows of closed days, kept as a Delta table of the lake.

Computing every session from its events (analytics/views.py) takes seconds per million
events, so the rows of sessions that can no longer change are stored in
``<lake>/_derived/sessions`` (Delta, partitioned by tenant), and ``sessions`` reads them
instead of recomputing them.

**What is stored.** A tenant's rows are rebuilt whole from its events, once per closed day
(maintenance calls :func:`build_sessions` each pass; a tenant is rebuilt when a day of its
closed since its last build). A build at cutoff ``C`` (the newest closed date: events
partitions are by receive date, and a closed date receives no new events) stores the
sessions whose every event was received on or before ``C`` (``last_received_date <= C``).
The commit records ``C`` as a Delta application transaction of the tenant.

**What is computed at query time.** The sessions that have an event received after ``C``:
all their events (of any date: a late event of an old session brings the whole session
along), sessionised as in ``session_events``, grouped as in ``sessions_base``. A stored row
whose session got such a late event is replaced by the computed one. The result equals the
computation from events alone (tests/analytics/test_stored_sessions.py checks it). Stored
rows of a date that retention has since removed from events are not read.

**Invalidation.** The table's description holds a hash of the session SQL: a new
definition (another driftnet version) makes readers ignore the table and the next build
replace it. ``driftnet forget`` and ``driftnet replay`` drop the tenant's stored rows (the
next build recomputes them), through schemas/derived.py.

Pinned connections (exports reproducing a manifest) compute sessions from the pinned
events and never read this table: its rows are those same numbers, and a reproduction
must not depend on when maintenance last ran.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from analytics.errors import AnalyticsError
from analytics.views import (
    INFERRED_PREFIX,
    INFERRED_SESSIONS,
    SESSIONS,
    VISITOR,
    identities_sql,
    identity_parts_sql,
    session_events_sql,
    sessions_sql,
)
from schemas.delta import DataFile, lake_tenants, open_table, table_snapshot
from schemas.derived import drop_stored_sessions
from schemas.lake import (
    DERIVED_IDENTITIES_TABLE,
    DERIVED_SESSIONS_TABLE,
    DERIVED_TABLES,
    MAINTENANCE_APP_ID,
    derived_sessions_app_id,
)
from schemas.sql import quote
from schemas.storage import LakeLocation

log = logging.getLogger(__name__)

DEFINITION: str = hashlib.sha256((INFERRED_SESSIONS + session_events_sql() + SESSIONS
                                  + identity_parts_sql()).encode()).hexdigest()[:16]
"""Hash of the session SQL (inferred sessions included: their ids are stored); the table's
description (rows of another definition are stale)."""
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class Stored:
    """What a connection reads from the stored sessions of one tenant."""

    uris: tuple[str, ...]
    cutoff: dt.date
    identity_uris: tuple[str, ...] = ()
    closed_rows: int | None = None
    """Events rows of dates up to ``cutoff`` the build read (None: not known)."""

    def covers(self, files: Iterable[DataFile]) -> bool:
        """Whether the build read every events row of a closed date among ``files`` (the
        tenant's events now). A loader running behind appends rows to a closed date after
        the build: their sessions are then not in the stored rows, which must not be used."""
        return covers(self.closed_rows, files, self.cutoff)


def covers(read_rows: int | None, files: Iterable[DataFile], cutoff: dt.date) -> bool:
    """Whether a build that read ``read_rows`` closed-day rows (None: not known) read every
    events row of ``files`` dated ``cutoff`` or before."""
    return read_rows is None or closed_rows(files, cutoff) in (None, read_rows)


def closed_rows(files: Iterable[DataFile], cutoff: dt.date) -> int | None:
    """Rows of the events ``files`` dated ``cutoff`` or before (None: a file without a
    count in the log)."""
    total = 0
    for f in files:
        if f.date <= cutoff:
            if f.rows is None:
                return None
            total += f.rows
    return total


def _rows_app_id(tenant: str) -> str:
    return derived_sessions_app_id(tenant) + "/closed-rows"


@dataclass
class BuildReport:
    """What one build pass did."""

    rebuilt: dict[str, int] = field(default_factory=dict)
    """Tenant -> sessions stored."""
    skipped: list[str] = field(default_factory=list)
    """Tenants whose build lost a race (forget, another build): retried next pass."""


def _open(lake: LakeLocation, table: str = DERIVED_SESSIONS_TABLE) -> DeltaTable | None:
    try:
        return DeltaTable(lake.join(table), storage_options=dict(lake.storage_options) or None)
    except TableNotFoundError:
        return None
    except (DeltaError, OSError) as exc:
        raise AnalyticsError(f"cannot read the stored sessions: {exc}", lake=lake.uri) from exc


def _current(delta: DeltaTable | None) -> bool:
    return delta is not None and delta.metadata().description == DEFINITION


def _tenant_uris(lake: LakeLocation, table: str, delta: DeltaTable, tenant: str
                 ) -> tuple[str, ...]:
    adds = pa.table(delta.get_add_actions(flatten=True))
    if not adds.num_rows:
        return ()
    root = lake.join(table)
    return tuple(sorted(f"{root}/{p}" for p, t in zip(
        adds["path"].to_pylist(), adds["partition.tenant"].to_pylist(), strict=True)
        if t == tenant))


def stored(lake: LakeLocation, tenant: str) -> Stored | None:
    """The tenant's stored rows and their cutoff; None when nothing current is stored."""
    sessions, identities = (_open(lake, t) for t in (DERIVED_SESSIONS_TABLE,
                                                      DERIVED_IDENTITIES_TABLE))
    if sessions is None or identities is None or not _current(sessions):
        return None
    app_id = derived_sessions_app_id(tenant)
    days = sessions.transaction_version(app_id)
    if not days or identities.transaction_version(app_id) != days:
        return None
    return Stored(_tenant_uris(lake, DERIVED_SESSIONS_TABLE, sessions, tenant),
                  _EPOCH + dt.timedelta(days=days),
                  _tenant_uris(lake, DERIVED_IDENTITIES_TABLE, identities, tenant),
                  sessions.transaction_version(_rows_app_id(tenant)))


def stored_view_sql(uris: Sequence[str]) -> str:
    """A SELECT of stored files of a derived table (``dnsnap://`` URIs of the connection's
    snapshot filesystem, analytics/snapshot_fs.py), ``tenant`` from the partition
    directories."""
    listed = ", ".join(quote(u) for u in uris)
    # tenant first, as in the computed rows (the partition column would come last)
    return (f"SELECT tenant, * EXCLUDE (tenant) FROM read_parquet([{listed}], "
            "union_by_name = true, hive_partitioning = true, hive_types = {'tenant': VARCHAR})")


def prepare_recent(con: duckdb.DuckDBPyConnection, cutoff: dt.date, *, fill: bool) -> None:
    """The temporary tables of the sessions and visitors that have an event received after
    ``cutoff``: created empty (``fill`` False), or filled from ``events`` (the view prunes
    to those dates' files)."""
    day = f"DATE '{cutoff.isoformat()}'"
    if not fill:
        con.execute("CREATE TEMP TABLE recent_sessions (session_id VARCHAR)")
        con.execute("CREATE TEMP TABLE recent_visitors (visitor VARCHAR)")
        return
    con.execute(f"""INSERT INTO recent_sessions
        SELECT DISTINCT session_id FROM events WHERE date > {day} AND session_id IS NOT NULL""")
    con.execute(f"""INSERT INTO recent_visitors
        SELECT DISTINCT {VISITOR} AS visitor FROM events
        WHERE date > {day} AND session_id IS NULL""")


def sessions_base_sql(stored_relation: str, cutoff: dt.date, oldest_event_date: dt.date,
                      recent: bool) -> str:
    """``sessions_base`` from stored rows (``stored_relation``) and, computed, the sessions
    with an event received after ``cutoff`` (:func:`prepare_recent` made their lists)."""
    retained = f"last_received_date >= DATE '{oldest_event_date.isoformat()}'"
    if not recent:
        return f"SELECT * FROM {stored_relation} WHERE {retained}"
    day = f"DATE '{cutoff.isoformat()}'"
    events = f"""(
      SELECT * FROM events WHERE session_id IN (SELECT session_id FROM recent_sessions)
      UNION ALL
      SELECT * FROM events WHERE session_id IS NULL
        AND {VISITOR} IN (SELECT visitor FROM recent_visitors))"""
    computed = sessions_sql(f"({session_events_sql(events=events)})")
    # A recent visitor's inactivity sessions are computed again from all of the visitor's
    # events: a late event may have moved one's start (its id) or joined two, so the stored
    # ones of that visitor give way to all of the computed ones, not only to those with the
    # same id (which would count the moved session twice).
    # (?s): a visitor id may hold a newline (ids are kept as sent)
    visitor = f"regexp_extract(session_id, {quote('(?s)^' + INFERRED_PREFIX + '(.*):[0-9]+$')}, 1)"
    return f"""
    WITH fresh AS (
      SELECT * FROM ({computed}) WHERE last_received_date > {day} OR session_inferred
    )
    SELECT * FROM fresh
    UNION ALL BY NAME
    SELECT * FROM {stored_relation}
    WHERE {retained} AND session_id NOT IN (SELECT session_id FROM fresh)
      AND NOT (session_inferred AND {visitor} IN (SELECT visitor FROM recent_visitors))
    """


def identities_view_sql(stored_relation: str | None, cutoff: dt.date) -> str:
    """``identities`` from the stored parts (``stored_relation``; None: the tenant has none)
    and the parts of the events received after ``cutoff``."""
    recent = identity_parts_sql(f"(SELECT * FROM events WHERE date > DATE '{cutoff}')")
    if stored_relation is None:
        return identities_sql(f"({recent})")
    return identities_sql(f"(SELECT * FROM {stored_relation} UNION ALL BY NAME {recent})")


def closed_cutoff(now: dt.datetime, closed_after_hours: float) -> dt.date:
    """The newest date that is closed at ``now`` (maintenance's rule: its UTC day ended
    ``closed_after_hours`` ago)."""
    return (now - dt.timedelta(hours=closed_after_hours)).date() - dt.timedelta(days=1)


def build_sessions(lake: LakeLocation, now: dt.datetime, closed_after_hours: float, *,
                   tenants: Sequence[str] | None = None, max_tenants: int | None = None
                   ) -> BuildReport:
    """Rebuild the stored sessions of every tenant (or ``tenants``) whose newest closed date
    moved since its last build, or whose closed dates got rows since (a loader that ran
    behind); at most ``max_tenants`` per call.

    A build that overlapped a commit removing events files (forget, replay, compaction
    from another process: they carry the maintenance application id) is dropped again at
    once: it may hold rows that were just forgotten.
    """
    from analytics.connect import connect

    report = BuildReport()
    cutoff = closed_cutoff(now, closed_after_hours)
    delta = _open(lake)
    if (delta is not None and not _current(delta)) or (
            delta is None and _open(lake, DERIVED_IDENTITIES_TABLE) is not None):
        log.info("stored sessions were made by another definition: rebuilding them")
        _drop(lake)
        delta = None
    todo = []
    events: dict[str, list[DataFile]] = {}
    for f in table_snapshot(lake, "events").files:
        events.setdefault(f.tenant, []).append(f)
    for tenant in tenants if tenants is not None else lake_tenants(lake):
        built = delta.transaction_version(derived_sessions_app_id(tenant)) if delta else None
        if not built or _EPOCH + dt.timedelta(days=built) < cutoff:
            todo.append(tenant)
        elif delta is not None and not covers(delta.transaction_version(_rows_app_id(tenant)),
                                              events.get(tenant, ()),
                                              _EPOCH + dt.timedelta(days=built)):
            log.info("closed days of %s got events after its stored sessions were built "
                     "(a loader running behind): rebuilding them", tenant)
            todo.append(tenant)
    for tenant in todo[:max_tenants]:
        before = _removals(lake)
        files = table_snapshot(lake, "events", tenant).files
        if not files:
            continue
        # Counted before the build reads: rows arriving meanwhile make the count low, so
        # readers then ignore the build (and the next pass makes another), never the reverse.
        read_rows = closed_rows(files, cutoff)
        con = connect(lake, tenant, stored_sessions=False)
        day = f"DATE '{cutoff.isoformat()}'"
        try:
            closed = f"(SELECT * FROM events WHERE date <= {day})"
            parts = con.sql(f"SELECT * FROM ({identity_parts_sql(closed)}) ORDER BY anonymous_id"
                            ).to_arrow_table()
            rows = con.sql(f"SELECT * FROM sessions_base WHERE last_received_date <= {day} "
                           "ORDER BY start, session_id").to_arrow_table()
        except duckdb.Error as exc:
            if _removals(lake) == before:
                raise AnalyticsError(f"building the stored sessions failed: {exc}",
                                     tenant=tenant) from exc
            log.info("events of %s changed during its build; next pass", tenant)
            report.skipped.append(tenant)
            continue
        finally:
            con.close()
        try:
            # identities first: readers take the cutoff from the sessions table's commit
            _write(lake, DERIVED_IDENTITIES_TABLE, tenant, parts, (cutoff - _EPOCH).days)
            _write(lake, DERIVED_SESSIONS_TABLE, tenant, rows, (cutoff - _EPOCH).days,
                   read_rows)
        except CommitFailedError as exc:
            log.info("stored sessions of %s lost a race (%s); next pass", tenant, exc)
            report.skipped.append(tenant)
            continue
        if _removals(lake) != before:
            drop_stored_sessions(lake, tenant)
            log.info("events of %s changed during its build; next pass", tenant)
            report.skipped.append(tenant)
            continue
        report.rebuilt[tenant] = rows.num_rows
    return report


def _removals(lake: LakeLocation) -> int | None:
    """The events table's count of commits that removed files (maintenance app id)."""
    delta = open_table(lake, "events")
    return None if delta is None else delta.transaction_version(MAINTENANCE_APP_ID)


def _write(lake: LakeLocation, table: str, tenant: str, rows: pa.Table, cutoff_days: int,
           read_rows: int | None = None) -> None:
    txns = [Transaction(derived_sessions_app_id(tenant), cutoff_days)]
    if read_rows is not None:
        txns.append(Transaction(_rows_app_id(tenant), read_rows))
    props = CommitProperties(app_transactions=txns)
    uri = lake.join(table)
    options = dict(lake.storage_options) or None
    if _open(lake, table) is None:
        # No column statistics in the log: they would copy ids (anonymous_id, user_id)
        # into it, where driftnet forget cannot remove them (schemas/lake.py's tables keep
        # timestamps only; these are read whole, by tenant, and need none).
        write_deltalake(uri, rows, partition_by=["tenant"], mode="append",
                        description=DEFINITION, storage_options=options,
                        commit_properties=props,
                        configuration={"delta.dataSkippingNumIndexedCols": "0"})
    else:
        write_deltalake(uri, rows, partition_by=["tenant"], mode="overwrite",
                        predicate=f"tenant = '{tenant}'", storage_options=options,
                        commit_properties=props)


def _drop(lake: LakeLocation) -> None:
    """Remove the derived tables whole (rows of an older definition)."""
    fs, root = lake.filesystem()
    for table in DERIVED_TABLES:
        if _open(lake, table) is not None:
            fs.delete_dir(f"{root}/{table}")
