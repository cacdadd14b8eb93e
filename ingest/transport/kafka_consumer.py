"""The loaders' Kafka consumer: one consumer group, offsets committed only by ``commit``.

Every loader joins the group ``kafka.group_id``; Kafka spreads the raw topic's partitions
over them and moves a partition when a loader joins, leaves or dies. Offsets are never
committed automatically: the loader commits a partition's next offset once the batch's
Parquet files are durable (see ingest/loader/writer.py).

Rebalance callbacks: kafka-python (3.x) runs rebalance listeners on its IO thread, where a
blocking client call (a commit, a committed-offset fetch) is refused. The loader's
listener flushes and commits in ``on_revoked`` and reads committed offsets in
``on_assigned``, so :class:`_RebalanceBridge` runs it on a worker thread and awaits it from
the IO loop: heartbeats keep flowing while the loader writes, the loader's own thread is
blocked in ``poll`` meanwhile (no concurrent access to its buffers), and the rebalance
does not proceed until the listener returned. An exception in the listener stops the
loader (re-raised from ``poll``) rather than letting it read a partition it did not recover.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka import errors as kafka_errors
from kafka.future import Future
from kafka.structs import OffsetAndMetadata

from ingest.transport.base import RebalanceListener, Record
from ingest.transport.config import KafkaSettings
from ingest.transport.kafka_client import CONFIG_ERRORS, client_config, describe, ensure_topic
from schemas.errors import ConfigError, DriftnetError, TransportError

log = logging.getLogger(__name__)


class _RebalanceBridge(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Runs a :class:`RebalanceListener` on a worker thread while the IO loop awaits it."""

    def __init__(self, transport: KafkaConsumerTransport) -> None:
        self._transport = transport

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._call("on_revoked", revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._call("on_assigned", assigned)

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        # Evicted: the loader's commit will fail, and it abandons the batch's files.
        await self._call("on_revoked", lost)

    async def _call(self, method: str, tps: set[TopicPartition]) -> None:
        transport = self._transport
        listener = transport.listener
        partitions = {tp.partition for tp in tps if tp.topic == transport.source}
        if transport.closing or not partitions:
            return
        log.info("%s partitions %s of %s", method.removeprefix("on_"), sorted(partitions),
                 transport.source)
        if listener is None:
            return
        done = Future()

        def work() -> None:
            error: BaseException | None = None
            try:
                getattr(listener, method)(partitions)
            except BaseException as exc:  # noqa: BLE001 - handed to the IO loop, re-raised by poll()
                error = exc
            transport.resolve_on_io_thread(done, error)

        threading.Thread(target=work, name=f"kafka-{method}", daemon=True).start()
        await done


class KafkaConsumerTransport:
    """The :class:`~ingest.transport.base.Consumer` on a Kafka consumer group."""

    def __init__(self, settings: KafkaSettings, listener: RebalanceListener | None = None
                 ) -> None:
        self.settings = settings
        self.source = settings.raw_topic
        self.stream_id = settings.raw_topic
        self.listener = listener
        self.closing = False
        self._timeout_ms = settings.request_timeout_ms
        ensure_topic(settings)  # a loader may start before any collector
        try:
            self._consumer = KafkaConsumer(
                **client_config(settings),
                group_id=settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_interval_ms=settings.max_poll_interval_ms,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=settings.heartbeat_interval_ms,
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
            )
        except CONFIG_ERRORS as exc:
            raise ConfigError(f"kafka rejected the consumer: {exc}", **describe(settings)) from exc
        except kafka_errors.KafkaError as exc:
            raise TransportError(f"cannot reach kafka: {exc}", **describe(settings)) from exc
        self._consumer.subscribe([self.source], listener=_RebalanceBridge(self))
        log.info("consuming %s on %s as group %s", self.source, settings.bootstrap_servers,
                 settings.group_id)

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.source, partition)

    def resolve_on_io_thread(self, future: Future, error: BaseException | None) -> None:
        """Complete ``future`` on kafka-python's IO thread (waking it), or here as a fallback."""

        def resolve() -> None:
            if error is None:
                future.success(None)
            else:
                future.failure(error)

        # The IO loop only notices a future resolved from another thread at its next wakeup;
        # scheduling the resolution on the loop wakes it at once.
        net = getattr(self._consumer, "_net", None)
        schedule = getattr(net, "call_soon_threadsafe", None)
        if schedule is None:
            resolve()
        else:
            schedule(resolve)

    # -- Consumer
    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Records of the assigned partitions, in offset order per partition."""
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000),
                                          max_records=max_records)
        except kafka_errors.KafkaError as exc:
            cause = exc.__cause__
            if isinstance(cause, DriftnetError):
                raise cause from exc  # the loader's own rebalance work failed
            if isinstance(cause, BaseException):
                raise TransportError(f"rebalance callback failed: {cause!r}",
                                     **describe(self.settings)) from exc
            if isinstance(exc, kafka_errors.RetriableError):
                log.warning("kafka poll failed, retrying: %s", exc)
                return []
            raise TransportError(f"kafka poll failed: {exc}", **describe(self.settings)
                                 ) from exc
        records: list[Record] = []
        for tp, messages in batches.items():
            records.extend(Record(tp.partition, m.offset, m.value, m.key) for m in messages)
        return records

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit, per partition, the next offset to read; TransportError if the group moved on."""
        if not offsets:
            return
        try:
            self._consumer.commit(
                {self._tp(p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()},
                timeout_ms=self._timeout_ms,
            )
        except kafka_errors.KafkaError as exc:
            raise TransportError(f"kafka commit failed: {exc}", offsets=dict(offsets),
                                 **describe(self.settings)) from exc

    def rewind(self, partition: int) -> None:
        """Read ``partition`` again from its committed offset, if it is still ours."""
        tp = self._tp(partition)
        if tp not in self._consumer.assignment():
            return  # moved to another loader, which reads it from the committed offset
        committed = self.committed(partition)
        if committed is None:
            self._consumer.seek_to_beginning(tp)
        else:
            self._consumer.seek(tp, committed)

    def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` on, if it is assigned to us."""
        tp = self._tp(partition)
        if tp in self._consumer.assignment():
            self._consumer.seek(tp, offset)

    def committed(self, partition: int) -> int | None:
        """The group's committed next offset of ``partition`` (asks the broker)."""
        try:
            offset: int | None = self._consumer.committed(self._tp(partition),
                                                          timeout_ms=self._timeout_ms)
        except kafka_errors.KafkaError as exc:
            raise TransportError(f"cannot read committed offsets: {exc}", partition=partition,
                                 **describe(self.settings)) from exc
        return offset

    def lag(self) -> int:
        """End offsets minus committed offsets, summed over the assigned partitions."""
        return sum(self.partition_lag().values())

    def partition_lag(self) -> dict[int, int]:
        """End offset minus committed offset of each assigned partition."""
        assigned = sorted(self._consumer.assignment())
        if not assigned:
            return {}
        try:
            ends: dict[TopicPartition, int] = self._consumer.end_offsets(
                assigned, timeout_ms=self._timeout_ms)
            begins: dict[TopicPartition, int] = self._consumer.beginning_offsets(
                assigned, timeout_ms=self._timeout_ms)
        except kafka_errors.KafkaError as exc:
            raise TransportError(f"cannot read end offsets: {exc}", **describe(self.settings)
                                 ) from exc
        lags: dict[int, int] = {}
        for tp in assigned:
            # The last fetch's high watermark too: some Kafka-protocol brokers (Tansu) answer
            # ListOffsets with the last batch's base offset + 1 instead of the log end.
            end = max(ends.get(tp, 0), self._highwater(tp))
            committed = self.committed(tp.partition)
            start = committed if committed is not None else begins.get(tp, 0)
            lags[tp.partition] = max(0, end - start)
        return lags

    def _highwater(self, tp: TopicPartition) -> int:
        try:
            value: Any = self._consumer.highwater(tp)
        except kafka_errors.IllegalStateError:
            return 0
        return int(value) if value is not None else 0

    def close(self) -> None:
        """Leave the group without committing (and without calling the listener)."""
        self.closing = True
        self._consumer.close(autocommit=False)
