"""The loaders' session state table: append per partition, load as of raw, compact, forget."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from ingest.enrich.session_store import CHANGES_SCHEMA
from ingest.lake.state import (
    SessionStateTable,
    compact_state,
    forget_visitors,
    open_state,
)
from schemas.lake import loader_app_id
from schemas.storage import LakeLocation

STREAM = "log-test"


def _states(rows: list[tuple[int, str, str, str, int, int]]) -> pa.Table:
    """(partition, tenant, visitor, session id, index, last_us) -> state rows."""
    return pa.table({
        "source_partition": pa.array([r[0] for r in rows], pa.int32()),
        "tenant": [r[1] for r in rows], "visitor": [r[2] for r in rows],
        "session_id": [r[3] for r in rows],
        "session_index": pa.array([r[4] for r in rows], pa.int64()),
        "start_us": pa.array([r[5] - 10 for r in rows], pa.int64()),
        "last_us": pa.array([r[5] for r in rows], pa.int64()),
        "sessions": pa.array([r[4] for r in rows], pa.int64()),
    }, schema=CHANGES_SCHEMA)


def _load(lake: LakeLocation, upto: dict[int, int | None]) -> dict[tuple[str, str], str]:
    table = SessionStateTable(lake).load(duckdb.connect(), STREAM, upto)
    return {(t, v): s for t, v, s in zip(table["tenant"].to_pylist(),
                                         table["visitor"].to_pylist(),
                                         table["session_id"].to_pylist(), strict=True)}


def test_a_partition_loads_each_visitors_latest_state_up_to_what_raw_holds(
        tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    table = SessionStateTable(lake)
    table.append(STREAM, _states([(0, "a", "a:v1", "s1", 1, 100), (1, "a", "a:v2", "x1", 1, 100)]),
                 {0: 10, 1: 5})
    table.append(STREAM, _states([(0, "a", "a:v1", "s2", 2, 200)]), {0: 20})
    # the batch ending at 20 reached the state table, but raw holds only up to 10: a crash
    # between the commits; its state must not be used
    assert _load(lake, {0: 10}) == {("a", "a:v1"): "s1"}
    assert _load(lake, {0: 20}) == {("a", "a:v1"): "s2"}
    assert _load(lake, {0: 20, 1: 5}) == {("a", "a:v1"): "s2", ("a", "a:v2"): "x1"}
    assert _load(lake, {0: None}) == {}  # nothing in raw: no state
    assert _load(lake, {2: 100}) == {}
    delta = DeltaTable(str(tmp_path / "_state" / "sessions"))
    assert delta.transaction_version(loader_app_id(STREAM, 0)) == 20


def test_an_append_the_table_already_holds_is_skipped(tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    table = SessionStateTable(lake)
    rows = _states([(0, "a", "a:v1", "s1", 1, 100), (1, "a", "a:v2", "x1", 1, 100)])
    assert table.append(STREAM, rows, {0: 10, 1: 10}).rows == 2
    again = table.append(STREAM, rows, {0: 10, 1: 12})  # partition 0 was written
    assert again.rows == 1 and again.skipped_partitions == 1
    # one file per partition and append
    assert len(DeltaTable(str(tmp_path / "_state" / "sessions")).file_uris()) == 3


def test_smaller_batches_after_a_crash_write_their_state(tmp_path: Path) -> None:
    """A crash after a 300-record batch's state commit, before its data: the restarted
    loader reads the records again 10 at a time. Their state must be written, or a second
    crash (raw at 60) finds only the unusable rows as of 300 and every visitor starts over."""
    lake = LakeLocation.parse(tmp_path)
    table = SessionStateTable(lake)
    table.append(STREAM, _states([(0, "a", "a:v1", "s1", 1, 100)]), {0: 300})
    for end in (10, 20, 30, 40, 50, 60):
        done = table.append(STREAM, _states([(0, "a", f"a:w{end}", f"t{end}", 1, 100)]),
                            {0: end})
        assert done.rows == 1 and done.skipped_partitions == 0
    assert _load(lake, {0: 60}) == {("a", f"a:w{e}"): f"t{e}" for e in (10, 20, 30, 40, 50, 60)}


def test_a_state_table_deleted_under_the_loader_is_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lake = LakeLocation.parse(tmp_path)
    table = SessionStateTable(lake)
    table.append(STREAM, _states([(0, "a", "a:v1", "s1", 1, 100)]), {0: 10})
    assert "disappeared" not in caplog.text
    shutil.rmtree(tmp_path / "_state" / "sessions")
    with caplog.at_level(logging.WARNING, logger="ingest.lake.state"):
        assert table.append(STREAM, _states([(0, "a", "a:v2", "s2", 1, 100)]), {0: 20}).rows == 1
    assert "session state table" in caplog.text and "disappeared" in caplog.text


def test_compaction_keeps_the_latest_row_per_visitor_up_to_raw_and_everything_after(
        tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    table = SessionStateTable(lake)
    now_us = 1_000 * 86_400_000_000
    for i in range(10):
        table.append(STREAM, _states([(0, "a", "a:v1", f"s{i}", i + 1, now_us - 100 + i),
                                      (0, "a", "a:old", "o", 1, 1)]), {0: 10 * (i + 1)})
    con = duckdb.connect()
    done = compact_state(lake, con, lambda s, p: 70, min_files=4, retention_days=30,
                         now_us=now_us)
    assert done.partitions == 1 and done.files_in == 10 and done.rows_in == 20
    # up to 70: one row for v1 (the idle visitor is dropped); 80, 90, 100: kept as they were
    assert done.rows_out == 1 + 6
    assert len(DeltaTable(str(tmp_path / "_state" / "sessions")).file_uris()) == 1
    assert _load(lake, {0: 70}) == {("a", "a:v1"): "s6"}
    assert _load(lake, {0: 100}) == {("a", "a:v1"): "s9", ("a", "a:old"): "o"}
    # fewer files than min_files: left alone
    assert compact_state(lake, con, lambda s, p: 100, min_files=4).partitions == 0


def test_forget_removes_a_visitors_rows_and_every_file_that_held_them(tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    table = SessionStateTable(lake)
    table.append(STREAM, _states([(0, "a", "a:gone", "g", 1, 10), (0, "a", "a:kept", "k", 1, 10),
                                  (0, "b", "a:gone", "other tenant", 1, 10)]), {0: 1})
    table.append(STREAM, _states([(0, "a", "a:gone", "g2", 2, 20)]), {0: 2})
    folder = tmp_path / "_state" / "sessions"
    before = {p for p in folder.rglob("*.parquet")}
    con = duckdb.connect()
    assert forget_visitors(lake, con, "a", ["a:gone"]) == 2
    assert _load(lake, {0: 2}) == {("a", "a:kept"): "k", ("b", "a:gone"): "other tenant"}
    after = {p for p in folder.rglob("*.parquet")}
    assert not before & after  # both files held the visitor: deleted at once, not vacuumed
    held = duckdb.sql(f"SELECT count(*) FROM read_parquet({[str(p) for p in after]}) "
                      "WHERE visitor = 'a:gone' AND tenant = 'a'").fetchall()
    assert held == [(0,)]
    assert forget_visitors(lake, con, "a", ["a:gone"]) == 0


def test_no_state_table_means_no_state(tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    assert open_state(lake) is None
    assert _load(lake, {0: 5}) == {}
    assert forget_visitors(lake, duckdb.connect(), "a", ["a:x"]) == 0


def _flushes(lake: LakeLocation, n: int) -> None:
    """``n`` appends of partition 0, each with the state of a:person and a:other."""
    table = SessionStateTable(lake)
    for i in range(1, n + 1):
        table.append(STREAM, _states([(0, "a", "a:person", f"p{i}", i, 10**16 - 100 + i),
                                      (0, "a", "a:other", f"o{i}", i, 10**16 - 100 + i)]),
                     {0: i})


def _holding(folder: Path, visitor: str) -> list[Path]:
    return [p for p in folder.rglob("*.parquet") if "_delta_log" not in p.parts
            and visitor.encode() in p.read_bytes()]


@pytest.mark.parametrize("moment", ["_write_file", "_commit"])
def test_a_forget_during_a_state_compaction_stays_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    """Forget commits while a compaction collapses rows it read before (``_write_file``:
    its file would bring the person back), or between the compaction's file write and its
    commit (``_commit``: forget's purge deleted that file, the commit named a missing file
    and no loader could load the state). The compaction must lose, and clean up."""
    import ingest.lake.state as state

    lake = LakeLocation.parse(tmp_path)
    _flushes(lake, 8)
    real = getattr(state, moment)
    forgot: list[int] = []

    def forget_first(*args: object, **kwargs: object) -> object:
        if not forgot and args[2] in ("c", "compact_state"):
            forgot.append(forget_visitors(lake, duckdb.connect(), "a", ["a:person"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(state, moment, forget_first)
    done = compact_state(lake, duckdb.connect(), lambda s, p: 100, min_files=8,
                         now_us=10**16)
    assert _load(lake, {0: 100}) == {("a", "a:other"): "o8"}
    assert forgot == [8] and done.partitions == 0
    folder = tmp_path / "_state" / "sessions"
    assert _holding(folder, "a:person") == []      # the compaction deleted its file
    monkeypatch.setattr(state, moment, real)
    assert compact_state(lake, duckdb.connect(), lambda s, p: 100, min_files=8,
                         now_us=10**16).partitions == 1     # the next pass compacts
    assert _load(lake, {0: 100}) == {("a", "a:other"): "o8"}


def test_forget_retries_when_a_compaction_committed_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compaction commits between forget's scan and its commit: forget scans again (the
    compacted file holds the person too) and completes."""
    import ingest.lake.state as state

    lake = LakeLocation.parse(tmp_path)
    _flushes(lake, 8)
    real = state._commit
    compacted: list[int] = []

    def compact_first(delta: DeltaTable, actions: list[object], operation: str) -> None:
        if operation == "forget" and not compacted:
            compacted.append(compact_state(lake, duckdb.connect(), lambda s, p: 100,
                                           min_files=8, now_us=10**16).partitions)
        real(delta, actions, operation)  # type: ignore[arg-type]

    monkeypatch.setattr(state, "_commit", compact_first)
    assert forget_visitors(lake, duckdb.connect(), "a", ["a:person"]) == 1
    assert compacted == [1]
    assert _load(lake, {0: 100}) == {("a", "a:other"): "o8"}
    assert _holding(tmp_path / "_state" / "sessions", "a:person") == []


def test_forget_leaves_a_young_uncommitted_state_file_to_its_writer(tmp_path: Path) -> None:
    """A file no commit added may be a loader's append between its write and its commit:
    forget deletes it only once it is older than the grace period (an abandoned one)."""
    import os
    import time

    import pyarrow.parquet as pq

    from schemas.delta import UNCOMMITTED_GRACE_S

    lake = LakeLocation.parse(tmp_path)
    _flushes(lake, 1)
    partition = tmp_path / "_state" / "sessions" / f"stream={STREAM}" / "source_partition=0"
    in_flight = partition / "part-in-flight.parquet"
    pq.write_table(pa.table({"tenant": ["a"], "visitor": ["a:person"]}), in_flight)
    assert forget_visitors(lake, duckdb.connect(), "a", ["a:person"]) == 1
    assert in_flight.exists()
    old = time.time() - UNCOMMITTED_GRACE_S - 60
    os.utime(in_flight, (old, old))
    assert forget_visitors(lake, duckdb.connect(), "a", ["a:person"]) == 0
    assert not in_flight.exists()
    assert _load(lake, {0: 1}) == {("a", "a:other"): "o1"}
