"""Transports between collector and loader: the embedded SQLite log, or Kafka."""

from __future__ import annotations

from ingest.transport.base import Consumer, Producer, RebalanceListener, Record
from ingest.transport.config import EmbeddedLogSettings, KafkaSettings
from ingest.transport.embedded import EmbeddedConsumer, EmbeddedProducer

__all__ = ["Consumer", "Producer", "RebalanceListener", "Record", "open_consumer",
           "open_producer"]


def open_producer(embedded: EmbeddedLogSettings, kafka: KafkaSettings) -> Producer:
    """Kafka when bootstrap servers are set, else the embedded log."""
    if kafka.bootstrap_servers:
        from ingest.transport.kafka import KafkaProducerTransport

        return KafkaProducerTransport(kafka)
    return EmbeddedProducer(embedded)


def open_consumer(embedded: EmbeddedLogSettings, kafka: KafkaSettings,
                  listener: RebalanceListener | None = None) -> Consumer:
    """A consumer of the loaders' group on Kafka or the embedded log."""
    if kafka.bootstrap_servers:
        from ingest.transport.kafka import KafkaConsumerTransport

        return KafkaConsumerTransport(kafka, listener)
    return EmbeddedConsumer(embedded, listener=listener)
