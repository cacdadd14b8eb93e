"""The loader's append: Delta commits with transport offsets, exactly once across re-reads."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from ingest.lake.errors import LakeSchemaError, LakeWriteError
from ingest.lake.writer import LakeWriter, split_by_partition
from schemas.lake import PARTITION_COLUMNS, delta_schema, loader_app_id
from schemas.storage import LakeLocation
from tests.ingest.lake.rows import batch, event_row, table
from tests.support import lake_rows

T0 = dt.datetime(2026, 11, 26, 23, 59, 59, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 11, 27, 0, 0, 1, tzinfo=dt.UTC)


def _ids(lake: Path, name: str = "events") -> list[str]:
    column = "event_id" if name == "events" else "source_offset"
    return sorted(str(r[0]) for r in lake_rows(lake, name, f"SELECT {column} FROM t"))


def test_split_by_tenant_and_utc_date() -> None:
    rows = table("events", [event_row("a", 1, T0), event_row("a", 2, T1), event_row("b", 3, T1),
                            event_row("a", 4, T1)])
    parts = {(t, d): part.num_rows for t, d, part in split_by_partition(rows)}
    assert parts == {("a", dt.date(2026, 11, 26)): 1, ("a", dt.date(2026, 11, 27)): 2,
                     ("b", dt.date(2026, 11, 27)): 1}


def test_append_lays_out_partitions_and_records_offsets(tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    writer = LakeWriter(lake)
    result = writer.append("log-x", batch([("a", 10), ("b", 11), ("a", 12)], T0), {0: 12})
    assert result.rows == {"events": 3, "raw": 3}
    paths = sorted(f.path for f in result.files["events"])
    assert [p.rsplit("/", 1)[0] for p in paths] == ["tenant=a/date=2026-11-26",
                                                    "tenant=b/date=2026-11-26"]
    raw = DeltaTable(str(tmp_path / "raw"))
    assert raw.transaction_version(loader_app_id("log-x", 0)) == 12
    assert writer.resume_offset("log-x", 0) == 13
    assert writer.resume_offset("log-x", 1) is None
    # partition columns live in the paths and the log, not in the files (Delta's convention)
    assert "tenant" not in pq.read_schema(tmp_path / "events" / paths[0]).names
    assert lake_rows(tmp_path, "events", "SELECT DISTINCT tenant, date FROM t ORDER BY 1") == [
        ("a", dt.date(2026, 11, 26)), ("b", dt.date(2026, 11, 26))]
    # statistics in the log: row count and time bounds only, never an id column
    adds = [orjson.loads(line)["add"] for f in (tmp_path / "events" / "_delta_log").glob("*.json")
            for line in f.read_bytes().splitlines() if b'"add"' in line]
    stats = orjson.loads(adds[0]["stats"])
    assert set(stats["minValues"]) == {"received_at", "derived_ts"}
    assert stats["numRecords"] in (1, 2)


def test_a_batch_read_again_after_a_crash_between_commits_is_written_once(
        tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    first = LakeWriter(lake)
    tables = batch([("a", 1), ("a", 2)])
    result = first.append("log-x", {**tables, "raw": tables["raw"].slice(0, 0)}, {0: 2})
    # simulate a crash after events committed: undo nothing, re-read from raw's position
    assert result.rows["events"] == 2
    restarted = LakeWriter(lake)
    # raw recorded the offsets (its commit is last and always made), events has the rows
    again = restarted.append("log-x", tables, {0: 2})
    assert again.rows.get("events", 0) == 0
    assert _ids(tmp_path) == ["m-0-1", "m-0-2"]


def test_a_log_damaged_under_a_running_writer_is_a_write_error_not_a_crash(
        tmp_path: Path) -> None:
    """A commit file of events deleted or damaged under a running loader: the loader's
    writer raises LakeWriteError (which the loop retries and the CLI reports in one line),
    not delta-rs' own exception."""
    lake = LakeLocation.parse(tmp_path)
    writer = LakeWriter(lake)
    for i in range(3):
        writer.append("log-x", batch([("a", 10 + i)], T0), {0: 10 + i})
    commits = sorted((tmp_path / "events" / "_delta_log").glob("*.json"))
    commits[-1].write_text("garbage")
    with pytest.raises(LakeWriteError):
        writer.append("log-x", batch([("a", 20)], T0), {0: 20})


def test_overlapping_batches_write_only_the_new_records(tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    writer = LakeWriter(lake)
    writer.append("log-x", batch([("a", o) for o in range(1, 6)]), {0: 5})
    result = LakeWriter(lake).append("log-x", batch([("a", o) for o in range(3, 9)]), {0: 8})
    assert result.skipped == {"quarantine": 0, "events": 3, "raw": 3}
    assert _ids(tmp_path) == [f"m-0-{o}" for o in range(1, 9)]
    assert len(lake_rows(tmp_path, "raw", "SELECT * FROM t")) == 8


def test_two_loaders_owning_the_same_partition_write_its_batch_once(tmp_path: Path) -> None:
    lake = LakeLocation.parse(tmp_path)
    LakeWriter(lake)  # create the tables first, as a loader would on start
    writers = [LakeWriter(lake) for _ in range(2)]
    tables = batch([("a", o) for o in range(1, 21)], partition=3)
    errors: list[BaseException] = []

    def write(w: LakeWriter) -> None:
        try:
            w.append("topic", tables, {3: 20})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _ids(tmp_path) == sorted(f"m-3-{o}" for o in range(1, 21))
    assert len(lake_rows(tmp_path, "raw", "SELECT * FROM t")) == 20


def test_a_table_with_an_older_column_type_is_refused_with_a_clear_error(
        tmp_path: Path) -> None:
    """Lakes made before ``items`` became a list of structs hold it as JSON text."""
    schema = delta_schema("events")
    old = schema.set(schema.get_field_index("items"), pa.field("items", pa.string()))
    write_deltalake(str(tmp_path / "events"), old.empty_table(),
                    partition_by=list(PARTITION_COLUMNS))
    with pytest.raises(LakeSchemaError) as info:
        LakeWriter(LakeLocation.parse(tmp_path))
    assert "items" in str(info.value) and "driftnet replay" in str(info.value)
    assert not info.value.transient
