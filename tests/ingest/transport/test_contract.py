"""One transport contract, two implementations: the embedded log and Kafka pass the same tests.

produce returns only once records are durable; a consumer of the group reads them in offset
order per partition; commit/committed/rewind/lag behave as in ingest/transport/base.py.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ingest.transport.base import Consumer, Producer, RebalanceListener, Record
from ingest.transport.config import EmbeddedLogSettings
from ingest.transport.embedded import EmbeddedConsumer, EmbeddedProducer
from ingest.transport.kafka import KafkaConsumerTransport, KafkaProducerTransport
from tests.kafka_broker import kafka_test_settings


@dataclass
class Kit:
    """Opens producers and consumers (one group) of one transport; closes them after."""

    name: str
    open_producer: Callable[[], Producer]
    open_consumer: Callable[[RebalanceListener | None], Consumer]
    opened: list[Producer | Consumer] = field(default_factory=list)

    def producer(self) -> Producer:
        producer = self.open_producer()
        self.opened.append(producer)
        return producer

    def consumer(self, listener: RebalanceListener | None = None) -> Consumer:
        consumer = self.open_consumer(listener)
        self.opened.append(consumer)
        return consumer

    def close(self, thing: Producer | Consumer) -> None:
        thing.close()
        self.opened.remove(thing)


@pytest.fixture(params=["embedded", "kafka"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    if request.param == "embedded":
        log = EmbeddedLogSettings(path=tmp_path / "log.sqlite")
        kit = Kit("embedded", lambda: EmbeddedProducer(log),
                  lambda listener: EmbeddedConsumer(log, listener=listener))
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        settings = kafka_test_settings(bootstrap, tmp_path)
        kit = Kit("kafka", lambda: KafkaProducerTransport(settings),
                  lambda listener: KafkaConsumerTransport(settings, listener))
    yield kit
    for thing in reversed(kit.opened):
        thing.close()


def read(consumer: Consumer, count: int, timeout_s: float = 60.0) -> list[Record]:
    """Poll until ``count`` records arrived (the first poll of a Kafka member joins the group)."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records += consumer.poll(count - len(records), 0.2)
    return records


def by_partition(records: list[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        out[r.partition].append(r)
    return out


def produce_numbered(producer: Producer, n: int, start: int = 0, per_call: int = 5) -> list[bytes]:
    values = [b"record-%04d" % i for i in range(start, start + n)]
    for i in range(0, n, per_call):
        producer.produce([(None, v) for v in values[i:i + per_call]])
    return values


class Recorder:
    """A RebalanceListener that remembers calls and reads committed offsets when assigned."""

    def __init__(self) -> None:
        self.consumer: Consumer | None = None
        self.calls: list[tuple[str, frozenset[int]]] = []
        self.committed_seen: dict[int, int | None] = {}

    def on_assigned(self, partitions: set[int]) -> None:
        assert self.consumer is not None
        self.calls.append(("assigned", frozenset(partitions)))
        for p in partitions:
            self.committed_seen[p] = self.consumer.committed(p)

    def on_revoked(self, partitions: set[int]) -> None:
        self.calls.append(("revoked", frozenset(partitions)))


def test_produced_records_are_read_back_in_offset_order_per_partition(kit: Kit) -> None:
    producer = kit.producer()
    values = produce_numbered(producer, 30)
    kit.close(producer)  # durable once produce returned: no producer needed to read them
    consumer = kit.consumer()
    assert consumer.source == producer.source
    records = read(consumer, 30)
    assert sorted(r.value for r in records) == values
    for partition, rs in by_partition(records).items():
        offsets = [r.offset for r in rs]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), partition
        # produce order is kept within a partition
        assert [r.value for r in rs] == sorted(r.value for r in rs)
    assert consumer.poll(10, 0.3) == []


def test_a_new_member_resumes_from_committed_offsets(kit: Kit) -> None:
    produce_numbered(kit.producer(), 20)
    first = kit.consumer()
    records = read(first, 20)
    parts = by_partition(records)
    for p in parts:
        assert first.committed(p) is None
    # commit half of each partition
    commits = {p: rs[len(rs) // 2].offset for p, rs in parts.items()}
    first.commit(commits)
    assert {p: first.committed(p) for p in parts} == commits
    kit.close(first)
    second = kit.consumer()
    again = read(second, sum(len(rs) - len(rs) // 2 for rs in parts.values()))
    expected = {r.value for p, rs in parts.items() for r in rs[len(rs) // 2:]}
    assert {r.value for r in again} == expected
    assert second.poll(10, 0.3) == []


def test_close_without_commit_gives_everything_to_the_next_member(kit: Kit) -> None:
    values = produce_numbered(kit.producer(), 10)
    first = kit.consumer()
    assert len(read(first, 10)) == 10
    kit.close(first)
    second = kit.consumer()
    assert sorted(r.value for r in read(second, 10)) == values


def test_rewind_reads_again_from_the_committed_offset(kit: Kit) -> None:
    produce_numbered(kit.producer(), 12)
    consumer = kit.consumer()
    parts = by_partition(read(consumer, 12))
    p, rs = max(parts.items(), key=lambda item: len(item[1]))
    consumer.commit({p: rs[1].offset})
    consumer.rewind(p)
    again = read(consumer, len(rs) - 1, timeout_s=10)
    assert [r.value for r in again if r.partition == p] == [r.value for r in rs[1:]]
    assert all(r.partition == p for r in again)


def test_lag_counts_what_the_group_has_not_committed(kit: Kit) -> None:
    produce_numbered(kit.producer(), 15)
    consumer = kit.consumer()
    parts = by_partition(read(consumer, 15))
    assert consumer.lag() == 15
    assert consumer.partition_lag() == {p: len(rs) for p, rs in parts.items()}
    consumer.commit({p: rs[-1].offset for p, rs in parts.items()})  # all but the last of each
    assert consumer.lag() == len(parts)
    assert consumer.partition_lag() == dict.fromkeys(parts, 1)
    consumer.commit({p: rs[-1].offset + 1 for p, rs in parts.items()})
    assert consumer.lag() == 0


def test_the_listener_hears_of_assignment_before_records_and_may_read_offsets(kit: Kit) -> None:
    values = produce_numbered(kit.producer(), 6)
    warmup = kit.consumer()
    parts = by_partition(read(warmup, 6))
    warmup.commit({p: rs[0].offset + 1 for p, rs in parts.items()})
    kit.close(warmup)
    recorder = Recorder()
    consumer = kit.consumer(recorder)
    recorder.consumer = consumer
    records = read(consumer, 6 - len(parts))
    assert {r.value for r in records} == set(values) - {rs[0].value for rs in parts.values()}
    assert recorder.calls and recorder.calls[0][0] == "assigned"
    assigned = set().union(*(ps for kind, ps in recorder.calls if kind == "assigned"))
    assert set(parts) <= assigned
    assert {p: recorder.committed_seen[p] for p in parts} == {
        p: rs[0].offset + 1 for p, rs in parts.items()}


def test_producing_nothing_is_a_no_op(kit: Kit) -> None:
    producer = kit.producer()
    producer.produce([])
    producer.produce([(None, b"only")])
    consumer = kit.consumer()
    assert [r.value for r in read(consumer, 1)] == [b"only"]
    assert consumer.poll(10, 0.3) == []
