"""What the lake says about each tenant: freshness, recent volumes, losses, files, horizon.

Read from the Delta logs (files, bytes, the newest ``received_at`` from each file's
statistics) and from the data files of the last day's partitions only (``date`` is the UTC
date of ``received_at``, so a 24-hour window spans at most two of them). Every event of a
window is accounted for::

    received = written + duplicate + quarantined

where ``written`` are the events rows dedupe did not flag, ``duplicate`` those it flagged,
and ``quarantined`` the quarantine rows (one per failed event, or per failed hit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, computed_field

from schemas.delta import open_table, read_files_sql
from schemas.lake import TABLES, UNATTRIBUTED_TENANT, Table
from schemas.storage import LakeLocation
from schemas.tenants import Tenants

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


class Window(BaseModel):
    """The events of one tenant received in a time window, every one accounted for."""

    received: int = 0
    written: int = 0
    duplicate: int = 0
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def quarantine_rate(self) -> float | None:
        """Quarantined share of what was received (None when nothing was)."""
        return self.quarantined / self.received if self.received else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def quarantine_rate_by_reason(self) -> dict[str, float]:
        """Each reason's share of what was received."""
        return {r: n / self.received for r, n in sorted(self.quarantined_by_reason.items())}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duplicate_rate(self) -> float | None:
        """Duplicate share of the events written (None when none were)."""
        events = self.written + self.duplicate
        return self.duplicate / events if events else None


class TableFiles(BaseModel):
    """One tenant's data files of one table."""

    files: int = 0
    bytes: int = 0
    oldest_date: dt.date | None = None
    newest_date: dt.date | None = None


class TenantStatus(BaseModel):
    """Freshness, recent volumes, files and retention horizon of one tenant."""

    tenant: str
    newest_event_received_at: dt.datetime | None = Field(
        None, description="When the newest event in the events table was received.")
    age_s: float | None = Field(None, description="Seconds since then (freshness).")
    stale: bool = Field(False, description="Older than the threshold, or no event at all.")
    last_hour: Window = Field(default_factory=Window)
    last_day: Window = Field(default_factory=Window)
    quarantine_rate_day: float | None = None
    duplicate_rate_day: float | None = None
    tables: dict[str, TableFiles] = Field(default_factory=dict)
    retention_days: int | None = Field(None, description="From the tenants file; None: "
                                       "unknown (nothing expires without one).")
    oldest_date: dt.date | None = Field(None, description="Oldest day any table holds.")
    expires_before: dt.date | None = Field(None, description="Days before this one are "
                                           "removed by retention.")


class LakeStatus(BaseModel):
    """The status of a lake's tenants at one moment."""

    lake: str
    at: dt.datetime
    stale_after_s: float | None
    tenants: list[TenantStatus]

    @property
    def stale(self) -> list[str]:
        """Tenants older than the threshold."""
        return [t.tenant for t in self.tenants if t.stale]


def lake_status(lake: LakeLocation, *, tenant: str | None = None,
                tenants: Tenants | None = None, stale_after_s: float | None = None,
                now: dt.datetime | None = None) -> LakeStatus:
    """The status of ``tenant`` (or every tenant with data, and every one of ``tenants``)."""
    now = now or dt.datetime.now(dt.UTC)
    lake.must_exist()  # a typo must not read as "all quiet"
    adds = {name: _add_actions(lake, name, tenant) for name in TABLES}
    found: dict[str, TenantStatus] = {}

    def status(t: str) -> TenantStatus:
        if t not in found:
            found[t] = TenantStatus(tenant=t)
        return found[t]

    if tenant is not None:
        status(tenant)
    elif tenants is not None:
        for configured in tenants:
            status(configured.id)
    for name, table in adds.items():
        for t, files in _files_by_tenant(table):
            status(t).tables[name] = files
    for t, newest in _newest_received(adds["events"]).items():
        s = status(t)
        s.newest_event_received_at = newest
        s.age_s = max(0.0, (now - newest).total_seconds())
    _count_windows(lake, adds, now, status)
    for s in found.values():
        s.quarantine_rate_day = s.last_day.quarantine_rate
        s.duplicate_rate_day = s.last_day.duplicate_rate
        dates = [f.oldest_date for f in s.tables.values() if f.oldest_date is not None]
        s.oldest_date = min(dates) if dates else None
        known = tenants.by_id(s.tenant) if tenants is not None else None
        if known is not None:
            s.retention_days = known.retention_days
            s.expires_before = now.date() - dt.timedelta(days=known.retention_days)
        if stale_after_s is not None and s.tenant != UNATTRIBUTED_TENANT:
            s.stale = s.age_s is None or s.age_s > stale_after_s
    return LakeStatus(lake=lake.uri, at=now, stale_after_s=stale_after_s,
                      tenants=[found[t] for t in sorted(found)])


def _add_actions(lake: LakeLocation, table: Table, tenant: str | None) -> pa.Table | None:
    delta = open_table(lake, table)
    if delta is None:
        return None
    adds = pa.table(delta.get_add_actions(flatten=True))
    if tenant is not None and adds.num_rows:
        adds = adds.filter(pc.equal(adds["partition.tenant"], tenant))
    return adds if adds.num_rows else None


def _files_by_tenant(adds: pa.Table | None) -> list[tuple[str, TableFiles]]:
    if adds is None:
        return []
    dates = adds["partition.date"]
    if not pa.types.is_date(dates.type):
        dates = pc.cast(pc.strptime(dates, "%Y-%m-%d", "s"), pa.date32())
    grouped = pa.table({"tenant": adds["partition.tenant"], "size": adds["size_bytes"],
                        "date": dates}).group_by("tenant").aggregate(
        [("size", "count"), ("size", "sum"), ("date", "min"), ("date", "max")])
    return [(r["tenant"], TableFiles(files=r["size_count"], bytes=r["size_sum"],
                                     oldest_date=r["date_min"], newest_date=r["date_max"]))
            for r in grouped.to_pylist()]


def _newest_received(adds: pa.Table | None) -> dict[str, dt.datetime]:
    if adds is None or "max.received_at" not in adds.column_names:
        return {}
    grouped = pa.table({"tenant": adds["partition.tenant"],
                        "newest": adds["max.received_at"]}).group_by("tenant").aggregate(
        [("newest", "max")])
    return {r["tenant"]: _utc(r["newest_max"]) for r in grouped.to_pylist()
            if r["newest_max"] is not None}


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _recent_files(adds: pa.Table | None, since: dt.datetime) -> list[str]:
    """Data files that may hold rows received since ``since`` (by partition date, then by
    their ``max.received_at`` statistic)."""
    if adds is None:
        return []
    out = []
    has_max = "max.received_at" in adds.column_names
    for row in adds.select(["path", "partition.date",
                            *(["max.received_at"] if has_max else [])]).to_pylist():
        day = row["partition.date"]
        day = day if isinstance(day, dt.date) else dt.date.fromisoformat(day)
        if day < since.date():
            continue
        newest = row.get("max.received_at")
        if newest is not None and _utc(newest) < since:
            continue
        out.append(row["path"])
    return out


def _count_windows(lake: LakeLocation, adds: dict[Table, pa.Table | None], now: dt.datetime,
                   get: Callable[[str], TenantStatus]) -> None:
    """Count the last hour's and day's rows of each tenant, read from the recent files."""
    day_ago, hour_ago = now - DAY, now - HOUR
    events = [f"{lake.join('events')}/{p}" for p in _recent_files(adds["events"], day_ago)]
    quarantine = [f"{lake.join('quarantine')}/{p}"
                  for p in _recent_files(adds["quarantine"], day_ago)]
    params = {"day": day_ago, "hour": hour_ago}
    with duckdb.connect(config={"threads": 2}) as con:
        con.execute("SET TimeZone = 'UTC'")
        lake.register_duckdb(con)
        if events:
            rows = con.execute(f"""
                SELECT tenant, received_at >= $hour AS in_hour,
                       coalesce(is_duplicate, false) AS dup, count(*)
                FROM ({read_files_sql(con, "events", events, partitions=True)})
                WHERE received_at >= $day
                GROUP BY ALL""", params).fetchall()
            for t, in_hour, dup, n in rows:
                windows = [get(t).last_day] + ([get(t).last_hour] if in_hour else [])
                for w in windows:
                    if dup:
                        w.duplicate += n
                    else:
                        w.written += n
                    w.received += n
        if quarantine:
            rows = con.execute(f"""
                SELECT tenant, received_at >= $hour AS in_hour, reason, count(*)
                FROM ({read_files_sql(con, "quarantine", quarantine, partitions=True)})
                WHERE received_at >= $day
                GROUP BY ALL""", params).fetchall()
            for t, in_hour, reason, n in rows:
                windows = [get(t).last_day] + ([get(t).last_hour] if in_hour else [])
                for w in windows:
                    w.quarantined += n
                    w.received += n
                    w.quarantined_by_reason[reason] = w.quarantined_by_reason.get(reason, 0) + n
