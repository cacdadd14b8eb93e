"""Transport settings: the embedded log, and Kafka (used when its bootstrap servers are set)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class EmbeddedLogSettings(BaseModel):
    """The embedded SQLite log, used when no Kafka bootstrap servers are configured."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(Path(".driftnet/log.sqlite"), description="SQLite file of the log.")
    synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL",
        description="SQLite synchronous mode. FULL survives power loss; NORMAL only a process "
        "crash. Group commit makes FULL cheap.",
    )
    busy_timeout_ms: int = Field(10_000, ge=0, description="How long to wait on a locked log.")


class KafkaSettings(BaseModel):
    """Apache Kafka (or a Kafka-protocol broker). Setting bootstrap_servers selects Kafka."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str | None = Field(
        None, description="Comma-separated host:port list; unset means the embedded log."
    )
    topic_prefix: str = Field("driftnet.", description="Prefix of driftnet's topics.")
    partitions: int = Field(6, ge=1, description="Partitions of the raw topic when created.")
    replication_factor: int = Field(1, ge=1, description="Replication factor when created.")
    compression: Literal["lz4", "zstd", "gzip", "none"] = Field(
        "zstd", description="Producer compression codec (docs/kafka.md: why zstd)."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Passed to both Kafka clients."
    )
    sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512...")
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never printed).")
    ssl_cafile: Path | None = Field(None, description="CA bundle for SSL.")
    ssl_certfile: Path | None = Field(None, description="Client certificate for SSL.")
    ssl_keyfile: Path | None = Field(None, description="Client key for SSL.")
    client_id: str | None = Field(None, description="Client id shown in broker logs and quotas.")
    bootstrap_timeout_ms: int = Field(10_000, ge=100, description="How long a client waits for "
                                      "its first broker connection at start.")
    create_topic: bool = Field(True, description="Create the raw topic on start when missing "
                               "(needs the CreateTopics ACL on a secured cluster).")

    # -- producer (collector)
    batch_size: int = Field(1_048_576, ge=1024, description="Producer batch size per partition, "
                            "bytes (a bundle is up to collector.max_bundle_bytes).")
    max_request_size: int = Field(1_048_576, ge=1024, description="Largest produce request, "
                                  "bytes; must not exceed the broker's message.max.bytes.")
    request_timeout_ms: int = Field(5_000, ge=1_000, description="How long one broker request "
                                    "may take before the client retries it.")
    delivery_timeout_ms: int = Field(10_000, ge=1_000, description="How long the collector "
                                     "waits for the broker's ack before it writes the bundle to "
                                     "the disk spool instead (and acknowledges the hits).")
    reconnect_backoff_max_ms: int = Field(1_000, ge=10, description="Longest pause between "
                                          "reconnection attempts to a broker.")
    spool_path: Path = Field(Path(".driftnet/spool.sqlite"), description="Disk spool of the "
                             "collector while the broker is unreachable (one per collector).")
    spool_max_bytes: int = Field(1 << 30, ge=1024, description="Spool size limit; once full, "
                                 "the collector answers 503 with Retry-After.")
    metrics_interval_s: float = Field(60.0, gt=0, description="Seconds between the producer's "
                                      "metrics log lines.")

    # -- consumer (loader)
    group_id: str = Field("driftnet-loader", description="Consumer group of the loaders.")
    max_poll_interval_ms: int = Field(300_000, ge=1_000, description="Consumer max poll interval; "
                                      "also the rebalance timeout a joining loader announces.")
    session_timeout_ms: int = Field(10_000, ge=1_000, description="Consumer session timeout: how "
                                    "soon a crashed loader's partitions move to the others.")
    heartbeat_interval_ms: int = Field(3_000, ge=100, description="Consumer heartbeat interval "
                                       "(below a third of session_timeout_ms).")
    fetch_max_wait_ms: int = Field(100, ge=0, le=900, description="How long the broker may "
                                   "hold a fetch while waiting for new records (adds to the "
                                   "beacon-to-lake latency when traffic is light).")
    max_partition_fetch_bytes: int = Field(8 << 20, ge=1024, description="Most bytes fetched per "
                                           "partition per request.")

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str | None) -> str | None:
        """Each server as the Kafka client reads it (``host``, ``host:port``,
        ``[ipv6]:port``), so that a typo is a config error at start, not a client crash."""
        if not value:
            return value
        from kafka.cluster import get_ip_port_afi  # only when Kafka is configured

        servers = [s.strip() for s in value.split(",") if s.strip()]  # as client_config
        if not servers:
            raise ValueError(f"no server in {value!r}")
        for server in servers:
            try:
                host, port, _ = get_ip_port_afi(server)
            except ValueError:
                host, port = "", 0
            if not host or not 0 < port < 65536:
                raise ValueError(f"{server!r} is not a host:port (in {value!r})")
        return value

    @model_validator(mode="after")
    def _check_timeouts(self) -> KafkaSettings:
        if self.request_timeout_ms > self.delivery_timeout_ms:
            raise ValueError(
                f"delivery_timeout_ms ({self.delivery_timeout_ms}) must be at least "
                f"request_timeout_ms ({self.request_timeout_ms})"
            )
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below "
                f"session_timeout_ms ({self.session_timeout_ms})"
            )
        return self

    @property
    def raw_topic(self) -> str:
        """The topic envelopes are produced to."""
        return f"{self.topic_prefix}raw"
