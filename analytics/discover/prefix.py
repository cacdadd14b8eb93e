"""Session prefixes: what was observable in a session before it reached the target.

One row per session of ``session_events`` in scope, built from the events *strictly before*
the session's first target event (``derived_ts`` earlier than the first event whose
``event_name`` or ``product_action`` is the target; events sharing the target's time are left
out too, since their order against it is not reliable). Sessions that never reach the target
contribute all their events: their whole session is what could be observed of them. A
session whose first event already is the target has an empty prefix and is left out (and
counted).

Per session the table holds ``y`` (reached the target), the first value of each logged
field in the prefix (``c0``, ``c1``..., as text) with the time it was first set (``t0``...),
and behavioural numbers (:data:`BEHAVIOURAL`). It is a temporary table of the connection:
a handful of small queries (value counts, quantiles, bucket counts) then read it instead of
the events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final

import duckdb

from analytics.discover.options import DiscoverOptions
from analytics.discover.report import FieldStats
from analytics.views import (
    EVENT_ORDER,
    EVENT_ORDER_COLUMNS,
    ORDER_KEY,
    ROW_KEY_COLUMNS,
    VISITOR,
    narrow_session_events_sql,
)
from schemas.sql import quote, quote_ident

TABLE: Final = "_discover_prefixes"
"""Name of the temporary table (dropped by :func:`drop`)."""
TARGETS: Final = "_discover_targets"
SAMPLE_BUCKETS: Final = 1_000_000
"""Visitors are sampled by ``hash(visitor) % SAMPLE_BUCKETS``."""

_VIEW = "product_action IN ('view', 'click')"

BEHAVIOURAL: Final[dict[str, tuple[str, str]]] = {
    "events": ("count(*)", "Events in the prefix."),
    "pages": ("sum(CASE WHEN event_type = 'page' THEN 1 ELSE 0 END)", "Page views."),
    "product_views": (f"sum(CASE WHEN {_VIEW} THEN 1 ELSE 0 END)",
                      "Product views and clicks."),
    "adds": ("sum(CASE WHEN product_action = 'add' THEN 1 ELSE 0 END)", "Add-to-cart events."),
    "searches": ("sum(CASE WHEN product_action = 'search' OR search_query IS NOT NULL "
                 "THEN 1 ELSE 0 END)", "Searches."),
    "duration_s": ("epoch(max(derived_ts) - min(derived_ts))",
                   "Seconds from the first to the last event of the prefix."),
    "time_to_first_add_s": ("epoch(min(CASE WHEN product_action = 'add' THEN derived_ts END)"
                            " - min(derived_ts))", "Seconds to the first add-to-cart."),
    # isfinite: a lake written before the loader nulled NaN and infinite prices may hold them
    "max_price_viewed": (f"max(CASE WHEN {_VIEW} AND isfinite(price) THEN price END)",
                         "Highest price of a product viewed."),
    "mean_price_viewed": (f"avg(CASE WHEN {_VIEW} AND isfinite(price) THEN price END)",
                          "Mean price of the products viewed."),
    "session_index": ("min(session_index)", "The tracker's count of the visitor's sessions."),
}
"""Session numbers computed on the prefix: name -> (aggregate over its events, meaning).
``since_previous_session_s`` (seconds from the start of the visitor's previous session in
scope) is added from these rows."""

NUMERIC: Final[tuple[str, ...]] = (*BEHAVIOURAL, "since_previous_session_s")
"""Every numeric session feature, in report order."""

LATE: Final = 0.75
"""A field first set after this fraction of the prefix's duration is set late ("right
before the target")."""


def unaddressable(con: duckdb.DuckDBPyConnection, paths: Sequence[str]) -> set[str]:
    """The catalog paths DuckDB's JSON functions cannot read. The catalog's paths are
    ``json_tree``'s, which names an empty key ``$.""``: a path its own JSON functions refuse
    (a binder error, which ``try`` does not catch). One statement checks all paths; only
    when it fails is each checked alone."""
    def readable(some: Sequence[str]) -> bool:
        try:
            con.execute(f"SELECT json_extract_string('{{}}'::JSON, "
                        f"[{', '.join(map(quote, some))}])")
        except duckdb.Error:
            return False
        return True

    if not paths or readable(paths):
        return set()
    return {p for p in paths if not readable([p])}


def field_exprs(features: Sequence[FieldStats]) -> tuple[list[str], list[str]]:
    """(select items extracting each JSON document's wanted paths at once, one text
    expression per feature over them)."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for f in features:
        if f.source != "column":
            assert f.path is not None
            by_source[f.source].append(f.path)
    # CAST AS JSON: `items` may be JSON text or a typed list of structs.
    lists = [f"try(json_extract_string(TRY_CAST({quote_ident(src)} AS JSON), "
             f"[{', '.join(map(quote, paths))}])) AS _j_{src}" for src, paths in by_source.items()]
    exprs = []
    for f in features:
        if f.source == "column":
            exprs.append(f"CAST({quote_ident(f.field)} AS VARCHAR)")
        else:
            assert f.path is not None
            exprs.append(f"_j_{f.source}[{by_source[f.source].index(f.path) + 1}]")
    return lists, exprs


def events_in_scope(con: duckdb.DuckDBPyConnection, opts: DiscoverOptions) -> int:
    """Events in the target analysis's scope: the time window's, of every event name, as
    :func:`build` reads them (``--event`` only picks the events whose fields are read; a
    session's numbers count all its events), so the count the sample bounds."""
    where, params = opts.model_copy(update={"event": None}).where()
    (n,), = con.execute(f"SELECT count(*) FROM events WHERE {where}", params).fetchall()
    return int(n)


def sample_fraction(events_in_scope: int, opts: DiscoverOptions) -> float:
    """Share of visitors whose sessions the target analysis reads (1.0: all of them), from
    the :func:`events_in_scope`."""
    if not opts.target_sample_events or events_in_scope <= opts.target_sample_events:
        return 1.0
    return opts.target_sample_events / events_in_scope


_BASE_COLUMNS: Final = ("session_id", "event_name", "event_type", "product_action", "price",
                        "search_query", "session_index", "anonymous_id", "user_id",
                        "network_user_id", "event_id", "derived_ts", "date",
                        *EVENT_ORDER_COLUMNS)
EVENTS: Final = "_discover_events"
SAMPLE: Final = "_discover_sample"


def _sampled_events(fraction: float) -> str:
    """``events``, or the events of a fixed random share of visitors, chosen by a hash of the
    visitor id, so the same lake gives the same sample. Sessions are kept whole: a session
    with an id by the visitor of its first event (its later events may name another id, an
    order only the user id), the events without one by their own visitor (all of them: their
    inactivity sessions are what they are in the whole data)."""
    if fraction >= 1:
        return "events"
    kept = f"% {SAMPLE_BUCKETS} < {max(1, round(fraction * SAMPLE_BUCKETS))}"
    return f"""(
      SELECT * FROM events WHERE session_id IS NULL AND hash({VISITOR}) {kept}
      UNION ALL BY NAME
      SELECT * FROM events WHERE session_id IN (
        SELECT session_id FROM events WHERE session_id IS NOT NULL GROUP BY session_id
        HAVING hash(arg_min({VISITOR}, {ORDER_KEY})) {kept}))"""


def build(con: duckdb.DuckDBPyConnection, features: Sequence[FieldStats],
          opts: DiscoverOptions, fraction: float = 1.0) -> int:
    """Create the prefix table; return the sessions left out (target at their first event).

    The session events in scope are read once, narrow (the columns the features and
    numbers need, each feature's value extracted once), into a temporary table; the
    target time per session and the prefix rows come from it. Each field keeps one
    ``arg_min`` state per session (an ordered aggregate would buffer every event).
    ``fraction`` < 1 reads the sessions of that share of visitors (:func:`sample_fraction`).
    """
    assert opts.target is not None
    lists, exprs = field_exprs(features)
    where, params = opts.model_copy(update={"event": None}).where()
    only_event = "true"
    if opts.event is not None:  # fields are read from these events; behaviour from all
        only_event = "event_name = $event"
    sources = [f.field if f.source == "column" else f.source for f in features]
    columns = tuple(dict.fromkeys((*_BASE_COLUMNS, *sources)))
    # One scan of the lake: the sampled events' columns, then sessions over that table.
    # (tenant: inactivity sessions are a tenant's visitor's; one value in a tenant's scope)
    read = tuple(dict.fromkeys((*columns, "tenant", "event_id", *ROW_KEY_COLUMNS)))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {SAMPLE} AS "
                f"SELECT {', '.join(read)} FROM {_sampled_events(fraction)}")
    narrow = narrow_session_events_sql(columns, SAMPLE)
    feats = "".join(f", {e} AS f{i}" for i, e in enumerate(exprs))
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {EVENTS} AS
    SELECT session_id, event_name, event_type, product_action, price, search_query,
           session_index, {VISITOR} AS visitor, {EVENT_ORDER}{feats}
    FROM (SELECT *{''.join(', ' + x for x in lists)} FROM ({narrow}) WHERE {where})""",
                params)
    late = (f"epoch_us(min(derived_ts)) + {LATE} * "
            "(epoch_us(any_value(t_at)) - epoch_us(min(derived_ts)))")
    firsts = "".join(
        f", arg_min(CASE WHEN {only_event} THEN f{i} END, {ORDER_KEY}) AS c{i}"
        f", min(CASE WHEN {only_event} AND f{i} IS NOT NULL THEN epoch_us(derived_ts) END)"
        f" > {late} AS l{i}"
        for i in range(len(exprs)))
    behaviour = "".join(f", {sql} AS {name}" for name, (sql, _) in BEHAVIOURAL.items())
    # The target times first: the count of left-out sessions comes from them for free.
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {TARGETS} AS
    SELECT session_id, min(derived_ts) AS t_at FROM {EVENTS}
    WHERE event_name = $target OR product_action = $target
    GROUP BY session_id""", {"target": opts.target})
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {TABLE} AS
    WITH ev AS NOT MATERIALIZED (
      SELECT e.*, t.t_at FROM {EVENTS} e LEFT JOIN {TARGETS} t USING (session_id)
      WHERE t.t_at IS NULL OR e.derived_ts < t.t_at
    ),
    s AS (
      SELECT session_id, any_value(t_at) IS NOT NULL AS y, min(derived_ts) AS s_start,
             arg_min(visitor, {ORDER_KEY}) AS visitor{behaviour}{firsts}
      FROM ev GROUP BY session_id
    ),
    -- every session in scope, those that start with the target too: they are the previous
    -- session of the visitor's next one, though they have no prefix
    starts AS (
      SELECT session_id, epoch(s_start - lag(s_start) OVER (
               PARTITION BY visitor ORDER BY s_start, session_id)) AS since_previous_session_s
      FROM (SELECT session_id, min(derived_ts) AS s_start,
                   arg_min(visitor, {ORDER_KEY}) AS visitor
            FROM {EVENTS} GROUP BY session_id)
    )
    SELECT s.*, starts.since_previous_session_s FROM s JOIN starts USING (session_id)""",
                {"event": opts.event} if opts.event is not None and exprs else {})
    # ($event is named only by the fields' first values: with no field, it is not there.)
    (excluded,), = con.execute(f"SELECT count(*) FROM {TARGETS} WHERE session_id NOT IN "
                               f"(SELECT session_id FROM {TABLE})").fetchall()
    con.execute(f"DROP TABLE {TARGETS}")
    con.execute(f"DROP TABLE {EVENTS}")
    con.execute(f"DROP TABLE {SAMPLE}")
    return int(excluded)


def drop(con: duckdb.DuckDBPyConnection) -> None:
    """Remove the prefix table (and the target times, if building it failed)."""
    con.execute(f"DROP TABLE IF EXISTS {TABLE}")
    con.execute(f"DROP TABLE IF EXISTS {TARGETS}")
    con.execute(f"DROP TABLE IF EXISTS {EVENTS}")
    con.execute(f"DROP TABLE IF EXISTS {SAMPLE}")


def rows(con: duckdb.DuckDBPyConnection, sql: str,
         params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows of a query over the prefix table."""
    return con.execute(sql, params or {}).fetchall()
