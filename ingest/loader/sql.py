"""Helpers to build the loader's DuckDB SQL from the schema models (one source of truth)."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from schemas.columns import sql_type
from schemas.event import EVENT_SCHEMA
from schemas.quarantine import QUARANTINE_SCHEMA
from schemas.raw import RAW_SCHEMA
from schemas.sql import quote
from schemas.version import PIPELINE_VERSION

__all__ = ["LINEAGE", "QUARANTINE_FROM_HIT", "select_columns", "select_events",
           "select_quarantine", "select_raw", "select_rejected"]


def select_columns(schema: pa.Schema, exprs: Mapping[str, str]) -> str:
    """``expr::TYPE AS col, ...`` for every column of ``schema``, NULL where ``exprs`` has none."""
    unknown = set(exprs) - set(schema.names)
    if unknown:
        raise KeyError(f"not columns of the schema: {sorted(unknown)}")
    parts = []
    for f in schema:
        expr = exprs.get(f.name, "NULL")
        parts.append(f"CAST({expr} AS {sql_type(f.type)}) AS {f.name}")
    return ",\n       ".join(parts)


def select_events(exprs: Mapping[str, str]) -> str:
    """Select list producing canonical event columns."""
    return select_columns(EVENT_SCHEMA, exprs)


def select_quarantine(exprs: Mapping[str, str]) -> str:
    """Select list producing quarantine columns."""
    return select_columns(QUARANTINE_SCHEMA, exprs)


def select_raw(exprs: Mapping[str, str]) -> str:
    """Select list producing raw archive columns."""
    return select_columns(RAW_SCHEMA, exprs)


LINEAGE = {
    "source": "source",
    "source_partition": "source_partition",
    "source_offset": "source_offset",
    "source_index": "source_index",
}
"""Lineage columns, copied from the hit the row came from."""

QUARANTINE_FROM_HIT: dict[str, str] = {
    "tenant": "tenant", "received_at": "received_at", "protocol": "protocol", **LINEAGE,
    "pipeline_version": quote(PIPELINE_VERSION),
}
"""Quarantine columns every adapter copies from the hit."""


def select_rejected(hits: str, parsed: str, hit_payload: str,
                    event: Mapping[str, str]) -> str:
    """The quarantine rows of an adapter's two stages.

    Hits rejected whole (``hit_q`` set on a row of ``hits``, the payload ``hit_payload``),
    then events rejected one by one (``q`` set on a row of ``parsed``; ``event`` gives at
    least the payload, and may give the event id).
    """
    hit = select_quarantine({**QUARANTINE_FROM_HIT, "reason": "hit_q.reason",
                             "detail": "hit_q.detail", "payload": hit_payload})
    one = select_quarantine({**QUARANTINE_FROM_HIT, "reason": "q.reason", "detail": "q.detail",
                             "item_index": "item_index", **event})
    return (f"SELECT {hit} FROM {hits} WHERE hit_q IS NOT NULL\n"
            f"UNION ALL SELECT {one} FROM {parsed} WHERE q IS NOT NULL")
