"""Transport records -> the ``hits`` table: one row per envelope, header still JSON text.

This is the only per-envelope Python of the loader (splitting bundles); everything after it
is vectorised in DuckDB and Arrow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from ingest.transport.base import Record
from schemas.envelope import EnvelopeError, iter_frames
from schemas.lake import UNATTRIBUTED_TENANT
from schemas.quarantine import ReasonCode
from schemas.version import PIPELINE_VERSION

HITS_SCHEMA = pa.schema([
    ("hdr", pa.string()),
    ("body", pa.binary()),
    ("source_partition", pa.int32()),
    ("source_offset", pa.int64()),
    ("source_index", pa.int32()),
])


@dataclass
class Decoded:
    """Hits of a batch, plus quarantine rows for records that are not driftnet bundles."""

    hits: pa.Table
    corrupt: list[dict[str, object]] = field(default_factory=list)


def decode_records(records: Sequence[Record], source: str) -> Decoded:
    """Split bundles into envelopes."""
    hdrs: list[bytes] = []
    bodies: list[bytes] = []
    partitions: list[int] = []
    offsets: list[int] = []
    indexes: list[int] = []
    corrupt: list[dict[str, object]] = []
    for record in records:
        n = len(hdrs)
        try:
            for i, (hdr, body) in enumerate(iter_frames(record.value)):
                try:
                    hdr.decode("utf-8")  # the header table is text: refuse the record here
                except UnicodeDecodeError as exc:
                    raise EnvelopeError(f"envelope header {i} is not UTF-8: {exc}") from exc
                hdrs.append(hdr)
                bodies.append(body)
                indexes.append(i)
        except EnvelopeError as exc:
            del hdrs[n:], bodies[n:], indexes[n:]
            corrupt.append(_corrupt_row(record, source, str(exc)))
            continue
        count = len(hdrs) - n
        partitions.extend([record.partition] * count)
        offsets.extend([record.offset] * count)
    hits = pa.table(
        [
            pa.array(hdrs, pa.binary()).cast(pa.string()),
            pa.array(bodies, pa.binary()),
            pa.array(partitions, pa.int32()),
            pa.array(offsets, pa.int64()),
            pa.array(indexes, pa.int32()),
        ],
        schema=HITS_SCHEMA,
    )
    return Decoded(hits, corrupt)


def _corrupt_row(record: Record, source: str, detail: str) -> dict[str, object]:
    return {
        "tenant": UNATTRIBUTED_TENANT,
        "received_at": dt.datetime.now(dt.UTC),
        "reason": ReasonCode.TRANSPORT.value,
        "detail": detail,
        "protocol": "unknown",
        "event_id": None,
        "payload": record.value,
        "source": source,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "source_index": 0,
        "item_index": None,
        "pipeline_version": PIPELINE_VERSION,
    }
