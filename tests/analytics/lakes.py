"""Build small real lakes for analytics tests: canonical rows committed to the Delta tables."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from ingest.lake.writer import append_rows
from schemas.event import EVENT_SCHEMA
from schemas.storage import LakeLocation
from schemas.version import PIPELINE_VERSION

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
_ids = itertools.count()


def at(minutes: float) -> dt.datetime:
    """T0 plus ``minutes``."""
    return T0 + dt.timedelta(minutes=minutes)


def event(tenant: str = "acme", minute: float = 0.0, **fields: Any) -> dict[str, Any]:
    """A canonical event row; ``minute`` sets the timestamps, ``fields`` override columns."""
    n = next(_ids)
    ts = at(minute)
    row: dict[str, Any] = {
        "tenant": tenant, "event_id": f"e{n}", "event_type": "track",
        "event_name": "Product Viewed", "protocol": "segment", "client_ts": ts, "sent_ts": ts,
        "received_at": ts, "derived_ts": ts, "anonymous_id": "a1", "source": "log",
        "source_partition": 0, "source_offset": n, "source_index": 0, "item_index": 0,
        "pipeline_version": PIPELINE_VERSION,
    }
    row.update(fields)
    return row


def write_events(lake: Path, rows: Iterable[dict[str, Any]]) -> list[str]:
    """Commit rows to the lake's events table, one file per (tenant, UTC date); the files'
    paths relative to the lake."""
    table = pa.Table.from_pylist(list(rows), schema=EVENT_SCHEMA)
    written = append_rows(LakeLocation.parse(lake), "events", table)
    return [f"events/{w.path}" for w in written]
