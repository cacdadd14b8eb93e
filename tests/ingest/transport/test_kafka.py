"""What only Kafka does: topic setup, client settings, a group of loaders, the disk spool.

The broker is real (see tests/kafka_broker.py); "broker down" is a Kafka proxy that the test
stops, so the collector's clients lose the broker exactly as in a network outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from pydantic import SecretStr, ValidationError

from ingest.transport.base import Record
from ingest.transport.config import KafkaSettings
from ingest.transport.kafka import KafkaConsumerTransport, KafkaProducerTransport
from ingest.transport.kafka_client import client_config, ensure_topic, producer_config
from ingest.transport.spool import SpoolFullError
from schemas.errors import DriftnetError, TransportError
from tests.ingest.transport.test_contract import by_partition
from tests.kafka_broker import KafkaProxy, kafka_test_settings


def test_topic_is_created_once_with_the_configured_partitions(kafka_bootstrap: str,
                                                              tmp_path: Path) -> None:
    settings = kafka_test_settings(kafka_bootstrap, tmp_path, partitions=4)
    assert settings.raw_topic.endswith(".raw")
    assert ensure_topic(settings) == 4
    assert ensure_topic(settings.model_copy(update={"partitions": 2})) == 4  # exists: kept


def test_sasl_and_tls_settings_reach_both_kafka_clients(tmp_path: Path) -> None:
    settings = KafkaSettings(
        bootstrap_servers="k1:9093, k2:9093", security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512", sasl_username="driftnet",
        sasl_password=SecretStr("s3cret"), ssl_cafile=tmp_path / "ca.pem", client_id="c1",
    )
    config = client_config(settings)
    assert config["bootstrap_servers"] == ["k1:9093", "k2:9093"]
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "driftnet"
    assert config["sasl_plain_password"] == "s3cret"
    assert config["ssl_cafile"] == str(tmp_path / "ca.pem")
    assert config["client_id"] == "c1"
    assert "s3cret" not in repr(settings)
    # the collector's producer (librdkafka) gets the same, under librdkafka's names
    rd = producer_config(settings)
    assert rd["bootstrap.servers"] == "k1:9093,k2:9093"
    assert rd["security.protocol"] == "SASL_SSL"
    assert rd["sasl.mechanism"] == "SCRAM-SHA-512"
    assert rd["sasl.username"] == "driftnet"
    assert rd["sasl.password"] == "s3cret"
    assert rd["ssl.ca.location"] == str(tmp_path / "ca.pem")
    assert rd["client.id"] == "c1"
    assert rd["acks"] == "all" and rd["linger.ms"] == 0
    assert rd["message.timeout.ms"] == settings.delivery_timeout_ms


def test_a_record_the_broker_can_never_take_is_refused_not_spooled(
        kafka_bootstrap: str, tmp_path: Path, closing: list[KafkaProducerTransport]) -> None:
    settings = kafka_test_settings(kafka_bootstrap, tmp_path, max_request_size=4096)
    producer = KafkaProducerTransport(settings)
    closing.append(producer)
    with pytest.raises(TransportError, match="refused a record"):
        producer.produce([(None, b"x" * 8192)])
    future = producer.produce_async([((0).to_bytes(4, "big"), b"y" * 8192)])
    assert isinstance(future.exception(timeout=30), TransportError)
    assert producer.stats.spooled == 0 and producer._spool.depth.records == 0
    producer.produce([(None, b"small")])  # the producer still works
    assert producer.stats.acknowledged == 1


def test_inconsistent_timeouts_are_refused() -> None:
    with pytest.raises(ValidationError, match="delivery_timeout_ms"):
        KafkaSettings(delivery_timeout_ms=1000, request_timeout_ms=5000)
    with pytest.raises(ValidationError, match="heartbeat_interval_ms"):
        KafkaSettings(session_timeout_ms=3000, heartbeat_interval_ms=3000)


class Member:
    """A loader-like group member: commits what it read when its partitions are revoked."""

    def __init__(self, settings: KafkaSettings, name: str) -> None:
        self.name = name
        self.read: list[Record] = []
        self.pending: dict[int, int] = {}
        self.assigned: set[int] = set()
        self.seen_on_assign: dict[int, int | None] = {}
        self.revoked_commits: list[dict[int, int]] = []
        self.consumer = KafkaConsumerTransport(settings, self)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name)

    def on_assigned(self, partitions: set[int]) -> None:
        for p in partitions:
            self.seen_on_assign[p] = self.consumer.committed(p)
        self.assigned = set(partitions)

    def on_revoked(self, partitions: set[int]) -> None:
        commits = {p: o for p, o in self.pending.items() if p in partitions}
        self.consumer.commit(commits)  # a blocking commit inside the rebalance callback
        self.revoked_commits.append(commits)
        for p in partitions:
            self.pending.pop(p, None)
        self.assigned -= partitions

    def _run(self) -> None:
        while not self.stop.is_set():
            for r in self.consumer.poll(100, 0.1):
                self.read.append(r)
                self.pending[r.partition] = r.offset + 1

    def start(self) -> Member:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.consumer.commit(self.pending)
        self.consumer.close()


def test_two_members_share_the_partitions_and_commit_on_revocation(kafka_bootstrap: str,
                                                                   tmp_path: Path) -> None:
    settings = kafka_test_settings(kafka_bootstrap, tmp_path, partitions=4)
    producer = KafkaProducerTransport(settings)
    values = [b"v%03d" % i for i in range(40)]
    for i in range(0, 40, 4):
        producer.produce([(None, v) for v in values[i:i + 4]])
    a = Member(settings, "a").start()
    b: Member | None = None
    try:
        deadline = time.monotonic() + 20
        while len(a.read) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(a.read) == 40
        b = Member(settings, "b").start()
        deadline = time.monotonic() + 30
        while not (a.assigned and b.assigned) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert a.assigned and b.assigned and not a.assigned & b.assigned
        assert a.assigned | b.assigned == {0, 1, 2, 3}
        # a committed what it had read while its partitions were being revoked...
        assert a.revoked_commits and sum(len(c) for c in a.revoked_commits) > 0
        ends = {p: rs[-1].offset + 1 for p, rs in by_partition(a.read).items()}
        # ...so b starts where a stopped and reads nothing twice
        assert {p: b.seen_on_assign[p] for p in b.assigned if p in ends} == {
            p: ends[p] for p in b.assigned if p in ends}
        producer.produce([(None, b"late-%d" % i) for i in range(8)])
        deadline = time.monotonic() + 20
        while len(a.read) + len(b.read) < 48 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        a.close()
        if b is not None:
            b.close()
        producer.close()
    assert b is not None
    everything = sorted(r.value for r in a.read + b.read)
    assert everything == sorted([*values, *(b"late-%d" % i for i in range(8))])


class Failing:
    def on_assigned(self, partitions: set[int]) -> None:
        raise DriftnetError("cannot recover the lake", partitions=sorted(partitions))

    def on_revoked(self, partitions: set[int]) -> None:
        pass


def test_a_failing_assignment_callback_stops_the_consumer(kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    settings = kafka_test_settings(kafka_bootstrap, tmp_path)
    producer = KafkaProducerTransport(settings)
    try:
        producer.produce([(None, b"x")])
    finally:
        producer.close()
    consumer = KafkaConsumerTransport(settings, Failing())
    try:
        with pytest.raises(DriftnetError, match="cannot recover the lake"):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                assert consumer.poll(10, 0.2) == []  # never a record of an unrecovered partition
    finally:
        consumer.close()


@pytest.fixture
def closing() -> Iterator[list[KafkaProducerTransport]]:
    """Producers to close after the test, whatever happens in it (close is idempotent)."""
    producers: list[KafkaProducerTransport] = []
    yield producers
    for producer in producers:
        producer.close()


def _consume_all(settings: KafkaSettings, bootstrap: str, count: int) -> list[Record]:
    """Everything in the topic, read straight from the broker (no group: no join to wait for)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(settings.raw_topic, p)
                      for p in sorted(consumer.partitions_for_topic(settings.raw_topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Record] = []
        deadline = time.monotonic() + 20
        while len(records) < count and time.monotonic() < deadline:
            for tp, messages in consumer.poll(timeout_ms=200).items():
                records += [Record(tp.partition, m.offset, m.value, m.key) for m in messages]
        assert not consumer.poll(timeout_ms=300)  # and nothing more
        return records
    finally:
        consumer.close()


def test_the_producer_spools_while_the_broker_is_away_and_drains_in_order(
        kafka_bootstrap: str, kafka_proxy: KafkaProxy, tmp_path: Path,
        closing: list[KafkaProducerTransport]) -> None:
    settings = kafka_test_settings(kafka_proxy.bootstrap, tmp_path)
    producer = KafkaProducerTransport(settings)
    closing.append(producer)
    producer.produce([(None, b"before")])
    assert producer.stats.acknowledged == 1
    kafka_proxy.stop()
    started = time.monotonic()
    spooled = [b"during-%02d" % i for i in range(20)]
    for i in range(0, 20, 2):
        producer.produce([(None, v) for v in spooled[i:i + 2]])  # returns: durable in the spool
    # the first call waited for the broker, the others went straight to the spool
    assert time.monotonic() - started < settings.delivery_timeout_ms / 1000 + 3
    assert producer.stats.spooled == 20
    depth = producer._spool.depth
    assert depth.records == 20
    kafka_proxy.start()
    deadline = time.monotonic() + 30
    while producer._spool.depth.records and time.monotonic() < deadline:
        time.sleep(0.05)
    assert producer._spool.depth.records == 0
    producer.produce([(None, b"after")])  # direct again
    producer.close()
    records = _consume_all(settings, kafka_bootstrap, 22)
    assert sorted(r.value for r in records) == sorted([b"before", *spooled, b"after"])
    for rs in by_partition(records).values():  # the spool drains in order
        during = [r.value for r in rs if r.value.startswith(b"during")]
        assert during == sorted(during)


def test_a_full_spool_refuses_and_keeps_what_it_took(kafka_bootstrap: str,
                                                     kafka_proxy: KafkaProxy, tmp_path: Path,
                                                     closing: list[KafkaProducerTransport]
                                                     ) -> None:
    settings = kafka_test_settings(kafka_proxy.bootstrap, tmp_path, spool_max_bytes=4096)
    producer = KafkaProducerTransport(settings)
    closing.append(producer)
    kafka_proxy.stop()
    accepted: list[bytes] = []
    refused = 0
    for i in range(12):
        value = b"%02d" % i + b"x" * 498
        try:
            producer.produce([(None, value)])
            accepted.append(value)
        except SpoolFullError as exc:
            refused += 1
            assert exc.values["max_bytes"] == 4096
    assert len(accepted) == 8 and refused == 4
    kafka_proxy.start()
    deadline = time.monotonic() + 30
    while producer._spool.depth.records and time.monotonic() < deadline:
        time.sleep(0.05)
    producer.close()
    records = _consume_all(settings, kafka_bootstrap, len(accepted))
    assert sorted(r.value for r in records) == accepted


def test_a_collector_starting_without_a_broker_spools_then_connects(
        kafka_bootstrap: str, kafka_proxy: KafkaProxy, tmp_path: Path,
        closing: list[KafkaProducerTransport]) -> None:
    settings = kafka_test_settings(kafka_proxy.bootstrap, tmp_path, bootstrap_timeout_ms=2_000)
    kafka_proxy.stop()
    producer = KafkaProducerTransport(settings)
    closing.append(producer)
    producer.produce([(None, b"early-1"), (None, b"early-2")])
    assert producer._spool.depth.records == 2
    producer.close()  # what is spooled stays for the next start
    kafka_proxy.start()
    again = KafkaProducerTransport(settings)
    closing.append(again)
    again.produce([(None, b"next")])  # queued behind the leftovers
    deadline = time.monotonic() + 30
    while again._spool.depth.records and time.monotonic() < deadline:
        time.sleep(0.05)
    again.close()
    records = _consume_all(settings, kafka_bootstrap, 3)
    assert sorted(r.value for r in records) == [b"early-1", b"early-2", b"next"]


def _wait(futures: list[Future[None]]) -> list[str]:
    """Wait for produce_async's futures; the name of the thread that completed each (of those
    not done yet when looked at)."""
    threads: list[str] = []
    for future in futures:
        done = threading.Event()
        if not future.done():
            future.add_done_callback(lambda _, d=done: (threads.append(
                threading.current_thread().name), d.set()))
            assert done.wait(60)
        assert future.exception() is None
    return threads


def test_produce_async_is_acked_by_the_clients_thread_and_spools_like_produce(
        kafka_bootstrap: str, kafka_proxy: KafkaProxy, tmp_path: Path,
        closing: list[KafkaProducerTransport]) -> None:
    settings = kafka_test_settings(kafka_proxy.bootstrap, tmp_path)
    producer = KafkaProducerTransport(settings)
    closing.append(producer)
    key = (1).to_bytes(4, "big")
    _wait([producer.produce_async([(key, b"a-00")])])
    # The event loop's call only hands the records to librdkafka's queue (it cannot block);
    # the delivery thread completes the group once the broker acknowledged it: no worker
    # thread in between
    threads = [t for i in range(1, 6) for t in _wait([producer.produce_async(
        [(key, b"a-%02d" % i), (None, b"n-%02d" % i)])])]
    assert threads and all(t == "kafka-delivery" for t in threads), threads
    assert producer.stats.acknowledged == 11 and producer.stats.spooled == 0
    kafka_proxy.stop()
    # broker away: the group is not acknowledged, so it is spooled, then acked to the caller
    _wait([producer.produce_async([(key, b"a-06")])])
    assert producer.stats.spooled == 1
    _wait([producer.produce_async([(key, b"a-%02d" % i)]) for i in range(7, 10)])
    assert producer.stats.spooled == 4  # straight to the spool while it holds records
    kafka_proxy.start()
    deadline = time.monotonic() + 30
    while producer._spool.depth.records and time.monotonic() < deadline:
        time.sleep(0.05)
    assert producer._spool.depth.records == 0
    _wait([producer.produce_async([(key, b"a-10")])])
    producer.close()
    records = _consume_all(settings, kafka_bootstrap, 16)
    keyed = [r for r in records if r.key == key]
    assert {r.partition for r in keyed} == {1}
    # one partition key, in order, across the outage (a lost ack may repeat a record)
    values = [r.value for r in keyed]
    assert sorted(set(values)) == [b"a-%02d" % i for i in range(11)]
    assert values == sorted(values)
