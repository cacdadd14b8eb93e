"""Metrics settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MetricsSettings(BaseModel):
    """Where the Prometheus metrics are served, and how many tenants get their own label."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve /metrics: on the collector's own port "
                          "(collector, up) and on host:port (loader, maintain).")
    host: str = Field("127.0.0.1", description="Interface of the metrics listener of "
                      "`driftnet loader` and `driftnet maintain` (0.0.0.0 in containers).")
    port: int = Field(9464, ge=0, le=65535, description="TCP port of that listener (0 picks a "
                      "free one, logged at start). The collector and `driftnet up` serve "
                      "/metrics on their HTTP port instead.")
    top_tenants: int = Field(50, ge=1, le=10_000, description="Tenants with a label of their "
                             "own in per-tenant metrics; the rest are summed under "
                             "tenant=\"other\" (driftnet status has every tenant).")
