"""The canonical event: one flat, typed row per event, whatever protocol carried it.

Column names are a contract (docs, SQL users and export recipes rely on them). The Arrow
schema of ``events/`` Parquet files, the docs table in docs/lake.md and the loader's
normaliser are all derived from :class:`CanonicalEvent`; add a column here and nowhere else.
Fields a protocol sends that have no column are kept in the JSON columns ``properties``,
``traits``, ``context`` and ``extra``: nothing sent is dropped.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.columns import INT32, JSON_TEXT, arrow_schema

EventType = Literal[
    "page", "track", "identify", "screen", "group", "alias",
    "page_ping", "structured", "self_describing", "transaction", "transaction_item",
]
"""The kinds of event a protocol can carry (``event_type`` column)."""

ProductAction = Literal[
    "list_view", "click", "view", "add", "remove", "checkout", "purchase", "refund", "search",
]
"""Normalised e-commerce action (``product_action`` column)."""

J = Annotated[str | None, JSON_TEXT]


class Item(BaseModel):
    """One element of the ``items`` column: a product of a multi-product event (an order, a
    cart, a list), with the same meaning whatever the protocol called its fields."""

    model_config = ConfigDict(extra="forbid")

    product_id: str | None = Field(None, description="Product id (SKU).")
    name: str | None = Field(None, description="Product name.")
    category: str | None = Field(None, description="Product category.")
    brand: str | None = Field(None, description="Brand.")
    variant: str | None = Field(None, description="Variant (size, colour, ...).")
    price: float | None = Field(None, description="Unit price.")
    quantity: float | None = Field(None, description="Quantity.")
    currency: str | None = Field(None, description="ISO currency code: the item's own, else "
                                 "the event's.")


class CanonicalEvent(BaseModel):
    """One row of the ``events`` table."""

    model_config = ConfigDict(extra="forbid")

    # -- identity and lineage
    tenant: str = Field(description="Tenant id (also the `tenant=` partition).")
    event_id: str = Field(
        description="Event id sent by the tracker (Segment messageId, Snowplow eid, ...); "
        "`dn:`-prefixed content hash when the tracker sent none. The dedupe key."
    )
    event_type: str = Field(description="Kind of event: page, track, identify, screen, group, "
                            "alias, page_ping, structured, self_describing, transaction, "
                            "transaction_item.")
    event_name: str = Field(description="Event name: the track event as sent (`Product Viewed`), "
                            "or `page_view`, `screen_view`, `identify`, ... for other types.")
    protocol: str = Field(description="Wire protocol that carried it: segment, pixel, snowplow, "
                          "ga4, ga_universal, posthog, rudderstack, jitsu, dn (dn.js).")
    app_id: str | None = Field(None, description="Application id sent by the tracker "
                               "(Snowplow aid, GA measurement id), if any.")
    platform: str | None = Field(None, description="Platform: web, mobile, server, ...")

    # -- time
    client_ts: dt.datetime | None = Field(None, description="When the event happened, by the "
                                          "client's clock.")
    sent_ts: dt.datetime | None = Field(None, description="When the client sent it, by the "
                                        "client's clock.")
    received_at: dt.datetime = Field(description="When the collector received the hit (UTC, "
                                     "server clock); the `date=` partition is its date.")
    derived_ts: dt.datetime = Field(description="Best estimate of when the event happened: "
                                    "received_at - (sent_ts - client_ts) when both are sound, "
                                    "else client_ts, else received_at.")
    ts_flag: str | None = Field(None, description="Set when client_ts is implausible: "
                                "`future` or `past`.")

    # -- who and which visit
    anonymous_id: str | None = Field(None, description="Device/browser id (Segment anonymousId, "
                                     "Snowplow duid, GA client id).")
    user_id: str | None = Field(None, description="Known user id, if identified.")
    network_user_id: str | None = Field(None, description="Collector-side cookie id (Snowplow "
                                        "`sp` cookie / nuid).")
    session_id: str | None = Field(None, description="Session id, from the client or assigned "
                                   "by the loader. Client session ids that are unique only per "
                                   "device (GA's `sid`, Segment's `context.sessionId`, the "
                                   "pixel's `s`) are scoped by the visitor: `<anonymous_id, "
                                   "else user_id>:<id as sent>`; globally unique ones "
                                   "(Snowplow, PostHog) are kept as sent.")
    session_index: Annotated[int | None, INT32] = Field(None, description="Session count of "
                                                        "this anonymous id (1 = first visit).")

    # -- page and acquisition
    page_url: str | None = Field(None, description="Full page URL.")
    page_host: str | None = Field(None, description="Host of page_url.")
    page_path: str | None = Field(None, description="Path of page_url.")
    page_title: str | None = Field(None, description="Document title.")
    referrer: str | None = Field(None, description="Referrer URL.")
    referrer_class: str | None = Field(None, description="Referrer class: search, social, email, "
                                       "internal, paid, direct, other.")
    referrer_source: str | None = Field(None, description="Referrer source, e.g. Google, "
                                        "Facebook.")
    utm_source: str | None = Field(None, description="Campaign source (utm_source).")
    utm_medium: str | None = Field(None, description="Campaign medium (utm_medium).")
    utm_campaign: str | None = Field(None, description="Campaign name (utm_campaign).")
    utm_term: str | None = Field(None, description="Campaign term (utm_term).")
    utm_content: str | None = Field(None, description="Campaign content (utm_content).")
    click_id: str | None = Field(None, description="Ad click id (gclid, fbclid, msclkid, ...).")
    click_id_type: str | None = Field(None, description="Which click id: gclid, fbclid, "
                                      "msclkid, ...")

    # -- device
    user_agent: str | None = Field(None, description="User-Agent string.")
    ua_browser: str | None = Field(None, description="Browser family parsed from user_agent.")
    ua_browser_version: str | None = Field(None, description="Browser version.")
    ua_os: str | None = Field(None, description="Operating system family.")
    ua_os_version: str | None = Field(None, description="Operating system version.")
    ua_device: str | None = Field(None, description="Device class: desktop, mobile, tablet, "
                                  "bot, other.")
    is_bot: bool | None = Field(None, description="True when the hit comes from a known crawler "
                                "or an automated browser. Bots are kept, never dropped.")
    bot_reason: str | None = Field(None, description="Why is_bot is true.")
    screen: str | None = Field(None, description="Screen size `WxH`.")
    viewport: str | None = Field(None, description="Viewport size `WxH`.")
    language: str | None = Field(None, description="Browser language, e.g. en-US.")
    timezone: str | None = Field(None, description="Client time zone, e.g. Europe/Berlin.")
    geo_country: str | None = Field(None, description="ISO country code from the IP.")
    geo_region: str | None = Field(None, description="Region (subdivision) from the IP.")
    geo_city: str | None = Field(None, description="City from the IP.")
    ip: str | None = Field(None, description="Client IP, anonymised per the tenant's ip_mode.")

    # -- e-commerce
    product_id: str | None = Field(None, description="Product (item) id the event is about.")
    product_name: str | None = Field(None, description="Product name.")
    product_category: str | None = Field(None, description="Product category.")
    product_action: str | None = Field(None, description="Normalised action: list_view, click, "
                                       "view, add, remove, checkout, purchase, refund, search.")
    price: float | None = Field(None, description="Unit price.")
    currency: str | None = Field(None, description="ISO currency code.")
    quantity: float | None = Field(None, description="Quantity.")
    order_id: str | None = Field(None, description="Order / transaction id.")
    revenue: float | None = Field(None, description="Order revenue (total).")
    items: list[Item] | None = Field(None, description="The products the event is about, in "
                                     "the order sent (also for one product; NULL when it "
                                     "names none). Query with `len(items)`, "
                                     "`unnest(items)`, `items[1].price`.")
    search_query: str | None = Field(None, description="Site search query.")

    # -- everything else, kept whole
    properties: J = Field(None, description="JSON object of the event's properties as sent.")
    traits: J = Field(None, description="JSON object of user/group traits as sent.")
    context: J = Field(None, description="JSON object of the event's context as sent.")
    extra: J = Field(None, description="JSON object of top-level fields that have no column.")

    # -- data quality
    is_duplicate: bool | None = Field(None, description="True when an earlier row of this tenant "
                                      "has the same event_id (a tracker retry). The `events` "
                                      "view hides these rows; `events_all` shows them.")

    # -- lineage
    source: str = Field(description="Transport the hit came through: `log` or the Kafka topic.")
    source_partition: Annotated[int, INT32] = Field(description="Transport partition.")
    source_offset: int = Field(description="Transport offset of the record (bundle).")
    source_index: Annotated[int, INT32] = Field(description="Index of the hit in the record's "
                                                "bundle.")
    item_index: Annotated[int, INT32] = Field(description="Index of the event inside the hit "
                                              "(batches carry many).")
    pipeline_version: str = Field(description="driftnet pipeline version that produced the row.")


EVENT_SCHEMA = arrow_schema(CanonicalEvent)
"""Arrow schema of ``events/`` Parquet files."""

EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names)
