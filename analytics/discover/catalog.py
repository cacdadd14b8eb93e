"""The field catalog: every column and every JSON path ever logged, with its statistics.

Set-at-a-time in DuckDB, a handful of scans whatever the number of fields:

1. columns but the JSON ones, in one scan: per event name and day events, filled, first
   and last seen (so fill over time and first/last seen come from one small grouped
   table); per event name and overall approximate distinct counts (HyperLogLog);
2. columns: top values, one UNPIVOT scan of the columns with few enough distinct values
   (on a sample past ``top_values_sample_rows`` events);
3. JSON: one scan groups the documents of ``items``, ``properties``, ``traits``,
   ``context`` and ``extra`` by (event name, day, text); ``json_tree`` flattens each
   distinct text once into (path, type, value) leaves, array indices folded to ``[*]``.
   Filled, types and first/last seen per path come from the texts' shapes (their leaves'
   paths and types: far fewer than texts), distinct counts and top values (exact) from
   each event name's distinct texts; the JSON columns' own figures from the documents;
4. JSON paths that copy a column: aliases.py, one scan of at most 200k events.

No Python runs per event; Python only shapes the aggregated rows into the report.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb

from analytics.discover.aliases import find_aliases
from analytics.discover.options import DiscoverOptions
from analytics.discover.report import Catalog, FieldStats, FillPoint, Source, ValueCount
from schemas.columns import json_columns
from schemas.event import CanonicalEvent
from schemas.sql import quote, quote_ident

JSON_SOURCES: tuple[str, ...] = ("items", *json_columns(CanonicalEvent))
"""Columns whose documents are catalogued path by path: the JSON text columns, and
``items`` (a list of structs). Read as ``TRY_CAST(c AS JSON)``; invalid text is skipped."""

JSON_TYPES = {"VARCHAR": "string", "BIGINT": "integer", "UBIGINT": "integer",
              "DOUBLE": "number", "BOOLEAN": "boolean", "NULL": "null"}
"""json_tree type names -> JSON type names shown in the catalog."""
MAX_VALUE_CHARS = 200
"""Values are cut to this length before counting (a top value is a label, not a payload)."""

Key = tuple[str, str | None]  # (field, event_name)


def _scope(opts: DiscoverOptions, fraction: float = 1.0) -> tuple[str, dict[str, Any]]:
    where, params = opts.where()
    # Row by row (bernoulli), not whole vectors (system): a lake's row groups are
    # clustered in time and visitors, and a small lake may be a single row group.
    sample = f" USING SAMPLE {100 * fraction:.6f} PERCENT (bernoulli, 42)" if fraction < 1 else ""
    return f"(SELECT * FROM events WHERE {where}{sample})", params


def _scaled(values: list[tuple[str, int]], fraction: float) -> list[tuple[str, int]]:
    return [(v, round(c / fraction)) for v, c in values]


def _rows(con: duckdb.DuckDBPyConnection, sql: str,
          params: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = con.sql(sql, params=params or None).to_arrow_table().to_pylist()
    return rows


def view_columns(con: duckdb.DuckDBPyConnection, view: str = "events") -> dict[str, str]:
    """Column -> SQL type of a view as the lake has it (files may predate new columns)."""
    rows = con.sql(f"DESCRIBE {view}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows if r[0] != "date"}


def _column_stats(con: duckdb.DuckDBPyConnection, scope: str, params: dict[str, Any],
                  columns: list[str]) -> tuple[list[dict[str, Any]],
                                               dict[str | None, dict[str, int]]]:
    """One scan: per (event name, day) events, filled, first and last seen of each column;
    per event name and overall, approximate distinct counts (one scan instead of two saved
    a third of their CPU time on 1M events)."""
    aggs = []
    for i, col in enumerate(columns):
        c = quote_ident(col)
        # CASE, not FILTER: DuckDB's filtered min/max is ~15x slower here.
        aggs += [f"count({c}) AS n{i}",
                 f"min(CASE WHEN {c} IS NOT NULL THEN received_at END) AS a{i}",
                 f"max(CASE WHEN {c} IS NOT NULL THEN received_at END) AS b{i}",
                 f"approx_count_distinct({c}) AS d{i}"]
    sql = (f"SELECT event_name, date, grouping(event_name) AS g_event, grouping(date) AS g_date, "
           f"count(*) AS events, min(derived_ts) AS t_min, max(derived_ts) AS t_max, "
           f"{', '.join(aggs)} FROM {scope} "
           "GROUP BY GROUPING SETS ((event_name, date), (event_name), ())")
    counts: list[dict[str, Any]] = []
    distinct: dict[str | None, dict[str, int]] = {}
    for row in _rows(con, sql, params):
        if not row["g_date"]:
            counts.append(row)
        else:
            name = None if row["g_event"] else row["event_name"]
            distinct[name] = {c: int(row[f"d{i}"]) for i, c in enumerate(columns)}
    return counts, distinct


def _top_values(con: duckdb.DuckDBPyConnection, counts_sql: str, k: int,
                params: dict[str, Any]) -> dict[Key, list[tuple[str, int]]]:
    """Top ``k`` values per (field, event name) and per field, from (field, event_name, v, n)."""
    sql = f"""
    WITH c AS ({counts_sql}),
    both_levels AS (
      SELECT field, event_name, v, n FROM c
      UNION ALL
      SELECT field, NULL, v, sum(n)::BIGINT FROM c GROUP BY field, v
    )
    SELECT field, event_name, v, n FROM both_levels
    QUALIFY row_number() OVER (PARTITION BY field, event_name ORDER BY n DESC, v) <= {int(k)}
    ORDER BY field, event_name, n DESC, v
    """
    out: dict[Key, list[tuple[str, int]]] = defaultdict(list)
    for row in _rows(con, sql, params):
        out[(row["field"], row["event_name"])].append((row["v"], int(row["n"])))
    return out


SAMPLED_ROWS = "__sampled_rows__"
"""A field of the column top values' counts whose one value is on every row: the events
sampled, per event name and overall."""


def _column_top_sql(scope: str, columns: list[str]) -> str:
    # One UNPIVOT scan beats one GROUP BY scan per column (measured 1.8 s vs 4 s on 1M rows).
    cast = ", ".join(f"left(CAST({quote_ident(c)} AS VARCHAR), {MAX_VALUE_CHARS}) AS "
                     f"{quote_ident(c)}" for c in columns)
    cast += f", '*' AS {quote_ident(SAMPLED_ROWS)}"
    return f"""
    SELECT field, _event AS event_name, v, count(*) AS n
    FROM (UNPIVOT (SELECT event_name AS _event, {cast} FROM {scope})
          ON COLUMNS(* EXCLUDE (_event)) INTO NAME field VALUE v)
    GROUP BY ALL"""


def _worth_top_values(filled: int, distinct: int, opts: DiscoverOptions) -> bool:
    """Top values of near-unique fields (ids, timestamps) are all 1s: skip their counting."""
    return filled > 0 and distinct <= opts.top_values_max_distinct and distinct * 2 <= filled


_DOCS = "discover_json_docs"
_TEXTS = "discover_json_texts"
_LEAVES = "discover_json_leaves"
_SHAPES = "discover_json_shapes"
_SHAPE_LEAVES = "discover_json_shape_leaves"
_TEMP_TABLES = (_DOCS, _TEXTS, _LEAVES, _SHAPES, _SHAPE_LEAVES)
_PATH_STEP = r'(\."(?:[^"\\]|\\.)*"|\.[^.\["]+|\[[0-9]+\])'
"""One step of a ``json_tree`` full key: a quoted key (which may hold ``[0]``), a plain key,
or an array index."""


def _json_docs_sql(scope: str) -> str:
    """(src, event_name, date, doc, w, a, b): each distinct document of a JSON source per
    event name and day, with how many events carry it and their first and last
    received_at. Payloads repeat a lot (a visitor's ``context``, a product's
    ``properties``): on 10M events, 20M documents are 1.8M per event name and day, and
    0.42M distinct texts. Grouped by the text itself: DuckDB's ``hash`` is no identity
    (on the 10M bench lake, 11 pairs of contexts differing in two digits share one)."""
    parts = []
    for src in JSON_SOURCES:
        text = f"to_json({quote_ident(src)})::VARCHAR" if src == "items" else quote_ident(src)
        parts.append(f"SELECT {quote(src)} AS src, event_name, date, received_at, "
                     f"{text} AS doc FROM {scope} WHERE {quote_ident(src)} IS NOT NULL")
    return f"""
    SELECT src, event_name, date, doc, count(*) AS w, min(received_at) AS a,
           max(received_at) AS b
    FROM ({" UNION ALL ".join(parts)})
    GROUP BY src, event_name, date, doc"""


def _flatten_json(con: duckdb.DuckDBPyConnection, scope: str, params: dict[str, Any]) -> None:
    """The JSON documents in scope, flattened once into temp tables:

    - ``_DOCS`` (src, event_name, date, h, w, a, b): :func:`_json_docs_sql`, each text
      replaced by its number ``h`` in ``_TEXTS`` (h, doc), the distinct texts;
    - ``_LEAVES`` (h, type, path, v): the leaves of each distinct text, array indices
      folded to ``[*]`` (only indices: a key that looks like one, ``"size[0]"``, stays
      itself); each text is flattened once whatever the event names and days it appears
      under;
    - ``_SHAPES`` (h, shape): a text's shape is its leaves' (type, path), with repeats, as
      the sum of an MD5-derived 64-bit number per distinct (type, path) (a multiset hash:
      the order of the leaves does not matter); thousands of texts share one (a visitor's
      context differs from another's in values, not paths), so the counts per path come
      from shapes;
    - ``_SHAPE_LEAVES`` (shape, type, path, k, lead): each shape's leaves, ``k`` times
      each; ``lead`` marks one non-null (type, path) per path of the shape, so that an event
      counts once as filled at a path however many array elements hold it (and whichever:
      a coupon on the second product only fills ``products[*].coupon`` too)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_DOCS} AS {_json_docs_sql(scope)}",
                params or None)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_TEXTS} AS "
                f"SELECT doc, row_number() OVER () AS h FROM (SELECT DISTINCT doc FROM {_DOCS})")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_DOCS} AS "
                f"SELECT * EXCLUDE (doc) FROM {_DOCS} JOIN {_TEXTS} USING (doc)")
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {_LEAVES} AS
    SELECT u.h, j.type,
           CASE WHEN NOT contains(j.fullkey, '[') THEN j.fullkey
                WHEN NOT contains(j.fullkey, '"')  -- no quoted key: every [n] is an index
                THEN regexp_replace(j.fullkey, '\\[[0-9]+\\]', '[*]', 'g')
                ELSE '$' || array_to_string(list_transform(
                       regexp_extract_all(j.fullkey, {quote(_PATH_STEP)}),
                       lambda s: CASE WHEN s[1] = '[' THEN '[*]' ELSE s END), '') END AS path,
           CASE WHEN j.type <> 'NULL'
                THEN left(json_extract_string(j.value, '$'), {MAX_VALUE_CHARS}) END AS v
    FROM {_TEXTS} u, json_tree(TRY_CAST(u.doc AS JSON)) j
    WHERE j.type NOT IN ('OBJECT', 'ARRAY')""")
    con.execute(f"DROP TABLE {_TEXTS}")
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {_SHAPES} AS
    SELECT h, sum(m) AS shape
    FROM {_LEAVES} JOIN (
      SELECT type, path, md5_number_upper(concat_ws(chr(31), type, path)) AS m
      FROM (SELECT DISTINCT type, path FROM {_LEAVES})
    ) USING (type, path)
    GROUP BY h""")
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {_SHAPE_LEAVES} AS
    SELECT *, type <> 'NULL' AND row_number() OVER (
                PARTITION BY shape, path ORDER BY type = 'NULL', type) = 1 AS lead
    FROM (SELECT s.shape, l.type, l.path, count(*) AS k
          FROM (SELECT shape, any_value(h) AS h FROM {_SHAPES} GROUP BY shape) s
          JOIN {_LEAVES} l USING (h)
          GROUP BY ALL)""")


def json_field_name(source: str, path: str) -> str:
    """``properties`` + ``$.a.b`` -> ``properties.a.b``; ``items`` + ``$[*].x`` ->
    ``items[*].x``."""
    return source + (path[1:] if path.startswith("$") else "." + path)


def _json_stats(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Per (source, path) and event name, overall, and per day: filled events, types,
    first and last seen (from shapes, weighted by events); per event name and overall,
    approximate distinct values (from each event name's distinct texts)."""
    type_sums = ", ".join(
        f"sum(CASE WHEN type = {quote(t)} THEN w * k ELSE 0 END)::BIGINT AS {_type_col(t)}"
        for t in JSON_TYPES)
    rows = _rows(con, f"""
    SELECT src, path, event_name, date,
           grouping(event_name) AS g_event, grouping(date) AS g_date,
           sum(CASE WHEN lead THEN w ELSE 0 END)::BIGINT AS filled,
           min(CASE WHEN type <> 'NULL' THEN a END) AS first_seen,
           max(CASE WHEN type <> 'NULL' THEN b END) AS last_seen,
           {type_sums}
    FROM (SELECT src, event_name, date, shape, sum(w) AS w, min(a) AS a, max(b) AS b
          FROM {_DOCS} JOIN {_SHAPES} USING (h) GROUP BY ALL)
    JOIN {_SHAPE_LEAVES} USING (shape)
    GROUP BY GROUPING SETS ((src, path, event_name), (src, path), (src, path, date))
    """, {})
    _utc(rows, ("first_seen", "last_seen"))
    distinct = {(r["src"], r["path"], None if r["g_event"] else r["event_name"]):
                int(r["distinct_values"]) for r in _rows(con, f"""
    SELECT src, path, event_name, grouping(event_name) AS g_event,
           approx_count_distinct(v) AS distinct_values
    FROM (SELECT DISTINCT src, event_name, h FROM {_DOCS}) JOIN {_LEAVES} USING (h)
    GROUP BY GROUPING SETS ((src, path, event_name), (src, path))""", {})}
    for row in rows:
        if row["g_date"]:
            name = None if row["g_event"] else row["event_name"]
            row["distinct_values"] = distinct.get((row["src"], row["path"], name), 0)
    return rows


def _utc(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Times of ``rows`` (in place) in UTC, whatever the session time zone that read them."""
    for row in rows:
        for key in keys:
            if row[key] is not None:
                row[key] = row[key].astimezone(dt.UTC)
    return rows


def _json_source_columns(con: duckdb.DuckDBPyConnection) -> tuple[
        list[dict[str, Any]], dict[str | None, dict[str, int]]]:
    """The JSON source columns' own figures, from their documents (the column scan skips
    these wide columns): events filled and first/last seen per (source, event name, day);
    distinct texts per event name and overall (exact)."""
    counts = _utc(_rows(con, f"SELECT src, event_name, date, sum(w)::BIGINT AS n, "
                             f"min(a) AS a, max(b) AS b FROM {_DOCS} GROUP BY ALL", {}),
                  ("a", "b"))
    distinct: dict[str | None, dict[str, int]] = defaultdict(dict)
    for r in _rows(con, f"""
        SELECT src, event_name, grouping(event_name) AS g_event, count(DISTINCT h) AS d
        FROM {_DOCS} GROUP BY GROUPING SETS ((src, event_name), (src))""", {}):
        distinct[None if r["g_event"] else r["event_name"]][r["src"]] = int(r["d"])
    return counts, distinct


def build_catalog(con: duckdb.DuckDBPyConnection, opts: DiscoverOptions) -> Catalog:
    """The catalog of the events in scope (``opts.event``, ``opts.since``, ``opts.until``);
    JSON paths that copy a column are listed as its aliases, not as fields."""
    scope, params = _scope(opts)
    types = view_columns(con)
    scanned = [c for c in types if c not in JSON_SOURCES]
    counts, distinct = _column_stats(con, scope, params, scanned)
    # The columns' top values read a seeded sample, which DuckDB reads on one thread: they
    # run beside the JSON pass, on a connection of its own (a cursor: same database, views
    # and settings but the session time zone, the host's: the JSON pass renders no time as
    # text, and the times it returns are turned to UTC, as the lake connection gives them).
    json_con = con.cursor()
    with ThreadPoolExecutor(1) as pool:
        column_tops = pool.submit(_column_tops, con, opts,
                                  (scanned, counts, dict(distinct.get(None, {}))), params)
        try:
            _flatten_json(json_con, scope, params)
            json_counts, json_distinct = _json_source_columns(json_con)
            for name, per_column in json_distinct.items():
                distinct.setdefault(name, {}).update(per_column)
            tops = column_tops.result()
            return _build((con, json_con), opts, (scope, params), types,
                          (counts, json_counts), (distinct, tops))
        finally:
            for table in _TEMP_TABLES:
                json_con.execute(f"DROP TABLE IF EXISTS {table}")
            json_con.close()


def _column_tops(con: duckdb.DuckDBPyConnection, opts: DiscoverOptions,
                 stats: tuple[list[str], list[dict[str, Any]], dict[str, int]],
                 params: dict[str, Any]) -> dict[Key, list[tuple[str, int]]]:
    """Top values of the columns worth them (:func:`_worth_top_values`), from the column
    scan's ``stats`` (columns, rows, overall distinct counts: a copy, as this runs in a
    thread). They are about what is common: past top_values_sample_rows events they are
    counted on a random sample of rows, which keeps their cost flat. Counts are scaled
    back by the events sampled over the events in scope, per event name: a sample's size
    varies (a sample of whole vectors scaled by the nominal fraction read a constant
    column as 92% on the 10M bench lake)."""
    scanned, counts, distinct = stats
    events: dict[str | None, int] = defaultdict(int)
    for row in counts:
        events[row["event_name"]] += row["events"]
        events[None] += row["events"]
    fraction = opts.top_values_sample_rows / events[None] if events[None] else 1.0
    fraction = fraction if fraction < 0.5 else 1.0  # a sample must save real work
    sample_scope, _ = _scope(opts, fraction)
    top_columns = [c for i, c in enumerate(scanned) if _worth_top_values(
        sum(row[f"n{i}"] or 0 for row in counts), distinct.get(c, 0), opts)]
    if not top_columns:
        return {}
    tops = _top_values(con, _column_top_sql(sample_scope, top_columns), opts.top_k, params)
    sampled = {name: values[0][1] for (field, name), values in tops.items()
               if field == SAMPLED_ROWS}
    return {(field, name): _scaled(values, sampled[name] / events[name])
            for (field, name), values in tops.items() if field != SAMPLED_ROWS}


def _build(cons: tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection],
           opts: DiscoverOptions, scoped: tuple[str, dict[str, Any]], types: dict[str, str],
           counts: tuple[list[dict[str, Any]], list[dict[str, Any]]],
           columns_figures: tuple[dict[str | None, dict[str, int]],
                                  dict[Key, list[tuple[str, int]]]]) -> Catalog:
    con, json_con = cons
    distinct, tops = columns_figures
    scope, params = scoped
    columns = list(types)
    scanned = [c for c in columns if c not in JSON_SOURCES]
    column_counts, json_counts = counts
    events_by_name: dict[str, int] = defaultdict(int)
    events_by_day: dict[dt.date, int] = defaultdict(int)
    filled: dict[Key, int] = defaultdict(int)
    first: dict[Key, dt.datetime] = {}
    last: dict[Key, dt.datetime] = {}
    fill_day: dict[str, dict[dt.date, int]] = defaultdict(lambda: defaultdict(int))
    t_min = min((r["t_min"] for r in column_counts if r["t_min"] is not None), default=None)
    t_max = max((r["t_max"] for r in column_counts if r["t_max"] is not None), default=None)

    def tally(col: str, name: str, day: dt.date, n: int | None, a: Any, b: Any) -> None:
        if not n:
            return
        fill_day[col][day] += n
        for key in ((col, name), (col, None)):
            filled[key] += n
            if a is not None:  # received_at is never NULL in the lake, but be safe
                first[key] = min(first.get(key, a), a)
                last[key] = max(last.get(key, b), b)

    for row in column_counts:
        name, day = row["event_name"], row["date"]
        events_by_name[name] += row["events"]
        events_by_day[day] += row["events"]
        for i, col in enumerate(scanned):
            tally(col, name, day, row[f"n{i}"], row[f"a{i}"], row[f"b{i}"])
    for row in json_counts:
        tally(row["src"], row["event_name"], row["date"], row["n"], row["a"], row["b"])
    total = sum(events_by_name.values())
    names = sorted(events_by_name, key=lambda n: (-events_by_name[n], n))

    def events_of(name: str | None) -> int:
        return total if name is None else events_by_name[name]

    fields: list[FieldStats] = []
    for col in columns:
        for name in [None, *names]:
            key = (col, name)
            if name is not None and not filled[key]:
                continue
            n = filled[key]
            fields.append(FieldStats(
                field=col, source="column", event_name=name,
                types={types[col]: n} if n else {}, events=events_of(name), filled=n,
                fill_rate=n / events_of(name) if events_of(name) else 0.0,
                distinct=distinct.get(name, {}).get(col, 0),
                top_values=[ValueCount(value=v, count=c, share=min(1.0, c / n))
                            for v, c in tops.get(key, [])],
                first_seen=first.get(key), last_seen=last.get(key),
            ))

    json_fields, json_fill = _json_catalog(json_con, opts, events_of)
    aliases = find_aliases(con, scope, params,
                           [f for f in json_fields if f.event_name is None], types)
    for f in fields:
        f.aliases = sorted(a for a, col in aliases.items() if col == f.field)
    fields += [f for f in json_fields if f.field not in aliases]
    fill_day.update({k: v for k, v in json_fill.items() if k not in aliases})
    days = sorted(events_by_day)
    fill_over_time = {  # in field order: the same lake gives the same report, byte for byte
        field: [FillPoint(date=d, events=events_by_day[d], filled=fill_day[field].get(d, 0))
                for d in days]
        for field in sorted(fill_day)
    }
    return Catalog(
        events=total,
        first_event=t_min, last_event=t_max,
        event_names={n: events_by_name[n] for n in names},
        fields=fields,
        fill_over_time=fill_over_time,
        aliases=dict(sorted(aliases.items())),
    )


def _json_catalog(
    con: duckdb.DuckDBPyConnection, opts: DiscoverOptions, events_of: Any,
) -> tuple[list[FieldStats], dict[str, dict[dt.date, int]]]:
    stats = _json_stats(con)
    fill_day: dict[str, dict[dt.date, int]] = defaultdict(dict)
    by_key: dict[Key, dict[str, Any]] = {}
    sources: dict[str, tuple[str, str]] = {}
    for row in stats:
        field = json_field_name(row["src"], row["path"])
        sources[field] = (row["src"], row["path"])
        if not row["g_date"]:
            fill_day[field][row["date"]] = int(row["filled"])
        elif row["g_event"]:
            by_key[(field, None)] = row
        else:
            by_key[(field, row["event_name"])] = row
    small = [sources[f] for (f, n), row in by_key.items()
             if n is None and _worth_top_values(row["filled"], row["distinct_values"], opts)]
    tops: dict[Key, list[tuple[str, int]]] = {}
    if small:
        # Counted exactly, not on a sample: each event name's distinct texts are few.
        wanted = ", ".join(f"({quote(s)}, {quote(p)})" for s, p in small)
        named = f"""
        SELECT src || chr(31) || path AS field, event_name, v, sum(w)::BIGINT AS n
        FROM (SELECT src, event_name, h, sum(w) AS w FROM {_DOCS} GROUP BY ALL)
        JOIN (  -- a value counts once per document: two array elements of X are one event
          SELECT DISTINCT h, path, v FROM {_LEAVES}
          WHERE v IS NOT NULL AND path IN (SELECT p FROM (VALUES {wanted}) t(s, p))
        ) USING (h)
        WHERE (src, path) IN (SELECT (s, p) FROM (VALUES {wanted}) t(s, p))
        GROUP BY ALL"""
        for (joined, name), values in _top_values(con, named, opts.top_k, {}).items():
            src, path = joined.split(chr(31), 1)
            tops[(json_field_name(src, path), name)] = values
    order = sorted(by_key, key=lambda k: (JSON_SOURCES.index(sources[k[0]][0]), k[0],
                                          k[1] is not None, k[1] or ""))
    fields = []
    for key in order:
        row = by_key[key]
        field, name = key
        n = int(row["filled"])
        src, path = sources[field]
        fields.append(FieldStats(
            field=field, source=_source(src), path=path, event_name=name,
            types=_json_types(row),
            events=events_of(name), filled=n,
            fill_rate=n / events_of(name) if events_of(name) else 0.0,
            distinct=int(row["distinct_values"]),
            top_values=[ValueCount(value=v, count=c, share=min(1.0, c / n) if n else 0.0)
                        for v, c in tops.get(key, [])],
            first_seen=row["first_seen"], last_seen=row["last_seen"],
        ))
    return fields, fill_day


def _type_col(json_tree_type: str) -> str:
    return "t_" + json_tree_type.lower()


def _json_types(row: dict[str, Any]) -> dict[str, int]:
    """JSON type -> leaves of that type (``json_tree`` type names folded as in the catalog:
    BIGINT and UBIGINT are both ``integer``)."""
    out: dict[str, int] = {}
    for t, name in sorted(JSON_TYPES.items()):
        n = int(row[_type_col(t)] or 0)
        if n:
            out[name] = out.get(name, 0) + n
    return dict(sorted(out.items()))


def _source(name: str) -> Source:
    for s in ("items", "properties", "traits", "context", "extra"):
        if s == name:
            return s
    raise ValueError(name)
