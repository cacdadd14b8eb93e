"""What the Kafka producer and consumer share: client settings, security, the raw topic.

Two client libraries: the loaders' consumer and the admin client are kafka-python, which
takes its settings as keyword arguments (:func:`client_config`); the collector's producer is
confluent-kafka (librdkafka), which takes librdkafka's property names
(:func:`producer_config`). These two functions are the only places that map
:class:`KafkaSettings` onto a client, so SASL and TLS reach every client alike.
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaAdminClient
from kafka import errors as kafka_errors
from kafka.admin import NewTopic

from ingest.transport.config import KafkaSettings
from schemas.errors import ConfigError, TransportError

log = logging.getLogger(__name__)

CONFIG_ERRORS: tuple[type[Exception], ...] = (
    kafka_errors.SaslAuthenticationFailedError,
    kafka_errors.AuthorizationError,
    kafka_errors.InvalidReplicationFactorError,
    kafka_errors.InvalidPartitionsError,
    kafka_errors.InvalidTopicError,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.KafkaConfigurationError,
)
"""Errors that no retry can fix: they stop the process with the offending setting."""


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python keyword arguments common to producer, consumer and admin client."""
    if not settings.bootstrap_servers:
        raise ConfigError("kafka.bootstrap_servers is not set")
    config: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in settings.bootstrap_servers.split(",")
                              if s.strip()],
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
        "reconnect_backoff_max_ms": settings.reconnect_backoff_max_ms,
        "bootstrap_timeout_ms": settings.bootstrap_timeout_ms,
    }
    if settings.client_id:
        config["client_id"] = settings.client_id
    if settings.sasl_mechanism:
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = (settings.sasl_password.get_secret_value()
                                         if settings.sasl_password is not None else None)
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(settings, name)
        if value is not None:
            config[name] = str(value)
    return config


def producer_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka properties of the collector's producer: :func:`client_config`'s settings
    under librdkafka's names, and the producer's own (acks=all, compression, sizes, the
    delivery timeout)."""
    base = client_config(settings)
    backoff_max = settings.reconnect_backoff_max_ms
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(base["bootstrap_servers"]),
        "security.protocol": settings.security_protocol,
        "request.timeout.ms": settings.request_timeout_ms,
        "socket.connection.setup.timeout.ms": settings.bootstrap_timeout_ms,
        "reconnect.backoff.ms": min(100, backoff_max),
        "reconnect.backoff.max.ms": backoff_max,
        "acks": "all",
        # Off, as before (kafka-python's idempotent producer could hold a batch past its
        # delivery timeout); a retried batch may then repeat, as a spooled one may: events
        # carry event_id, and the loader drops repeats.
        "enable.idempotence": False,
        "max.in.flight.requests.per.connection": 5,
        "compression.type": settings.compression,
        # No linger (librdkafka's default is 5 ms): the group commit already bundles
        # concurrent hits into one record per partition, and a group is acknowledged only
        # once its records are; waiting only delays every request of the group.
        "linger.ms": 0,
        "batch.size": settings.batch_size,
        "message.max.bytes": settings.max_request_size,
        "message.timeout.ms": settings.delivery_timeout_ms,
        # Keys that are not a partition index hash as Kafka's own clients do.
        "partitioner": "murmur2_random",
    }
    if settings.client_id:
        config["client.id"] = settings.client_id
    if settings.sasl_mechanism:
        config["sasl.mechanism"] = settings.sasl_mechanism
        config["sasl.username"] = base["sasl_plain_username"]
        config["sasl.password"] = base["sasl_plain_password"]
    for name, prop in (("ssl_cafile", "ssl.ca.location"),
                       ("ssl_certfile", "ssl.certificate.location"),
                       ("ssl_keyfile", "ssl.key.location")):
        if name in base:
            config[prop] = base[name]
    return config


def describe(settings: KafkaSettings) -> dict[str, object]:
    """Values that identify the cluster in error messages (never the password)."""
    return {"bootstrap_servers": settings.bootstrap_servers, "topic": settings.raw_topic}


def ensure_topic(settings: KafkaSettings) -> int:
    """Create the raw topic when missing (if allowed); return its partition count.

    Raises ConfigError for what a retry cannot fix (ACLs, replication factor above the
    broker count), TransportError when the cluster cannot be reached.
    """
    admin_config = client_config(settings)
    topic = settings.raw_topic
    try:
        admin = KafkaAdminClient(**admin_config)
    except CONFIG_ERRORS as exc:
        raise ConfigError(f"kafka rejected the client: {exc}", **describe(settings)) from exc
    except kafka_errors.KafkaError as exc:
        raise TransportError(f"cannot reach kafka: {exc}", **describe(settings)) from exc
    try:
        if topic not in admin.list_topics():
            if not settings.create_topic:
                raise ConfigError("the raw topic does not exist and kafka.create_topic is off",
                                  **describe(settings))
            try:
                admin.create_topics([NewTopic(topic, settings.partitions,
                                              settings.replication_factor)])
                log.info("created topic %s: %d partitions, replication %d", topic,
                         settings.partitions, settings.replication_factor)
            except kafka_errors.TopicAlreadyExistsError:
                pass  # another collector or loader won the race
        described = admin.describe_topics([topic])
        partitions = len(described[0]["partitions"]) if described else 0
    except CONFIG_ERRORS as exc:
        raise ConfigError(f"kafka refused the topic setup: {exc}", **describe(settings),
                          partitions=settings.partitions,
                          replication_factor=settings.replication_factor) from exc
    except kafka_errors.KafkaError as exc:
        raise TransportError(f"cannot set up the topic: {exc}", **describe(settings)) from exc
    finally:
        admin.close()
    return partitions
