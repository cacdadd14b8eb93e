"""Rows of the three lake tables for lake tests (canonical schemas, lineage filled in)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pyarrow as pa

from schemas.lake import ROW_SCHEMAS, Table
from schemas.version import PIPELINE_VERSION

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def raw_row(tenant: str, offset: int, received_at: dt.datetime = NOW, *, partition: int = 0,
            body: bytes | None = None, anonymous_id: str = "a1") -> dict[str, Any]:
    """One hit of the raw table."""
    return {
        "tenant": tenant, "received_at": received_at, "envelope_version": 1,
        "protocol": "segment", "method": "POST", "path": "/v1/track", "query": "",
        "headers": "{}", "ip": "203.0.113.0",
        "body": body or orjson.dumps({"type": "track", "event": "X",
                                      "anonymousId": anonymous_id,
                                      "messageId": f"m-{partition}-{offset}"}),
        "source": "log", "source_partition": partition, "source_offset": offset,
        "source_index": 0,
    }


def event_row(tenant: str, offset: int, received_at: dt.datetime = NOW, *, partition: int = 0,
              anonymous_id: str = "a1", **fields: Any) -> dict[str, Any]:
    """One event, from the hit ``raw_row`` with the same arguments builds."""
    row = {name: None for name in ROW_SCHEMAS["events"].names}
    row.update({
        "tenant": tenant, "event_id": f"m-{partition}-{offset}", "event_type": "track",
        "event_name": "X", "protocol": "segment", "received_at": received_at,
        "derived_ts": received_at, "anonymous_id": anonymous_id, "is_duplicate": False,
        "source": "log", "source_partition": partition, "source_offset": offset,
        "source_index": 0, "item_index": 0, "pipeline_version": PIPELINE_VERSION,
    })
    row.update(fields)
    return row


def quarantine_row(tenant: str, offset: int, received_at: dt.datetime = NOW, *,
                   partition: int = 0, payload: bytes = b"{", detail: str = "not JSON"
                   ) -> dict[str, Any]:
    """One quarantined hit."""
    return {
        "tenant": tenant, "received_at": received_at, "reason": "payload_format",
        "detail": detail, "protocol": "segment", "event_id": None, "payload": payload,
        "source": "log", "source_partition": partition, "source_offset": offset,
        "source_index": 0, "item_index": None, "pipeline_version": PIPELINE_VERSION,
    }


def table(name: Table, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as an Arrow table of ``name``'s schema."""
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMAS[name])


def batch(tenant_offsets: list[tuple[str, int]], received_at: dt.datetime = NOW,
          partition: int = 0, quarantined: bool = False) -> dict[Table, pa.Table]:
    """A batch's three tables: one hit and one event (or quarantine row) per offset."""
    raw = [raw_row(t, o, received_at, partition=partition) for t, o in tenant_offsets]
    if quarantined:
        events: list[dict[str, Any]] = []
        quarantine = [quarantine_row(t, o, received_at, partition=partition)
                      for t, o in tenant_offsets]
    else:
        events = [event_row(t, o, received_at, partition=partition) for t, o in tenant_offsets]
        quarantine = []
    return {"raw": table("raw", raw), "events": table("events", events),
            "quarantine": table("quarantine", quarantine)}
