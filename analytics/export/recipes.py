"""The SQL of each export recipe, for one time split.

Every recipe reads ``session_events`` (analytics/views.py decides what a session is) and
obeys the split rule: a session belongs to the split its first event falls in, and no
event at or after the split's end is read, so nothing after ``train_end`` informs train
(a train session still running at ``train_end`` is cut there, and so is its label).

Every query has a total ORDER BY, so with the same input files the rows come out in the
same order whatever the thread count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from analytics.export.spec import ExportSpec, Split
from analytics.views import (
    ACQUISITION_FIELDS,
    EVENT_ORDER,
    EVENT_ORDER_COLUMNS,
    INFERRED_SESSIONS,
    ORDER_KEY,
    ROW_KEY_COLUMNS,
    inferred_sessions_sql,
    narrow_session_events_sql,
    session_events_sql,
)

ITEM_STEP_ORDER = f"{EVENT_ORDER}, item_pos"
ACTION = "coalesce(product_action, event_name)"
"""The symbol of a step: the normalised product action, else the event name."""

SESSION_FEATURES = {
    "device": "ua_device", "browser": "ua_browser", "os": "ua_os",
    "country": "geo_country", "city": "geo_city",
}
"""Session-level context of the ``intent`` recipe: the first value in the session."""
ACQUISITION = ("landing_path", "referrer_class", "referrer_source", "utm_source", "utm_medium",
               "utm_campaign", "utm_term", "utm_content", "click_id_type")
"""Acquisition context of the ``intent`` recipe, all from the session's landing event."""
IDENTITIES = f"""
  SELECT anonymous_id, arg_max(user_id, {ORDER_KEY}) AS user_id
  FROM ev WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL GROUP BY anonymous_id"""
"""Who each anonymous id turned out to be, from the split's events only (no later ones)."""
_SESSIONS_COLUMNS = ("session_id", *EVENT_ORDER_COLUMNS, "anonymous_id", "user_id",
                     "session_index", "product_id", "product_action", "event_name", "items")
_INTENT_SOURCE_COLUMNS = ("session_id", *EVENT_ORDER_COLUMNS, "user_id", "session_index",
                          "product_id", "product_action", "event_name", "items",
                          "search_query", "price", "quantity")
_CONTEXT_COLUMNS = ("session_id", *EVENT_ORDER_COLUMNS, "anonymous_id", "event_type",
                    "product_action", *SESSION_FEATURES.values(),
                    *(ACQUISITION_FIELDS[name] for name in ACQUISITION))
_INTENT_ACQUISITION = ("{" + ", ".join(f"'{name}': {ACQUISITION_FIELDS[name]}"
                                       for name in ACQUISITION) + "}")
"""The acquisition fields the intent recipe exports, as one struct (the long ones, such as
the landing URL and the referrer, stay out of the sessions table)."""


_LINE_VALUE = ("coalesce(CASE WHEN product_id IS NOT NULL "
               "THEN coalesce(price, 0) * coalesce(quantity, 1) END, list_sum(list_transform("
               "items, lambda x: coalesce(x.price, 0) * coalesce(x.quantity, 1))), 0)")
CART_DELTA = (f"CASE coalesce(product_action, '') WHEN 'add' THEN {_LINE_VALUE} "
              f"WHEN 'remove' THEN -({_LINE_VALUE}) ELSE 0 END")
"""What an event changes the cart's value by (an add's or remove's price x quantity; any
other event nothing, even if its price x quantity overflows to infinity: 0 x inf is NaN)."""


EXPORT_EVENTS = "export_events"
"""The temporary table of the sessions export's session events (:func:`prepare`)."""
EXPORT_SESSIONS = "export_sessions"
"""The temporary table of an export's sessions: start, first purchase and, for the intent
recipe, the session context and acquisition candidates (:func:`prepare`)."""
EXPORT_STEPS = "export_steps"
"""The temporary table of the intent export's steps per session (:func:`_intent_steps_sql`)."""
EXPORT_IDENTITIES = "export_identities"
"""The temporary table of the intent export's events that carry both an anonymous and a
user id (what :data:`IDENTITIES` reads)."""
_INFERRED = "export_inferred"


def _intent_steps_sql() -> str:
    """The rows of :data:`EXPORT_STEPS`: per session (by its integer key), its first
    ``$max_prefix`` events as steps, in :data:`EVENT_ORDER`, the position of its first
    purchase in that order, and the points where the lowest ``session_index`` seen so far
    drops, each with its time and position.

    A split's steps are the events before its end (by time) and before the session's first
    purchase (by position: an event of the same time that comes first is a step), so they
    are a prefix of this list (``list_filter``), and its
    ``session_index``, the lowest over those events, is the last drop before that time:
    every split reads its sessions from this table, without touching the events again.
    One window (one sort) numbers the events; only the steps and the drops are kept."""
    events = narrow_session_events_sql(_INTENT_SOURCE_COLUMNS, inferred=_INFERRED)
    window = f"PARTITION BY s.skey ORDER BY {EVENT_ORDER}"
    return f"""
    SELECT skey,
           -- pos first: sorting the structs sorts by it (a list sort per session is
           -- cheaper than an ordered aggregate, which buffers every row); the NULLs of
           -- the index drops past max_prefix sort last, after the steps kept.
           list_sort(list(CASE WHEN pos <= $max_prefix THEN
                            {{'pos': pos, 'action': action, 'item': product_id,
                              'ts': derived_ts, 'user_id': user_id, 'search': search,
                              'cart': cart}} END), 'ASC', 'NULLS LAST')[1:$max_prefix]
             AS steps,
           min(CASE WHEN is_purchase THEN pos END) AS purchase_pos,
           list_filter(list_sort(list(CASE WHEN is_drop THEN
                                        {{'pos': pos, 'ts': derived_ts,
                                          'idx': session_index}} END)),
                       lambda d: d IS NOT NULL) AS index_drops
    FROM (
      SELECT s.skey, e.derived_ts, e.product_id, e.user_id, e.session_index,
             (row_number() OVER ({window}))::INTEGER AS pos,
             e.session_index < coalesce(min(e.session_index) OVER (
               {window} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
               e.session_index + 1) AS is_drop,
             {ACTION} AS action, product_action = 'purchase' AS is_purchase,
             (product_action = 'search' OR search_query IS NOT NULL)::INTEGER AS search,
             {CART_DELTA} AS cart
      FROM ({events}) e JOIN {EXPORT_SESSIONS} s USING (session_id)
    )
    WHERE pos <= $max_prefix OR is_drop OR is_purchase
    GROUP BY skey"""


def prepare(con: duckdb.DuckDBPyConnection, spec: ExportSpec) -> None:
    """Work out, once for all splits, what every split of the export reads.

    For the sessions recipe: the session events (only the columns it reads) and each
    session's start. For intent: one row per session (:data:`EXPORT_SESSIONS`, with an
    integer key): its start, its first purchase, and its context, acquisition and visitor
    as candidates a split chooses from (see :func:`intent_query`); its steps
    (:data:`EXPORT_STEPS`); and the events that tie an anonymous id to a user id
    (:data:`EXPORT_IDENTITIES`). The inactivity sessions of the events without a session
    id are worked out once (a window over their row keys alone) and joined back. For a
    query: those inactivity sessions, for the ``session_events`` view."""
    if spec.recipe in ("sessions", "intent"):
        con.execute(f"CREATE TEMP TABLE {_INFERRED} AS "
                    + inferred_sessions_sql(ROW_KEY_COLUMNS))
        if spec.recipe == "sessions":
            con.execute(f"CREATE TEMP TABLE {EXPORT_EVENTS} AS " + narrow_session_events_sql(
                _SESSIONS_COLUMNS, inferred=_INFERRED))
            con.execute(f"CREATE TEMP TABLE {EXPORT_SESSIONS} AS SELECT session_id, "
                        f"min(derived_ts) AS start FROM {EXPORT_EVENTS} GROUP BY session_id")
        else:
            firsts = "".join(
                f",\n  arg_min(CASE WHEN {col} IS NOT NULL THEN {{'v': {col}, 'k': {ORDER_KEY}}} "
                f"END, {ORDER_KEY}) AS first_{name}"
                for name, col in {**SESSION_FEATURES, "anonymous_id": "anonymous_id"}.items())
            # CASE, not FILTER: DuckDB's filtered aggregates took 2.5x as long here.
            # (arg_min skips the rows whose value or key is NULL.)
            con.execute(f"""
            CREATE TEMP TABLE {EXPORT_SESSIONS} AS
            SELECT (row_number() OVER ())::INTEGER AS skey, * FROM (
              SELECT session_id, min(derived_ts) AS start,
                min(CASE WHEN product_action = 'purchase' THEN derived_ts END)
                  AS first_purchase_at,
                min(CASE WHEN product_action = 'purchase' THEN {ORDER_KEY} END)
                  AS first_purchase_key,
                arg_min({_INTENT_ACQUISITION}, {ORDER_KEY}) AS first_acq,
                arg_min({_INTENT_ACQUISITION},
                        CASE WHEN event_type = 'page' THEN {ORDER_KEY} END) AS page_acq,
                min(CASE WHEN event_type = 'page' THEN {ORDER_KEY} END) AS page_key{firsts}
              FROM ({narrow_session_events_sql(_CONTEXT_COLUMNS, inferred=_INFERRED)})
              GROUP BY session_id)""")
            con.execute(f"CREATE TEMP TABLE {EXPORT_STEPS} AS " + _intent_steps_sql(),
                        {"max_prefix": spec.max_prefix})
            con.execute(f"""
            CREATE TEMP TABLE {EXPORT_IDENTITIES} AS
            SELECT anonymous_id, user_id, {EVENT_ORDER} FROM events
            WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL""")
        con.execute(f"DROP TABLE {_INFERRED}")
        return
    query = (spec.query or "").lower()
    if any(name in query for name in ("session", "users", "orders", "products",
                                      "identities")):
        con.execute(f"CREATE TEMP TABLE inferred_sessions AS {INFERRED_SESSIONS}")
        con.execute("CREATE OR REPLACE VIEW session_events AS "
                    + session_events_sql("inferred_sessions"))


def _events(columns: tuple[str, ...], where: str) -> str:
    """The ``ev`` relation of a recipe: the split's rows of the export's session events."""
    return f"SELECT {', '.join(dict.fromkeys(columns))} FROM {EXPORT_EVENTS} WHERE {where}"


@dataclass(frozen=True)
class Query:
    """A recipe query for one split: SQL, its parameters, and its total order (None: the
    SQL itself yields its rows in a total order)."""

    sql: str
    params: dict[str, Any]
    order_by: str | None


def _window(split: Split) -> tuple[str, str, dict[str, Any]]:
    """(event filter, session-start filter, params) of a split."""
    params: dict[str, Any] = {}
    events = "true"
    starts = ["true"]
    if split.end is not None:
        events = "derived_ts < $split_end"
        starts.append("start < $split_end")
        params["split_end"] = split.end
    if split.start is not None:
        starts.append("start >= $split_start")
        params["split_start"] = split.start
    return events, " AND ".join(starts), params


def sessions_query(split: Split) -> Query:
    """Ordered item sequences per session (session-based next-item recommendation).

    One step per product an event is about: ``product_id``, or each element of ``items``
    (a multi-product event such as an order) in its order. Sessions without any product
    step are left out.
    """
    events, starts, params = _window(split)
    sql = f"""
    WITH ev AS ({_events(_SESSIONS_COLUMNS, events)}),
    ident AS ({IDENTITIES}),
    sev AS (
      SELECT ev.*, ss.start FROM ev
      JOIN (SELECT session_id, start FROM {EXPORT_SESSIONS} WHERE {starts}) ss
      USING (session_id)
    ),
    s0 AS (
      SELECT session_id, any_value(start) AS start,
             arg_min(anonymous_id, {ORDER_KEY}) AS anonymous_id,
             arg_max(user_id, {ORDER_KEY}) AS user_id,
             min(session_index) AS session_index
      FROM sev GROUP BY session_id
    ),
    s AS (
      SELECT s0.*, coalesce(s0.user_id, ident.user_id) AS stitched_user_id
      FROM s0 LEFT JOIN ident USING (anonymous_id)
    ),
    steps AS (
      SELECT session_id, {EVENT_ORDER}, {ACTION} AS action, product_id AS item, 0 AS item_pos
      FROM sev WHERE product_id IS NOT NULL
      UNION ALL
      SELECT session_id, {EVENT_ORDER}, action, item, item_pos FROM (
        SELECT session_id, {EVENT_ORDER}, {ACTION} AS action,
               unnest(list_transform(items, lambda i: i.product_id)) AS item,
               unnest(range(len(items))) AS item_pos
        FROM sev WHERE product_id IS NULL AND len(items) > 0
      ) WHERE item IS NOT NULL
    )
    SELECT s.session_id, s.anonymous_id, s.user_id, s.stitched_user_id, s.session_index,
           s.start, count(*) AS length,
           list(item ORDER BY {ITEM_STEP_ORDER}) AS items,
           list(action ORDER BY {ITEM_STEP_ORDER}) AS actions,
           list(derived_ts ORDER BY {ITEM_STEP_ORDER}) AS timestamps,
           list(client_ts ORDER BY {ITEM_STEP_ORDER}) AS client_timestamps
    FROM steps JOIN s USING (session_id)
    GROUP BY s.session_id, s.anonymous_id, s.user_id, s.stitched_user_id, s.session_index,
             s.start
    """
    return Query(sql, params, "start, session_id")


def intent_query(split: Split, max_prefix: int) -> Query:
    """Session prefixes of browsing actions, labelled by whether the session purchased.

    Only events before the session's first purchase are steps; prefix k holds the first k
    of them (k up to ``max_prefix``), with what is known at its end: session context and
    acquisition (from the landing event), the user id seen so far, searches and cart value
    so far. The label ``purchased`` is true when the session later has a purchase (before
    the split's end). ``stitched_user_id`` (who the visitor turned out to be, from events
    before the split's end) is an id to group by, not a feature.
    """
    events, starts, params = _window(split)
    # What a session's first purchase and landing are among the split's events (those
    # before its end), from the session row: the first purchase counts if it is before
    # the end; the first page view is the landing when it is a step (before the end, and
    # before the purchase in event order), else the first event is. Each context field is
    # its first value in the steps: the session's first one, if that is a step. Events
    # are compared with the purchase in EVENT_ORDER (ORDER_KEY, or a step's position), not
    # by time alone: an event of the purchase's time that comes before it is a step.
    in_split = "{ts} < $split_end" if split.end is not None else "true"
    purchase = ("CASE WHEN first_purchase_at < $split_end THEN {col} END"
                if split.end is not None else "{col}")

    def known(key: str) -> str:
        """Whether an event (its ORDER_KEY; the time first) is before the split's end and
        the purchase."""
        return (f"({key} IS NOT NULL AND {in_split.format(ts=f'{key}[1]')} AND "
                f"(s.purchase_key IS NULL OR {key} < s.purchase_key))")

    firsts = ",\n             ".join(
        f"CASE WHEN {known(f's.first_{name}.k')} "
        f"THEN s.first_{name}.v END AS {name}" for name in SESSION_FEATURES)
    feature_cols = ", ".join(SESSION_FEATURES)
    acquisition = ", ".join(f"acq.{name} AS {name}" for name in ACQUISITION)
    assert set(ACQUISITION) <= set(ACQUISITION_FIELDS)
    before = (f"{in_split.format(ts='x.ts')} AND "
              f"(s.purchase_key IS NULL OR x.pos < st.purchase_pos)")
    sql = f"""
    WITH ident AS (
      SELECT anonymous_id, arg_max(user_id, {ORDER_KEY}) AS user_id
      FROM {EXPORT_IDENTITIES} WHERE {events} GROUP BY anonymous_id
    ),
    ss AS (
      SELECT c.*, {purchase.format(col="first_purchase_at")} AS purchase_at,
             {purchase.format(col="first_purchase_key")} AS purchase_key
      FROM {EXPORT_SESSIONS} c WHERE {starts}
    ),
    -- The split's steps of a session: its listed steps before the purchase and the end.
    cut AS (
      SELECT s.*, list_filter(st.steps, lambda x: {before}) AS steps,
             list_filter(st.index_drops, lambda x: {before})[-1].idx AS session_index
      FROM ss AS s JOIN {EXPORT_STEPS} st USING (skey)
    ),
    s AS (
      SELECT s.session_id, s.start, s.purchase_at IS NOT NULL AS purchased, s.steps,
             CASE WHEN {known("s.first_anonymous_id.k")}
                  THEN s.first_anonymous_id.v END AS anonymous_id,
             s.session_index,
             CASE WHEN {known("s.page_key")} THEN s.page_acq
                  ELSE s.first_acq END AS acq,
             {firsts}
      FROM cut AS s WHERE len(s.steps) > 0
    ),
    -- Sessions are sorted here, before each becomes one row per prefix: sorting the prefix
    -- rows instead (10x more, each with its lists) took 3x the time and 15 GB on 10M
    -- events. Projections keep this order (preserve_insertion_order), unnest keeps k's.
    ordered AS (
      SELECT s.*, ident.user_id AS known_user_id
      FROM s LEFT JOIN ident USING (anonymous_id)
      ORDER BY start, session_id
    ),
    prefixes AS (
      SELECT *, list_transform(steps, lambda x: x.user_id) AS user_ids,
             unnest(range(1, len(steps) + 1)) AS k
      FROM ordered
    )
    SELECT session_id, anonymous_id,
           list_filter(user_ids[1:k], lambda u: u IS NOT NULL)[-1] AS user_id,
           coalesce(list_filter(user_ids, lambda u: u IS NOT NULL)[-1], known_user_id)
             AS stitched_user_id,
           session_index, start, k AS prefix_length,
           list_transform(steps[1:k], lambda x: x.action) AS actions,
           list_transform(steps[1:k], lambda x: x.item) AS items,
           epoch(steps[k].ts - steps[1].ts) AS elapsed_s,
           len(list_filter(steps[1:k], lambda x: x.action = 'view')) AS views,
           len(list_filter(steps[1:k], lambda x: x.action = 'add')) AS adds,
           coalesce(list_sum(list_transform(steps[1:k], lambda x: x.search)), 0)::BIGINT
             AS searches,
           coalesce(list_sum(list_transform(steps[1:k], lambda x: x.cart)), 0)::DOUBLE
             AS cart_value,
           {feature_cols}, {acquisition},
           purchased
    FROM prefixes
    """
    return Query(sql, params, None)


def sql_query(spec: ExportSpec, split: Split) -> Query:
    """The user's query; rows ordered by every column (a total order up to equal rows)."""
    assert spec.query is not None
    params: dict[str, Any] = dict(spec.params)
    if spec.train_end is not None:
        params["split_start"] = split.start
        params["split_end"] = split.end
    return Query(spec.query.strip().rstrip(";"), params, "ALL")


def recipe_query(spec: ExportSpec, split: Split) -> Query:
    """The query of ``spec.recipe`` for ``split``."""
    if spec.recipe == "sessions":
        return sessions_query(split)
    if spec.recipe == "intent":
        return intent_query(split, spec.max_prefix)
    return sql_query(spec, split)
