"""Universal Analytics (analytics.js, Measurement Protocol v1): ``/collect`` and ``/batch``.

A hit is URL-encoded parameters: ``v=1&tid=UA-...&cid=...&t=pageview&dl=...``. ``/collect``
takes one, in the query string (GET) or the body (POST); ``/batch`` takes one per body line.
Query parameters are shared by the body's hits (a hit's own value wins). Event, e-commerce
and custom-dimension parameters go to ``properties`` under their own names, enhanced
e-commerce products (``pr<N><field>``) to ``items`` and ``properties.products``, the
technical rest to ``extra``. Vectorised in DuckDB, like the GA4 adapter.
"""

from __future__ import annotations

import orjson

from ingest.loader.protocols import SqlAdapter
from ingest.loader.protocols.ecommerce import (
    UA_ACTIONS,
    action_case,
    item_struct,
    only_item,
    product_columns,
)
from ingest.loader.protocols.ga_items import (
    UA_CANONICAL,
    UA_ITEM_FIELDS,
    UA_ITEM_NUMBERS,
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
from ingest.loader.protocols.urlencoded import (
    decode,
    entries,
    first_wins,
    matching,
    merge_json,
    not_numbers,
    number_json,
    object_json,
    valid,
)
from ingest.loader.sql import LINEAGE, select_events, select_rejected
from schemas.sql import quote
from schemas.version import PIPELINE_VERSION

HIT_TYPES = {
    "pageview": ("page", "'page_view'"), "screenview": ("screen", "'screen_view'"),
    "event": ("track", "f.ea"), "transaction": ("transaction", "'transaction'"),
    "item": ("transaction_item", "'item'"), "social": ("track", "'social'"),
    "exception": ("track", "'exception'"), "timing": ("track", "'timing'"),
}
"""``t`` -> (event_type, SQL of event_name)."""
COLUMNS = ("tid", "cid", "uid", "t", "dl", "dh", "dp", "dt", "dr", "ul", "sr", "vp", "cs", "cm",
           "cn", "ck", "cc", "gclid", "dclid", "cu", "ua", "uip", "qt")
"""Parameters with a column of their own."""
PROPERTIES = ("ec", "ea", "el", "ev", "ni", "cd", "pa", "pal", "cos", "col", "ti", "ta", "tr",
              "tt", "ts", "tcc", "in", "ip", "iq", "ic", "iv", "sn", "sa", "st", "utc", "utv",
              "utt", "utl", "exd", "exf")
"""Event, e-commerce, social, timing and exception parameters: ``properties``, as named."""
_MAX_QUEUE_MS = 10 * 365 * 86_400_000
"""Queue times (``qt``) past ten years are garbage (Google drops hits queued over four hours);
a huge one made the interval overflow and the whole batch's parse raise."""
NUMBERS = ("ev", "tr", "tt", "ts", "ip", "iq", "utt", "cos", "qt")
_CUSTOM = "(cd|cm)[0-9]+"
"""Custom dimensions and metrics (``properties``); ``il``/``promo`` lists too, as sent."""
_LISTS = ("il", "promo")
PRODUCT_KEY = "pr[0-9]+[a-z][a-z0-9]*"
_LOOKED_UP = (*COLUMNS, "ea", "ec", "pa", "ti", "tr", "in", "ic", "iv", "ip", "iq")
_LOOKUP_SPEC = orjson.dumps(dict.fromkeys(_LOOKED_UP, "VARCHAR")).decode()
_HIT_COLS = ("tenant, received_at, protocol, headers, ip, source, source_partition, "
             "source_offset, source_index")


def _parts(e: str, p: str) -> str:
    """What the entries column ``e`` contributes, columns prefixed ``p`` (see ga4._parts)."""
    props = matching(e, _LISTS, PROPERTIES, _CUSTOM, regex_start="c")
    value = (f"CASE WHEN list_contains([{', '.join(quote(n) for n in NUMBERS)}], e_.key) "
             f"OR regexp_full_match(e_.key, 'cm[0-9]+') THEN coalesce({number_json('e_.value')}, "
             f"to_json(e_.value)) ELSE to_json(e_.value) END")
    other = matching(e, _LISTS, (*COLUMNS, *PROPERTIES), _CUSTOM, negate=True, regex_start="c")
    return f""",
    json_transform({object_json(matching(e, keys=_LOOKED_UP))}, {quote(_LOOKUP_SPEC)}) AS {p}k,
    {object_json(props, value)} AS {p}props,
    {object_json(matching(other, regex=PRODUCT_KEY, negate=True))} AS {p}extra,
    {not_numbers(e, keys=NUMBERS)} AS {p}bad,
    {matching(e, regex=PRODUCT_KEY)} AS {p}items,
    len({matching(e, regex="il[0-9]+pi[0-9]+id")}) > 0 AS {p}impressions"""


def _f(key: str) -> str:
    return f'coalesce(l_k."{key}", q_k."{key}")'


_TYPES = ", ".join(quote(t) for t in HIT_TYPES)
# A legacy item hit (t=item) is about one product: its ic/in/iv/ip/iq.
_ITEM_HIT = item_struct({
    "product_id": "nullif(f.ic, '')", "name": "nullif(f.\"in\", '')",
    "category": "nullif(f.iv, '')", "price": "try_cast(f.ip AS DOUBLE)",
    "quantity": "try_cast(f.iq AS DOUBLE)"}, "nullif(f.cu, '')")
_STAGES = f"""
CREATE OR REPLACE TEMP TABLE ua_hits AS
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
      WHEN regexp_full_match(query || text, '\\s*') THEN
        {reject(PROTOCOL, "'no hit parameters in the query string or the body'")}
      WHEN len(lines) > {MAX_BATCH_ITEMS} THEN {too_many_events("len(lines)", "batch", "hit")}
    END AS hit_q,
    CASE WHEN query_ok THEN {entries('query', PRODUCT_KEY)} END AS qe
  FROM (
    SELECT *, {valid('query')} AS query_ok,
      {body_lines('text')} AS lines
    FROM (SELECT *, coalesce(query, '') AS query, try(decode(body)) AS text FROM @hits@)
  )
));

CREATE OR REPLACE TEMP TABLE ua_parsed AS
SELECT *,
  CASE
    WHEN NOT line_ok THEN {reject(FORMAT, "'hit line is not percent-encoded UTF-8'")}
    WHEN strlen(line) > {MAX_EVENT_BYTES} THEN {too_big_event("strlen(line)", "hit")}
    WHEN coalesce(f.t, '') = '' THEN {reject(PROTOCOL, "'hit has no type (t)'")}
    WHEN f.t NOT IN ({_TYPES}) THEN {reject(PROTOCOL, "'unknown hit type ' || f.t")}
    WHEN coalesce(f.cid, '') = '' AND coalesce(f.uid, '') = '' THEN
      {reject(PROTOCOL, "'cid or uid is required'")}
    WHEN f.t = 'event' AND (coalesce(f.ec, '') = '' OR coalesce(f.ea, '') = '') THEN
      {reject(PROTOCOL, "'event hit needs ec and ea'")}
    WHEN len(bad) > 0 THEN {reject(SCHEMA, "bad[1] || ' is not a number'")}
  END AS q
FROM (
  SELECT *, list_concat(l_bad, q_bad) AS bad, struct_pack({
    ", ".join(f'"{k}" := {_f(k)}' for k in _LOOKED_UP)}) AS f
  FROM (
    {events_of_lines("ua_hits", PRODUCT_KEY, _parts)}
  )
);

CREATE OR REPLACE TEMP TABLE ua_item_parts AS
SELECT ev, try_cast(regexp_extract(e_.key, '^pr([0-9]+)', 1) AS INTEGER) AS n, 0 AS pos,
  regexp_extract(e_.key, '^pr[0-9]+(.*)$', 1) AS code, {decode('e_.value')} AS value
FROM (SELECT ev, {ITEM_ENTRIES} AS e_
      FROM ua_parsed WHERE q IS NULL AND len(l_items) + len(q_items) > 0);

CREATE OR REPLACE TEMP VIEW ua_ok AS
SELECT *, {only_item('item_list')} AS one
FROM (
  SELECT *,
    CASE WHEN f.t = 'item' THEN [{_ITEM_HIT}]
         ELSE {canonical_items('items', UA_CANONICAL, "nullif(f.cu, '')")} END AS item_list
  FROM (
    SELECT p.*, i.items,
      CASE WHEN coalesce(f.pa, '') <> '' THEN {action_case('f.pa', UA_ACTIONS)}
           WHEN f.t IN ('transaction', 'item') THEN 'purchase'
           WHEN l_impressions OR q_impressions THEN 'list_view' END AS action
    FROM ua_parsed p
      LEFT JOIN ({items_sql('ua_item_parts', UA_ITEM_FIELDS, UA_ITEM_NUMBERS, False)}) i
      USING (ev)
    WHERE q IS NULL
  )
);
"""

_PROPERTIES = merge_json("q_props", "l_props")
_EVENTS = {
    "tenant": "tenant",
    "event_id": "'dn:' || md5(query || chr(10) || item_index || chr(10) || line)",
    "event_type": "CASE f.t " + " ".join(
        f"WHEN {quote(t)} THEN {quote(kind)}" for t, (kind, _) in HIT_TYPES.items()) + " END",
    "event_name": "CASE f.t " + " ".join(
        f"WHEN {quote(t)} THEN {name}" for t, (_, name) in HIT_TYPES.items()) + " END",
    "protocol": "protocol",
    "app_id": "nullif(f.tid, '')",
    "platform": "'web'",
    "client_ts": f"CASE WHEN try_cast(f.qt AS BIGINT) BETWEEN 0 AND {_MAX_QUEUE_MS} "
                 "THEN received_at - to_milliseconds(try_cast(f.qt AS BIGINT)) END",
    "received_at": "received_at",
    "derived_ts": "received_at",
    "anonymous_id": "nullif(f.cid, '')",
    "user_id": "nullif(f.uid, '')",
    "page_url": "nullif(f.dl, '')",
    "page_host": "nullif(f.dh, '')",
    "page_path": "nullif(f.dp, '')",
    "page_title": "nullif(f.dt, '')",
    "referrer": "nullif(f.dr, '')",
    "utm_source": "nullif(f.cs, '')",
    "utm_medium": "nullif(f.cm, '')",
    "utm_campaign": "nullif(f.cn, '')",
    "utm_term": "nullif(f.ck, '')",
    "utm_content": "nullif(f.cc, '')",
    "click_id": "nullif(coalesce(f.gclid, f.dclid), '')",
    "click_id_type": "CASE WHEN coalesce(f.gclid, '') <> '' THEN 'gclid' "
                     "WHEN coalesce(f.dclid, '') <> '' THEN 'dclid' END",
    "user_agent": "coalesce(nullif(f.ua, ''), headers->>'user-agent')",
    "screen": "nullif(f.sr, '')",
    "viewport": "nullif(f.vp, '')",
    "language": "nullif(f.ul, '')",
    "ip": "coalesce(nullif(f.uip, ''), ip)",
    **product_columns("item_list", "action", "nullif(f.cu, '')"),
    "order_id": "nullif(f.ti, '')",
    "revenue": "try_cast(f.tr AS DOUBLE)",
    "properties": f"CASE WHEN items IS NULL THEN {_PROPERTIES} ELSE json_merge_patch("
                  f"coalesce({_PROPERTIES}, '{{}}'), json_object('products', items)) END",
    # click_id takes gclid: a dclid beside it stays in extra
    "extra": f"CASE WHEN coalesce(f.gclid, '') <> '' AND coalesce(f.dclid, '') <> '' THEN "
             f"json_merge_patch(coalesce({merge_json('q_extra', 'l_extra')}, '{{}}'), "
             f"json_object('dclid', f.dclid)) ELSE {merge_json('q_extra', 'l_extra')} END",
    **LINEAGE,
    "item_index": "item_index",
    "pipeline_version": quote(PIPELINE_VERSION),
}

_QUARANTINE = select_rejected("ua_hits", "ua_parsed", "bad_body", {
    "payload": "encode(CASE WHEN line = '' THEN query WHEN query = '' THEN line "
               "ELSE query || chr(10) || line END)",
})
_EVENTS_SQL = f"SELECT {select_events(_EVENTS)} FROM ua_ok"


class UniversalAnalyticsAdapter(SqlAdapter):
    """analytics.js / Measurement Protocol v1 hits on ``/collect`` and ``/batch``."""

    protocols: tuple[str, ...] = ("ga_universal",)
    stages, events, quarantine = _STAGES, _EVENTS_SQL, _QUARANTINE
