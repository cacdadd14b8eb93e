"""The collector's Kafka producer: acks=all, compressed, batched, with a disk spool behind it.

The client is confluent-kafka (librdkafka): its batching, compression, network I/O and
retries run in librdkafka's own threads, without Python's GIL. The loaders' consumer and the
admin client stay on kafka-python (ingest/transport/kafka_client.py). With kafka-python's
producer, whose network thread is Python, the collector spent 53-70 µs of CPU per
single-event request on Kafka against 39-46 on the embedded log; with librdkafka 39-49
(bench/kafka_results.md).

``produce`` hands a group commit's bundles to the client and returns once the broker
acknowledged every one of them (acks=all: every in-sync replica has it). When the broker
does not answer within ``delivery_timeout_ms`` (librdkafka's ``message.timeout.ms``: it
reports every record by then) the bundles that were not acknowledged go to the
:class:`~ingest.transport.spool.Spool` instead, and ``produce`` returns: the hits are
durable on local disk. From then on every group goes to the spool, and a drain thread sends
the spool to the broker, oldest first, until it is empty; only then does ``produce`` write
to the broker directly again. Only a full spool refuses hits (SpoolFullError -> 503).

Records are routed by visitor: the collector bundles the hits of each partition separately
and keys each bundle with the partition's index (4 bytes, big-endian); the bundle goes to
that partition (modulo the topic's partition count, so a key is never out of range). The
collector hashes the visitor, not the tenant, so one big tenant's hits still spread over
every partition (and every loader of the group), while each visitor's hits, and with them
its sessions and retries, stay with one loader (ingest/collector/visitor.py). Any other key
hashes as Kafka's clients do (murmur2); a record without a key (none is produced today)
goes to any partition.

``produce_async`` is the same contract without a thread per group: the collector's event
loop hands the bundles to librdkafka's queue (which never blocks) and gets a future that
the delivery thread completes, once per group, when the broker acknowledged the last
bundle. The delivery thread only serves librdkafka's delivery reports (``poll``).
Everything that may block (the spool, a failed group's spooling) goes to one worker thread
instead, which runs ``produce``'s path. The drain thread also watches the groups in flight:
one the client has not decided within the same bound as ``produce``'s wait is settled there
(client discarded, bundles spooled).

Delivery is at least once between collector and broker: a bundle whose acknowledgement
was lost (broker wrote it, then the connection dropped) is spooled and sent again, and a
crash between a drained bundle's ack and its removal from the spool re-sends it. Events
carry ``event_id`` for that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as RdProducer

from ingest.transport.config import KafkaSettings
from ingest.transport.kafka_client import describe, ensure_topic, producer_config
from ingest.transport.spool import Spool
from schemas.errors import ConfigError, TransportError

log = logging.getLogger(__name__)

DRAIN_MAX_RECORDS = 256
DRAIN_MAX_BYTES = 16 << 20
"""One drain round: enough to fill several partitions' batches, small enough to retry."""

_MAX_BACKOFF_S = 5.0

_REFUSED_FOR_GOOD = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
    KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD,
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.INVALID_REQUIRED_ACKS, KafkaError.UNSUPPORTED_COMPRESSION_TYPE,
    KafkaError._INVALID_ARG,
})
"""Verdicts that no retry changes: spooling the record would only postpone them. Any other
error (a timeout, a lost connection, a purge, an unknown one) spools the record."""

_NOT_SENT = KafkaError(KafkaError._QUEUE_FULL, "not handed to the client, or not decided in time")


class _LibrdkafkaLog:
    """librdkafka's log lines at DEBUG (but its critical ones): while a broker is away it
    logs each failed reconnect as an error, about once a second; the spool's own warnings
    ("spooling until it is back", "kafka is back") say what matters once."""

    def log(self, level: int, message: str, *args: object) -> None:
        log.log(logging.ERROR if level >= logging.CRITICAL else logging.DEBUG,
                "librdkafka: " + message, *args)


_LIBRDKAFKA_LOG = _LibrdkafkaLog()


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


def _refused(error: KafkaError) -> bool:
    return error.code() in _REFUSED_FOR_GOOD or error.fatal()


class _Sent:
    """Records handed to one client: each one's verdict (None: acknowledged), as librdkafka
    reports them on the delivery thread, and who is told once all are decided."""

    __slots__ = ("deadline", "decided", "done", "errors", "lock", "on_decided", "pending",
                 "producer", "records", "result", "settled")

    def __init__(self, producer: RdProducer, records: Sequence[tuple[bytes | None, bytes]],
                 deadline: float) -> None:
        self.producer = producer
        self.records = records
        self.deadline = deadline
        self.errors: list[KafkaError | None] = [_NOT_SENT] * len(records)
        self.decided = [False] * len(records)
        self.pending = len(records)
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.on_decided: Any = None
        """Called once, on the thread that decided the last record (async groups)."""
        self.result: Future[None] = Future()
        self.settled = False

    def report(self, index: int, error: KafkaError | None, _message: object = None) -> None:
        """librdkafka's delivery report of record ``index``; nothing here may block."""
        with self.lock:
            if self.decided[index]:
                return
            self.decided[index] = True
            self.errors[index] = error
            self.pending -= 1
            last = self.pending == 0
        if last:
            self.done.set()
            if self.on_decided is not None:
                self.on_decided(self)

    def not_sent(self, first: int) -> None:
        """Records from ``first`` on never reached the client: decided as not acknowledged."""
        for i in range(first, len(self.records)):
            self.report(i, _NOT_SENT)

    def claim(self) -> bool:
        """Settle the group now, whatever its records say; False when already settled."""
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            return True


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
        self._delivering = threading.Event()  # cleared last on close: reports until then
        self._delivering.set()
        # produce_async's blocking work (spool, a failed group)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-produce")
        self._inflight: set[_Sent] = set()
        self._settle_bound_s = self._timeout_s + settings.request_timeout_ms / 1000 + 1
        self._producer: RdProducer | None = None
        self._delivery: threading.Thread | None = None
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
        # kafka-python's admin client: creates the topic, and fails fast on what no retry
        # fixes (credentials, ACLs, replication factor); librdkafka would only log those.
        self.partitions = ensure_topic(settings) or settings.partitions
        config = {**producer_config(settings), "logger": _LIBRDKAFKA_LOG,
                  "error_cb": self._client_error}
        try:
            producer = RdProducer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"kafka rejected the producer: {exc}", **describe(settings)) from exc
        self._producer = producer
        self._broker_up = True
        delivery = threading.Thread(target=self._deliver, args=(producer,), daemon=True,
                                    name="kafka-delivery")
        self._delivery = delivery
        delivery.start()
        log.info("producing to %s on %s (acks=all, %s)", self.source,
                 settings.bootstrap_servers, settings.compression)

    def _client_error(self, error: KafkaError) -> None:
        # librdkafka's own errors (a broker down, all brokers down): it retries by itself,
        # and records it cannot deliver in time come back as failed delivery reports.
        if error.fatal():
            log.error("kafka producer: %s", error)
        else:
            log.debug("kafka producer: %s", error)

    def _deliver(self, producer: RdProducer) -> None:
        """The delivery thread: serves librdkafka's delivery reports until its client is
        discarded or the transport closes."""
        while self._delivering.is_set() and self._producer is producer:
            producer.poll(0.5)

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
            direct = not self._spooling and producer is not None
        if not direct or producer is None:
            return self._worker.submit(self.produce, records)
        sent = _Sent(producer, records, time.monotonic() + self._settle_bound_s)
        sent.on_decided = self._group_decided
        self._inflight.add(sent)
        try:
            self._start(sent)
        except TransportError as exc:  # refused for good (the group is claimed)
            self._inflight.discard(sent)
            sent.result.set_exception(exc)
        return sent.result

    def _group_decided(self, sent: _Sent) -> None:
        # On the delivery thread (or the event loop, when nothing reached the client):
        # nothing here may block.
        if not sent.claim():
            return
        self._inflight.discard(sent)
        if all(e is None for e in sent.errors):
            self.stats.acknowledged += len(sent.records)
            sent.result.set_result(None)
        else:  # spooling (or raising) may block: the worker takes it
            self._chain(self._worker.submit(self._complete, sent), sent.result)

    def _settle_overdue(self) -> None:
        """Drain thread: a group the client has not decided in time is decided here, as
        ``produce`` does after its bounded wait (the client is discarded)."""
        now = time.monotonic()
        for sent in list(self._inflight):  # list(): one step, other threads add and remove
            if sent.deadline <= now and sent.claim():
                self._inflight.discard(sent)
                self._chain(self._worker.submit(self._complete, sent), sent.result)

    @staticmethod
    def _chain(source: Future[None], target: Future[None]) -> None:
        def copy(done: Future[None]) -> None:
            error = done.exception()
            if error is None:
                target.set_result(None)
            else:
                target.set_exception(error)
        source.add_done_callback(copy)

    def _complete(self, sent: _Sent) -> None:
        """The rest of ``produce`` for records already handed to the client."""
        self._after_send(sent.records, self._settle(sent, wait=False))

    def _to_spool(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        try:
            self._spool.append(records)
        except TransportError:
            self.stats.refused += len(records)
            raise
        self.stats.spooled += len(records)
        self._wake.set()

    def _send(self, producer: RdProducer, records: Sequence[tuple[bytes | None, bytes]]
              ) -> list[int]:
        """Send and wait; the indexes of records not acknowledged for a reason that may pass.

        Raises TransportError when the broker refuses a record for good (too large, not
        authorised): spooling it would only postpone the same refusal.
        """
        sent = _Sent(producer, records, time.monotonic() + self._settle_bound_s)
        self._start(sent)
        return self._settle(sent, wait=True)

    def _start(self, sent: _Sent) -> None:
        """Hand the records to the client. One the client refuses at once for good raises
        TransportError; one it cannot take now (its queue is full) is decided as not
        acknowledged, with the rest."""
        producer = sent.producer
        partitions = self.partitions
        topic = self.source
        for i, (key, value) in enumerate(sent.records):
            report = partial(sent.report, i)
            try:
                if key is not None and len(key) == 4:
                    producer.produce(topic, value, key,
                                     partition=int.from_bytes(key, "big") % partitions,
                                     on_delivery=report)
                else:
                    producer.produce(topic, value, key, on_delivery=report)
            except (BufferError, KafkaException) as exc:
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if isinstance(exc, KafkaException) and (error is None or _refused(error)):
                    sent.claim()  # the caller fails the group: no spooling of the rest
                    raise TransportError(f"kafka refused a record: {exc}",
                                         **describe(self.settings)) from exc
                sent.not_sent(i)  # this one and the rest: spooled with the failed
                break
            self.stats.produced += 1

    def _settle(self, sent: _Sent, wait: bool) -> list[int]:
        """The indexes of records not acknowledged; ``wait``: for the client's verdict."""
        # librdkafka reports every record within message.timeout.ms; the bound only guards
        # against a client that never decides.
        if wait and not sent.done.is_set():
            sent.done.wait(max(0.0, sent.deadline - time.monotonic()))
        if not sent.done.is_set():
            # The client did not decide in time: discard it, so that nothing it still holds
            # is sent behind the spool's back; the drain thread connects a new one.
            self._discard(sent.producer)
            sent.not_sent(0)  # what is still undecided is not acknowledged
        failed: list[int] = []
        for i, error in enumerate(sent.errors):
            if error is None:
                continue
            if _refused(error):
                raise TransportError(f"kafka refused a record: {error.str()}",
                                     **describe(self.settings))
            failed.append(i)
        if failed:
            log.debug("%d of %d records not acknowledged: %r", len(failed), len(sent.records),
                      [sent.errors[i] for i in failed[:3]])
        self.stats.acknowledged += len(sent.records) - len(failed)
        return failed

    def _discard(self, producer: RdProducer) -> None:
        with self._lock:
            if self._producer is producer:
                self._producer = None
        log.warning("kafka client did not settle its records in time; replacing it")
        producer.purge(in_queue=True, in_flight=True)
        producer.flush(0)

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
        producer = self._producer
        if producer is not None:
            left = producer.flush(self._timeout_s)
            if left:
                log.warning("%d records were not delivered before close", left)
        self._delivering.clear()
        if self._delivery is not None:
            self._delivery.join(timeout=5)
        self.log_metrics()
        depth = self._spool.depth
        if depth.records:
            log.warning("%d records (%d bytes) stay in the spool %s; they are sent on the "
                        "next start", depth.records, depth.bytes, self._spool.path)
        self._spool.close()
