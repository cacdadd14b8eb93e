"""Maintenance on real Delta tables: bounded files, sorted closed days, retention, vacuum,
and never in the way of appends."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pyarrow.parquet as pq
from deltalake import DeltaTable

from ingest.lake.compact import SORTED_KIND, kind_of, merge
from ingest.lake.config import MaintainSettings
from ingest.lake.maintain import Maintainer, TableReport
from ingest.lake.writer import LakeWriter, append_rows
from schemas.delta import snapshot_files, table_snapshot
from schemas.storage import LakeLocation
from schemas.tenants import Tenant, Tenants
from tests.ingest.lake.rows import NOW, batch, event_row, table
from tests.support import lake_rows

SMALL = MaintainSettings(fanout=4, small_file_bytes=1024, interval_s=0.2,
                         vacuum_interval_s=3600)


def _flushes(lake: LakeLocation, count: int, tenants: tuple[str, ...] = ("a", "b"),
             received_at: dt.datetime = NOW, start: int = 0) -> None:
    writer = LakeWriter(lake)
    offset = start
    for _ in range(count):
        pairs = []
        for tenant in tenants:
            offset += 1
            pairs.append((tenant, offset))
        writer.append("log-t", batch(pairs, received_at), {0: offset})


def _per_partition(lake: LakeLocation, name: str = "events") -> dict[tuple[str, dt.date], int]:
    counts: dict[tuple[str, dt.date], int] = {}
    for f in table_snapshot(lake, name).files:  # type: ignore[arg-type]
        counts[(f.tenant, f.date)] = counts.get((f.tenant, f.date), 0) + 1
    return counts


def test_open_days_stay_at_a_bounded_file_count_with_rows_unchanged(tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    _flushes(lake, 64)
    before = sorted(lake_rows(tmp_path, "events", "SELECT event_id, tenant FROM t"))
    assert max(_per_partition(lake).values()) == 64
    maintainer = Maintainer(lake, SMALL)
    for _ in range(6):
        maintainer.run_once(vacuum=False)
    counts = _per_partition(lake)
    # 64 flushes of one tenant-day: tiers of at most fanout-1 files each
    assert max(counts.values()) <= 9, counts
    assert sorted(lake_rows(tmp_path, "events", "SELECT event_id, tenant FROM t")) == before
    assert len(lake_rows(tmp_path, "raw", "SELECT * FROM t")) == 128
    # compaction rewrote files without changing data: dataChange is false in its commits
    history = DeltaTable(str(tmp_path / "events")).history()
    compacts = [h for h in history if h.get("driftnet.operation") == "compact"]
    assert compacts


def test_a_closed_day_becomes_a_few_files_sorted_by_visitor_and_time(tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    # two hours into a day three days ago: the rows' 83 minutes never cross midnight
    day = (NOW - dt.timedelta(days=3)).replace(hour=2, minute=0, second=0)
    rows = [event_row("a", i, day + dt.timedelta(seconds=(37 * i) % 5000),
                      anonymous_id=f"v{(i * 7) % 50}") for i in range(2000)]
    for chunk in range(10):
        append_rows(lake, "events", table("events", rows[chunk * 200:(chunk + 1) * 200]))
    Maintainer(lake, SMALL).run_once(vacuum=False)
    files = [f for f in table_snapshot(lake, "events").files if f.date == day.date()]
    assert len(files) == 1 and kind_of(files[0].path) == SORTED_KIND
    data = pq.read_table(files[0].uri).to_pylist()
    keys = [(r["anonymous_id"], r["derived_ts"]) for r in data]
    assert keys == sorted(keys) and len(keys) == 2000
    # a late file arriving afterwards is kept; the sorted file is not rewritten for it
    append_rows(lake, "events", table("events", [event_row("a", 999, day)]))
    Maintainer(lake, SMALL).run_once(vacuum=False)
    kinds = sorted(kind_of(f.path) for f in table_snapshot(lake, "events").files
                   if f.date == day.date())
    assert kinds == ["l", "s"]


def test_retention_removes_expired_tenant_days_and_vacuum_deletes_them(tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    old = NOW - dt.timedelta(days=5)
    _flushes(lake, 2, ("a", "b"), old)
    _flushes(lake, 1, ("a", "b"), NOW, start=100)
    tenants = Tenants([Tenant(id="a", write_keys=("ka",), retention_days=2),
                       Tenant(id="b", write_keys=("kb",), retention_days=30)])
    on_disk = sorted((tmp_path / "events" / "tenant=a").rglob("*.parquet"))
    settings = SMALL.model_copy(update={"vacuum_retention_hours": 0})
    report = Maintainer(lake, settings, tenants).run_once(vacuum=True)
    assert report.tables["events"].expired_files == 2
    kept = lake_rows(tmp_path, "events", "SELECT tenant, date, count(*) FROM t GROUP BY ALL "
                     "ORDER BY ALL")
    assert kept == [("a", NOW.date(), 1), ("b", old.date(), 2), ("b", NOW.date(), 1)]
    old_files = [p for p in on_disk if f"date={old.date()}" in str(p)]
    assert old_files and not any(p.exists() for p in old_files)


def test_appends_never_fail_while_maintenance_runs(tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    LakeWriter(lake)
    stop = threading.Event()
    errors: list[BaseException] = []
    maintainer = Maintainer(lake, SMALL.model_copy(update={"fanout": 2}))
    thread = threading.Thread(target=maintainer.run, args=(stop, 0))
    thread.start()
    try:
        writer = LakeWriter(lake)
        for i in range(1, 151):
            try:
                writer.append("log-t", batch([("a", i)]), {0: i})
            except BaseException as exc:
                errors.append(exc)
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert maintainer.passes >= 2
    ids = [r[0] for r in lake_rows(tmp_path, "events", "SELECT event_id FROM t")]
    assert sorted(ids) == sorted(f"m-0-{i}" for i in range(1, 151))
    assert len(table_snapshot(lake, "events").files) < 150


def test_a_merge_planned_before_a_concurrent_removal_is_not_committed(tmp_path: Path) -> None:
    """Compaction must not resurrect rows another commit removed (e.g. forget) meanwhile."""
    lake = LakeLocation.parse(tmp_path)
    _flushes(lake, 4, ("a",))
    maintainer = Maintainer(lake, SMALL)
    delta = maintainer._table("events")
    group = snapshot_files(delta, lake, "events")
    merged = merge(lake, maintainer.writer, "events", group)
    assert merged is not None
    # another remover (a second maintainer standing in for forget) rewrites one file first
    other = Maintainer(lake, SMALL)
    report = TableReport()
    assert other._commit_rewrite("events", [group[0]], [], "forget", report)
    assert not report.conflicts
    rep = TableReport()
    assert not maintainer._commit_rewrite("events", group, [merged], "compact", rep)
    assert rep.conflicts == 1
    assert len(lake_rows(tmp_path, "events", "SELECT * FROM t")) == 3
