"""Segment spec (HTTP tracking API and analytics.js), vectorised in DuckDB.

Single-event endpoints carry one message; batch endpoints ``{"batch": [...], "context",
"sentAt"}`` carry many. A batch's fields apply to each of its messages, under the message's
own (nulls included): its context merged under each message's context, its other fields
(``integrations``, ...) under the message's other fields in ``extra``. Every hit ends up as
events or quarantine rows (an empty batch is quarantined, so each hit is accounted for).

driftnet's own dn.js (protocol ``dn``) speaks the same spec. Until the visitor consents its
messages name no anonymousId: the anonymous id is then the cookieless id the collector put in
the envelope (``x-driftnet-visitor``), which is also the id kept when the tenant honours
Global Privacy Control and the request carried it (``x-driftnet-gpc``).
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
    PROTOCOL,
    QUERY_NOT_UTF8,
    SCALAR_TYPES,
    SCHEMA,
    first_rejection,
    json_body_checks,
    merge_keeping_nulls,
    not_a,
    other_keys,
    reject,
    too_big_event,
    too_many_events,
    usable_time,
)
from ingest.loader.protocols.session import scoped_session_sql
from ingest.loader.protocols.urlencoded import nested_json, valid
from ingest.loader.sql import LINEAGE, QUARANTINE_FROM_HIT, select_events, select_quarantine
from ingest.paths import BATCH, SEGMENT_PATHS, SEGMENT_TYPES
from schemas.sql import quote, quote_ident
from schemas.version import PIPELINE_VERSION

# What a path says about its body: the table the collector routes by.
BATCH_PATHS = tuple(path for path, p in SEGMENT_PATHS.items() if p.message == BATCH)
PATH_TYPES = {path: p.message for path, p in SEGMENT_PATHS.items() if p.message != BATCH}

# Top-level message fields that map to columns; every other field goes to `extra`.
# writeKey is a credential: it stays in the raw archive only. originalTimestamp maps to
# client_ts only without a timestamp: beside one it goes to `extra` (_ORIGINAL_KEPT).
MAPPED_FIELDS = (
    "type", "event", "messageId", "anonymousId", "userId", "timestamp", "originalTimestamp",
    "sentAt", "properties", "traits", "context", "writeKey",
)

# Fields whose JSON type is checked before their value is trusted. The item is parsed once,
# into JSON text per field: its first character gives the type, and strings are unquoted.
_TYPED = ("type", "event", "messageId", "anonymousId", "userId", "timestamp",
          "originalTimestamp", "sentAt", "properties", "traits", "context", "groupId",
          "previousId")
_T = {name: i + 1 for i, name in enumerate(_TYPED)}  # 1-based list index
_OBJECTS = ("properties", "traits", "context")
_ITEM_SPEC = orjson.dumps({"name": "VARCHAR", **dict.fromkeys(_TYPED, "JSON")}).decode()


def _kind(x: str) -> str:
    """SQL: the JSON type name of JSON text ``x`` (NULL and missing are 'NULL')."""
    return (f"CASE WHEN {x} IS NULL THEN 'NULL' ELSE CASE left({x}, 1) WHEN '\"' THEN "
            f"'VARCHAR' WHEN '{{' THEN 'OBJECT' WHEN '[' THEN 'ARRAY' WHEN 't' THEN 'BOOLEAN' "
            f"WHEN 'f' THEN 'BOOLEAN' ELSE 'DOUBLE' END END")


def _text(x: str) -> str:
    """SQL: JSON text ``x`` as a string value (strings unquoted, other values as written)."""
    return (f"CASE WHEN starts_with({x}, '\"') THEN json_extract_string({x}, '$') "
            f"ELSE {x}::VARCHAR END")


_E = "struct_pack(name := j.name, " + ", ".join(
    f"{f} := j.{f}" if f in _OBJECTS else f"{f} := {_text('j.' + f)}" for f in _TYPED) + ")"
_KINDS = "[" + ", ".join(_kind("j." + f) for f in _TYPED) + "]"

_CONTEXT_SPEC = orjson.dumps({
    "page": {"url": "VARCHAR", "title": "VARCHAR", "path": "VARCHAR", "referrer": "VARCHAR"},
    "userAgent": "VARCHAR", "locale": "VARCHAR", "timezone": "VARCHAR", "ip": "VARCHAR",
    "campaign": {"source": "VARCHAR", "medium": "VARCHAR", "name": "VARCHAR",
                 "term": "VARCHAR", "content": "VARCHAR"},
    "screen": {"width": "BIGINT", "height": "BIGINT", "innerWidth": "BIGINT",
               "innerHeight": "BIGINT"},
    "sessionId": "VARCHAR", "sessionStart": "VARCHAR",
}).decode()
_PROPS_SPEC = orjson.dumps({
    **SEGMENT_PRODUCT, "order_id": "VARCHAR", "revenue": "DOUBLE",
    "total": "DOUBLE", "query": "VARCHAR", "url": "VARCHAR", "title": "VARCHAR",
    "path": "VARCHAR", "referrer": "VARCHAR", "products": [SEGMENT_PRODUCT],
}).decode()
_DROP_MAPPED = orjson.dumps(dict.fromkeys(MAPPED_FIELDS)).decode()
_DROP_BESIDE_TIMESTAMP = orjson.dumps(
    dict.fromkeys(f for f in MAPPED_FIELDS if f != "originalTimestamp")).decode()
_ORIGINAL_KEPT = "(e.timestamp IS NOT NULL AND e.originalTimestamp IS NOT NULL)"
"""SQL: the message has both times; originalTimestamp, not read, stays in ``extra``."""
# A batch's fields that are not its messages' own: read by the batch, or a credential.
_BATCH_READ = ("batch", "context", "sentAt", "writeKey")
_DROP_BATCH_READ = orjson.dumps(dict.fromkeys(_BATCH_READ)).decode()
_DROP_BATCH_SENT = orjson.dumps(dict.fromkeys(f for f in _BATCH_READ if f != "context")).decode()
_BATCH_SENT_KEPT = (f"(batch_sent IS NOT NULL AND "
                    f"{usable_time('try_cast(batch_sent AS TIMESTAMPTZ)')} IS NULL)")
"""SQL: the batch's sentAt is no date that ``sent_ts`` could take: it stays in ``extra``.
(Beside a message's own sentAt a valid one is not kept: RudderStack sends both on every
message, and a copy in each event's extra cost 10% of the Segment loader's speed.)"""

# dn.js: the envelope's cookieless id stands in for a missing anonymousId, and replaces any
# when the tenant honours Global Privacy Control and the request carried Sec-GPC: 1.
_ANON = ("CASE WHEN protocol = 'dn' AND (hv[2] = '1' "
         "OR coalesce(e.anonymousId, '') = '') THEN hv[3] "
         "ELSE e.anonymousId END")
_OBJECT_OR_NULL = "('OBJECT', 'NULL')"


def _present(field: str) -> str:
    return f"coalesce(t[{_T[field]}], 'NULL') <> 'NULL'"


def _bad_time(field: str) -> str:
    return (f"({_present(field)} AND (t[{_T[field]}] <> 'VARCHAR' "
            f"OR {usable_time(f'try_cast(e.{quote_ident(field)} AS TIMESTAMPTZ)')} IS NULL))")


def _validation() -> str:
    """CASE yielding {reason, detail} for an invalid message, NULL for a valid one."""
    checks = [
        ("item_json_type IS DISTINCT FROM 'OBJECT'",
         reject(SCHEMA, not_a("item_json_type", "event"))),
        (f"strlen(item) > {MAX_EVENT_BYTES}", too_big_event("strlen(item)")),
        (f"{_present('type')} AND t[{_T['type']}] <> 'VARCHAR'",
         reject(SCHEMA, quote("type must be a string"))),
        ("etype IS NULL", reject(PROTOCOL, quote("message has no type"))),
        (f"etype NOT IN ({', '.join(quote(x) for x in SEGMENT_TYPES)})",
         reject(PROTOCOL, "'unknown type ' || etype")),
        (f"{_present('anonymousId')} AND t[{_T['anonymousId']}] NOT IN {SCALAR_TYPES}",
         reject(SCHEMA, quote("anonymousId must be a string"))),
        (f"{_present('userId')} AND t[{_T['userId']}] NOT IN {SCALAR_TYPES}",
         reject(SCHEMA, quote("userId must be a string"))),
        ("coalesce(anon, '') = '' AND coalesce(e.userId, '') = ''",
         reject(PROTOCOL, quote("anonymousId or userId is required"))),
        (f"{_present('messageId')} AND t[{_T['messageId']}] NOT IN {SCALAR_TYPES}",
         reject(SCHEMA, quote("messageId must be a string"))),
        (f"etype = 'track' AND NOT {_present('event')}",
         reject(PROTOCOL, quote("track message has no event name"))),
        (f"etype = 'track' AND (t[{_T['event']}] <> 'VARCHAR' OR e.event = '')",
         reject(SCHEMA, quote("event must be a non-empty string"))),
        (f"coalesce(t[{_T['properties']}], 'NULL') NOT IN {_OBJECT_OR_NULL}",
         reject(SCHEMA, f"'properties must be an object, not ' || "
            f"lower(t[{_T['properties']}])")),
        (f"coalesce(t[{_T['traits']}], 'NULL') NOT IN {_OBJECT_OR_NULL}",
         reject(SCHEMA, f"'traits must be an object, not ' || lower(t[{_T['traits']}])")),
        (f"coalesce(t[{_T['context']}], 'NULL') NOT IN {_OBJECT_OR_NULL}",
         reject(SCHEMA, f"'context must be an object, not ' || "
            f"lower(t[{_T['context']}])")),
        (_bad_time("timestamp"),
         reject(SCHEMA, "'timestamp is not an ISO-8601 date: ' || "
            "coalesce(e.timestamp, '?')")),
        (_bad_time("originalTimestamp"),
         reject(SCHEMA, "'originalTimestamp is not an ISO-8601 date: ' || "
            "coalesce(e.originalTimestamp, '?')")),
        (_bad_time("sentAt"),
         reject(SCHEMA, "'sentAt is not an ISO-8601 date: ' || coalesce(e.sentAt, '?')")),
        (f"etype = 'alias' AND NOT {_present('previousId')}",
         reject(PROTOCOL, quote("alias message has no previousId"))),
        (f"etype = 'group' AND NOT {_present('groupId')}",
         reject(PROTOCOL, quote("group message has no groupId"))),
    ]
    return first_rejection(checks)


_PATH_TYPE_CASE = "CASE path " + " ".join(
    f"WHEN {quote(p)} THEN {quote(t)}" for p, t in PATH_TYPES.items()
) + " END"
_BATCH_PATHS = ", ".join(quote(p) for p in BATCH_PATHS)
# The request headers the items read (hv[1..3]), taken out of each hit's headers once: an
# item carries three values, not the hit's headers (a batch's items would each copy them).
_HEADER_VALUES = ("json_extract_string(headers, "
                  "['$.\"user-agent\"', '$.\"x-driftnet-gpc\"', '$.\"x-driftnet-visitor\"'])")
_ITEM_COLS = ("tenant, received_at, protocol, path, hv, ip, source, source_partition, "
              "source_offset, source_index")

_STAGES = f"""
-- Two materialised stages (hits, parsed items); the rest are views or one nested SELECT.
-- Bodies stay out of item rows: copying a batch body onto each of its items is quadratic.
CREATE OR REPLACE TEMP TABLE seg_hits AS
SELECT {_ITEM_COLS}, text, kinds[1] AS root_type, kinds[2] AS batch_type,
  CASE
    WHEN text IS NULL AND method = 'GET' THEN
      {QUERY_NOT_UTF8}
    {json_body_checks("text", "kinds")}
  END AS hit_q
FROM (SELECT *, try(json_type(text, ['$', '$.batch'])) AS kinds,
        {_HEADER_VALUES} AS hv
      -- A GET is a RudderStack pixel: its query string, as the message it stands for.
      FROM (SELECT *, CASE WHEN method <> 'GET' THEN try(decode(body))
                           WHEN {valid("query")}
                           THEN CAST({nested_json("query", ("writeKey",))} AS VARCHAR)
                      END AS text FROM @hits@));

-- Batch bodies are parsed once, into their items, context and sentAt; the item count
-- and the items come from that one parse (a table: its query and the quarantine's read it).
CREATE OR REPLACE TEMP TABLE seg_batches AS
SELECT *,
  CASE
    WHEN batch_type IS DISTINCT FROM 'ARRAY' THEN
      {reject(PROTOCOL, "'batch must be an array, not ' || "
          "lower(coalesce(batch_type, 'missing'))")}
    WHEN n_items = 0 THEN {reject(PROTOCOL, quote("batch holds no events"))}
    WHEN n_items > {MAX_BATCH_ITEMS} THEN {too_many_events("n_items", "batch")}
  END AS batch_q
FROM (
  SELECT *, len(b.batch) AS n_items,
    -- integrations and any other field of no column apply to each message (its extra); so
    -- does a context that is no object, which no context can merge with
    -- (listing the keys first: a merge patch copies the whole body)
    CASE WHEN batch_type = 'ARRAY' AND {other_keys('text', _BATCH_READ)}
                + (CASE WHEN b.context IS NULL OR json_type(b.context) = 'OBJECT'
                   THEN 0 ELSE 1 END) > 0 THEN
      nullif(json_merge_patch(text, CASE WHEN b.context IS NULL
        OR json_type(b.context) = 'OBJECT' THEN {quote(_DROP_BATCH_READ)}
        ELSE {quote(_DROP_BATCH_SENT)} END), '{{}}')
    END AS batch_rest
  FROM (SELECT *, CASE WHEN batch_type = 'ARRAY' THEN
                    json_transform(text, '{{"batch":["JSON"],"context":"JSON","sentAt":"JSON"}}')
                  END AS b
        FROM seg_hits
        WHERE hit_q IS NULL AND (path IN ({_BATCH_PATHS}) OR batch_type IS NOT NULL))
);

CREATE OR REPLACE TEMP VIEW seg_items AS
SELECT {_ITEM_COLS}, text AS item, 0 AS item_index, root_type AS item_json_type,
       NULL::JSON AS batch_ctx, NULL::VARCHAR AS batch_sent, NULL::JSON AS batch_sent_json,
       NULL::JSON AS batch_rest, {_PATH_TYPE_CASE} AS path_type
FROM seg_hits
WHERE hit_q IS NULL AND NOT (path IN ({_BATCH_PATHS}) OR batch_type IS NOT NULL)
UNION ALL
SELECT {_ITEM_COLS}, item, item_index, try(json_type(item)) AS item_json_type,
       batch_ctx, {_text("batch_sent_json")} AS batch_sent, batch_sent_json, batch_rest,
       NULL AS path_type
FROM (
  SELECT {_ITEM_COLS}, unnest(b.batch) AS item, unnest(range(len(b.batch))) AS item_index,
         CASE WHEN json_type(b.context) = 'OBJECT' THEN b.context END AS batch_ctx,
         b.sentAt AS batch_sent_json, batch_rest
  FROM seg_batches WHERE batch_q IS NULL
);

-- The JSON types (t) serve the validation only: the table does not keep them.
CREATE OR REPLACE TEMP TABLE seg_parsed AS
SELECT * EXCLUDE (t, path_type), {_validation()} AS q
FROM (
  SELECT *, coalesce(e.type, path_type) AS etype, {_ANON} AS anon
  FROM (
    SELECT * EXCLUDE (j), CASE WHEN j IS NOT NULL THEN {_E} END AS e,
      CASE WHEN j IS NOT NULL THEN {_KINDS} END AS t
    FROM (SELECT *, CASE WHEN item_json_type = 'OBJECT'
                         THEN json_transform(item, {quote(_ITEM_SPEC)}) END AS j
          FROM seg_items)
  )
);

CREATE OR REPLACE TEMP VIEW seg_ok AS
SELECT *, {only_item("its")} AS one
FROM (
  SELECT *, {segment_items("p", "action")} AS its
  FROM (
    SELECT *,
      json_transform(ctx, {quote(_CONTEXT_SPEC)}) AS c,
      json_transform(e.properties, {quote(_PROPS_SPEC)}) AS p,
      {action_case("CASE WHEN etype = 'track' THEN e.event END", SEGMENT_ACTIONS)} AS action
    FROM (
      SELECT *,
        -- the message's context wins key by key, its nulls too (json_merge_patch would
        -- read them as deletions)
        CASE WHEN batch_ctx IS NOT NULL
             THEN {merge_keeping_nulls("batch_ctx", "coalesce(e.context, '{}')")}
             ELSE e.context END AS ctx
      FROM seg_parsed WHERE q IS NULL
    )
  )
);
"""

# Most messages hold only mapped fields: a look at the keys spares them the merge patch.
_OWN_EXTRA = (f"CASE WHEN {_ORIGINAL_KEPT} THEN json_merge_patch(item, "
              f"{quote(_DROP_BESIDE_TIMESTAMP)}) "
              f"WHEN {other_keys('item', MAPPED_FIELDS)} > 0 THEN nullif(json_merge_patch(item, "
              f"{quote(_DROP_MAPPED)}), '{{}}') END")
"""SQL: the message's own fields that no column takes."""
_OWN_EXTRA_OR_EMPTY = f"coalesce({_OWN_EXTRA}, '{{}}')"
_BATCH_EXTRA = (f"CASE WHEN {_BATCH_SENT_KEPT} THEN json_merge_patch(coalesce(batch_rest, "
                f"'{{}}'), json_object('sentAt', batch_sent_json)) "
                f"ELSE coalesce(batch_rest, '{{}}') END")
"""SQL: the batch's fields that apply to the message and no column takes."""

_EVENTS = {
    "tenant": "tenant",
    "event_id": "coalesce(e.messageId, 'dn:' || md5(item))",
    "event_type": "etype",
    "event_name": "CASE etype WHEN 'track' THEN e.event WHEN 'page' THEN 'page_view' "
                  "WHEN 'screen' THEN 'screen_view' ELSE etype END",
    "protocol": "protocol",
    "platform": "CASE WHEN protocol = 'dn' OR path IN ('/v1/t', '/v1/p', '/v1/i', '/v1/s', "
                "'/v1/g', '/v1/a', '/v1/b') THEN 'web' END",
    "client_ts": usable_time("try_cast(coalesce(e.timestamp, e.originalTimestamp) "
                             "AS TIMESTAMPTZ)"),
    "sent_ts": usable_time("try_cast(coalesce(e.sentAt, batch_sent) AS TIMESTAMPTZ)"),
    "received_at": "received_at",
    "derived_ts": "received_at",
    "anonymous_id": "nullif(anon, '')",
    "user_id": "nullif(e.userId, '')",
    "session_id": scoped_session_sql("c.sessionId", "anon", "e.userId"),
    "page_url": "coalesce(c.page.url, CASE WHEN etype = 'page' THEN p.url END)",
    "page_path": "coalesce(c.page.path, CASE WHEN etype = 'page' THEN p.path END)",
    "page_title": "coalesce(c.page.title, CASE WHEN etype = 'page' THEN p.title END)",
    "referrer": "nullif(coalesce(c.page.referrer, CASE WHEN etype = 'page' THEN p.referrer END), "
                "'')",
    "utm_source": "c.campaign.source",
    "utm_medium": "c.campaign.medium",
    "utm_campaign": "c.campaign.name",
    "utm_term": "c.campaign.term",
    "utm_content": "c.campaign.content",
    "user_agent": "coalesce(c.userAgent, hv[1])",
    "screen": "CASE WHEN c.screen.width IS NOT NULL THEN c.screen.width || 'x' || "
              "c.screen.height END",
    "viewport": "CASE WHEN c.screen.innerWidth IS NOT NULL THEN c.screen.innerWidth || 'x' || "
                "c.screen.innerHeight END",
    "language": "c.locale",
    "timezone": "c.timezone",
    "ip": "coalesce(c.ip, ip)",
    **product_columns("its", "action", props="p"),
    "search_query": "p.query",
    "properties": "e.properties",
    "traits": "e.traits",
    "context": "ctx",
    "extra": f"CASE WHEN batch_rest IS NOT NULL THEN "
             f"nullif({merge_keeping_nulls(_BATCH_EXTRA, _OWN_EXTRA_OR_EMPTY)}, '{{}}') "
             f"WHEN {_BATCH_SENT_KEPT} THEN json_merge_patch({_OWN_EXTRA_OR_EMPTY}, "
             f"json_object('sentAt', batch_sent_json)) ELSE {_OWN_EXTRA} END",
    **LINEAGE,
    "item_index": "item_index",
    "pipeline_version": quote(PIPELINE_VERSION),
}

_QUARANTINE_COMMON = QUARANTINE_FROM_HIT


def _quarantine_sql() -> str:
    hit_level = select_quarantine({
        **_QUARANTINE_COMMON, "reason": "hit_q.reason", "detail": "hit_q.detail",
        "payload": "(SELECT body FROM @hits@ b WHERE b.source_partition = h.source_partition "
                   "AND b.source_offset = h.source_offset AND b.source_index = h.source_index)",
    })
    batch_level = select_quarantine({
        **_QUARANTINE_COMMON, "reason": "batch_q.reason", "detail": "batch_q.detail",
        "payload": "encode(text)",
    })
    item_level = select_quarantine({
        **_QUARANTINE_COMMON, "reason": "q.reason", "detail": "q.detail",
        "payload": "encode(coalesce(item, 'null'))", "item_index": "item_index",
        "event_id": "CASE WHEN item_json_type = 'OBJECT' THEN e.messageId END",
    })
    return (f"SELECT {hit_level} FROM seg_hits h WHERE hit_q IS NOT NULL\n"
            f"UNION ALL SELECT {batch_level} FROM seg_batches WHERE batch_q IS NOT NULL\n"
            f"UNION ALL SELECT {item_level} FROM seg_parsed WHERE q IS NOT NULL")


_QUARANTINE = _quarantine_sql()
_EVENTS_SQL = f"SELECT {select_events(_EVENTS)} FROM seg_ok"


class SegmentAdapter(SqlAdapter):
    """Segment HTTP API, analytics.js, the Segment-spec JSON of RudderStack and Jitsu, dn.js."""

    protocols: tuple[str, ...] = ("segment", "rudderstack", "jitsu", "dn")
    stages, events, quarantine = _STAGES, _EVENTS_SQL, _QUARANTINE
