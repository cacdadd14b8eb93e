"""Build small real lakes for analytics tests: canonical rows written as lake Parquet files."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.event import EVENT_SCHEMA
from schemas.lake import FileName, partition_dir
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


def write_events(lake: Path, rows: Iterable[dict[str, Any]], writer: str = "test") -> list[Path]:
    """Write rows into the lake, one file per (tenant, UTC date of received_at)."""
    groups: dict[tuple[str, dt.date], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["tenant"], row["received_at"].date()), []).append(row)
    paths = []
    for (tenant, date), group in sorted(groups.items()):
        directory = partition_dir(lake, "events", tenant, date)
        directory.mkdir(parents=True, exist_ok=True)
        offsets = [r["source_offset"] for r in group]
        name = FileName("log", 0, min(offsets), max(offsets), writer)
        path = directory / str(name)
        pq.write_table(pa.Table.from_pylist(group, schema=EVENT_SCHEMA), path)
        paths.append(path)
    return paths
