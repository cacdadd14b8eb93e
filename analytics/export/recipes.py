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

from analytics.export.spec import ExportSpec, Split
from analytics.views import (
    ACQUISITION_FIELDS,
    EVENT_ORDER,
    EVENT_ORDER_COLUMNS,
    LANDING,
    ORDER_KEY,
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
_INTENT_COLUMNS = (*_SESSIONS_COLUMNS, "event_type", "search_query", "price", "quantity",
                   *SESSION_FEATURES.values(), *ACQUISITION_FIELDS.values())


def _events(columns: tuple[str, ...], where: str) -> str:
    """The ``ev`` relation of a recipe: the session events of the split, only the columns
    it reads (several parts of a recipe read ``ev``, so DuckDB materialises it: every
    column, JSON documents included, cost 4x the memory)."""
    return (f"SELECT {', '.join(dict.fromkeys(columns))} FROM session_events "
            f"WHERE {where}")


CART_DELTA = ("CASE coalesce(product_action, '') WHEN 'add' THEN 1 WHEN 'remove' THEN -1 "
              "ELSE 0 END * coalesce(CASE WHEN product_id IS NOT NULL "
              "THEN coalesce(price, 0) * coalesce(quantity, 1) END, list_sum(list_transform("
              "items, lambda x: coalesce(x.price, 0) * coalesce(x.quantity, 1))), 0)")
"""What an event changes the cart's value by (an add's or remove's price x quantity)."""


@dataclass(frozen=True)
class Query:
    """A recipe query for one split: SQL, its parameters, and its total order."""

    sql: str
    params: dict[str, Any]
    order_by: str


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
    s0 AS (
      SELECT session_id, min(derived_ts) AS start,
             arg_min(anonymous_id, {ORDER_KEY}) AS anonymous_id,
             arg_max(user_id, {ORDER_KEY}) AS user_id,
             min(session_index) AS session_index
      FROM ev GROUP BY session_id
    ),
    s AS (
      SELECT s0.*, coalesce(s0.user_id, ident.user_id) AS stitched_user_id
      FROM s0 LEFT JOIN ident USING (anonymous_id)
    ),
    steps AS (
      SELECT session_id, {EVENT_ORDER}, {ACTION} AS action, product_id AS item, 0 AS item_pos
      FROM ev WHERE product_id IS NOT NULL
      UNION ALL
      SELECT session_id, {EVENT_ORDER}, action, item, item_pos FROM (
        SELECT session_id, {EVENT_ORDER}, {ACTION} AS action,
               unnest(list_transform(items, lambda i: i.product_id)) AS item,
               unnest(range(len(items))) AS item_pos
        FROM ev WHERE product_id IS NULL AND len(items) > 0
      ) WHERE item IS NOT NULL
    )
    SELECT s.session_id, s.anonymous_id, s.user_id, s.stitched_user_id, s.session_index,
           s.start, count(*) AS length,
           list(item ORDER BY {ITEM_STEP_ORDER}) AS items,
           list(action ORDER BY {ITEM_STEP_ORDER}) AS actions,
           list(derived_ts ORDER BY {ITEM_STEP_ORDER}) AS timestamps,
           list(client_ts ORDER BY {ITEM_STEP_ORDER}) AS client_timestamps
    FROM steps JOIN s USING (session_id)
    WHERE {starts}
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
    firsts = ",\n             ".join(
        f"arg_min({col}, {ORDER_KEY}) AS {name}"
        for name, col in SESSION_FEATURES.items())
    feature_cols = ", ".join(SESSION_FEATURES)
    acquisition = ", ".join(f"acq.{name} AS {name}" for name in ACQUISITION)
    assert set(ACQUISITION) <= set(ACQUISITION_FIELDS)
    params["max_prefix"] = max_prefix
    sql = f"""
    WITH ev AS ({_events(_INTENT_COLUMNS, events)}),
    ident AS ({IDENTITIES}),
    s AS (
      SELECT session_id, min(derived_ts) AS start,
             min(CASE WHEN product_action = 'purchase' THEN derived_ts END) AS purchase_at
      FROM ev GROUP BY session_id
    ),
    browse AS (
      SELECT ev.*, s.start, s.purchase_at FROM ev JOIN s USING (session_id)
      WHERE ({starts}) AND (s.purchase_at IS NULL OR ev.derived_ts < s.purchase_at)
    ),
    seq AS (
      SELECT session_id, start, purchase_at IS NOT NULL AS purchased,
             list({ACTION} ORDER BY {EVENT_ORDER}) AS actions,
             list(product_id ORDER BY {EVENT_ORDER}) AS items,
             list(derived_ts ORDER BY {EVENT_ORDER}) AS timestamps,
             list(user_id ORDER BY {EVENT_ORDER}) AS user_ids,
             list((product_action = 'search' OR search_query IS NOT NULL)::INTEGER
                  ORDER BY {EVENT_ORDER}) AS search_flags,
             list({CART_DELTA} ORDER BY {EVENT_ORDER}) AS cart_deltas,
             arg_min(anonymous_id, {ORDER_KEY}) AS anonymous_id,
             min(session_index) AS session_index,
             {LANDING} AS acq,
             {firsts}
      FROM browse GROUP BY session_id, start, purchase_at
    )
    SELECT seq.session_id, seq.anonymous_id,
           list_filter(user_ids[1:k], lambda u: u IS NOT NULL)[-1] AS user_id,
           coalesce(ident.user_id, list_filter(user_ids, lambda u: u IS NOT NULL)[-1])
             AS stitched_user_id,
           seq.session_index, seq.start, k AS prefix_length,
           actions[1:k] AS actions, items[1:k] AS items,
           epoch(timestamps[k] - timestamps[1]) AS elapsed_s,
           len(list_filter(actions[1:k], lambda a: a = 'view')) AS views,
           len(list_filter(actions[1:k], lambda a: a = 'add')) AS adds,
           coalesce(list_sum(search_flags[1:k]), 0)::BIGINT AS searches,
           coalesce(list_sum(cart_deltas[1:k]), 0)::DOUBLE AS cart_value,
           {feature_cols}, {acquisition},
           purchased
    FROM seq LEFT JOIN ident USING (anonymous_id),
         range(1, least(len(actions), $max_prefix) + 1) AS r(k)
    """
    return Query(sql, params, "start, session_id, prefix_length")


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
