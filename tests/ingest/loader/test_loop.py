"""The loader loop over several partitions: one pipeline pass and one commit per table for
all of them, each partition's progress recorded in the lake."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
from deltalake import DeltaTable

from ingest.loader.config import LoaderSettings
from ingest.loader.loop import Loader
from ingest.loader.pipeline import BatchTables, Pipeline
from ingest.transport.base import Record
from ingest.transport.kafka import KafkaConsumerTransport, KafkaProducerTransport
from schemas.envelope import encode_bundle, encode_frame
from schemas.lake import loader_app_id
from tests.kafka_broker import kafka_test_settings
from tests.support import lake_rows


class CountingPipeline(Pipeline):
    """The real pipeline, counting its passes."""

    passes = 0

    def process(self, records: list[Record], source: str) -> BatchTables:
        self.passes += 1
        return super().process(records, source)


def _bundle(event_ids: list[str]) -> bytes:
    frames = []
    for event_id in event_ids:
        header = {"v": 1, "tenant": "acme", "received_at": time.time_ns() // 1000,
                  "protocol": "segment", "method": "POST", "path": "/v1/track", "query": "",
                  "ip": "203.0.113.9", "headers": {}}
        body = orjson.dumps({"type": "track", "event": "Loop", "anonymousId": "a",
                             "messageId": event_id})
        frames.append(encode_frame(header, body))
    return encode_bundle(frames)


def test_batches_of_all_partitions_share_one_pass_and_keep_their_own_files_and_offsets(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    # A pass (the first one warms DuckDB up) must fit in the poll interval: give it room.
    kafka = kafka_test_settings(kafka_bootstrap, tmp_path, partitions=3,
                                max_poll_interval_ms=4_000)
    producer = KafkaProducerTransport(kafka)
    sent: list[str] = []
    records = []
    for i in range(30):
        ids = [str(uuid.uuid4()) for _ in range(3)]
        sent += ids
        records.append((f"key-{i}".encode(), _bundle(ids)))
    producer.produce(records)
    producer.close()

    lake = tmp_path / "lake"
    settings = LoaderSettings(lake=lake, flush_interval_s=0.5)
    pipeline = CountingPipeline(settings)
    loader = Loader(lambda listener: KafkaConsumerTransport(kafka, listener), settings,
                    pipeline=pipeline)
    stop = threading.Event()
    thread = threading.Thread(target=loader.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while loader.stats.events < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()

    rows = lake_rows(lake, "events", "SELECT event_id, source_partition, source_offset FROM t")
    assert sorted(r[0] for r in rows) == sorted(sent)  # every event, exactly once
    partitions = Counter(r[1] for r in rows)
    assert len(partitions) > 1, partitions  # the keys spread the records
    # raw records, per partition, the last offset it holds
    raw = DeltaTable(str(lake / "raw"))
    for p in partitions:
        last = max(r[2] for r in rows if r[1] == p)
        assert raw.transaction_version(loader_app_id(kafka.raw_topic, p)) == last
    # one pass per flush, and some flush committed several partitions' batches at once
    assert pipeline.passes == loader.stats.flushes
    multi = 0
    for commit in sorted((lake / "raw" / "_delta_log").glob("*.json")):
        txns = [line for line in commit.read_text().splitlines() if '"txn"' in line]
        multi += len(txns) > 1
    assert multi >= 1
    assert loader.stats.commits_failed == 0
