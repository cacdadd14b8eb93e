"""The collector's metrics: requests, bytes, acknowledgement latency, refusals, spool.

Label values are bounded: ``route`` is a name from the route table (never the request's
path), ``protocol`` one of the adapters', ``status`` an HTTP status, ``reason`` one of
:data:`REJECT_REASONS`, ``tenant`` one of :class:`TenantLabels`.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.metrics.tenants import TenantLabels
from schemas.errors import TransportError

ACK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
               5.0, 10.0)
"""Acknowledgement latency buckets, seconds: an embedded-log ack takes about a millisecond,
a Kafka acks=all one a few, a spooled one an fsync."""

MAX_TALLIES = 4096
"""Hits :meth:`CollectorMetrics.tally` holds before folding them into the metrics."""

REJECT_REASONS: dict[int, str] = {
    400: "bad_request", 401: "unknown_key", 403: "origin_not_allowed", 404: "no_route",
    405: "method_not_allowed", 408: "body_timeout", 413: "too_large",
    415: "unsupported_encoding", 429: "rate_limited", 431: "headers_too_large",
    503: "overloaded",
}
"""The reason label of a refused request, by its status."""
TRANSPORT_REASON = "transport"
"""Reason of a 503 because the transport refused the hit (a full Kafka spool, a log error)."""


@runtime_checkable
class SpoolHolder(Protocol):
    """A producer with a disk spool (Kafka's)."""

    def spool_state(self) -> tuple[int, int, int, float | None]:
        """Records, bytes, byte limit, and the age in seconds of the oldest record."""
        ...


class CollectorMetrics:
    """Counters and histograms of one collector, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, tenants: TenantLabels) -> None:
        self.registry = registry
        self.tenants = tenants
        self.requests = Counter(
            "driftnet_collector_requests", "HTTP requests answered, by route, protocol and "
            "status.", ["route", "protocol", "status"], registry=registry)
        self.request_bytes = Counter(
            "driftnet_collector_request_bytes", "Request body bytes as received (before "
            "inflating gzip/deflate), of requests whose body was read and inflated.", ["protocol"],
            registry=registry)
        self.event_bytes = Counter(
            "driftnet_collector_event_bytes", "Body bytes of acknowledged hits as handed to "
            "the transport (inflated).", ["protocol"], registry=registry)
        self.ack_seconds = Histogram(
            "driftnet_collector_ack_seconds", "Time from a hit's request to its "
            "acknowledgement (the transport holds it durably).", ["protocol"],
            buckets=ACK_BUCKETS, registry=registry)
        self.rejected = Counter(
            "driftnet_collector_rejected_requests", "Requests refused, by reason.", ["reason"],
            registry=registry)
        self.hits = Counter(
            "driftnet_collector_hits", "Hits acknowledged, by tenant (bounded: see "
            "metrics.top_tenants).", ["tenant"], registry=registry)
        # Children by label values: labels() costs a lock and a tuple build per call.
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._by_protocol: dict[str, tuple[Any, Any, Any]] = {}
        self._hits: dict[str, Any] = {}
        self._tallies: list[tuple[tuple[str, str, int, str], int, int, float]] = []

    def request(self, route: str, protocol: str, status: int) -> None:
        """Count one answered request."""
        key = (route, protocol, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(route, protocol, str(status))
        child.inc()

    def refused(self, status: int, transport: bool = False) -> None:
        """Count one refused request."""
        reason = TRANSPORT_REASON if transport else REJECT_REASONS.get(status, str(status))
        self.rejected.labels(reason).inc()

    def received(self, protocol: str, nbytes: int) -> None:
        """Count a routed request's body as it arrived."""
        self._protocol(protocol)[0].inc(nbytes)

    def acknowledged(self, protocol: str, tenant: str, nbytes: int, started: float) -> None:
        """Count an acknowledged hit: its bytes, its tenant and its latency since ``started``
        (a ``time.perf_counter()``)."""
        _, event_bytes, ack = self._protocol(protocol)
        event_bytes.inc(nbytes)
        ack.observe(time.perf_counter() - started)
        child = self._hits.get(tenant)
        if child is None:
            child = self._hits[tenant] = self.hits.labels(self.tenants.label(tenant))
        child.inc()

    def tally(self, key: tuple[str, str, int, str], received: int, nbytes: int,
              started: float) -> None:
        """Count an acknowledged hit as :meth:`received`, :meth:`acknowledged` and
        :meth:`request` would (``key``: route, protocol, status, tenant), at the next
        :meth:`flush`: one list append per hit instead of six locked increments. The collector
        flushes before each scrape of its ``/metrics``; past :data:`MAX_TALLIES` hits, the
        tally flushes itself."""
        tallies = self._tallies
        tallies.append((key, received, nbytes, time.perf_counter() - started))
        tenant = key[3]
        if tenant not in self._hits:  # its label is chosen now, as acknowledged() would
            self._hits[tenant] = self.hits.labels(self.tenants.label(tenant))
        if len(tallies) >= MAX_TALLIES:
            self.flush()

    def flush(self) -> None:
        """Fold the tallied hits into the counters and the latency histogram."""
        tallies = self._tallies
        if not tallies:
            return
        self._tallies = []
        groups: dict[tuple[str, str, int, str], list[Any]] = {}
        for key, received, nbytes, latency in tallies:
            group = groups.get(key)
            if group is None:
                groups[key] = [1, received, nbytes, [latency]]
            else:
                group[0] += 1
                group[1] += received
                group[2] += nbytes
                group[3].append(latency)
        for (route, protocol, status, tenant), (count, received, nbytes, latencies) in (
                groups.items()):
            request_bytes, event_bytes, ack = self._protocol(protocol)
            request_bytes.inc(received)
            event_bytes.inc(nbytes)
            _observe_all(ack, latencies)
            key3 = (route, protocol, status)
            child = self._requests.get(key3)
            if child is None:
                child = self._requests[key3] = self.requests.labels(route, protocol, str(status))
            child.inc(count)
            self._hits[tenant].inc(count)

    def _protocol(self, protocol: str) -> tuple[Any, Any, Any]:
        found = self._by_protocol.get(protocol)
        if found is None:
            found = self._by_protocol[protocol] = (
                self.request_bytes.labels(protocol), self.event_bytes.labels(protocol),
                self.ack_seconds.labels(protocol))
        return found

    def watch_spool(self, producer: Callable[[], object]) -> None:
        """Report the spool of the producer ``producer()`` returns, when it has one."""
        self.registry.register(_SpoolCollector(producer))


def _observe_all(histogram: Any, values: list[float]) -> None:
    """``observe`` each value: by bucket counts when the child has prometheus_client's
    bucket and sum values (one increment per bucket, not two per value), else one by one."""
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    if buckets is None or total is None or bounds is None or len(buckets) != len(bounds):
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    total.inc(sum(values))


class _SpoolCollector(Collector):
    """Spool gauges, read at scrape time (the spool keeps its depth in memory)."""

    def __init__(self, producer: Callable[[], object]) -> None:
        self._producer = producer

    def collect(self) -> Iterator[Metric]:
        producer = self._producer()
        if not isinstance(producer, SpoolHolder):
            return
        try:
            records, nbytes, limit, oldest = producer.spool_state()
        except TransportError:  # closing: the spool is gone, and so are its gauges
            return
        yield GaugeMetricFamily("driftnet_collector_spool_records", "Transport records "
                                "waiting in the Kafka outage spool.", value=records)
        yield GaugeMetricFamily("driftnet_collector_spool_bytes", "Bytes waiting in the "
                                "Kafka outage spool.", value=nbytes)
        yield GaugeMetricFamily("driftnet_collector_spool_limit_bytes", "The spool's limit "
                                "(kafka.spool_max_bytes); past it hits get 503.", value=limit)
        yield GaugeMetricFamily("driftnet_collector_spool_oldest_age_seconds", "Age of the "
                                "oldest spooled record (0 when the spool is empty).",
                                value=oldest or 0.0)

    def describe(self) -> Iterator[Metric]:
        return iter(())
