"""The lake writer's exactly-once protocol: intents, atomic files, recovery."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.loader.writer import LakeWriter, split_by_partition
from schemas.event import EVENT_SCHEMA
from schemas.lake import FileName
from schemas.quarantine import QUARANTINE_SCHEMA
from schemas.raw import RAW_SCHEMA


def _events(rows: list[tuple[str, dt.datetime]]) -> pa.Table:
    base = {name: None for name in EVENT_SCHEMA.names}
    return pa.Table.from_pylist([
        {**base, "tenant": tenant, "event_id": f"e{i}", "event_type": "track",
         "event_name": "x", "protocol": "segment", "received_at": ts, "derived_ts": ts,
         "source": "log", "source_partition": 0, "source_offset": i, "source_index": 0,
         "item_index": 0, "pipeline_version": "t"}
        for i, (tenant, ts) in enumerate(rows)], schema=EVENT_SCHEMA)


T0 = dt.datetime(2026, 11, 26, 23, 59, 59, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 11, 27, 0, 0, 1, tzinfo=dt.UTC)


def test_split_by_tenant_and_utc_date() -> None:
    parts = {(t, d): part.num_rows for t, d, part in split_by_partition(
        _events([("a", T0), ("a", T1), ("b", T1), ("a", T1)]))}
    assert parts == {("a", dt.date(2026, 11, 26)): 1, ("a", dt.date(2026, 11, 27)): 2,
                     ("b", dt.date(2026, 11, 27)): 1}


def test_write_batch_layout_and_names(tmp_path: Path) -> None:
    writer = LakeWriter(tmp_path, writer_token="w1")
    files = writer.write_batch("log", 0, 10, 12, {
        "events": _events([("a", T0), ("b", T1)]), "raw": RAW_SCHEMA.empty_table(),
        "quarantine": QUARANTINE_SCHEMA.empty_table()})
    rel = sorted(str(f.relative_to(tmp_path)) for f in files)
    assert rel == [
        "events/tenant=a/date=2026-11-26/log-p0000-00000000000000000010-00000000000000000012-w1.parquet",
        "events/tenant=b/date=2026-11-27/log-p0000-00000000000000000010-00000000000000000012-w1.parquet",
    ]
    assert FileName.parse(files[0].name) == FileName("log", 0, 10, 12, "w1")
    table = pq.read_table(files[0])
    assert table.schema.field("received_at").type == pa.timestamp("us", tz="UTC")
    assert pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression == "ZSTD"
    assert not list(tmp_path.rglob("*.tmp"))


def test_recover_deletes_an_uncommitted_batch(tmp_path: Path) -> None:
    writer = LakeWriter(tmp_path, writer_token="w1")
    files = writer.write_batch("log", 0, 10, 12, {"events": _events([("a", T0)])})
    # crash before commit: committed offset is still 10
    restarted = LakeWriter(tmp_path, writer_token="w2")
    deleted = restarted.recover("log", 0, committed=10)
    assert files[0] in deleted and not files[0].exists()
    assert restarted.read_intent("log", 0) is None


def test_recover_keeps_a_committed_batch(tmp_path: Path) -> None:
    writer = LakeWriter(tmp_path, writer_token="w1")
    files = writer.write_batch("log", 0, 10, 12, {"events": _events([("a", T0)])})
    assert LakeWriter(tmp_path).recover("log", 0, committed=13) == []
    assert files[0].exists()


def test_recover_with_nothing_committed_and_leftover_temp_file(tmp_path: Path) -> None:
    writer = LakeWriter(tmp_path, writer_token="w1")
    files = writer.write_batch("log", 0, 1, 1, {"events": _events([("a", T0)])})
    tmp = files[0].with_name(f".{files[0].name}.tmp")
    tmp.write_bytes(b"half a file")
    deleted = LakeWriter(tmp_path).recover("log", 0, committed=None)
    assert set(deleted) == {files[0], tmp}


def test_abandon_only_removes_our_own_intent(tmp_path: Path) -> None:
    mine = LakeWriter(tmp_path, writer_token="mine")
    files = mine.write_batch("t", 1, 5, 6, {"events": _events([("a", T0)])})
    LakeWriter(tmp_path, writer_token="theirs").write_batch(
        "t", 1, 5, 9, {"events": _events([("a", T1)])})
    mine.abandon("t", 1, files)
    assert not files[0].exists()
    intent = mine.read_intent("t", 1)
    assert intent is not None and intent.writer == "theirs"
