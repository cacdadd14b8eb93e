"""The collector's Kafka producer: acks=all, compressed, batched, with a disk spool behind it.

``produce`` hands a group commit's bundles to kafka-python and returns once the broker
acknowledged every one of them (acks=all: every in-sync replica has it). When the broker
does not answer within ``delivery_timeout_ms`` the bundles that were not acknowledged go to
the :class:`~ingest.transport.spool.Spool` instead, and ``produce`` returns: the hits are
durable on local disk. From then on every group goes to the spool, and a drain thread sends
the spool to the broker, oldest first, until it is empty; only then does ``produce`` write
to the broker directly again. Only a full spool refuses hits (SpoolFullError -> 503).

Records are routed by visitor: the collector bundles the hits of each partition separately
and keys each bundle with the partition's index (4 bytes, big-endian); the partitioner
sends it there (modulo the topic's partition count, so a key is never out of range). The
collector hashes the visitor, not the tenant, so one big tenant's hits still spread over
every partition (and every loader of the group), while each visitor's hits, and with them
its sessions and retries, stay with one loader (ingest/collector/visitor.py). A record
without a key (none is produced today) goes to any available partition.

``produce_async`` is the same contract without a thread per group: the collector's event
loop hands the bundles to kafka-python's accumulator (which never blocks once the topic's
metadata is known) and gets a future that kafka-python's network thread completes, once
per group, when the broker acknowledged the last bundle. Everything that may block (the
spool, the first metadata fetch, a failed group's spooling) goes to one worker thread
instead, which runs ``produce``'s path. The drain thread also watches the groups in
flight: one the client has not decided within the same bound as ``produce``'s wait is
settled there (client discarded, bundles spooled).

Delivery is at least once between collector and broker: a bundle whose acknowledgement
was lost (broker wrote it, then the connection dropped) is spooled and sent again, and a
crash between a drained bundle's ack and its removal from the spool re-sends it. Events
carry ``event_id`` for that.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka import errors as kafka_errors
from kafka.partitioner import DefaultPartitioner

from ingest.transport.config import KafkaSettings
from ingest.transport.kafka_client import CONFIG_ERRORS, client_config, describe, ensure_topic
from ingest.transport.spool import Spool
from schemas.errors import ConfigError, TransportError

log = logging.getLogger(__name__)

DRAIN_MAX_RECORDS = 256
DRAIN_MAX_BYTES = 16 << 20
"""One drain round: enough to fill several partitions' batches, small enough to retry."""

_MAX_BACKOFF_S = 5.0


@dataclass
class ProducerStats:
    """Counters of the producer, in transport records (bundles). Logged periodically."""

    produced: int = 0
    """Records handed to the broker (directly or from the spool)."""
    acknowledged: int = 0
    """Records the broker acknowledged."""
    spooled: int = 0
    """Records written to the spool."""
    drained: int = 0
    """Spooled records the broker acknowledged."""
    refused: int = 0
    """Records refused because the spool was full (their hits got 503)."""


class _InFlight:
    """A group sent from the event loop: its records, kafka-python's futures, the future of
    the whole group, and who settles it (the last ack, or the drain thread's watchdog)."""

    __slots__ = ("deadline", "futures", "lock", "pending", "producer", "records", "result",
                 "settled")

    def __init__(self, producer: KafkaProducer, records: Sequence[tuple[bytes | None, bytes]],
                 futures: list[Any], deadline: float) -> None:
        self.producer = producer
        self.records = records
        self.futures = futures
        self.deadline = deadline
        self.result: Future[None] = Future()
        self.pending = len(futures)
        self.settled = False
        self.lock = threading.Lock()

    def record_done(self) -> bool:
        """One record decided; True for the call that decided the last one, unsettled."""
        with self.lock:
            self.pending -= 1
            if self.pending or self.settled:
                return False
            self.settled = True
            return True

    def claim(self) -> bool:
        """Settle the group now, whatever its records say; False when already settled."""
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            return True


class RoutePartitioner(DefaultPartitioner):  # type: ignore[misc]
    """A 4-byte key names the partition's index (modulo the topic's partition count); other
    keys hash as Kafka's default partitioner does, and no key picks any available one."""

    def partition(self, topic: str, key: Any, serialized_key: bytes | None, value: Any,
                  serialized_value: bytes | None, cluster: Any) -> int:
        if serialized_key is not None and len(serialized_key) == 4:
            ordered = sorted(cluster.partitions_for_topic(topic) or ())
            if ordered:
                return int(ordered[int.from_bytes(serialized_key, "big") % len(ordered)])
        return int(super().partition(topic, key, serialized_key, value, serialized_value,
                                     cluster))


class KafkaProducerTransport:
    """The :class:`~ingest.transport.base.Producer` on Kafka, with a disk spool.

    Raises ConfigError at start for what no retry fixes (bad credentials, ACLs, a
    replication factor above the broker count, a spool held by another collector). An
    unreachable broker is not an error: the collector starts spooling and connects later.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.source = settings.raw_topic
        self.stats = ProducerStats()
        self._timeout_s = settings.delivery_timeout_ms / 1000
        self._spool = Spool(settings.spool_path, settings.spool_max_bytes)
        self._lock = threading.Lock()  # guards the switch between direct and spooled writes
        self._wake = threading.Event()
        self._closing = threading.Event()
        # produce_async's blocking work (spool, first metadata fetch, a failed group)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-produce")
        self._inflight: set[_InFlight] = set()
        self._settle_bound_s = self._timeout_s + settings.request_timeout_ms / 1000 + 1
        self._producer: KafkaProducer | None = None
        self._broker_up = False
        self.partitions = settings.partitions
        """Partitions of the topic (as found at connect; the configured count until then)."""
        # Leftovers of an earlier run go first: new records queue behind them.
        self._spooling = self._spool.depth.records > 0
        try:
            self._connect()
        except TransportError as exc:
            log.warning("kafka is unreachable at start, spooling until it is back: %s", exc)
            self._spooling = True
        except BaseException:
            self._spool.close()
            raise
        self._drainer = threading.Thread(target=self._drain_loop, name="kafka-spool-drain",
                                         daemon=True)
        self._drainer.start()

    # -- connection
    def _connect(self) -> None:
        settings = self.settings
        self.partitions = ensure_topic(settings) or settings.partitions
        config: dict[str, Any] = {
            "partitioner": RoutePartitioner(),
            **client_config(settings),
            "acks": "all",
            # kafka-python's idempotent producer stops expiring batches while it cannot reach
            # a broker to (re)initialise its producer id, so a record could outlive
            # delivery_timeout_ms, be spooled, and still be sent later: a duplicate. Without
            # it a batch expires on time; retried batches may duplicate, as spooled ones can.
            "enable_idempotence": False,
            "compression_type": None if settings.compression == "none" else settings.compression,
            # No linger: the group commit already bundles concurrent hits into one record,
            # and produce() flushes it at once. Waiting longer only delays the ack; measured,
            # it lowers throughput (the concurrent clients wait instead of adding hits).
            "linger_ms": 0,
            "batch_size": settings.batch_size,
            "max_request_size": settings.max_request_size,
            "delivery_timeout_ms": settings.delivery_timeout_ms,
            "max_block_ms": settings.delivery_timeout_ms,
            "metrics_enabled": False,
        }
        try:
            self._producer = KafkaProducer(**config)
        except CONFIG_ERRORS as exc:
            raise ConfigError(f"kafka rejected the producer: {exc}", **describe(settings)) from exc
        except kafka_errors.KafkaError as exc:
            raise TransportError(f"cannot reach kafka: {exc}", **describe(settings)) from exc
        self._broker_up = True
        log.info("producing to %s on %s (acks=all, %s)", self.source,
                 settings.bootstrap_servers, settings.compression)

    # -- Producer
    def produce(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Return once every record is acknowledged by the broker or durable in the spool.

        Raises SpoolFullError (a TransportError) when the broker is away and the spool is
        full, TransportError when the broker refuses the records for good.
        """
        if not records:
            return
        with self._lock:
            producer = self._producer
            if self._spooling or producer is None:
                self._to_spool(records)
                return
        self._after_send(records, self._send(producer, records))

    def _after_send(self, records: Sequence[tuple[bytes | None, bytes]], failed: list[int]
                    ) -> None:
        """Spool the records the broker did not acknowledge; spool from now on."""
        if failed:
            with self._lock:
                if not self._spooling:
                    log.warning("kafka did not acknowledge %d of %d records within %.1fs; "
                                "spooling until it is back", len(failed), len(records),
                                self._timeout_s)
                self._spooling = True
                self._broker_up = False
                self._to_spool([records[i] for i in failed])
            self._wake.set()

    def produce_async(self, records: Sequence[tuple[bytes | None, bytes]]) -> Future[None]:
        """:meth:`produce` without blocking the caller: returns at once (it runs on the
        collector's event loop) a future done when ``produce`` would have returned, or
        failed with what it would have raised. One group at a time, as with ``produce``."""
        try:
            return self._produce_async(records)
        except Exception as exc:  # noqa: BLE001 - a waiting request must get an answer, not hang
            log.error("kafka produce crashed: %r", exc)
            failed: Future[None] = Future()
            failed.set_exception(TransportError(f"transport failure: {exc!r}"))
            return failed

    def _produce_async(self, records: Sequence[tuple[bytes | None, bytes]]) -> Future[None]:
        if not records:
            done: Future[None] = Future()
            done.set_result(None)
            return done
        with self._lock:
            producer = self._producer
            direct = not self._spooling and producer is not None and self._ready(producer)
        if not direct or producer is None:
            return self._worker.submit(self.produce, records)
        try:
            futures = self._start(producer, records)
        except TransportError as exc:
            failed: Future[None] = Future()
            failed.set_exception(exc)
            return failed
        if len(futures) < len(records):  # the client gave up on the rest: decide off the loop
            return self._worker.submit(self._complete, producer, records, futures, True)
        group = _InFlight(producer, records, futures, time.monotonic() + self._settle_bound_s)
        self._inflight.add(group)
        for future in futures:
            future.add_both(self._record_done, group)
        return group.result

    def _ready(self, producer: KafkaProducer) -> bool:
        """True when ``send`` cannot block: the client knows the topic's partitions (else it
        waits up to max_block_ms for them, which the event loop must not)."""
        metadata = getattr(producer, "_metadata", None)
        return metadata is not None and metadata.partitions_for_topic(self.source) is not None

    def _record_done(self, group: _InFlight, _value: object) -> None:
        # On kafka-python's network thread: nothing here may block.
        if not group.record_done():
            return
        self._inflight.discard(group)
        if all(f.exception is None for f in group.futures):
            self.stats.acknowledged += len(group.records)
            group.result.set_result(None)
        else:  # spooling (or raising) may block: the worker takes it
            self._chain(self._worker.submit(self._complete, group.producer, group.records,
                                            group.futures, False), group.result)

    def _settle_overdue(self) -> None:
        """Drain thread: a group the client has not decided in time is decided here, as
        ``produce`` does after its bounded wait (the client is discarded)."""
        now = time.monotonic()
        for group in list(self._inflight):  # list(): one step, other threads add and remove
            if group.deadline <= now and group.claim():
                self._inflight.discard(group)
                self._chain(self._worker.submit(self._complete, group.producer, group.records,
                                                group.futures, False), group.result)

    @staticmethod
    def _chain(source: Future[None], target: Future[None]) -> None:
        def copy(done: Future[None]) -> None:
            error = done.exception()
            if error is None:
                target.set_result(None)
            else:
                target.set_exception(error)
        source.add_done_callback(copy)

    def _complete(self, producer: KafkaProducer, records: Sequence[tuple[bytes | None, bytes]],
                  futures: list[Any], wait: bool) -> None:
        """The rest of ``produce`` for records already handed to ``producer``."""
        self._after_send(records, self._settle(producer, records, futures, wait))

    def _to_spool(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        try:
            self._spool.append(records)
        except TransportError:
            self.stats.refused += len(records)
            raise
        self.stats.spooled += len(records)
        self._wake.set()

    def _send(self, producer: KafkaProducer, records: Sequence[tuple[bytes | None, bytes]]
              ) -> list[int]:
        """Send and wait; the indexes of records not acknowledged for a reason that may pass.

        Raises TransportError when the broker refuses a record for good (too large, not
        authorised): spooling it would only postpone the same refusal.
        """
        return self._settle(producer, records, self._start(producer, records), True)

    def _start(self, producer: KafkaProducer, records: Sequence[tuple[bytes | None, bytes]]
               ) -> list[Any]:
        """Hand records to the client; their futures (fewer than the records when the
        client gave up: no metadata within max_block_ms, or the client was discarded)."""
        futures: list[Any] = []
        try:
            for key, value in records:
                futures.append(producer.send(self.source, value=value, key=key))
        except (kafka_errors.KafkaTimeoutError, kafka_errors.IllegalStateError):
            pass  # not acked
        except kafka_errors.KafkaError as exc:
            raise TransportError(f"kafka refused a record: {exc}", **describe(self.settings)
                                 ) from exc
        self.stats.produced += len(futures)
        return futures

    def _settle(self, producer: KafkaProducer, records: Sequence[tuple[bytes | None, bytes]],
                futures: list[Any], wait: bool) -> list[int]:
        """The indexes of records not acknowledged; ``wait``: for the client's verdict."""
        # kafka-python fails a record delivery_timeout_ms after it was batched, but checks
        # lazily: wait for its verdict, so that a record counted as not acknowledged (and
        # spooled) is not also still waiting in the client to be sent later. The bound only
        # guards against a client that never decides.
        if wait and not all(f.is_done for f in futures):
            with contextlib.suppress(kafka_errors.KafkaTimeoutError):
                producer.flush(timeout=self._settle_bound_s)
        if not all(f.is_done for f in futures):
            # The client did not decide in time: discard it, so that nothing it still holds
            # is sent behind the spool's back; the drain thread connects a new one.
            self._discard(producer)
        failed: list[int] = []
        for i in range(len(records)):
            future = futures[i] if i < len(futures) else None
            if future is not None and future.is_done and future.exception is None:
                continue
            error = None if future is None or not future.is_done else future.exception
            # Retriable (KafkaConnectionError is one): the broker may take it later.
            if error is not None and not isinstance(error, kafka_errors.RetriableError):
                raise TransportError(f"kafka refused a record: {error}",
                                     **describe(self.settings)) from error
            failed.append(i)
        if failed:
            log.debug("%d of %d records not acknowledged: %r", len(failed), len(records),
                      [futures[i].exception if i < len(futures) else None for i in failed[:3]])
        self.stats.acknowledged += len(records) - len(failed)
        return failed

    def _discard(self, producer: KafkaProducer) -> None:
        with self._lock:
            if self._producer is producer:
                self._producer = None
        log.warning("kafka client did not settle its records in time; replacing it")
        producer.close(timeout=0)

    # -- drain
    def _drain_loop(self) -> None:
        backoff = 0.1
        interval = self.settings.metrics_interval_s
        next_metrics = time.monotonic() + interval
        while not self._closing.is_set():
            if time.monotonic() >= next_metrics:
                self.log_metrics()
                next_metrics = time.monotonic() + interval
            if self._inflight:
                self._settle_overdue()
            try:
                progressed = self._drain_once()
            except ConfigError as exc:
                log.error("kafka refuses this collector, spool grows: %s", exc)
                progressed = False
            except TransportError as exc:
                log.warning("spool drain failed, retrying in %.1fs: %s", backoff, exc)
                progressed = False
            except Exception:  # the drain thread must outlive any bug in one round
                log.exception("spool drain crashed, retrying in %.1fs", backoff)
                progressed = False
            if progressed is None:  # nothing to drain
                backoff = 0.1
                self._wake.wait(timeout=max(0.0, min(1.0, next_metrics - time.monotonic())))
                self._wake.clear()
            elif progressed:
                backoff = 0.1
            else:
                self._closing.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _drain_once(self) -> bool | None:
        """One round: True when records went out, False on failure, None when idle."""
        if self._producer is None:
            self._connect()
        producer = self._producer
        assert producer is not None
        batch = self._spool.peek(DRAIN_MAX_RECORDS, DRAIN_MAX_BYTES)
        if not batch:
            with self._lock:
                if self._spool.depth.records == 0:
                    if self._spooling:
                        log.info("spool drained: producing to kafka directly again")
                    self._spooling = False
            return None
        failed = set(self._send(producer, [(r.key, r.value) for r in batch]))
        delivered = [r for i, r in enumerate(batch) if i not in failed]
        self._spool.remove(delivered)
        self.stats.drained += len(delivered)
        if failed:
            self._broker_up = False
            return False
        if not self._broker_up:
            log.info("kafka is back: sent %d spooled records, %d to go", len(delivered),
                     self._spool.depth.records)
            self._broker_up = True
        return True

    def spool_state(self) -> tuple[int, int, int, float | None]:
        """Spooled records, their bytes, the spool's byte limit, and the age in seconds of
        the oldest (for /metrics)."""
        depth = self._spool.depth
        oldest = self._spool.oldest_age_s() if depth.records else None
        return depth.records, depth.bytes, self._spool.max_bytes, oldest

    def log_metrics(self) -> None:
        """Log the counters and the spool depth as one INFO line."""
        depth = self._spool.depth
        s = self.stats
        log.info("kafka producer %s: produced=%d acknowledged=%d spooled=%d drained=%d "
                 "refused=%d spool_depth=%d records/%d bytes broker=%s", self.source,
                 s.produced, s.acknowledged, s.spooled, s.drained, s.refused, depth.records,
                 depth.bytes, "up" if self._broker_up else "unreachable")

    def close(self) -> None:
        """Stop draining, flush the producer; what is still spooled drains on the next start."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._wake.set()
        self._drainer.join(timeout=self._timeout_s + 5)
        self._worker.shutdown(wait=True)
        if self._producer is not None:
            self._producer.close(timeout=self._timeout_s)
        self.log_metrics()
        depth = self._spool.depth
        if depth.records:
            log.warning("%d records (%d bytes) stay in the spool %s; they are sent on the "
                        "next start", depth.records, depth.bytes, self._spool.path)
        self._spool.close()
