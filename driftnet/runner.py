"""Run the collector, the loader, or both in one process (``driftnet up``)."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading

import uvicorn
from prometheus_client import CollectorRegistry, disable_created_metrics

from ingest.collector import CollectorApp
from ingest.collector.http import guarded_protocol
from ingest.lake.maintain import Maintainer
from ingest.loader.loop import Loader
from ingest.loader.pipeline import Pipeline
from ingest.metrics.collector import CollectorMetrics
from ingest.metrics.exposition import MetricsListener, serve
from ingest.metrics.lake import MaintainMetrics
from ingest.metrics.loader import LoaderMetrics
from ingest.metrics.tenants import TenantLabels
from ingest.settings import DriftnetSettings
from ingest.transport import open_consumer, open_producer
from ingest.transport.base import Consumer, RebalanceListener
from schemas.errors import DriftnetError
from schemas.storage import LakeLocation
from schemas.tenants import Tenants

log = logging.getLogger("driftnet")


class Metrics:
    """The metrics of one process: one registry, one set of tenant labels, shared by its
    collector, loader and maintenance task (``driftnet up`` has all three)."""

    def __init__(self, settings: DriftnetSettings) -> None:
        # No *_created series: Prometheus needs none of them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.enabled = settings.metrics.enabled
        self.registry = CollectorRegistry()
        self.tenants = TenantLabels(settings.metrics.top_tenants)

    def collector(self) -> CollectorMetrics | None:
        return CollectorMetrics(self.registry, self.tenants) if self.enabled else None

    def loader(self) -> LoaderMetrics | None:
        return LoaderMetrics(self.registry, self.tenants) if self.enabled else None

    def maintain(self) -> MaintainMetrics | None:
        return MaintainMetrics(self.registry) if self.enabled else None

    def serve(self, settings: DriftnetSettings, what: str) -> MetricsListener | None:
        """The metrics listener of a process without an HTTP port of its own."""
        if not self.enabled:
            return None
        return serve(self.registry, settings.metrics.host, settings.metrics.port, what)


def build_app(settings: DriftnetSettings, tenants: Tenants,
              metrics: CollectorMetrics | None = None) -> CollectorApp:
    """The collector app on the configured transport."""
    return CollectorApp(
        tenants, settings.collector, lambda: open_producer(settings.embedded, settings.kafka),
        metrics,
    )


def build_loader(settings: DriftnetSettings, tenants: Tenants | None = None,
                 metrics: LoaderMetrics | None = None) -> Loader:
    """A loader on the configured transport."""

    def consumer(listener: RebalanceListener) -> Consumer:
        return open_consumer(settings.embedded, settings.kafka, listener)

    lake = LakeLocation.parse(settings.loader.lake)
    if lake.is_local:
        lake.path.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(settings.loader, tenants, enrich=settings.enrich)
    return Loader(consumer, settings.loader, tenants, pipeline=pipeline, metrics=metrics)


class _Server(uvicorn.Server):
    """uvicorn server that logs the bound address (port 0 picks one)."""

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets=sockets)  # type: ignore[arg-type]
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                log.info("collector listening on http://%s:%d", host, port)


def _server(settings: DriftnetSettings, app: CollectorApp) -> _Server:
    config = uvicorn.Config(
        app, host=settings.collector.host, port=settings.collector.port, loop="uvloop",
        http=guarded_protocol(settings.collector.header_timeout_s, app), lifespan="on",
        access_log=False, log_level="warning",
        log_config=None,  # uvicorn's loggers go through driftnet's (--log-format json too)
        proxy_headers=False,  # X-Forwarded-For is ours to trust or not (trust_forwarded_for)
        timeout_graceful_shutdown=10, server_header=False,
        # Slow or idle clients must not hold the server: a connection cap (503 beyond), idle
        # keep-alive connections closed, a header deadline (ingest/collector/http.py) and a
        # body deadline in the app (408).
        limit_concurrency=settings.collector.max_connections,
        timeout_keep_alive=int(max(1, round(settings.collector.keep_alive_s))),
    )
    return _Server(config)


def transport_name(settings: DriftnetSettings) -> str:
    """Human description of the transport in use."""
    if settings.uses_kafka:
        return f"kafka {settings.kafka.bootstrap_servers} topic {settings.kafka.raw_topic}"
    return f"embedded log {settings.embedded.path}"


def run_collector(settings: DriftnetSettings, tenants: Tenants) -> int:
    """Serve the collector until SIGINT/SIGTERM."""
    log.info("collector for %d tenants on %s", len(tenants), transport_name(settings))
    metrics = Metrics(settings)
    server = _server(settings, build_app(settings, tenants, metrics.collector()))
    for sig in (signal.SIGINT, signal.SIGTERM):  # see run_up: exit cleanly after uvicorn
        signal.signal(sig, lambda *_: None)
    server.run()
    return 0 if server.started else 1


def run_loader(settings: DriftnetSettings, tenants: Tenants | None = None,
               stop: threading.Event | None = None) -> int:
    """Load until SIGINT/SIGTERM (or ``stop``)."""
    stop = stop or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("loader into %s from %s", settings.loader.lake, transport_name(settings))
    metrics = Metrics(settings)
    loader = build_loader(settings, tenants, metrics.loader())
    listener = metrics.serve(settings, "loader")
    try:
        loader.run(stop)
    finally:
        if listener is not None:
            listener.close()
    log.info("loader stopped: %s", loader.stats)
    return 0


STORED_SESSIONS_TENANTS_PER_PASS = 20
"""Tenants whose stored sessions one maintenance pass rebuilds at most."""


def build_maintainer(settings: DriftnetSettings, tenants: Tenants | None,
                     metrics: MaintainMetrics | None = None) -> Maintainer:
    """The maintenance task of the configured lake; each pass ends by rebuilding the stored
    sessions of tenants with a newly closed day (analytics/stored_sessions.py)."""
    from analytics.stored_sessions import build_sessions

    lake = LakeLocation.parse(settings.loader.lake)

    def store_sessions(now: dt.datetime) -> None:
        report = build_sessions(lake, now, settings.maintain.closed_after_hours,
                                max_tenants=STORED_SESSIONS_TENANTS_PER_PASS)
        if report.rebuilt:
            log.info("stored sessions rebuilt: %s", report.rebuilt)

    return Maintainer(lake, settings.maintain, tenants, settings.loader.zstd_level,
                      state_retention_days=settings.enrich.sessions.state_retention_days,
                      after_pass=[store_sessions], metrics=metrics)


def run_maintain(settings: DriftnetSettings, tenants: Tenants | None, once: bool = False) -> int:
    """Maintain the lake until SIGINT/SIGTERM (or one pass with ``once``)."""
    maintainer = build_maintainer(settings, tenants)
    if once:
        report = maintainer.run_once(vacuum=True)
        for name, t in report.tables.items():
            log.info("%s: %d -> %d files (merged %d, sorted days %d, expired %d, vacuumed %d)",
                     name, t.files_before, t.files_after, t.merged, t.sorted_days,
                     t.expired_files, t.vacuumed)
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("maintaining %s every %.0fs", settings.loader.lake, settings.maintain.interval_s)
    metrics = Metrics(settings)
    maintainer.metrics = metrics.maintain()
    listener = metrics.serve(settings, "maintain")
    try:
        maintainer.run(stop, nice=0)
    finally:
        if listener is not None:
            listener.close()
    return 0


def run_up(settings: DriftnetSettings, tenants: Tenants) -> int:
    """Collector and loader in one process; both stop cleanly on SIGINT/SIGTERM."""
    log.info("driftnet up: %d tenants, lake %s, %s", len(tenants), settings.loader.lake,
             transport_name(settings))
    metrics = Metrics(settings)  # one registry: the collector's port serves all three
    server = _server(settings, build_app(settings, tenants, metrics.collector()))
    loader = build_loader(settings, tenants, metrics.loader())
    stop = threading.Event()
    failure: list[BaseException] = []

    def load() -> None:
        try:
            loader.run(stop)
        except BaseException as exc:  # the process must not keep acking without a loader
            failure.append(exc)
            if isinstance(exc, DriftnetError):  # says why in one line, as the CLI does
                log.error("loader failed; shutting down: %s", exc)
            else:
                log.exception("loader failed; shutting down")
            server.should_exit = True

    thread = threading.Thread(target=load, name="loader", daemon=True)
    thread.start()
    maintenance: threading.Thread | None = None
    if settings.maintain.enabled:
        maintainer = build_maintainer(settings, tenants, metrics.maintain())
        maintenance = threading.Thread(target=maintainer.run, args=(stop,), name="maintain",
                                       daemon=True)
        maintenance.start()
    # uvicorn handles SIGINT/SIGTERM while serving and re-raises them afterwards; these
    # handlers turn that re-raise into a clean loader stop instead of an abrupt exit.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.run()
    finally:
        stop.set()
        thread.join(timeout=60)
        if maintenance is not None:
            maintenance.join(timeout=60)
    log.info("driftnet up stopped: %s", loader.stats)
    if failure:
        if isinstance(failure[0], DriftnetError):
            raise failure[0]
        return 1
    return 0 if server.started else 1
