"""GA4 Measurement Protocol: ``POST /mp/collect?measurement_id=G-...`` with a JSON body.

``{"client_id", "user_id", "timestamp_micros", "user_properties", "events": [{"name",
"params", "timestamp_micros"}, ...]}``, at most 25 events (the protocol's own limit); apps
send ``app_instance_id`` and ``firebase_app_id`` instead. Event parameters go to
``properties`` as sent, user properties to ``traits``; the recommended parameters that have
a column (page, session, campaign, e-commerce) fill it too. Part of the GA4 adapter.
"""

from __future__ import annotations

import duckdb
import orjson

from ingest.loader.protocols import Limits, Parsed, run_stages
from ingest.loader.protocols.ecommerce import GA4_ACTIONS, action_case, only_item, product_columns
from ingest.loader.protocols.ga_items import GA4_CANONICAL, canonical_items
from ingest.loader.protocols.kit import (
    MAX_BATCH_ITEMS,
    MAX_EVENT_BYTES,
    PROTOCOL,
    SCALAR_TYPES,
    SCHEMA,
    SIZE,
    json_body_checks,
    merge_keeping_nulls,
    not_a,
    reject,
    too_big_event,
    usable_time,
)
from ingest.loader.protocols.session import scoped_session_sql
from ingest.loader.protocols.urlencoded import decode
from ingest.loader.sql import LINEAGE, select_events, select_rejected
from schemas.sql import quote
from schemas.version import PIPELINE_VERSION

MAX_EVENTS = 25
"""Events one Measurement Protocol request may carry."""

_TOP = ("client_id", "app_instance_id", "user_id", "timestamp_micros", "user_properties",
        "events")
_TOP_SPEC = orjson.dumps({**dict.fromkeys(_TOP[:4], "VARCHAR"), "ip_override": "VARCHAR",
                          "user_properties": "JSON"}).decode()
_EVENT_SPEC = orjson.dumps({"name": "VARCHAR", "params": "JSON",
                            "timestamp_micros": "VARCHAR"}).decode()
_PARAMS = ("page_location", "page_title", "page_referrer", "session_id", "ga_session_number",
           "currency", "value", "transaction_id", "search_term", "language",
           "screen_resolution", "source", "medium", "campaign", "term", "content")
_PARAMS_SPEC = orjson.dumps({**dict.fromkeys(_PARAMS, "VARCHAR"), "items": "JSON"}).decode()
_DROP_TOP = orjson.dumps(dict.fromkeys(_TOP)).decode()
_DROP_TOP_BUT_TIME = orjson.dumps(dict.fromkeys(t for t in _TOP
                                                if t != "timestamp_micros")).decode()
_DROP_EVENT = orjson.dumps(dict.fromkeys(("name", "params", "timestamp_micros"))).decode()
_HIT_COLS = ("tenant, received_at, protocol, headers, ip, source, source_partition, "
             "source_offset, source_index")


def _absent(kind: str) -> str:
    return f"coalesce({kind}, 'NULL') = 'NULL'"


_MICROS_OK = "try_cast({x} AS BIGINT) IS NOT NULL AND NOT contains({x}, '.')"

_STAGES = f"""
CREATE OR REPLACE TEMP TABLE mp_hits AS
SELECT {_HIT_COLS}, query, text, hit_q, CASE WHEN hit_q IS NOT NULL THEN body END AS bad_body,
  CASE WHEN hit_q IS NULL THEN json_transform(text, {quote(_TOP_SPEC)}) END AS top,
  CASE WHEN hit_q IS NULL THEN json_merge_patch(text, {quote(_DROP_TOP)}) END AS top_extra,
  -- the request's time, for the events that have their own: it is then no column's
  CASE WHEN hit_q IS NULL AND NOT {_absent('k[6]')} THEN
    json_merge_patch(text, {quote(_DROP_TOP_BUT_TIME)}) END AS top_extra_timed
FROM (
  SELECT *,
    CASE
      {json_body_checks("text", "k")}
      WHEN k[2] IS DISTINCT FROM 'ARRAY' THEN
        {reject(PROTOCOL, "'body has no events array'")}
      WHEN n_events = 0 THEN {reject(PROTOCOL, "'events holds no events'")}
      WHEN n_events > least({MAX_EVENTS}, {MAX_BATCH_ITEMS}) THEN
        {reject(SIZE, "'request of ' || n_events || ' events exceeds the Measurement "
            f"Protocol''s ' || least({MAX_EVENTS}, {MAX_BATCH_ITEMS}) || '-event limit'")}
      WHEN {_absent('k[3]')} AND {_absent('k[4]')} THEN
        {reject(PROTOCOL, "'client_id (or app_instance_id) is required'")}
      WHEN NOT ({_absent('k[3]')} OR k[3] IN {SCALAR_TYPES}) THEN
        {reject(SCHEMA, "'client_id must be a string'")}
      WHEN NOT ({_absent('k[5]')} OR k[5] IN {SCALAR_TYPES}) THEN
        {reject(SCHEMA, "'user_id must be a string'")}
      WHEN NOT ({_absent('k[6]')} OR (k[6] IN ('BIGINT', 'UBIGINT', 'VARCHAR')
                AND {_MICROS_OK.format(x="(text->>'$.timestamp_micros')")})) THEN
        {reject(SCHEMA, "'timestamp_micros is not an integer'")}
      WHEN NOT ({_absent('k[7]')} OR k[7] = 'OBJECT') THEN
        {reject(SCHEMA, "'user_properties must be an object'")}
    END AS hit_q
  FROM (
    SELECT *, CASE WHEN k[2] = 'ARRAY' THEN json_array_length(text, '$.events') END AS n_events
    FROM (
      SELECT *, try(json_type(text, ['$', '$.events', '$.client_id', '$.app_instance_id',
                                     '$.user_id', '$.timestamp_micros', '$.user_properties']))
                  AS k
      FROM (SELECT *, try(decode(body)) AS text FROM @hits@ WHERE path = '/mp/collect')
    )
  )
);

CREATE OR REPLACE TEMP TABLE mp_parsed AS
SELECT *,
  CASE
    WHEN t IS NULL OR t[1] <> 'OBJECT' THEN
      {reject(SCHEMA, not_a("t[1]", "event"))}
    WHEN strlen(item) > {MAX_EVENT_BYTES} THEN {too_big_event("strlen(item)")}
    WHEN {_absent('t[2]')} THEN {reject(PROTOCOL, "'event has no name'")}
    WHEN t[2] <> 'VARCHAR' OR e.name = '' THEN
      {reject(SCHEMA, "'name must be a non-empty string'")}
    WHEN NOT ({_absent('t[3]')} OR t[3] = 'OBJECT') THEN
      {reject(SCHEMA, "'params must be an object'")}
    WHEN NOT ({_absent('t[4]')} OR (t[4] IN ('BIGINT', 'UBIGINT', 'VARCHAR')
              AND {_MICROS_OK.format(x='e.timestamp_micros')})) THEN
      {reject(SCHEMA, "'timestamp_micros is not an integer'")}
    WHEN NOT ({_absent('t[5]')} OR t[5] = 'ARRAY') THEN
      {reject(SCHEMA, "'params.items must be a list'")}
  END AS q
FROM (
  SELECT *,
    CASE WHEN t[1] = 'OBJECT' THEN json_transform(item, {quote(_EVENT_SPEC)}) END AS e,
    CASE WHEN t[3] = 'OBJECT' THEN json_transform(item->'$.params', {quote(_PARAMS_SPEC)})
    END AS p
  FROM (
    SELECT *, try(json_type(item, ['$', '$.name', '$.params', '$.timestamp_micros',
                                   '$.params.items'])) AS t
    FROM (
      SELECT {_HIT_COLS}, query, top, top_extra, top_extra_timed, unnest(d.events) AS item,
             unnest(range(len(d.events))) AS item_index
      FROM (SELECT *, json_transform(text, '{{"events": ["JSON"]}}') AS d
            FROM mp_hits WHERE hit_q IS NULL)
    )
  )
);

CREATE OR REPLACE TEMP VIEW mp_ok AS
SELECT *, {only_item('item_list')} AS one
FROM (
  SELECT *, {canonical_items('items', GA4_CANONICAL, "nullif(p.currency, '')")} AS item_list
  FROM (
    SELECT *, {action_case('e.name', GA4_ACTIONS)} AS action,
      CASE WHEN json_array_length(p.items) > 0 THEN p.items END AS items
    FROM mp_parsed WHERE q IS NULL
  )
);
"""

_MEASUREMENT_ID = decode(
    "regexp_extract(query, '(?:^|&)(?:measurement_id|firebase_app_id)=([^&]*)', 1)")
_OWN = f"json_merge_patch(item, {quote(_DROP_EVENT)})"
"""SQL: the event's own fields that no column takes (nulls kept: the item is the target)."""
_REQUEST_EXTRA = ("CASE WHEN e.timestamp_micros IS NOT NULL AND top_extra_timed IS NOT NULL "
                  "THEN top_extra_timed ELSE top_extra END")
"""SQL: the request's fields that no column of the event takes."""
_MERGED = merge_keeping_nulls(_REQUEST_EXTRA, _OWN)
"""SQL: the event's fields over the request's, key by key (objects merged), nulls kept."""
_REQUEST = "json_object('request', top_extra)"
"""SQL: the request's fields as sent, kept whole beside an event that sends one of them too
(the event's ``consent`` replaces the request's ``consent.ad_user_data``)."""

_EVENTS = {
    "tenant": "tenant",
    "event_id": "'dn:' || md5(concat_ws(chr(10), coalesce(top.client_id, top.app_instance_id, "
                "''), coalesce(top.timestamp_micros, ''), item_index, item))",
    "event_type": "CASE WHEN e.name = 'page_view' THEN 'page' ELSE 'track' END",
    "event_name": "e.name",
    "protocol": "protocol",
    "app_id": f"nullif({_MEASUREMENT_ID}, '')",
    "platform": "CASE WHEN top.app_instance_id IS NOT NULL THEN 'mobile' ELSE 'server' END",
    "client_ts": usable_time("try(make_timestamp(try_cast(coalesce(e.timestamp_micros, "
                             "top.timestamp_micros) AS BIGINT)))::TIMESTAMPTZ"),
    "received_at": "received_at",
    "derived_ts": "received_at",
    "anonymous_id": "nullif(coalesce(top.client_id, top.app_instance_id), '')",
    "user_id": "nullif(top.user_id, '')",
    "session_id": scoped_session_sql("p.session_id", "coalesce(top.client_id, "
                                     "top.app_instance_id)", "top.user_id"),
    "session_index": "try_cast(p.ga_session_number AS INTEGER)",
    "page_url": "nullif(p.page_location, '')",
    "page_title": "nullif(p.page_title, '')",
    "referrer": "nullif(p.page_referrer, '')",
    "utm_source": "nullif(p.source, '')",
    "utm_medium": "nullif(p.medium, '')",
    "utm_campaign": "nullif(p.campaign, '')",
    "utm_term": "nullif(p.term, '')",
    "utm_content": "nullif(p.content, '')",
    "user_agent": "headers->>'user-agent'",
    "screen": "nullif(p.screen_resolution, '')",
    "language": "nullif(p.language, '')",
    "ip": "coalesce(nullif(top.ip_override, ''), ip)",
    **product_columns("item_list", "action", "nullif(p.currency, '')"),
    "order_id": "nullif(p.transaction_id, '')",
    "revenue": "CASE WHEN action IN ('purchase', 'refund') THEN try_cast(p.value AS DOUBLE) END",
    "search_query": "nullif(p.search_term, '')",
    "properties": "item->'$.params'",
    "traits": "top.user_properties",
    "extra": f"nullif(CASE WHEN list_has_any(json_keys(top_extra), json_keys({_OWN})) "
             f"THEN {merge_keeping_nulls(_MERGED, _REQUEST)} ELSE {_MERGED} END, '{{}}')",
    **LINEAGE,
    "item_index": "item_index",
    "pipeline_version": quote(PIPELINE_VERSION),
}

_QUARANTINE = select_rejected("mp_hits", "mp_parsed", "bad_body", {
    "payload": "encode(coalesce(item, 'null'))",  # a JSON null in a list is SQL NULL
})
_EVENTS_SQL = f"SELECT {select_events(_EVENTS)} FROM mp_ok"


def mp_parse(con: duckdb.DuckDBPyConnection, hits: str, limits: Limits) -> Parsed:
    """Parse the ``/mp/collect`` hits of relation ``hits``."""
    return run_stages(con, _STAGES, hits, limits, _EVENTS_SQL, _QUARANTINE)
