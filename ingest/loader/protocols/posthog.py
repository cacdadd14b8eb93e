"""PostHog's capture API (posthog-js, server SDKs): ``/e``, ``/i/v0/e``, ``/capture``, ``/batch``.

The collector has already undone gzip, lz64, base64 and form encodings (``x-driftnet-decoded``
says which), so a body is JSON: a list of events (posthog-js), a ``{"api_key", "batch": [...],
"sent_at"}`` object (``/batch``), or one event. An event is ``{"event", "properties",
"distinct_id", "timestamp" | "offset", "uuid", "$set", "$set_once"}``; posthog-js sends most
of what it knows as ``$``-properties. Vectorised in DuckDB.
"""

from __future__ import annotations

import orjson

from ingest.loader.protocols import SqlAdapter
from ingest.loader.protocols.ecommerce import (
    SEGMENT_ACTIONS,
    SEGMENT_PRODUCT,
    action_case,
    only_item,
    product_columns,
    segment_items,
)
from ingest.loader.protocols.kit import (
    MAX_BATCH_ITEMS,
    MAX_EVENT_BYTES,
    NUMBER_TYPES,
    PROTOCOL,
    SCALAR_TYPES,
    SCHEMA,
    first_rejection,
    json_body_checks,
    merge_keeping_nulls,
    not_a,
    reject,
    too_big_event,
    too_many_events,
    usable_time,
)
from ingest.loader.sql import LINEAGE, select_events, select_rejected
from schemas.sql import quote
from schemas.version import PIPELINE_VERSION

EVENT_TYPES = {"$pageview": "page", "$screen": "screen", "$identify": "identify",
               "$groupidentify": "group", "$create_alias": "alias"}
"""PostHog's own events -> event_type (their event_name: page_view, screen_view, identify,
group, alias); every other event is a ``track`` named as sent."""
MOBILE_LIBS = ("posthog-ios", "posthog-android", "posthog-react-native", "posthog-flutter")

_EVENT_SPEC = orjson.dumps({
    "event": "VARCHAR", "uuid": "VARCHAR", "timestamp": "VARCHAR", "offset": "DOUBLE",
    "distinct_id": "VARCHAR", "$distinct_id": "VARCHAR", "$set": "JSON", "$set_once": "JSON",
}).decode()
_PROPS_SPEC = orjson.dumps({
    **dict.fromkeys(("distinct_id", "$device_id", "$anon_distinct_id", "$user_id",
                     "$session_id", "$current_url",
                     "$pathname", "$title", "title", "$referrer", "$browser_language",
                     "$timezone", "$raw_user_agent", "$ip", "$lib", "utm_source", "utm_medium",
                     "utm_campaign", "utm_term", "utm_content", "order_id",
                     "query"), "VARCHAR"),
    **dict.fromkeys(("$screen_width", "$screen_height", "$viewport_width",
                     "$viewport_height"), "BIGINT"),
    "$time": "DOUBLE", "$set": "JSON", "$set_once": "JSON", "$group_set": "JSON",
    "$is_identified": "JSON",
    "revenue": "DOUBLE", "total": "DOUBLE", "products": [SEGMENT_PRODUCT], **SEGMENT_PRODUCT,
}).decode()
# Kinds checked before the values above are trusted (1-based positions in `t`); values of
# other types are NULL in `e`/`p` (json_transform) and stay as sent in `properties`.
_DOLLAR_ID = '$."$distinct_id"'
_KINDS = ("$", "$.event", "$.properties", "$.timestamp", "$.offset", "$.distinct_id",
          _DOLLAR_ID, "$.properties.distinct_id", "$.uuid")
_T = {path: i + 1 for i, path in enumerate(_KINDS)}
_PATHS = "[" + ", ".join(quote(k) for k in _KINDS) + "]"
_DEVICE = ("coalesce(nullif(p.\"$device_id\", ''), CASE WHEN e.event = '$identify' THEN "
           "nullif(p.\"$anon_distinct_id\", '') END)")
"""The visitor's device id: $device_id, else on $identify the anonymous id it links."""
_IDENTIFIED = (f"coalesce({_DEVICE}, '') NOT IN ('', distinct_id) OR e.event = '$identify' "
               "OR p.\"$is_identified\" = 'true'")
"""distinct_id is a user id: the device is another id, the event is an $identify (its
distinct_id is the user it names, also from server SDKs, which send no anonymous id), or
posthog-js says it was sent after an identify (``$is_identified``, the JSON boolean true)."""
_TOKENS = orjson.dumps(dict.fromkeys(("token", "$token", "api_key"))).decode()
_DROP_TOP = orjson.dumps(dict.fromkeys((
    "event", "properties", "uuid", "timestamp", "offset", "distinct_id", "$distinct_id",
    "token", "$token", "api_key"))).decode()
_HIT_COLS = ("tenant, received_at, protocol, headers, ip, source, source_partition, "
             "source_offset, source_index")
# A batch's fields that are not its events': the events, the token (a credential), the send
# time (read into sent_ts, when it is a date).
_BATCH_READ = ("batch", "api_key", "token", "$token", "sent_at")
_BATCH_READ_LIST = "[" + ", ".join(quote(f) for f in _BATCH_READ) + "]"
_DROP_BATCH_READ = orjson.dumps(dict.fromkeys(_BATCH_READ)).decode()
_DROP_BATCH_BUT_SENT = orjson.dumps(dict.fromkeys(_BATCH_READ[:-1])).decode()
_SENT_AT_READ = ("(k[3] = 'VARCHAR' AND "
                 f"{usable_time('try_cast(text->>' + quote('$.sent_at') + ' AS TIMESTAMPTZ)')} "
                 "IS NOT NULL)")


def _kind(path: str) -> str:
    return f"t[{_T[path]}]"


def _present(path: str) -> str:
    return f"coalesce({_kind(path)}, 'NULL') <> 'NULL'"


def _validation() -> str:
    checks = [
        ("t IS NULL OR t[1] <> 'OBJECT'",
         reject(SCHEMA, not_a("t[1]", "event"))),
        (f"strlen(item) > {MAX_EVENT_BYTES}", too_big_event("strlen(item)")),
        (f"NOT {_present('$.event')}", reject(PROTOCOL, "'event has no name (event)'")),
        (f"{_kind('$.event')} <> 'VARCHAR' OR e.event = ''",
         reject(SCHEMA, "'event must be a non-empty string'")),
        (f"{_present('$.properties')} AND {_kind('$.properties')} <> 'OBJECT'",
         reject(SCHEMA, f"'properties must be an object, not ' || "
            f"lower({_kind('$.properties')})")),
        (f"NOT (coalesce({_kind('$.distinct_id')}, 'NULL') IN {SCALAR_TYPES} "
         f"OR coalesce({_kind(_DOLLAR_ID)}, 'NULL') IN {SCALAR_TYPES} "
         f"OR coalesce({_kind('$.properties.distinct_id')}, 'NULL') IN {SCALAR_TYPES}) "
         f"OR coalesce(distinct_id, '') = ''",
         reject(PROTOCOL, "'distinct_id is required'")),
        (f"{_present('$.timestamp')} AND ({_kind('$.timestamp')} <> 'VARCHAR' "
         f"OR {usable_time('try_cast(e.timestamp AS TIMESTAMPTZ)')} IS NULL)",
         reject(SCHEMA, "'timestamp is not an ISO-8601 date: ' || "
            "coalesce(e.timestamp, '?')")),
        (f"{_present('$.offset')} AND {_kind('$.offset')} NOT IN {NUMBER_TYPES}",
         reject(SCHEMA, "'offset must be a number of milliseconds'")),
        (f"{_present('$.uuid')} AND {_kind('$.uuid')} <> 'VARCHAR'",
         reject(SCHEMA, "'uuid must be a string'")),
    ]
    return first_rejection(checks)


_TYPE_WHENS = " ".join(f"WHEN {quote(k)} THEN {quote(v)}" for k, v in EVENT_TYPES.items())
_SENT_MS = "try_cast(regexp_extract(query, '(?:^|&)_=([0-9]{1,15})(?:&|$)', 1) AS BIGINT)"

_SENT = usable_time(
    "coalesce(try_cast(CASE WHEN k[3] = 'VARCHAR' THEN text->>'$.sent_at' END AS TIMESTAMPTZ), "
    # posthog-js's _=<ms>; smaller numbers are seconds from old SDKs: ignored
    f"CASE WHEN {_SENT_MS} > 1577836800000 "
    f"THEN make_timestamp({_SENT_MS} * 1000)::TIMESTAMPTZ END)")

_STAGES = f"""
CREATE OR REPLACE TEMP TABLE ph_hits AS
SELECT {_HIT_COLS}, text, k, hit_q, CASE WHEN hit_q IS NOT NULL THEN body END AS bad_body,
  {_SENT} AS sent,
  -- a batch's other fields (historical_migration, a sent_at that is no date, ...) go to the
  -- extra of each of its events (listing the keys first: a merge patch copies the body)
  CASE WHEN hit_q IS NULL AND k[1] = 'OBJECT' AND k[2] = 'ARRAY'
            AND len(list_filter(json_keys(text), lambda x: NOT list_contains(
                  {_BATCH_READ_LIST}, x) OR (x = 'sent_at' AND NOT {_SENT_AT_READ}))) > 0
       THEN nullif(json_merge_patch(text, CASE WHEN {_SENT_AT_READ}
                   THEN {quote(_DROP_BATCH_READ)} ELSE {quote(_DROP_BATCH_BUT_SENT)} END), '{{}}')
  END AS batch_rest
FROM (
  SELECT *,
    CASE
      {json_body_checks("text", "k", "an event, a list of events or a batch", ("OBJECT", "ARRAY"))}
      WHEN k[1] = 'OBJECT' AND k[2] IS NOT NULL AND k[2] <> 'ARRAY' THEN
        {reject(PROTOCOL, "'batch must be a list, not ' || lower(k[2])")}
      WHEN n_items = 0 THEN {reject(PROTOCOL, "'request holds no events'")}
      WHEN n_items > {MAX_BATCH_ITEMS} THEN {too_many_events("n_items", "request")}
    END AS hit_q
  FROM (
    SELECT *, CASE WHEN k[1] = 'ARRAY' THEN json_array_length(text)
                   WHEN k[2] = 'ARRAY' THEN json_array_length(text, '$.batch')
                   WHEN k[1] = 'OBJECT' THEN 1 END AS n_items
    FROM (SELECT *, try(json_type(text, ['$', '$.batch', '$.sent_at'])) AS k
          FROM (SELECT *, coalesce(query, '') AS query, try(decode(body)) AS text FROM @hits@))
  )
);

CREATE OR REPLACE TEMP TABLE ph_parsed AS
SELECT *, {_validation()} AS q
FROM (
  SELECT *, coalesce(e.distinct_id, e."$distinct_id", p.distinct_id) AS distinct_id,
    coalesce(p."$title", CASE WHEN e.event = '$pageview' THEN p.title END) AS title
  FROM (
    SELECT *,
      CASE WHEN t[1] = 'OBJECT' THEN json_transform(item, {quote(_EVENT_SPEC)}) END AS e,
      CASE WHEN t[3] = 'OBJECT' THEN json_transform(item->'$.properties', {quote(_PROPS_SPEC)})
      END AS p
    FROM (
      SELECT *, try(json_type(item, {_PATHS})) AS t
      FROM (
        SELECT {_HIT_COLS}, sent, batch_rest, text AS item, 0 AS item_index
        FROM ph_hits WHERE hit_q IS NULL AND k[1] = 'OBJECT' AND k[2] IS NULL
        UNION ALL
        SELECT {_HIT_COLS}, sent, batch_rest, unnest(items) AS item,
               unnest(range(len(items))) AS item_index
        FROM (SELECT *, CASE WHEN k[1] = 'ARRAY' THEN json_transform(text, '["JSON"]')
                        ELSE json_transform(text, '{{"batch": ["JSON"]}}').batch END AS items
              FROM ph_hits WHERE hit_q IS NULL AND (k[1] = 'ARRAY' OR k[2] = 'ARRAY'))
      )
    )
  )
);

CREATE OR REPLACE TEMP VIEW ph_ok AS
SELECT *, {only_item("its")} AS one
FROM (
  SELECT *, {segment_items("p", "action")} AS its
  FROM (
    SELECT *, {action_case("CASE WHEN etype = 'track' THEN e.event END", SEGMENT_ACTIONS)}
      AS action
    FROM (SELECT *, CASE e.event {_TYPE_WHENS} ELSE 'track' END AS etype
          FROM ph_parsed WHERE q IS NULL)
  )
);
"""

# $set over $set_once, key by key; a null of $set is a value set to null (PostHog sets it so),
# not a deletion as json_merge_patch reads it
_SET = ("CASE WHEN coalesce(e.\"$set\", p.\"$set\") IS NULL THEN coalesce(e.\"$set_once\", "
        "p.\"$set_once\") ELSE " + merge_keeping_nulls(
            "coalesce(e.\"$set_once\", p.\"$set_once\", '{}')",
            "coalesce(e.\"$set\", p.\"$set\")") + " END")
_OWN_EXTRA = f"nullif(json_merge_patch(item, {quote(_DROP_TOP)}), '{{}}')"
_OWN_EXTRA_OR_EMPTY = f"json_merge_patch(item, {quote(_DROP_TOP)})"
_EVENTS = {
    "tenant": "tenant",
    "event_id": "coalesce(nullif(e.uuid, ''), 'dn:' || md5(item))",
    "event_type": "etype",
    "event_name": "CASE etype WHEN 'page' THEN 'page_view' WHEN 'screen' THEN 'screen_view' "
                  "WHEN 'track' THEN e.event ELSE etype END",
    "protocol": "protocol",
    "platform": f"CASE WHEN p.\"$lib\" = 'web' THEN 'web' WHEN p.\"$lib\" IN "
                f"({', '.join(quote(m) for m in MOBILE_LIBS)}) THEN 'mobile' "
                f"WHEN p.\"$lib\" IS NOT NULL THEN 'server' END",
    "client_ts": usable_time("coalesce(try_cast(e.timestamp AS TIMESTAMPTZ), "
                             "CASE WHEN sent IS NOT NULL AND isfinite(e.offset) "
                             "AND abs(e.offset) < 1e12 "
                             "THEN sent - to_milliseconds(CAST(e.offset AS BIGINT)) END, "
                             "CASE WHEN p.\"$time\" BETWEEN 0 AND 253402300799 "
                             "THEN to_timestamp(p.\"$time\") END)"),
    "sent_ts": "sent",
    "received_at": "received_at",
    "derived_ts": "received_at",
    # An $identify names the anonymous id it links in $anon_distinct_id (posthog-js without
    # $device_id): that is the visitor, and distinct_id the user.
    "anonymous_id": f"coalesce({_DEVICE}, distinct_id)",
    "user_id": f"coalesce(nullif(p.\"$user_id\", ''), "
               f"CASE WHEN {_IDENTIFIED} THEN distinct_id END)",
    "session_id": "nullif(p.\"$session_id\", '')",
    "page_url": "nullif(p.\"$current_url\", '')",
    "page_path": "nullif(p.\"$pathname\", '')",
    "page_title": "nullif(title, '')",
    "referrer": "CASE WHEN p.\"$referrer\" NOT IN ('', '$direct') THEN p.\"$referrer\" END",
    "utm_source": "p.utm_source",
    "utm_medium": "p.utm_medium",
    "utm_campaign": "p.utm_campaign",
    "utm_term": "p.utm_term",
    "utm_content": "p.utm_content",
    "user_agent": "coalesce(p.\"$raw_user_agent\", headers->>'user-agent')",
    "screen": "CASE WHEN p.\"$screen_width\" IS NOT NULL THEN p.\"$screen_width\" || 'x' || "
              "p.\"$screen_height\" END",
    "viewport": "CASE WHEN p.\"$viewport_width\" IS NOT NULL THEN p.\"$viewport_width\" || 'x' "
                "|| p.\"$viewport_height\" END",
    "language": "nullif(p.\"$browser_language\", '')",
    "timezone": "nullif(p.\"$timezone\", '')",
    "ip": "coalesce(nullif(p.\"$ip\", ''), ip)",
    **product_columns("its", "action", props="p"),
    "search_query": "p.query",
    "properties": f"nullif(json_merge_patch(item->'$.properties', {quote(_TOKENS)}), '{{}}')",
    "traits": f"nullif(CASE WHEN etype = 'group' THEN p.\"$group_set\" ELSE {_SET} END, '{{}}')",
    "extra": f"CASE WHEN batch_rest IS NULL THEN {_OWN_EXTRA} ELSE nullif("
             f"{merge_keeping_nulls('batch_rest', _OWN_EXTRA_OR_EMPTY)}, '{{}}') END",
    **LINEAGE,
    "item_index": "item_index",
    "pipeline_version": quote(PIPELINE_VERSION),
}

_QUARANTINE = select_rejected("ph_hits", "ph_parsed", "bad_body", {
    "payload": "encode(coalesce(item, 'null'))",  # a JSON null in a list is SQL NULL
    "event_id": "CASE WHEN t[1] = 'OBJECT' AND t[9] = 'VARCHAR' THEN e.uuid END",
})
_EVENTS_SQL = f"SELECT {select_events(_EVENTS)} FROM ph_ok"


class PostHogAdapter(SqlAdapter):
    """PostHog capture requests (bodies decoded to JSON by the collector)."""

    protocols: tuple[str, ...] = ("posthog",)
    stages, events, quarantine = _STAGES, _EVENTS_SQL, _QUARANTINE
