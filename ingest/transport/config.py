"""Transport settings: the embedded log, and Kafka (used when its bootstrap servers are set)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


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
        "lz4", description="Producer compression codec."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Passed to kafka-python."
    )
    sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512...")
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never printed).")
    ssl_cafile: Path | None = Field(None, description="CA bundle for SSL.")
    ssl_certfile: Path | None = Field(None, description="Client certificate for SSL.")
    ssl_keyfile: Path | None = Field(None, description="Client key for SSL.")
    group_id: str = Field("driftnet-loader", description="Consumer group of the loaders.")
    max_poll_interval_ms: int = Field(300_000, ge=1_000, description="Consumer max poll interval.")
    session_timeout_ms: int = Field(10_000, ge=1_000, description="Consumer session timeout.")

    @property
    def raw_topic(self) -> str:
        """The topic envelopes are produced to."""
        return f"{self.topic_prefix}raw"
