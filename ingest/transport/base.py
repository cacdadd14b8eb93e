"""The transport interface: durable, ordered, offset-addressed records between collector and loader.

Two implementations: the embedded SQLite log (one machine) and Kafka. Both give Kafka's
semantics: a record has a partition and an offset; a consumer group commits the *next*
offset to read per partition; a producer's ``produce`` returns only once every record is
durable, so the collector can acknowledge the hits inside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Record:
    """One transport record: a bundle of envelopes (see schemas.envelope)."""

    partition: int
    offset: int
    value: bytes
    key: bytes | None = None


class Producer(Protocol):
    """Appends records durably.

    A producer may also offer ``produce_async(records) -> concurrent.futures.Future[None]``:
    the same contract as ``produce``, but it returns at once, without blocking (it is called
    on the collector's event loop), and the future is done when ``produce`` would have
    returned. The group commit uses it when present (Kafka), else runs ``produce`` on its
    writer thread (the embedded log)."""

    @property
    def source(self) -> str:
        """Name of the stream written to (``log`` or the Kafka topic)."""
        ...

    @property
    def partitions(self) -> int:
        """Partitions of the stream. With more than one, the collector routes each record by
        visitor: the record's key is the 4-byte big-endian index of the partition it belongs
        in (the producer maps it onto the stream's partitions, modulo their count)."""
        ...

    def produce(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Append ``(key, value)`` records; return only when all are durable.

        Raises TransportError when they could not be made durable; then none may be
        acknowledged (some may still have been written: consumers see them, and the
        client retries, which dedupe absorbs).
        """
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


class RebalanceListener(Protocol):
    """Told when partitions are taken from or given to a consumer (Kafka group rebalance)."""

    def on_revoked(self, partitions: set[int]) -> None:
        """Partitions about to be taken away: flush and commit, or abandon, their work."""
        ...

    def on_assigned(self, partitions: set[int]) -> None:
        """Partitions just given: decide where to resume them (``Consumer.seek``)."""
        ...


class Consumer(Protocol):
    """Reads records of a consumer group, at least once, in offset order per partition."""

    @property
    def source(self) -> str:
        """Name of the stream read from (the ``source`` column of the lake's rows)."""
        ...

    @property
    def stream_id(self) -> str:
        """Identity of the stream whose offsets the lake records: the Kafka topic, or the
        embedded log file (a log created anew restarts its offsets, so it is a new stream)."""
        ...

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records past the current position; empty after ``timeout_s``."""
        ...

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit, per partition, the next offset to read. Raises TransportError on failure."""
        ...

    def rewind(self, partition: int) -> None:
        """Read ``partition`` again from its committed offset."""
        ...

    def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` on (the first record kept, if it was trimmed)."""
        ...

    def committed(self, partition: int) -> int | None:
        """The committed next offset of a partition, None when nothing was committed."""
        ...

    def lag(self) -> int:
        """Records produced but not yet committed by this group, over assigned partitions."""
        ...

    def partition_lag(self) -> dict[int, int]:
        """:meth:`lag` of each assigned partition."""
        ...

    def close(self) -> None:
        """Leave the group and release resources (does not commit)."""
        ...
