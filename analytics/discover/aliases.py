"""JSON paths that only repeat a column: ``context.page.url`` of ``page_url``,
``properties.product_id`` of ``product_id``.

The loader maps the well-known fields of each protocol to columns and keeps the payload's
JSON as it came, so the same value is often logged twice. A path is a candidate copy of a
column when their names match (the path's snake_case spelling or last segment is the
column, or ends it: ``properties.price`` and ``price``) or the pair is a known protocol
mapping (:data:`KNOWN`); it *is* a copy when, on the events where the path has a value,
the column holds the same value (at least :data:`AGREEMENT` of them). Checked on a sample
of at most :data:`SAMPLE_ROWS` events, in one scan.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import duckdb

from analytics.discover.prefix import field_exprs, unaddressable
from analytics.discover.report import FieldStats
from schemas.sql import quote_ident

KNOWN: Final[dict[str, str]] = {
    "context.page.referrer": "referrer", "context.userAgent": "user_agent",
    "context.locale": "language", "context.campaign.source": "utm_source",
    "context.campaign.medium": "utm_medium", "context.campaign.name": "utm_campaign",
    "context.campaign.term": "utm_term", "context.campaign.content": "utm_content",
    "properties.query": "search_query", "properties.category": "product_category",
    "properties.name": "product_name", "properties.url": "page_url",
    "properties.path": "page_path", "properties.title": "page_title",
    "properties.referrer": "referrer",
}
"""Segment-style payload fields and the columns the loader fills from them."""
AGREEMENT: Final = 0.98
SAMPLE_ROWS: Final = 200_000
_COMPARABLE = frozenset({"VARCHAR", "BOOLEAN", "DOUBLE", "FLOAT", "BIGINT", "INTEGER",
                         "SMALLINT", "DECIMAL"})


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def candidates(paths: Sequence[FieldStats],
               columns: dict[str, str]) -> list[tuple[FieldStats, str]]:
    """(path, column) pairs whose names say they might hold the same value."""
    out = []
    for f in paths:
        if "[" in f.field or f.path is None:
            continue
        segments = [_snake(s) for s in f.field.split(".")[1:]]
        if not segments:  # the whole document is a scalar ("promo"): no name to compare
            continue
        joined, last = "_".join(segments), segments[-1]
        for col, sql_type in columns.items():
            if sql_type.split("(")[0] not in _COMPARABLE:
                continue
            if (KNOWN.get(f.field) == col or col in (joined, last)
                    or col.endswith("_" + joined)):
                out.append((f, col))
    return out


def find_aliases(con: duckdb.DuckDBPyConnection, scope: str, params: dict[str, Any],
                 paths: Sequence[FieldStats], columns: dict[str, str]) -> dict[str, str]:
    """JSON field name -> the column it copies, among the candidate pairs (those DuckDB's
    JSON functions can read: not under a key logged as ``""``)."""
    pairs = candidates(paths, columns)
    unreadable = unaddressable(con, sorted({f.path for f, _ in pairs if f.path is not None}))
    pairs = [(f, col) for f, col in pairs if f.path not in unreadable]
    if not pairs:
        return {}
    wanted = list({f.field: f for f, _ in pairs}.values())
    lists, exprs = field_exprs(wanted)
    index = {f.field: i for i, f in enumerate(wanted)}
    aggs = []
    for f, col in pairs:
        v = f"p{index[f.field]}"
        numeric = columns[col].split("(")[0] not in ("VARCHAR", "BOOLEAN")
        same = (f"TRY_CAST({v} AS DOUBLE) = {quote_ident(col)}" if numeric
                else f"{v} = CAST({quote_ident(col)} AS VARCHAR)")
        aggs += [f"count({v})", f"sum(CASE WHEN {same} THEN 1 ELSE 0 END)"]
    sql = (f"SELECT {', '.join(aggs)} FROM (SELECT *, "
           f"{', '.join(f'{e} AS p{i}' for i, e in enumerate(exprs))} "
           f"FROM (SELECT *, {', '.join(lists)} FROM {scope} LIMIT {SAMPLE_ROWS}))")
    row = con.execute(sql, params).fetchall()[0]
    out: dict[str, str] = {}
    for k, (f, col) in enumerate(pairs):
        filled, agreeing = int(row[2 * k] or 0), int(row[2 * k + 1] or 0)
        if filled and agreeing >= AGREEMENT * filled and f.field not in out:
            out[f.field] = col
    return out
