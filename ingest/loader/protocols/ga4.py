"""Google Analytics 4: gtag.js hits (``/g/collect``) and the Measurement Protocol (``/mp/collect``).

A gtag hit is a GET whose query string is one event, or a POST whose query string holds the
parameters its events share and whose body holds one URL-encoded line per event (a line's
parameters override the shared ones). Parameters: ``en`` event name, ``ep.<k>`` / ``epn.<k>``
string / number event parameters, ``up.<k>`` / ``upn.<k>`` user properties, ``pr<N>`` items,
and the fixed fields in :data:`COLUMNS`. Vectorised in DuckDB; the query string of a hit is
parsed once, not once per event. The Measurement Protocol (JSON) is in ga4_mp.
"""

from __future__ import annotations

import duckdb
import orjson
import pyarrow as pa

from ingest.loader.protocols import Limits, Parsed, run_stages
from ingest.loader.protocols.ecommerce import GA4_ACTIONS, action_case, only_item, product_columns
from ingest.loader.protocols.ga4_mp import mp_parse
from ingest.loader.protocols.ga_items import (
    GA4_CANONICAL,
    GA4_ITEM_FIELDS,
    GA4_ITEM_NUMBERS,
    canonical_items,
    items_sql,
)
from ingest.loader.protocols.ga_lines import ITEM_ENTRIES, body_lines, events_of_lines
from ingest.loader.protocols.kit import (
    FORMAT,
    MAX_BATCH_ITEMS,
    MAX_EVENT_BYTES,
    NOT_UTF8,
    PROTOCOL,
    QUERY_NOT_UTF8,
    SCHEMA,
    reject,
    too_big_event,
    too_many_events,
)
from ingest.loader.protocols.session import scoped_session_sql
from ingest.loader.protocols.urlencoded import (
    decode,
    entries,
    first_wins,
    matching,
    merge_json,
    not_numbers,
    number_json,
    object_json,
    unprefixed,
    valid,
)
from ingest.loader.sql import LINEAGE, select_events, select_rejected
from schemas.event import EVENT_SCHEMA
from schemas.quarantine import QUARANTINE_SCHEMA
from schemas.sql import quote
from schemas.version import PIPELINE_VERSION

COLUMNS = {
    "tid": "app_id", "cid": "anonymous_id", "uid": "user_id", "sid": "session_id",
    "sct": "session_index", "en": "event_name", "dl": "page_url", "dt": "page_title",
    "dr": "referrer", "ul": "language", "sr": "screen", "cu": "currency",
    "cs": "utm_source", "cm": "utm_medium", "cn": "utm_campaign", "ct": "utm_term",
    "cc": "utm_content",
}
"""gtag parameters with a column of their own; all others go to ``extra``."""
ITEM_KEY = "pr[0-9]+"
_PREFIXES = ("ep.", "epn.", "up.", "upn.")
_HIT_COLS = ("tenant, received_at, protocol, headers, ip, source, source_partition, "
             "source_offset, source_index")


_LOOKED_UP = (*COLUMNS, "ep.currency", "ep.transaction_id", "ep.value", "epn.value",
              "ep.search_term")
_LOOKUP_SPEC = orjson.dumps(dict.fromkeys(_LOOKED_UP, "VARCHAR")).decode()


def _object(e: str, string_prefix: str, number_prefix: str) -> str:
    """JSON object of the string and number parameters under two prefixes (numbers win)."""
    return merge_json(object_json(unprefixed(e, string_prefix)),
                  object_json(unprefixed(e, number_prefix), number_json("e_.value")))


def _parts(e: str, p: str) -> str:
    """Select list of what the parameters (entries column ``e``) contribute, prefixed ``p``.

    Shared (query) parameters are worked out once per hit and an event's line once per
    event; the event merges the two (line wins). Lists, not MAPs: building a MAP per hit
    costs more than everything read from it.
    """
    return f""",
    json_transform({object_json(matching(e, keys=_LOOKED_UP))}, {quote(_LOOKUP_SPEC)}) AS {p}k,
    {_object(e, "ep.", "epn.")} AS {p}props,
    {_object(e, "up.", "upn.")} AS {p}traits,
    {object_json(matching(e, _PREFIXES, COLUMNS, ITEM_KEY, negate=True))} AS {p}extra,
    {not_numbers(e, ("epn.", "upn."))} AS {p}bad,
    {matching(e, regex=ITEM_KEY)} AS {p}items"""


def _f(key: str) -> str:
    """SQL: parameter ``key`` of the event: its line's value, else the shared one."""
    return f'coalesce(l_k."{key}", q_k."{key}")'


_CURRENCY = f"nullif(coalesce({_f('cu')}, {_f('ep.currency')}), '')"
_STAGES = f"""
-- Bodies stay out of the stages, except those a hit-level failure quarantines whole.
CREATE OR REPLACE TEMP TABLE ga_hits AS
SELECT * {_parts("qe", "q_")}
FROM (
SELECT {_HIT_COLS}, query, lines, CASE WHEN hit_q IS NULL THEN {first_wins('qe')} END AS qe,
  CASE WHEN hit_q IS NOT NULL THEN body END AS bad_body, hit_q
FROM (
  SELECT *,
    CASE
      WHEN text IS NULL THEN {NOT_UTF8}
      WHEN NOT query_ok THEN
        {QUERY_NOT_UTF8}
      WHEN len(lines) > {MAX_BATCH_ITEMS} THEN {too_many_events("len(lines)", "body")}
    END AS hit_q,
    CASE WHEN query_ok THEN {entries('query', ITEM_KEY)} END AS qe
  FROM (
    SELECT *, {valid('query')} AS query_ok,
      {body_lines('text')} AS lines
    FROM (SELECT *, coalesce(query, '') AS query, try(decode(body)) AS text
          FROM @hits@ WHERE path <> '/mp/collect')
  )
));

CREATE OR REPLACE TEMP TABLE ga_parsed AS
SELECT *,
  CASE
    WHEN NOT line_ok THEN
      {reject(FORMAT, "'event line is not percent-encoded UTF-8'")}
    WHEN strlen(line) > {MAX_EVENT_BYTES} THEN {too_big_event("strlen(line)")}
    WHEN coalesce({_f('en')}, '') = '' THEN
      {reject(PROTOCOL, "'event has no name (en)'")}
    WHEN len(bad) > 0 THEN {reject(SCHEMA, "bad[1] || ' is not a number'")}
    WHEN coalesce({_f('sct')}, '') <> '' AND try_cast({_f('sct')} AS INTEGER) IS NULL THEN
      {reject(SCHEMA, f"'sct (session count) is not an integer: ' || {_f('sct')}")}
  END AS q
FROM (
  SELECT *, list_concat(l_bad, q_bad) AS bad
  FROM (
    {events_of_lines("ga_hits", ITEM_KEY, _parts)}
  )
);

CREATE OR REPLACE TEMP TABLE ga_item_parts AS
SELECT ev, n, pos, left(part, 2) AS code, part[3:] AS value
FROM (
  -- split on '~' first, then decode: a decoded value may hold a '~' of its own
  SELECT ev, n, {decode('unnest(parts)')} AS part, unnest(range(len(parts))) AS pos
  FROM (
    SELECT ev, try_cast(e_.key[3:] AS INTEGER) AS n, string_split(e_.value, '~') AS parts
    FROM (SELECT ev, {ITEM_ENTRIES} AS e_
          FROM ga_parsed WHERE q IS NULL AND len(l_items) + len(q_items) > 0)
  )
)
WHERE part <> '';

CREATE OR REPLACE TEMP VIEW ga_ok AS
SELECT *, {only_item('item_list')} AS one
FROM (
  SELECT *, {canonical_items('items', GA4_CANONICAL, _CURRENCY)} AS item_list
  FROM (
    SELECT p.*, i.items, {action_case(_f('en'), GA4_ACTIONS)} AS action
    FROM ga_parsed p
      LEFT JOIN ({items_sql('ga_item_parts', GA4_ITEM_FIELDS, GA4_ITEM_NUMBERS, True)}) i
      USING (ev)
    WHERE q IS NULL
  )
);
"""

_PROPERTIES = merge_json("q_props", "l_props")
_EVENTS = {
    "tenant": "tenant",
    "event_id": "'dn:' || md5(query || chr(10) || item_index || chr(10) || line)",
    "event_type": f"CASE WHEN {_f('en')} = 'page_view' THEN 'page' ELSE 'track' END",
    "event_name": _f("en"),
    "protocol": "protocol",
    "app_id": f"nullif({_f('tid')}, '')",
    "platform": "'web'",
    "received_at": "received_at",
    "derived_ts": "received_at",
    "anonymous_id": f"nullif({_f('cid')}, '')",
    "user_id": f"nullif({_f('uid')}, '')",
    "session_id": scoped_session_sql(_f("sid"), _f("cid"), _f("uid")),
    "session_index": f"try_cast({_f('sct')} AS INTEGER)",
    "page_url": f"nullif({_f('dl')}, '')",
    "page_title": f"nullif({_f('dt')}, '')",
    "referrer": f"nullif({_f('dr')}, '')",
    "utm_source": f"nullif({_f('cs')}, '')",
    "utm_medium": f"nullif({_f('cm')}, '')",
    "utm_campaign": f"nullif({_f('cn')}, '')",
    "utm_term": f"nullif({_f('ct')}, '')",
    "utm_content": f"nullif({_f('cc')}, '')",
    "user_agent": "headers->>'user-agent'",
    "screen": f"nullif({_f('sr')}, '')",
    "language": f"nullif({_f('ul')}, '')",
    "ip": "ip",
    **product_columns("item_list", "action", _CURRENCY),
    "order_id": f"nullif({_f('ep.transaction_id')}, '')",
    "revenue": f"CASE WHEN action IN ('purchase', 'refund') "
               f"THEN try_cast(coalesce({_f('epn.value')}, {_f('ep.value')}) AS DOUBLE) END",
    "search_query": f"nullif({_f('ep.search_term')}, '')",
    "properties": f"CASE WHEN items IS NULL THEN {_PROPERTIES} ELSE json_merge_patch("
                  f"coalesce({_PROPERTIES}, '{{}}'), json_object('items', items)) END",
    "traits": merge_json("q_traits", "l_traits"),
    # sid has a column, but session_id is scoped by the visitor: the id as sent stays here
    "extra": merge_json(merge_json("q_extra", "l_extra"), f"CASE WHEN {_f('sid')} <> '' THEN "
                        f"json_object('client_session_id', {_f('sid')}) END"),
    **LINEAGE,
    "item_index": "item_index",
    "pipeline_version": quote(PIPELINE_VERSION),
}

_QUARANTINE = select_rejected("ga_hits", "ga_parsed", "bad_body", {
    # the event as a self-contained hit: shared parameters, then its line
    "payload": "encode(CASE WHEN line = '' THEN query ELSE query || chr(10) || line END)",
})
_EVENTS_SQL = f"SELECT {select_events(_EVENTS)} FROM ga_ok"


class GA4Adapter:
    """gtag.js ``/g/collect`` hits and Measurement Protocol ``/mp/collect`` requests."""

    protocols: tuple[str, ...] = ("ga4",)

    def parse(self, con: duckdb.DuckDBPyConnection, hits: str, limits: Limits) -> Parsed:
        """Parse GA4 hits in relation ``hits``."""
        gtag = run_stages(con, _STAGES, hits, limits, _EVENTS_SQL, _QUARANTINE)
        mp = mp_parse(con, hits, limits)
        return Parsed(
            pa.concat_tables([t.cast(EVENT_SCHEMA) for t in (gtag.events, mp.events)]),
            pa.concat_tables([t.cast(QUARANTINE_SCHEMA) for t in (gtag.quarantine,
                                                                   mp.quarantine)]),
        )
