"""Prototype (issue 14): parse Segment items in Python (orjson) instead of DuckDB expressions.

    .venv/bin/python bench/segment_decode.py [--sessions 4000] [--passes 5]

Not used by the loader: a measurement, kept with its figures (bench/loader_results.md,
"Decoding Segment items outside DuckDB"). On one flush of each bench/loader.py workload
(simulated traffic, 50-event Segment batches), pinned to one core, DuckDB on one thread, it
times (CPU seconds, best of ``--passes``) the Segment adapter as it is against a fast path
that does the adapter's per-item work in Python and keeps DuckDB for the rest:

- Python: ``orjson.loads`` of each body; the type checks of the adapter's validation in
  Python; the JSON text of ``properties``, ``traits``, ``context``, a batch item and the
  ``extra`` remainder from ``orjson.dumps``. That text is the text DuckDB renders (yyjson)
  only when the body holds no ``\\u`` escape (orjson writes ``\\u001f`` where yyjson writes
  ``\\u001F``), no number that either side writes with an exponent (orjson ``1e-6``,
  yyjson ``0.000001``; a big integer orjson reads as a float) and no duplicate key (orjson
  keeps the last, yyjson both: the body's ``:`` count must equal the rendered text's).
  Any other hit is left to the SQL adapter.
- Arrow columns built from those lists, read by DuckDB (a registered table), which keeps
  the checks that need it (identity after the dn.js envelope id, ISO-8601 timestamps) and
  the event columns (the typed context and properties transforms, products, session).

It checks that the fast path's events equal the adapter's, column by column, and prints
both times and the share of each part of the fast path.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402

from ingest.loader.protocols import Limits  # noqa: E402
from ingest.loader.protocols import segment as S  # noqa: E402
from ingest.paths import SEGMENT_TYPES  # noqa: E402

_SCALARS = ("type", "event", "messageId", "anonymousId", "userId", "timestamp",
            "originalTimestamp", "sentAt", "groupId", "previousId")
_OBJECTS = ("properties", "traits", "context")
_MAPPED = frozenset(S.MAPPED_FIELDS)
_TYPES = frozenset(SEGMENT_TYPES)
_BATCH_PATHS = frozenset(S.BATCH_PATHS)
_EXPONENT = re.compile(rb"[:,\[]-?[0-9]+(?:\.[0-9]+)?e")


def _rendered(value: Any) -> bytes | None:
    """orjson's text of ``value``, or None when yyjson may write it otherwise."""
    text = orjson.dumps(value)
    if (b"e-" in text or b"e+" in text) and _EXPONENT.search(text):
        return None
    return text


Row = tuple[Any, ...]


def fast_items(body: bytes | None, method: str, path: str, max_bytes: int,
               max_items: int) -> list[Row] | None:
    """The items of one hit as the SQL adapter would parse them, or None for the SQL path."""
    if body is None or method == "GET" or b"\\u" in body:
        return None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    colons = 0
    batch_ctx = batch_sent = None
    single = not (path in _BATCH_PATHS or "batch" in obj)
    if single:
        items = [obj]
    else:
        items = obj.get("batch")
        if type(items) is not list or not items or len(items) > max_items:
            return None
        for key, value in obj.items():
            if key != "batch":
                text = _rendered(value)
                if text is None:
                    return None
                colons += 1 + text.count(b":")
        colons += 1
        ctx = obj.get("context")
        batch_ctx = orjson.dumps(ctx).decode() if type(ctx) is dict else None
        batch_sent = obj.get("sentAt")
        if batch_sent is not None and type(batch_sent) is not str:
            return None
    rows: list[Row] = []
    for index, item in enumerate(items):
        if type(item) is not dict:
            return None
        values = [item.get(f) for f in _SCALARS]
        for v in values:
            if v is not None and type(v) is not str:
                return None
        etype = values[0] if values[0] is not None else (
            S.PATH_TYPES.get(path) if single else None)
        if etype not in _TYPES:
            return None
        if etype == "track" and not values[1]:
            return None
        if (etype == "alias" and values[9] is None) or (etype == "group" and values[8] is None):
            return None
        objects: list[str | None] = []
        for f in _OBJECTS:
            value = item.get(f)
            if value is None:
                objects.append(None)
                continue
            if type(value) is not dict:
                return None
            text = _rendered(value)
            if text is None:
                return None
            objects.append(text.decode())
        rendered = _rendered(item)
        if rendered is None:
            return None
        colons += rendered.count(b":")
        if (len(body) if single else len(rendered)) > max_bytes:
            return None
        item_text = body.decode() if single else rendered.decode()
        extra = None
        if not _MAPPED.issuperset(item):
            rest = {k: v for k, v in item.items() if k not in _MAPPED}
            extra = orjson.dumps(rest).decode()
        rows.append((index, etype, *values[1:], *objects, item_text, extra, batch_ctx,
                     batch_sent))
    if colons != body.count(b":"):
        return None
    return rows


_ROW_FIELDS = ("item_index", "etype", *_SCALARS[1:], *_OBJECTS, "item", "extra_text",
               "batch_ctx", "batch_sent")
_HIT_COLS = ("tenant", "received_at", "protocol", "path", "hv", "ip", "source",
             "source_partition", "source_offset", "source_index")
_E_FIELDS = ("type", *_SCALARS[1:], *_OBJECTS)

_FAST_SQL = f"""
CREATE OR REPLACE TEMP TABLE seg_parsed AS
SELECT *, CASE
      WHEN coalesce(anon, '') = '' AND coalesce(e.userId, '') = ''
        THEN {S.reject(S.PROTOCOL, S.quote("anonymousId or userId is required"))}
      WHEN e.timestamp IS NOT NULL AND try_cast(e.timestamp AS TIMESTAMPTZ) IS NULL
        THEN {S.reject(S.SCHEMA, "'timestamp is not an ISO-8601 date: ' || e.timestamp")}
      WHEN e.originalTimestamp IS NOT NULL
           AND try_cast(e.originalTimestamp AS TIMESTAMPTZ) IS NULL
        THEN {S.reject(S.SCHEMA, "'originalTimestamp is not an ISO-8601 date: ' || "
                                 "e.originalTimestamp")}
      WHEN e.sentAt IS NOT NULL AND try_cast(e.sentAt AS TIMESTAMPTZ) IS NULL
        THEN {S.reject(S.SCHEMA, "'sentAt is not an ISO-8601 date: ' || e.sentAt")}
    END AS q
FROM (SELECT *, {S._ANON} AS anon FROM seg_fast);
"""


def fast_parse(con: duckdb.DuckDBPyConnection, hits: str, limits: Limits,
               parts: dict[str, float]) -> pa.Table:
    """The events of the hits: the fast path's, then the SQL adapter's of the hits it left
    (their quarantine is not compared: the prototype builds no quarantine rows)."""
    clock = time.process_time
    t0 = clock()
    table = con.sql(f"SELECT {', '.join(_HIT_COLS[:4])}, {S._HEADER_VALUES} AS hv, "
                    f"{', '.join(_HIT_COLS[5:])}, method, body FROM {hits}").to_arrow_table()
    bodies = table["body"].to_pylist()
    methods = table["method"].to_pylist()
    paths = table["path"].to_pylist()
    t1 = clock()
    gc.disable()  # the parse makes many dicts and no cycle: no collection is worth its time
    take: list[int] = []
    slow: list[int] = []
    rows: list[Row] = []
    for i, body in enumerate(bodies):
        got = fast_items(body, methods[i], paths[i], limits.max_event_bytes,
                         limits.max_batch_items)
        if got is None:
            slow.append(i)
            continue
        take.extend([i] * len(got))
        rows.extend(got)
    gc.enable()
    t2 = clock()
    columns = dict(zip(_ROW_FIELDS, zip(*rows, strict=True), strict=True))
    fast = table.select(list(_HIT_COLS)).take(pa.array(take, pa.int64()))
    e = pa.StructArray.from_arrays(
        [pa.array(columns["etype" if f == "type" else f], pa.string()) for f in _E_FIELDS],
        names=list(_E_FIELDS))
    for name in ("item_index", "etype", "item", "extra_text", "batch_ctx", "batch_sent"):
        fast = fast.append_column(name, pa.array(columns[name],
                                                 pa.int32() if name == "item_index"
                                                 else pa.string()))
    fast = fast.append_column("e", e)
    t3 = clock()
    con.register("seg_fast", fast)
    try:
        con.execute(_FAST_SQL)
        con.execute(S._STAGES[S._STAGES.index("CREATE OR REPLACE TEMP VIEW seg_ok"):])
        events_sql = S._EVENTS_SQL.replace(S._EVENTS["extra"], "extra_text")
        events = con.sql(events_sql).to_arrow_table()
    finally:
        con.unregister("seg_fast")
    t4 = clock()
    # The hits the fast path left: the SQL adapter, as it is.
    keys = table.select(["source_partition", "source_offset", "source_index"]).take(
        pa.array(slow, pa.int64()))
    con.register("slow_keys", keys)
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW slow_hits AS SELECT * FROM {hits} "
                    "SEMI JOIN slow_keys USING (source_partition, source_offset, source_index)")
        rest = S.SegmentAdapter().parse(con, "slow_hits", limits)
    finally:
        con.unregister("slow_keys")
    t5 = clock()
    for label, seconds in (("fetch hits", t1 - t0), ("python parse", t2 - t1),
                           ("arrow columns", t3 - t2), ("sql checks + events", t4 - t3),
                           (f"SQL adapter on the {len(slow)} hits left", t5 - t4)):
        parts[label] = parts.get(label, 0.0) + seconds
    return pa.concat_tables([events, rest.events])


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("source_partition", "ascending"), ("source_offset", "ascending"),
                          ("source_index", "ascending"), ("item_index", "ascending")])


def run(workload: str, records: list[tuple[int, int, bytes]], passes: int) -> None:
    from ingest.loader import pipeline as P
    from ingest.transport.base import Record

    con = duckdb.connect(config={"threads": 1})
    decoded = P.decode_records([Record(p, o, v) for p, o, v in records], "log")
    con.register("hits", decoded.hits)
    con.execute(P._RAW_SQL)
    raw = con.sql(f"SELECT {P._RAW_SELECT} FROM raw_all WHERE header_ok",
                  params={"source": "log"}).to_arrow_table()
    con.unregister("hits")
    con.register("raw_batch", raw)
    con.execute("CREATE TEMP TABLE adapter_hits AS SELECT * FROM raw_batch "
                "WHERE protocol IN ('segment', 'rudderstack', 'jitsu', 'dn')")
    limits = Limits(1_000_000, 1_000)
    adapter = S.SegmentAdapter()

    def best(fn: Callable[[], Any]) -> tuple[float, Any]:
        fn()
        times = []
        result = None
        for _ in range(passes):
            gc.collect()
            started = time.process_time()
            result = fn()
            times.append(time.process_time() - started)
        return min(times), result

    sql_s, parsed = best(lambda: adapter.parse(con, "adapter_hits", limits))
    parts: dict[str, float] = {}
    fast_s, events = best(lambda: fast_parse(con, "adapter_hits", limits, parts))
    share = ", ".join(f"{k} {v / (passes + 1):.3f}" for k, v in parts.items())
    reference = _sorted(parsed.events)
    mine = _sorted(events)
    differing = [name for name in reference.column_names
                 if not reference[name].equals(mine[name])]
    n = con.execute("SELECT count(*) FROM adapter_hits").fetchone()
    print(f"{workload}: {n[0] if n else 0} Segment hits, {parsed.events.num_rows} events, "
          f"{parsed.quarantine.num_rows} quarantined")
    print(f"  SQL adapter  {sql_s:.3f} s")
    floor = fast_s - parts["python parse"] / (passes + 1)
    same = not differing and mine.num_rows == reference.num_rows
    print(f"  fast path    {fast_s:.3f} s  ({fast_s / sql_s:.2f}x; mean parts: {share})")
    print(f"  fast path without its Python parse (the floor of any decoder): ~{floor:.3f} s "
          f"({floor / sql_s:.2f}x)")
    print(f"  same events: {'yes' if same else differing}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=4000, help="simulated sessions")
    parser.add_argument("--passes", type=int, default=5, help="measured passes (best counts)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from bench.loader import build

    workloads = build(args.sessions)
    for workload in ("enrichment off", "segment batches"):
        records = workloads[workload][:1000]
        run("simulated traffic" if workload == "enrichment off" else workload, records,
            args.passes)


if __name__ == "__main__":
    main()
