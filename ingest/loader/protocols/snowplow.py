"""Snowplow tracker protocol (GET ``/i`` query strings, POST ``tp2`` payload_data), in DuckDB.

A GET hit carries one event as URL-encoded parameters; a POST carries
``{"schema": "iglu:.../payload_data/...", "data": [{...}, ...]}``, every value a string. Both
become one JSON object per event (a GET's parameters decoded, the first of a repeated name
winning), parsed by the same SQL: ``ue_pr``/``ue_px`` (self-describing event) and ``co``/``cx``
(contexts) decoded, base64 of either alphabet with or without padding. Parameters with a column
land there, the event's own fields in ``properties``, the contexts in ``context``, and every
other parameter in ``extra``: nothing is dropped. The mapping table is in docs/protocols.md.
"""

from __future__ import annotations

import orjson

from ingest.loader.protocols import SqlAdapter
from ingest.loader.protocols.ecommerce import (
    SNOWPLOW_ACTIONS,
    action_case,
    item_list,
    item_struct,
    only_item,
    product_columns,
)
from ingest.loader.protocols.kit import (
    FORMAT,
    MAX_BATCH_ITEMS,
    MAX_EVENT_BYTES,
    PROTOCOL,
    SCHEMA,
    first_rejection,
    json_body_checks,
    reject,
    too_big_event,
    too_many_events,
)
from ingest.loader.sql import LINEAGE, select_events, select_rejected
from schemas.sql import quote
from schemas.version import PIPELINE_VERSION

EVENT_TYPES = {
    "pv": ("page", "'page_view'"),
    "pp": ("page_ping", "'page_ping'"),
    "se": ("structured", "f.se_ac"),
    "tr": ("transaction", "'transaction'"),
    "ti": ("transaction_item", "'transaction_item'"),
    "ue": ("self_describing", "coalesce(ecom_type, iglu.name)"),
}
"""``e`` -> (event_type, SQL of event_name)."""

# Parameters that always land in a column (or are decoded into one); never repeated in extra.
COLUMN_PARAMS = (
    "e", "eid", "aid", "p", "dtm", "stm", "duid", "uid", "nuid", "tnuid", "sid", "vid", "url",
    "page", "refr", "ua", "lang", "tz", "res", "vp", "ip", "co", "cx",
)
# Parameters an event type consumes into columns or properties.
TYPE_PARAMS = {
    "ue": ("ue_pr", "ue_px"),
    "se": ("se_ca", "se_ac", "se_la", "se_pr", "se_va"),
    "pp": ("pp_mix", "pp_max", "pp_miy", "pp_may"),
    "tr": ("tr_id", "tr_af", "tr_tt", "tr_tx", "tr_sh", "tr_ci", "tr_st", "tr_co", "tr_cu"),
    "ti": ("ti_id", "ti_sk", "ti_nm", "ti_ca", "ti_pr", "ti_qu", "ti_cu"),
}
_READ = ("tv", "ttm", *COLUMN_PARAMS, *(p for params in TYPE_PARAMS.values() for p in params))
_SPEC = orjson.dumps(dict.fromkeys(_READ, "VARCHAR")).decode()
# Trackers send empty strings for unset fields: they count as absent.
_FIELDS = "struct_pack(" + ", ".join(f"{k} := nullif(r.{k}, '')" for k in _READ) + ")"

_ECOM = "iglu:com.snowplowanalytics.snowplow.ecommerce/"
_PRODUCT_SPEC = orjson.dumps({"id": "VARCHAR", "name": "VARCHAR", "category": "VARCHAR",
                              "brand": "VARCHAR", "variant": "VARCHAR", "price": "DOUBLE",
                              "currency": "VARCHAR", "quantity": "DOUBLE"}).decode()
_ORDER_SPEC = orjson.dumps({"transaction_id": "VARCHAR", "revenue": "DOUBLE",
                            "refund_amount": "DOUBLE", "currency": "VARCHAR"}).decode()
"""The transaction entity (``revenue``) or the refund entity (``refund_amount``)."""
_IGLU = r"^iglu:([a-zA-Z0-9_.-]+)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/([0-9]+-[0-9]+-[0-9]+)$"
_MAX_MS = 253402300800000  # 10000-01-01: past it a "millisecond time" is garbage

# The headers the adapter reads are extracted once per hit, not once per event.
_HIT_COLS = ("tenant, received_at, protocol, header_ua, header_nuid, sp_anonymous, ip, source, "
             "source_partition, source_offset, source_index")
_HEADERS = ("json_transform(headers, '{\"user-agent\": \"VARCHAR\", "
            "\"x-driftnet-nuid\": \"VARCHAR\", \"sp-anonymous\": \"VARCHAR\"}')")


def _b64(expr: str) -> str:
    """SQL: UTF-8 text of base64 ``expr`` (url-safe or standard, padded or not), else NULL."""
    bare = f"translate(rtrim({expr}, '='), '-_', '+/')"
    return (f"try(decode(from_base64(rpad({bare}, CAST(ceil(length({bare}) / 4) * 4 AS INTEGER), "
            f"'='))))")


def _ms_ok(field: str) -> str:
    value = f"try_cast(f.{field} AS DOUBLE)"
    return f"coalesce(isfinite({value}) AND {value} >= 0 AND {value} < {_MAX_MS}, false)"


def _ms_ts(field: str) -> str:
    return f"make_timestamp(CAST(round(CAST(f.{field} AS DOUBLE) * 1000) AS BIGINT))"


def _number_ok(field: str) -> str:
    return f"coalesce(isfinite(try_cast(f.{field} AS DOUBLE)), false)"


def _validation() -> str:
    """CASE yielding {reason, detail} for an event that cannot be loaded, NULL for a valid one."""
    checks: list[tuple[str, str]] = [
        ("query IS NOT NULL AND item IS NULL",
         reject(FORMAT, "'query string is not valid percent-encoded UTF-8'")),
        ("item_type IS DISTINCT FROM 'OBJECT'",
         reject(SCHEMA, "'event is a JSON ' || CASE WHEN item_type IN ('BIGINT', "
            "'UBIGINT', 'DOUBLE') THEN 'number' WHEN item_type = 'VARCHAR' THEN 'string' "
            "ELSE lower(item_type) END || ', not an object'")),
        (f"strlen(item) > {MAX_EVENT_BYTES}", too_big_event("strlen(item)")),
        ("f.tv IS NULL", reject(PROTOCOL, "'tv (tracker version) is required'")),
        ("f.p IS NULL", reject(PROTOCOL, "'p (platform) is required'")),
        ("f.e IS NULL", reject(PROTOCOL, "'e (event type) is required'")),
        (f"f.e NOT IN ({', '.join(quote(e) for e in EVENT_TYPES)})",
         reject(PROTOCOL, "'unknown event type e=' || left(f.e, 40)")),
    ]
    for field in ("dtm", "stm", "ttm"):
        checks.append((f"f.{field} IS NOT NULL AND NOT {_ms_ok(field)}", reject(
            SCHEMA, f"'{field} is not a time in epoch milliseconds: ' || "
            f"left(f.{field}, 40)")))
    # Fields of other event types are not validated: they stay in extra as sent.
    integers = {None: ("vid",), "pp": ("pp_mix", "pp_max", "pp_miy", "pp_may")}
    for etype, fields in integers.items():
        for field in fields:
            applies = "" if etype is None else f"f.e = '{etype}' AND "
            checks.append((f"{applies}f.{field} IS NOT NULL AND NOT regexp_full_match("
                           f"f.{field}, '-?[0-9]{{1,9}}')",
                           reject(SCHEMA, f"'{field} is not an integer: ' || "
                              f"left(f.{field}, 40)")))
    numbers = {"se": ("se_va",), "tr": ("tr_tt", "tr_tx", "tr_sh"), "ti": ("ti_pr", "ti_qu")}
    for etype, fields in numbers.items():
        for field in fields:
            checks.append((f"f.e = '{etype}' AND f.{field} IS NOT NULL AND NOT {_number_ok(field)}",
                           reject(SCHEMA, f"'{field} is not a number: ' || "
                              f"left(f.{field}, 40)")))
    checks += [
        ("f.e = 'se' AND (f.se_ca IS NULL OR f.se_ac IS NULL)",
         reject(PROTOCOL, "'structured event (e=se) needs se_ca and se_ac'")),
        ("f.e = 'ue' AND f.ue_pr IS NULL AND f.ue_px IS NULL",
         reject(PROTOCOL, "'self-describing event (e=ue) without ue_pr or ue_px'")),
        ("f.e = 'ue' AND ue_text IS NULL",
         reject(FORMAT, "'ue_px is not base64 of UTF-8 text'")),
        ("f.e = 'ue' AND ue_kind IS NULL",
         reject(FORMAT, "'self-describing event (ue_pr/ue_px) is not valid JSON'")),
        ("f.e = 'ue' AND (ue_kind[1] <> 'OBJECT' OR ue_kind[2] IS DISTINCT FROM 'OBJECT' "
         "OR ue_kind[3] IS DISTINCT FROM 'VARCHAR' OR ue_kind[4] IS DISTINCT FROM 'OBJECT')",
         reject(SCHEMA, "'self-describing event must be {\"schema\": ..., \"data\": "
            "{\"schema\": \"iglu:...\", \"data\": {...}}}'")),
        ("f.e = 'ue' AND iglu.name = ''",
         reject(SCHEMA, "'self-describing event schema is not an Iglu URI: ' || "
            "left(ue_text->>'$.data.schema', 200)")),
        ("coalesce(f.co, f.cx) IS NOT NULL AND ctx_text IS NULL",
         reject(FORMAT, "'cx is not base64 of UTF-8 text'")),
        ("coalesce(f.co, f.cx) IS NOT NULL AND ctx_kind IS NULL",
         reject(FORMAT, "'contexts (co/cx) are not valid JSON'")),
        ("coalesce(f.co, f.cx) IS NOT NULL AND ctx_kind[2] IS DISTINCT FROM 'ARRAY'",
         reject(SCHEMA, "'contexts must be {\"schema\": ..., \"data\": [entities]}'")),
    ]
    return first_rejection(checks)


# A GET's query string -> one JSON object of decoded parameters ('+' is a space in forms);
# only values holding '%' or '+' are decoded (most are plain), NULL when not UTF-8.
_DECODE = ("CASE WHEN strpos({x}, '%') > 0 OR strpos({x}, '+') > 0 "
           "THEN try(url_decode(replace({x}, '+', ' '))) ELSE {x} END")
_SPLIT = ("list_transform(list_filter(string_split(query, '&'), lambda kv: kv <> ''), "
          "lambda kv: {'k': split_part(kv, '=', 1), 'v': CASE WHEN strpos(kv, '=') > 0 "
          "THEN substr(kv, strpos(kv, '=') + 1) ELSE '' END})")
_PAIRS = ("list_transform(" + _SPLIT + ", lambda p: {'k': " + _DECODE.format(x="p.k")
          + ", 'v': " + _DECODE.format(x="p.v") + "})")

# A legacy transaction item (e=ti) is about one product; an e-commerce plugin event about
# its product entities (their currency, else the transaction's, else the cart's).
_TI_ITEM = item_struct({"product_id": "f.ti_sk", "name": "f.ti_nm", "category": "f.ti_ca",
                        "price": "CAST(f.ti_pr AS DOUBLE)", "quantity": "CAST(f.ti_qu AS DOUBLE)",
                        "currency": "f.ti_cu"})
_ECOM_ITEMS = item_list("products", "x", {
    "product_id": "x.id", "name": "x.name", "category": "x.category", "brand": "x.brand",
    "variant": "x.variant", "price": "x.price", "quantity": "x.quantity",
    "currency": "x.currency"}, "coalesce(ord.currency, cart_currency)")

_STAGES = f"""
-- Bodies stay out of the stages (copying one onto each of its events is quadratic), except
-- the few a hit-level failure quarantines whole.
CREATE OR REPLACE TEMP TABLE sp_hits AS
SELECT {_HIT_COLS}, is_post, text, query,
  CASE WHEN hit_q IS NOT NULL AND is_post THEN body END AS bad_body, hit_q
FROM (
SELECT *, hdr."user-agent" AS header_ua, hdr."x-driftnet-nuid" AS header_nuid,
  hdr."sp-anonymous" IS NOT NULL AS sp_anonymous,
  CASE
    WHEN NOT is_post AND coalesce(query, '') = '' THEN
      {reject(PROTOCOL, "'no tracker parameters in the query string'")}
    WHEN NOT is_post THEN NULL
    {json_body_checks("text", "kinds", "a payload_data object")}
    WHEN kinds[2] IS DISTINCT FROM 'ARRAY' THEN
      {reject(PROTOCOL, "'payload_data has no data array'")}
    WHEN json_array_length(text, '$.data') = 0 THEN
      {reject(PROTOCOL, "'payload_data holds no events'")}
    WHEN json_array_length(text, '$.data') > {MAX_BATCH_ITEMS} THEN
      {too_many_events("json_array_length(text, '$.data')", "payload_data")}
  END AS hit_q
FROM (
  SELECT *, CASE WHEN is_post THEN try(json_type(text, ['$', '$.data'])) END AS kinds,
         {_HEADERS} AS hdr
  FROM (SELECT * REPLACE (CASE WHEN method = 'POST' THEN NULL ELSE query END AS query),
               method = 'POST' AS is_post,
               CASE WHEN method = 'POST' THEN try(decode(body)) END AS text
        FROM @hits@)
));

-- A repeated GET parameter stays repeated in the object: columns take its first value (as
-- json_transform reads it) and extra keeps them all.
CREATE OR REPLACE TEMP TABLE sp_items AS
SELECT {_HIT_COLS}, query, 0 AS item_index,
  CASE WHEN NOT coalesce(list_bool_or(list_transform(pairs, lambda p: p.k IS NULL OR p.v IS NULL)),
                       false)
       THEN '{{' || array_to_string(list_transform(pairs, lambda p:
                     to_json(p.k) || ':' || to_json(p.v)), ',') || '}}' END AS item
FROM (SELECT *, list_filter({_PAIRS}, lambda p: p.k IS DISTINCT FROM '') AS pairs
      FROM sp_hits WHERE NOT is_post AND hit_q IS NULL)
UNION ALL
SELECT {_HIT_COLS}, NULL AS query, item_index, coalesce(item, 'null') AS item
FROM (
  SELECT {_HIT_COLS}, unnest(d.data) AS item, unnest(range(len(d.data))) AS item_index
  FROM (SELECT *, json_transform(text, '{{"data": ["JSON"]}}') AS d
        FROM sp_hits WHERE is_post AND hit_q IS NULL)
);

CREATE OR REPLACE TEMP TABLE sp_parsed AS
SELECT *, {_validation()} AS q
FROM (
  SELECT *, regexp_extract(CASE WHEN ue_kind[3] = 'VARCHAR' THEN ue_text->>'$.data.schema' END,
                           {quote(_IGLU)}, ['vendor', 'name', 'format', 'version']) AS iglu
  FROM (
  SELECT *, try(json_type(ue_text, ['$', '$.data', '$.data.schema', '$.data.data'])) AS ue_kind,
    try(json_type(ctx_text, ['$', '$.data'])) AS ctx_kind
  FROM (
    SELECT *,
      CASE WHEN f.e = 'ue' THEN coalesce(f.ue_pr, {_b64("f.ue_px")}) END AS ue_text,
      coalesce(f.co, {_b64("f.cx")}) AS ctx_text
    FROM (
      SELECT * EXCLUDE (r), {_FIELDS} AS f
      FROM (SELECT *, CASE WHEN item_type = 'OBJECT' THEN json_transform(item, {quote(_SPEC)})
                      END AS r
            FROM (SELECT *, try(json_type(item)) AS item_type FROM sp_items))
    )
  )
  )
);

CREATE OR REPLACE TEMP VIEW sp_ok AS
SELECT *, {only_item("item_list")} AS one
FROM (
SELECT *, CASE f.e WHEN 'ti' THEN [{_TI_ITEM}] WHEN 'ue' THEN {_ECOM_ITEMS} END AS item_list
FROM (
SELECT *,
  CASE WHEN is_ecom THEN list_transform(list_filter(entities, lambda x:
         starts_with(x->>'$.schema', '{_ECOM}product/')),
         lambda x: json_transform(x->'$.data', {quote(_PRODUCT_SPEC)})) END AS products,
  CASE WHEN is_ecom THEN json_transform(list_filter(entities, lambda x:
         starts_with(x->>'$.schema', '{_ECOM}transaction/')
         OR starts_with(x->>'$.schema', '{_ECOM}refund/'))[1]->'$.data',
         {quote(_ORDER_SPEC)}) END AS ord,
  CASE WHEN is_ecom THEN list_filter(entities, lambda x:
         starts_with(x->>'$.schema', '{_ECOM}cart/'))[1]->>'$.data.currency' END AS cart_currency
FROM (
  SELECT *,
    CASE WHEN is_ecom THEN nullif(ue_data->>'$.type', '') END AS ecom_type,
    CASE WHEN is_ecom THEN json_extract(ctx_text, '$.data[*]') END AS entities
  FROM (
    SELECT *, ue_text->'$.data.data' AS ue_data,
      coalesce(f.e = 'ue' AND iglu.vendor = 'com.snowplowanalytics.snowplow.ecommerce'
               AND iglu.name = 'snowplow_ecommerce_action', false) AS is_ecom
    FROM sp_parsed WHERE q IS NULL
  )
)
)
);
"""


_NUID_KEPT = ("(f.nuid IS NOT NULL AND NOT sp_anonymous "
              "AND f.nuid IS DISTINCT FROM coalesce(f.tnuid, header_nuid, f.nuid))")
"""SQL: the tracker's ``nuid`` is not the event's ``network_user_id``: the collector cannot see
it inside a POST body and set the ``sp`` cookie's id, or ``tnuid`` was sent too. It stays in
``extra`` (with ``SP-Anonymous`` it is dropped, as the column is)."""


def _json_drop(params: tuple[str, ...]) -> str:
    return quote(orjson.dumps(dict.fromkeys(params)).decode())


def _event_columns() -> dict[str, str]:
    etype = "CASE f.e " + " ".join(f"WHEN '{e}' THEN '{t}'" for e, (t, _) in
                                   EVENT_TYPES.items()) + " END"
    ename = "CASE f.e " + " ".join(f"WHEN '{e}' THEN {n}" for e, (_, n) in
                                   EVENT_TYPES.items()) + " END"
    drop = ("CASE f.e " + " ".join(f"WHEN '{e}' THEN {_json_drop(COLUMN_PARAMS + params)}"
                                   for e, params in TYPE_PARAMS.items())
            + f" ELSE {_json_drop(COLUMN_PARAMS)} END")
    properties = """CASE f.e
      WHEN 'ue' THEN ue_data
      WHEN 'se' THEN json_object('category', f.se_ca, 'action', f.se_ac, 'label', f.se_la,
                                 'property', f.se_pr, 'value', CAST(f.se_va AS DOUBLE))
      WHEN 'pp' THEN json_object('pp_xoffset_min', CAST(f.pp_mix AS INTEGER),
                                 'pp_xoffset_max', CAST(f.pp_max AS INTEGER),
                                 'pp_yoffset_min', CAST(f.pp_miy AS INTEGER),
                                 'pp_yoffset_max', CAST(f.pp_may AS INTEGER))
      WHEN 'tr' THEN json_object('affiliation', f.tr_af, 'tax', CAST(f.tr_tx AS DOUBLE),
                                 'shipping', CAST(f.tr_sh AS DOUBLE), 'city', f.tr_ci,
                                 'state', f.tr_st, 'country', f.tr_co)
    END"""
    return {
        "tenant": "tenant",
        "event_id": "coalesce(f.eid, 'dn:' || md5(item))",
        "event_type": etype,
        "event_name": ename,
        "protocol": "protocol",
        "app_id": "f.aid",
        "platform": "f.p",
        "client_ts": _ms_ts("dtm"),
        "sent_ts": _ms_ts("stm"),
        "received_at": "received_at",
        "derived_ts": "received_at",
        "anonymous_id": "f.duid",
        "user_id": "f.uid",
        # SP-Anonymous: the visitor asked for no network id and no IP, whoever sent them.
        "network_user_id": "CASE WHEN NOT sp_anonymous THEN coalesce(f.tnuid, header_nuid, "
                           "f.nuid) END",
        "session_id": "f.sid",
        "session_index": "CAST(f.vid AS INTEGER)",
        "page_url": "f.url",
        "page_title": "f.page",
        "referrer": "f.refr",
        "user_agent": "coalesce(f.ua, header_ua)",
        "screen": "f.res",
        "viewport": "f.vp",
        "language": "f.lang",
        "timezone": "f.tz",
        "ip": "CASE WHEN NOT sp_anonymous THEN coalesce(f.ip, ip) END",
        **product_columns(
            "item_list",
            f"CASE WHEN f.e IN ('tr', 'ti') THEN 'purchase' WHEN iglu.name = 'site_search' "
            f"THEN 'search' ELSE {action_case('ecom_type', SNOWPLOW_ACTIONS)} END"),
        "currency": "CASE f.e WHEN 'tr' THEN f.tr_cu WHEN 'ti' THEN f.ti_cu WHEN 'ue' THEN "
                    "coalesce(ord.currency, one.currency, cart_currency) END",
        "order_id": "CASE f.e WHEN 'tr' THEN f.tr_id WHEN 'ti' THEN f.ti_id "
                    "WHEN 'ue' THEN ord.transaction_id END",
        "revenue": "CASE f.e WHEN 'tr' THEN CAST(f.tr_tt AS DOUBLE) "
                   "WHEN 'ue' THEN coalesce(ord.revenue, ord.refund_amount) END",
        "search_query": "CASE WHEN iglu.name = 'site_search' THEN array_to_string(try("
                        "json_transform(ue_data->'$.terms', '[\"VARCHAR\"]')), ' ') END",
        # A self-describing event's data as sent (nulls too); the other types' properties
        # are built of parameters, where json_merge_patch drops the ones the tracker left out.
        "properties": f"CASE WHEN f.e = 'ue' THEN ue_data "
                      f"ELSE nullif(json_merge_patch('{{}}', {properties}), '{{}}') END",
        "context": "json_extract(ctx_text, '$.data')",
        "extra": f"nullif(json_merge_patch(item, {drop}, CASE WHEN f.e = 'ue' THEN "
                 f"json_object('event_schema', ue_text->>'$.data.schema') ELSE '{{}}' END, "
                 f"CASE WHEN {_NUID_KEPT} THEN json_object('nuid', f.nuid) ELSE '{{}}' END), "
                 f"'{{}}')",
        **LINEAGE,
        "item_index": "item_index",
        "pipeline_version": quote(PIPELINE_VERSION),
    }


_QUARANTINE = select_rejected(
    "sp_hits", "sp_parsed",
    "CASE WHEN is_post THEN bad_body ELSE encode(coalesce(query, '')) END", {
        "payload": "coalesce(encode(query), encode(item))",
        "event_id": "CASE WHEN item_type = 'OBJECT' THEN f.eid END",
    })
_EVENTS = f"SELECT {select_events(_event_columns())} FROM sp_ok"


class SnowplowAdapter(SqlAdapter):
    """The Snowplow tracker protocol: JavaScript, mobile and server trackers, GET and POST."""

    protocols: tuple[str, ...] = ("snowplow",)
    stages, events, quarantine = _STAGES, _EVENTS, _QUARANTINE
