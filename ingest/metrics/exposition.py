"""Serving a registry in Prometheus text format: from the collector's app, or a listener.

Each driftnet process has its own registry and is scraped on its own: a collector replica
is one process (uvicorn without workers; scale out with replicas), so no multiprocess
aggregation is needed. ``driftnet up`` serves the collector's and the loader's metrics
together on the collector's port.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server

from schemas.errors import ConfigError

log = logging.getLogger(__name__)


def render(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in the Prometheus text exposition format."""
    return generate_latest(registry)


@dataclass
class MetricsListener:
    """A running metrics listener (``/metrics`` on its own port)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.server.server_port)

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(registry: CollectorRegistry, host: str, port: int, what: str) -> MetricsListener:
    """Serve ``registry`` at http://host:port/metrics from a background thread."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc}; set "
                          "DRIFTNET_METRICS__PORT (or metrics.enabled = false)",
                          host=host, port=port) from exc
    listener = MetricsListener(server, thread)
    log.info("%s metrics on http://%s:%d/metrics", what, host, listener.port)
    return listener
