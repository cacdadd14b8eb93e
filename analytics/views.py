"""SQL of the derived views: ``session_events`` and ``sessions``.

Every session-level number in analytics (the ``sessions`` view, ``discover --target``,
the ``sessions`` and ``intent`` export recipes) is built on ``session_events``, so what a
session is gets decided here, once:

- an event whose ``session_id`` is set (by the tracker, or by the loader's sessionisation)
  belongs to that session;
- an event without one is put into a session by inactivity: a new session starts after
  :data:`SESSION_GAP` without events from the same visitor (``anonymous_id``, else
  ``user_id``, else ``network_user_id``; an event with none of them is a session of its own).
  Such a session's id is ``gap30:<visitor>:<start in epoch microseconds>``, stable as long
  as no earlier event of the visitor appears, and ``session_inferred`` is true. The visitor
  is written with its kind (:data:`VISITOR`: ``a:``, ``u:``, ``n:`` or ``event:``), so an
  anonymous id and a user id that happen to be the same text are two visitors.

Events are ordered by :data:`EVENT_ORDER`: best-estimate time, then the client's clock
(events of one batch often share a server time), then lineage, which is the order in
which the tracker sent them. Time is ``derived_ts`` throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

SESSION_GAP: Final = "INTERVAL 30 MINUTE"
"""Inactivity after which a visitor's next event starts a new (inferred) session."""

INFERRED_PREFIX: Final = "gap30:"
"""Prefix of the ids of sessions inferred here."""

EVENT_ORDER_COLUMNS: Final = (
    "derived_ts", "client_ts", "source_partition", "source_offset", "source_index", "item_index",
)
EVENT_ORDER: Final = ", ".join(EVENT_ORDER_COLUMNS)
"""Total order of a session's events (SQL ORDER BY list over ``session_events`` columns)."""
ORDER_KEY: Final = f"({EVENT_ORDER})"
""":data:`EVENT_ORDER` as one comparable row value, for ``arg_min``/``arg_max``: these keep
one value per group, where ``first(x ORDER BY ...)`` buffers every row of the group
(measured: 13 GB instead of 4 GB on 10M events)."""

VISITOR: Final = ("CASE WHEN anonymous_id IS NOT NULL THEN 'a:' || anonymous_id "
                  "WHEN user_id IS NOT NULL THEN 'u:' || user_id "
                  "WHEN network_user_id IS NOT NULL THEN 'n:' || network_user_id "
                  "ELSE 'event:' || event_id END")
"""The visitor of an event without a session id, prefixed by the column it comes from (as
the loader's sessionisation does): anonymous ``bob`` and user ``bob`` are not one visitor."""

_ROW_KEY_COLUMNS: Final = ("source", "source_partition", "source_offset", "source_index",
                            "item_index")
"""Identify an event row: its place in the transport (the loader writes each once)."""
_ROW_KEY = ", ".join(_ROW_KEY_COLUMNS)
ROW_KEY_COLUMNS: Final = _ROW_KEY_COLUMNS


def inferred_sessions_sql(columns: Sequence[str] = _ROW_KEY_COLUMNS,
                          events: str = "events") -> str:
    """``columns`` of the events of ``events`` without a session id, with ``session_id``
    set to their inactivity session (see the module docstring)."""
    narrow = ", ".join(dict.fromkeys((*columns, *EVENT_ORDER_COLUMNS, "tenant", "anonymous_id",
                                      "user_id", "network_user_id", "event_id")))
    # A visitor is a tenant's: with every tenant in view (operators), one tenant's events
    # must not bridge another's gap.
    return f"""
    SELECT {", ".join(c for c in dict.fromkeys(columns) if c != "session_id")},
           '{INFERRED_PREFIX}' || _visitor || ':' || epoch_us(
             max(CASE WHEN _new THEN derived_ts END) OVER (
               PARTITION BY tenant, _visitor ORDER BY {EVENT_ORDER}
               ROWS UNBOUNDED PRECEDING)) AS session_id
    FROM (
      SELECT *, coalesce(derived_ts - lag(derived_ts) OVER (
               PARTITION BY tenant, _visitor ORDER BY {EVENT_ORDER}) > {SESSION_GAP},
             true) AS _new
      FROM (SELECT {narrow}, {VISITOR} AS _visitor FROM {events} WHERE session_id IS NULL)
    )"""


INFERRED_SESSIONS: Final = inferred_sessions_sql()
"""The inferred session of each event without a session id, by row key."""


def session_events_sql(inferred: str = f"({INFERRED_SESSIONS})",
                       events: str = "events") -> str:
    """``session_events`` over ``events``, the inferred sessions read from ``inferred`` (a
    relation like :data:`INFERRED_SESSIONS`, by row key). The window runs over a narrow
    projection and is joined back: a window over ``SELECT *`` makes DuckDB read every
    column (JSON documents included) whatever the query needs."""
    return f"""
    SELECT *, false AS session_inferred FROM {events} WHERE session_id IS NOT NULL
    UNION ALL BY NAME
    SELECT e.* REPLACE (g.session_id AS session_id), true AS session_inferred
    FROM (SELECT * FROM {events} WHERE session_id IS NULL) e
    JOIN {inferred} g USING ({_ROW_KEY})
    """


def narrow_session_events_sql(columns: Sequence[str], events: str = "events",
                              inferred: str | None = None) -> str:
    """``columns`` of ``session_events`` over ``events``, without ``session_inferred``: what
    an export or discover materialises. The inactivity sessions of the events without a
    session id come from ``inferred`` (a relation like :data:`INFERRED_SESSIONS`, by row
    key; default: worked out here over ``events``), joined back: carrying wide columns
    through the window's sort costs about twice as much."""
    cols = list(dict.fromkeys(columns))
    joined = ", ".join("g.session_id" if c == "session_id" else f"e.{c}" for c in cols)
    inferred = inferred or f"({inferred_sessions_sql(_ROW_KEY_COLUMNS, events)})"
    return f"""
    SELECT {", ".join(cols)} FROM {events} WHERE session_id IS NOT NULL
    UNION ALL
    SELECT {joined}
    FROM (SELECT * FROM {events} WHERE session_id IS NULL) e
    JOIN {inferred} g USING ({_ROW_KEY})"""


SESSION_EVENTS: Final = session_events_sql()
"""``events`` plus ``session_inferred``, with ``session_id`` always set."""

_ITEMS_IN_EVENT = ("CASE WHEN product_id IS NOT NULL THEN 1 "
                   "WHEN items IS NOT NULL THEN len(items) "
                   "ELSE 0 END")

NO_CURRENCY: Final = "XXX"
"""ISO 4217's code for "no currency": the key of amounts sent without a currency."""

CURRENCY_KEY: Final = f"coalesce(nullif(upper(trim(currency)), ''), '{NO_CURRENCY}')"
"""The currency an amount is totalled and converted under: upper case, as the loader
writes it since it does (a lake written before may hold ``eur``), or :data:`NO_CURRENCY`."""

ENGAGEMENT_PING_CAP_S: Final = 30
"""Most seconds one Snowplow page ping adds to engaged time (see :data:`ENGAGEMENT`)."""


def _first(column: str, alias: str | None = None) -> str:
    # arg_min skips rows whose value is NULL: the first non-null value in event order.
    return f"arg_min({column}, {ORDER_KEY}) AS {alias or column}"


ACQUISITION_FIELDS: Final = {
    "landing_page": "page_url", "landing_path": "page_path", "referrer": "referrer",
    "referrer_class": "referrer_class", "referrer_source": "referrer_source",
    "utm_source": "utm_source", "utm_medium": "utm_medium", "utm_campaign": "utm_campaign",
    "utm_term": "utm_term", "utm_content": "utm_content", "click_id": "click_id",
    "click_id_type": "click_id_type",
}
"""Session column -> event column of what a session's acquisition is, all from one event."""

LANDING_KEY: Final = f"(event_type IS DISTINCT FROM 'page', {EVENT_ORDER})"
"""Order that puts a session's first page view first (its first event when it has none)."""

ACQUISITION_STRUCT: Final = ("{" + ", ".join(f"'{k}': {v}" for k, v in ACQUISITION_FIELDS.items())
                             + "}")
"""SQL struct of an event's acquisition fields, named as the session columns."""

LANDING: Final = f"arg_min({ACQUISITION_STRUCT}, {LANDING_KEY})"
"""SQL aggregate: the acquisition fields of the session's landing event, as one struct.
Taking each field's first non-null value on its own would pair a direct landing with a
campaign seen later in the session."""

_ENGAGED_MS = """CASE
  -- GA4: engagement time since the previous hit (gtag `_et`, Measurement Protocol
  -- `engagement_time_msec`)
  WHEN protocol = 'ga4' THEN TRY_CAST(coalesce(json_extract_string(extra, '$._et'),
       json_extract_string(properties, '$.engagement_time_msec')) AS DOUBLE)
  -- PostHog: how long the previous page was open, on the next $pageview or the $pageleave
  WHEN protocol = 'posthog' AND event_name IN ('$pageview', '$pageleave')
  THEN 1000 * TRY_CAST(json_extract_string(properties, '$."$prev_pageview_duration"')
                       AS DOUBLE)
  -- dn.js: the visible time since its last report, on `Page Engaged`
  WHEN protocol = 'dn' AND event_name = 'Page Engaged'
  THEN TRY_CAST(json_extract_string(properties, '$.engaged_ms') AS DOUBLE)
END"""
_PINGS = "protocol = 'snowplow' AND event_type IN ('page', 'page_ping')"
_PING_MS = f"""list_sum(list_transform(range(2, len(s._ping_ts) + 1), lambda i:
  CASE WHEN s._ping_kind[i] = 'page_ping'
       THEN least(epoch_ms(s._ping_ts[i] - s._ping_ts[i - 1]), {ENGAGEMENT_PING_CAP_S * 1000})
       ELSE 0 END))"""
ENGAGEMENT: Final = f"""
    sum(CASE WHEN _engaged_ms > 0 THEN _engaged_ms END) AS _tracker_ms,
    list(derived_ts ORDER BY {EVENT_ORDER}) FILTER ({_PINGS}) AS _ping_ts,
    list(event_type ORDER BY {EVENT_ORDER}) FILTER ({_PINGS}) AS _ping_kind"""
"""Aggregates of a session's engaged time, from the trackers that measure it. Snowplow: a
page ping fires each heartbeat while the shopper is active on the page; it counts the time
since the page view or the previous ping, at most the cap (a longer gap is a page left
idle). :data:`SESSIONS` adds them up into ``engaged_s``."""

ORDER_LINES: Final = f"""
SELECT tenant, session_id, coalesce(order_id, event_id) AS order_key,
       arg_min({{'revenue': revenue, 'currency': {CURRENCY_KEY}}},
               {ORDER_KEY}) FILTER (revenue IS NOT NULL) AS money
FROM se WHERE product_action = 'purchase'
GROUP BY tenant, session_id, order_key
"""
"""One row per (session, order): the order's revenue and currency, taken from its first
purchase event that has a revenue (a tracker that sends an order twice counts once)."""

SESSION_MONEY: Final = f"""
SELECT tenant, session_id,
       map(list(currency ORDER BY currency), list(amount ORDER BY currency))
         AS revenue_by_currency,
       CASE WHEN count(*) = 1 THEN any_value(currency) END AS currency,
       CASE WHEN count(*) = 1 THEN any_value(amount) END AS revenue
FROM (SELECT tenant, session_id, money.currency AS currency, sum(money.revenue) AS amount
      FROM ({ORDER_LINES}) WHERE money IS NOT NULL
      GROUP BY tenant, session_id, money.currency)
GROUP BY tenant, session_id
"""
"""Revenue per session and currency; ``revenue``/``currency`` when there is one currency."""

_SESSION_COLUMNS = (
    "tenant", "session_id", *EVENT_ORDER_COLUMNS, "event_id", "event_type", "anonymous_id",
    "user_id", "session_index", "session_inferred", "product_id", "product_action", "items",
    "order_id", "revenue", "currency", "search_query", *dict.fromkeys((
        "page_url", "page_path", "referrer", "referrer_class", "referrer_source", "utm_source",
        "utm_medium", "utm_campaign", "utm_term", "utm_content", "click_id", "click_id_type")),
    "ua_device", "ua_browser", "ua_os", "language", "geo_country", "geo_region", "geo_city",
    "is_bot", "protocol", "date")


def sessions_sql(session_events: str = "session_events") -> str:
    """One row per session of ``session_events`` (a relation of its columns): the SQL
    behind :data:`SESSIONS`."""
    return _SESSIONS.replace("@session_events@", session_events)


_SESSIONS = f"""
WITH se AS (
  -- read once (a view is recomputed at each mention), and narrow: no JSON document
  SELECT {", ".join(dict.fromkeys(_SESSION_COLUMNS))}, {_ENGAGED_MS} AS _engaged_ms
  FROM @session_events@
)
SELECT s.* EXCLUDE (landing, _tracker_ms, _ping_ts, _ping_kind), unnest(s.landing),
       m.currency, m.revenue, m.revenue_by_currency,
       CASE WHEN s._tracker_ms IS NOT NULL OR len(s._ping_ts) > 1
            THEN (coalesce(s._tracker_ms, 0) + coalesce({_PING_MS}, 0))
                 / 1000.0 END AS engaged_s
FROM (
  SELECT
    tenant,
    session_id,
    {_first("anonymous_id")},
    arg_max(user_id, {ORDER_KEY}) AS user_id,
    min(session_index) AS session_index,
    bool_or(session_inferred) AS session_inferred,
    min(derived_ts) AS start,
    max(derived_ts) AS "end",
    epoch(max(derived_ts) - min(derived_ts)) AS duration_s,
    count(*) AS events,
    count(CASE WHEN event_type = 'page' THEN 1 END) AS pages,
    count(DISTINCT CASE WHEN product_action IN ('view', 'click') THEN product_id END)
      AS products_viewed,
    -- BIGINT: DuckDB sums integers into HUGEINT, which pandas reads as float64
    coalesce(sum(CASE WHEN product_action = 'add' THEN {_ITEMS_IN_EVENT} END), 0)::BIGINT
      AS products_added,
    coalesce(sum(CASE WHEN product_action = 'purchase' THEN {_ITEMS_IN_EVENT} END),
             0)::BIGINT
      AS products_purchased,
    count(DISTINCT CASE WHEN product_action = 'purchase' THEN coalesce(order_id, event_id)
                   END) AS orders,
    coalesce(bool_or(product_action = 'purchase'), false) AS purchased,
    count(CASE WHEN product_action = 'search' OR search_query IS NOT NULL THEN 1 END)
      AS searches,
    {LANDING} AS landing,
    {_first("ua_device", "device")},
    {_first("ua_browser", "browser")},
    {_first("ua_os", "os")},
    {_first("language")},
    {_first("geo_country", "country")},
    {_first("geo_region", "region")},
    {_first("geo_city", "city")},
    coalesce(bool_or(is_bot), false) AS is_bot,
    max(date) AS last_received_date,
    {ENGAGEMENT}
  FROM se
  GROUP BY tenant, session_id
) s
LEFT JOIN ({SESSION_MONEY}) m USING (tenant, session_id)
"""
SESSIONS: Final = sessions_sql()
"""One row per session, as stored (see docs/analytics.md for the columns): what the
session's own events say. The ``sessions`` view adds who the visitor turned out to be and
converted revenue, which change as later data and rates arrive."""

def identity_parts_sql(events: str = "events") -> str:
    """Per anonymous id of ``events`` seen with a user id: the latest user (and its event
    order key), every user, first and last time linked. Parts of several event sets
    combine exactly (:func:`identities_sql`): stored parts of closed days with recent ones."""
    return f"""
    SELECT tenant, anonymous_id, arg_max(user_id, {ORDER_KEY}) AS user_id,
           max({ORDER_KEY}) AS link_key, list(DISTINCT user_id) AS user_id_list,
           min(derived_ts) AS first_linked, max(derived_ts) AS last_linked
    FROM (
      SELECT tenant, anonymous_id, user_id, {EVENT_ORDER} FROM {events}
      WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
      UNION ALL
      -- Segment alias: previousId (an anonymous or older id) becomes userId
      SELECT tenant, json_extract_string(extra, '$.previousId'), user_id, {EVENT_ORDER}
      FROM {events} WHERE event_type = 'alias' AND user_id IS NOT NULL
        AND json_extract_string(extra, '$.previousId') IS NOT NULL
      UNION ALL
      -- PostHog has one id space: a user id it named (an $identify, an identified event) is
      -- that user wherever it comes as the anonymous id (SDKs without $device_id send
      -- distinct_id = the user id after an identify, server SDKs send nothing else)
      SELECT tenant, user_id, user_id, {EVENT_ORDER}
      FROM {events} WHERE protocol = 'posthog' AND user_id IS NOT NULL
    )
    GROUP BY tenant, anonymous_id"""


def identities_sql(parts: str = f"({identity_parts_sql()})") -> str:
    """``identities`` from identity parts (a relation like :func:`identity_parts_sql`)."""
    return f"""
    SELECT tenant, anonymous_id, arg_max(user_id, link_key) AS user_id,
           len(list_distinct(flatten(list(user_id_list)))) AS user_ids,
           min(first_linked) AS first_linked, max(last_linked) AS last_linked
    FROM {parts}
    GROUP BY tenant, anonymous_id"""


IDENTITIES: Final = identities_sql()
"""One row per anonymous id ever seen with a user id (and per user id PostHog named, which
is that user where it comes as an anonymous id): the user it belongs to (the latest one when
a device was shared)."""


def _person(user: str, anonymous: str) -> str:
    return (f"CASE WHEN {user} IS NOT NULL THEN 'u:' || {user} "
            f"WHEN {anonymous} IS NOT NULL THEN 'a:' || {anonymous} END")



def _converted(amounts: str, key: str, reporting_currency: str | None) -> str:
    """SQL: ``(tenant, <key>, revenue_converted)`` from ``amounts`` (a relation of tenant,
    key, ``day``, ``currency``, ``amount``): each amount times its currency's rate on its
    day (the latest rate on or before it, from ``fx_rates``). NULL when any amount of a key
    has no rate: a total is never silently partial."""
    if reporting_currency is None:
        return (f"SELECT tenant, {key}, CAST(NULL AS DOUBLE) AS revenue_converted "
                f"FROM ({amounts}) WHERE false")
    return f"""
    SELECT m.tenant, m.{key},
           CASE WHEN count(*) = count(r.rate) THEN sum(m.amount * r.rate) END
             AS revenue_converted
    FROM ({amounts}) m
    ASOF LEFT JOIN fx_rates r ON m.currency = r.currency AND m.day >= r.date
    GROUP BY m.tenant, m.{key}"""


def _reporting(reporting_currency: str | None) -> str:
    return "CAST(NULL AS VARCHAR)" if reporting_currency is None else f"'{reporting_currency}'"


def sessions_view(reporting_currency: str | None = None) -> str:
    """``sessions``: the stored session rows plus the visitor's stitched identity and, with a
    reporting currency, revenue converted into it."""
    amounts = """SELECT tenant, session_id, CAST(start AS DATE) AS day,
                        unnest(map_keys(revenue_by_currency)) AS currency,
                        unnest(map_values(revenue_by_currency)) AS amount
                 FROM sessions_base WHERE revenue_by_currency IS NOT NULL"""
    stitched = "coalesce(b.user_id, i.user_id)"
    return f"""
    SELECT b.*, {stitched} AS stitched_user_id,
           {_person(stitched, "b.anonymous_id")} AS person_id,
           c.revenue_converted, {_reporting(reporting_currency)} AS reporting_currency
    FROM sessions_base b
    LEFT JOIN identities i ON i.tenant = b.tenant AND i.anonymous_id = b.anonymous_id
    LEFT JOIN ({_converted(amounts, "session_id", reporting_currency)}) c
      ON c.tenant = b.tenant AND c.session_id = b.session_id
    """


def orders_view(reporting_currency: str | None = None) -> str:
    """``orders``: one row per order (its purchase events grouped by order id)."""
    amounts = """SELECT tenant, order_id, CAST(ordered_at AS DATE) AS day,
                        money.currency AS currency, money.revenue AS amount
                 FROM order_rows WHERE money IS NOT NULL"""
    stitched = "coalesce(o.user_id, i.user_id)"
    rows = f"""
    SELECT tenant, coalesce(order_id, event_id) AS order_id,
           arg_min(session_id, {ORDER_KEY}) AS session_id,
           min(derived_ts) AS ordered_at,
           arg_min(anonymous_id, {ORDER_KEY}) AS anonymous_id,
           arg_max(user_id, {ORDER_KEY}) AS user_id,
           arg_min({{'revenue': revenue, 'currency': {CURRENCY_KEY}}},
                   {ORDER_KEY}) FILTER (revenue IS NOT NULL) AS money,
           -- Snowplow's legacy transaction sends each item as an event of its own
           CASE WHEN bool_or(event_type = 'transaction_item')
                THEN flatten(list(items ORDER BY {EVENT_ORDER})
                             FILTER (event_type = 'transaction_item'))
                ELSE arg_min(items, {ORDER_KEY}) END AS items,
           count(*) AS events,
           list(DISTINCT protocol ORDER BY protocol) AS protocols
    FROM session_events WHERE product_action = 'purchase'
    GROUP BY tenant, coalesce(order_id, event_id)"""
    return f"""
    WITH order_rows AS ({rows})
    SELECT o.tenant, o.order_id, o.session_id, o.ordered_at, o.anonymous_id, o.user_id,
           {stitched} AS stitched_user_id, {_person(stitched, "o.anonymous_id")} AS person_id,
           o.money.revenue AS revenue, o.money.currency AS currency, o.items, o.events,
           o.protocols, c.revenue_converted,
           {_reporting(reporting_currency)} AS reporting_currency
    FROM order_rows o
    LEFT JOIN identities i ON i.tenant = o.tenant AND i.anonymous_id = o.anonymous_id
    LEFT JOIN ({_converted(amounts, "order_id", reporting_currency)}) c
      ON c.tenant = o.tenant AND c.order_id = o.order_id
    """


USERS: Final = """
WITH per_currency AS (
  SELECT tenant, person_id, currency, sum(revenue) AS amount
  FROM orders WHERE person_id IS NOT NULL AND revenue IS NOT NULL
  GROUP BY tenant, person_id, currency
),
money AS (
  SELECT tenant, person_id,
         map(list(currency ORDER BY currency), list(amount ORDER BY currency))
           AS revenue_by_currency
  FROM per_currency GROUP BY tenant, person_id
),
-- From the orders, not the sessions: an order sent by two trackers can land in two
-- sessions of one person (the browser's, the server's), and counts once.
bought AS (
  SELECT tenant, person_id, count(*) AS orders,
         CASE WHEN count(revenue_converted) = count(revenue)
              THEN sum(revenue_converted) END AS revenue_converted
  FROM orders WHERE person_id IS NOT NULL
  GROUP BY tenant, person_id
)
SELECT s.tenant, s.person_id, any_value(s.stitched_user_id) AS user_id,
       list(DISTINCT s.anonymous_id ORDER BY s.anonymous_id)
         FILTER (s.anonymous_id IS NOT NULL) AS anonymous_ids,
       min(s.start) AS first_seen, max(s."end") AS last_seen,
       count(*) AS sessions, coalesce(any_value(b.orders), 0)::BIGINT AS orders,
       any_value(m.revenue_by_currency) AS revenue_by_currency,
       any_value(b.revenue_converted) AS revenue_converted,
       any_value(s.reporting_currency) AS reporting_currency,
       coalesce(bool_or(s.is_bot), false) AS is_bot
FROM sessions s
LEFT JOIN money m ON m.tenant = s.tenant AND m.person_id = s.person_id
LEFT JOIN bought b ON b.tenant = s.tenant AND b.person_id = s.person_id
WHERE s.person_id IS NOT NULL
GROUP BY s.tenant, s.person_id
"""
"""One row per person: a user id with every anonymous id stitched to it, or an anonymous
id never identified."""


_PRODUCT_LINE_COLUMNS = ("tenant", "session_id", "product_action", "product_id", "product_name",
                         "product_category", "price", "quantity", "currency", "items",
                         *EVENT_ORDER_COLUMNS)
# A line's place in the total order: its event's (ORDER_KEY), then its place in the event's
# items. A name or category is the latest by it: by time alone, lines of one instant tied,
# and the tie went to the row read first, which compaction reorders.
_LINE_KEY = f"({EVENT_ORDER}, line)"

PRODUCTS: Final = f"""
WITH se AS (
  SELECT {", ".join(_PRODUCT_LINE_COLUMNS)} FROM session_events
  WHERE product_action IS NOT NULL AND (product_id IS NOT NULL OR len(items) > 0)
),
lines AS (
  -- one line per product an event is about: each element of items, else product_id
  SELECT tenant, session_id, product_action, {EVENT_ORDER}, line, it.product_id, it.name,
         it.category, it.price, it.quantity, coalesce(it.currency, currency) AS currency
  FROM (SELECT *, unnest(items) AS it, unnest(range(len(items))) AS line
        FROM se WHERE len(items) > 0)
  UNION ALL
  SELECT tenant, session_id, product_action, {EVENT_ORDER}, 0 AS line, product_id,
         product_name, product_category, price, quantity, currency
  FROM se WHERE coalesce(len(items), 0) = 0
),
per_session AS (
  SELECT tenant, product_id, session_id,
         arg_max(name, {_LINE_KEY}) AS name, arg_max(category, {_LINE_KEY}) AS category,
         max({_LINE_KEY}) FILTER (name IS NOT NULL) AS name_key,
         max({_LINE_KEY}) FILTER (category IS NOT NULL) AS category_key,
         count(*) FILTER (product_action = 'list_view') AS list_views,
         count(*) FILTER (product_action = 'click') AS clicks,
         count(*) FILTER (product_action = 'view') AS views,
         count(*) FILTER (product_action = 'add') AS adds,
         sum(coalesce(quantity, 1)) FILTER (product_action = 'add') AS units_added,
         count(*) FILTER (product_action = 'remove') AS removes,
         count(*) FILTER (product_action = 'purchase') AS purchases,
         sum(coalesce(quantity, 1)) FILTER (product_action = 'purchase') AS units_purchased
  FROM lines WHERE product_id IS NOT NULL
  GROUP BY tenant, product_id, session_id
),
money AS (
  SELECT tenant, product_id,
         map(list(currency ORDER BY currency), list(amount ORDER BY currency))
           AS revenue_by_currency
  FROM (SELECT tenant, product_id, {CURRENCY_KEY} AS currency,
               sum(price * coalesce(quantity, 1)) AS amount
        FROM lines
        WHERE product_action = 'purchase' AND product_id IS NOT NULL AND price IS NOT NULL
        GROUP BY ALL)
  GROUP BY tenant, product_id
)
SELECT p.tenant, p.product_id, arg_max(p.name, p.name_key) AS name,
       arg_max(p.category, p.category_key) AS category,
       sum(p.list_views)::BIGINT AS list_views, sum(p.clicks)::BIGINT AS clicks,
       sum(p.views)::BIGINT AS views, sum(p.adds)::BIGINT AS adds,
       sum(p.units_added) AS units_added, sum(p.removes)::BIGINT AS removes,
       sum(p.purchases)::BIGINT AS purchases, sum(p.units_purchased) AS units_purchased,
       any_value(m.revenue_by_currency) AS revenue_by_currency,
       count(*) FILTER (p.views > 0) AS sessions_viewed,
       count(*) FILTER (p.adds > 0) AS sessions_added,
       count(*) FILTER (p.purchases > 0) AS sessions_purchased,
       count(*) FILTER (p.views > 0 AND p.purchases > 0)
         / nullif(count(*) FILTER (p.views > 0), 0) AS view_to_purchase_rate
FROM per_session p
LEFT JOIN money m ON m.tenant = p.tenant AND m.product_id = p.product_id
GROUP BY p.tenant, p.product_id
"""
"""One row per product: how often it was seen in lists, clicked, viewed, added and bought
(events and sessions), purchase revenue per currency (price x quantity of its order lines),
and the share of the sessions that viewed it and also bought it."""


def derived_views(reporting_currency: str | None = None) -> tuple[tuple[str, str], ...]:
    """Views built on top of ``events``, in creation order; with a reporting currency,
    revenue is also converted into it (``fx_rates`` must then exist)."""
    return (
        ("session_events", SESSION_EVENTS),
        ("sessions_base", SESSIONS),
        ("identities", IDENTITIES),
        ("sessions", sessions_view(reporting_currency)),
        ("orders", orders_view(reporting_currency)),
        ("users", USERS),
        ("products", PRODUCTS),
    )


DERIVED_VIEWS: Final[tuple[tuple[str, str], ...]] = derived_views()
"""The derived views without currency conversion."""
