"""The Kafka transport: many collectors produce, many loaders share partitions.

Selected when ``kafka.bootstrap_servers`` is set (``DRIFTNET_KAFKA__BOOTSTRAP_SERVERS``).

- :class:`KafkaProducerTransport` (kafka_producer.py): the collector's side, on
  confluent-kafka (librdkafka). Topic ``<prefix>raw`` created when missing, acks=all,
  compression, large batches, each bundle sent to the partition its visitors hash to; a
  bounded SQLite spool (spool.py) keeps acknowledging hits while
  the broker is unreachable and drains in order when it is back.
- :class:`KafkaConsumerTransport` (kafka_consumer.py): the loaders' side, on kafka-python.
  One consumer group, offsets committed only after the lake files are durable, rebalance callbacks
  bridged to the loader's flush/commit and recovery.
- kafka_client.py: what both share (settings -> each client's names, SASL/TLS, topic
  creation).

docs/kafka.md explains the design, the settings and how to run it.
"""

from __future__ import annotations

from ingest.transport.kafka_consumer import KafkaConsumerTransport
from ingest.transport.kafka_producer import KafkaProducerTransport, ProducerStats

__all__ = ["KafkaConsumerTransport", "KafkaProducerTransport", "ProducerStats"]
