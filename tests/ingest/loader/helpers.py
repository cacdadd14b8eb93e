"""What the protocol adapter tests share: hits framed as the collector frames them, and one
pass of the real loader pipeline over them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from ingest.loader.pipeline import BatchTables, Pipeline
from ingest.transport.base import Record
from schemas.envelope import encode_bundle, encode_frame

_offsets = iter(range(1, 10**9))


def envelope(protocol: str, body: bytes, path: str, query: str = "", method: str = "POST",
             headers: Mapping[str, str] | None = None, tenant: str = "acme") -> bytes:
    """One hit as the collector's envelope frame, received now from 203.0.113.7."""
    header = {"v": 1, "tenant": tenant, "received_at": time.time_ns() // 1000,
              "protocol": protocol, "method": method, "path": path, "query": query,
              "headers": dict(headers or {}), "ip": "203.0.113.7"}
    return encode_frame(header, body)


def run(pipeline: Pipeline, *frames: bytes) -> BatchTables:
    """The frames as one transport record (a fresh offset each time) through ``pipeline``."""
    return pipeline.process([Record(0, next(_offsets), encode_bundle(list(frames)))], "log")


def events(out: BatchTables) -> list[dict[str, Any]]:
    """The batch's events in the order they were sent."""
    return sorted(out.events.to_pylist(), key=lambda r: (r["source_index"], r["item_index"]))


def only(table: pa.Table) -> dict[str, Any]:
    """The one row of ``table``."""
    rows: list[dict[str, Any]] = table.to_pylist()
    assert len(rows) == 1, rows
    return rows[0]
