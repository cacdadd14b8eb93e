"""The real Segment browser SDK (@segment/analytics-next, UMD build) in headless Chromium,
sending cross-origin to `driftnet up`; the lake must hold exactly what it sent. The ids and
times to expect are read off the wire (recorded, not altered)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

import orjson
from playwright.sync_api import Page

from analytics import connect
from tests.browser.support import Exchange, Wire
from tests.support import Server

WRITE_KEY = "segshop-key"
SHOE = {"product_id": "sku-trail-2", "name": "Trail Runner 2", "category": "shoes/running",
        "price": 89.9, "currency": "EUR"}
SOCKS = {"product_id": "sku-socks", "name": "Merino Socks", "category": "socks",
         "price": 12.5, "quantity": 2}
COLUMNS = ("event_id, event_type, event_name, tenant, page_url, page_title, referrer, "
           "client_ts, sent_ts, anonymous_id, user_id, user_agent, product_id, product_name, "
           "product_action, price, currency, quantity, order_id, revenue, items, properties, "
           "traits")


def sent(exchanges: list[Exchange]) -> list[dict[str, Any]]:
    """Every message the SDK put on the wire, in order, with the path it went to."""
    out = []
    for ex in exchanges:
        assert ex.body is not None
        out.append({**orjson.loads(ex.body), "_path": urlsplit(ex.url).path})
    return out


def iso(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def lake_rows(collector: Server, ids: list[str]) -> list[dict[str, Any]]:
    collector.wait_loaded()
    with connect(collector.lake, "segshop") as con:
        cursor = con.execute(f"SELECT {COLUMNS} FROM events WHERE event_id IN (SELECT unnest(?)) "
                             "ORDER BY client_ts, event_id", [ids])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def item(p: dict[str, Any], quantity: float | None) -> dict[str, Any]:
    """An element of the items column (the order's currency where a product names none)."""
    return {"product_id": p["product_id"], "name": p["name"], "category": p["category"],
            "brand": None, "variant": None, "price": p["price"], "quantity": quantity,
            "currency": "EUR"}


def expected_row(m: dict[str, Any], **columns: Any) -> dict[str, Any]:
    page = m["context"]["page"]
    return {
        "event_id": m["messageId"], "event_type": m["type"], "tenant": "segshop",
        "page_url": page["url"], "page_title": page["title"],
        "referrer": page["referrer"] or None, "client_ts": iso(m["timestamp"]),
        "sent_ts": iso(m["sentAt"]), "anonymous_id": m["anonymousId"],
        "user_id": m.get("userId"), "user_agent": m["context"]["userAgent"],
        "product_id": None, "product_name": None, "product_action": None, "price": None,
        "currency": None, "quantity": None, "order_id": None, "revenue": None, "items": None,
        "properties": orjson.dumps(m["properties"]).decode() if "properties" in m else None,
        "traits": orjson.dumps(m["traits"]).decode() if "traits" in m else None,
        **columns,
    }


def call(page: Page, script: str, *args: Any) -> None:
    page.evaluate(f"async args => {{ await window.loaded; await {script}; }}", list(args))


def test_page_views_identify_and_ecommerce(page: Page, pages: str, collector: Server) -> None:
    wire = Wire(collector.url)
    wire.attach(page)
    started = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=1)
    url = f"{pages}/pages/segment.html?collector={collector.url}&writeKey={WRITE_KEY}"
    page.goto(url)
    call(page, "segment.page()")
    call(page, "segment.track('Product Viewed', args[0])", SHOE)
    call(page, "segment.track('Product Added', args[0])", {**SHOE, "quantity": 1})
    call(page, "segment.identify('user-42', {plan: 'gold'})")
    order = {"order_id": "T-2002", "revenue": 114.9, "currency": "EUR",
             "products": [{**SHOE, "quantity": 1}, SOCKS]}
    call(page, "segment.track('Order Completed', args[0])", order)
    exchanges = wire.wait(page, lambda ex: len(ex) == 5)
    finished = dt.datetime.now(dt.UTC)

    assert all(ex.status == 200 and ex.response_headers["access-control-allow-origin"] == pages
               for ex in exchanges)
    assert wire.foreign == []  # no call to Segment's CDN or API
    messages = sent(exchanges)
    assert [(m["_path"], m.get("event")) for m in messages] == [
        ("/v1/p", None), ("/v1/t", "Product Viewed"), ("/v1/t", "Product Added"),
        ("/v1/i", None), ("/v1/t", "Order Completed")]
    assert all(m["writeKey"] == WRITE_KEY and m["context"]["page"]["url"] == url
               for m in messages)
    assert all(started <= iso(m["timestamp"]) <= iso(m["sentAt"]) <= finished for m in messages)
    assert len({m["anonymousId"] for m in messages}) == 1
    pv, viewed, added, identify, completed = messages

    assert lake_rows(collector, [m["messageId"] for m in messages]) == [
        expected_row(pv, event_name="page_view"),
        expected_row(viewed, event_name="Product Viewed", product_id=SHOE["product_id"],
                     product_name=SHOE["name"], product_action="view", price=89.9,
                     currency="EUR", items=[item(SHOE, None)]),
        expected_row(added, event_name="Product Added", product_id=SHOE["product_id"],
                     product_name=SHOE["name"], product_action="add", price=89.9,
                     currency="EUR", quantity=1.0, items=[item(SHOE, 1.0)]),
        expected_row(identify, event_name="identify", user_id="user-42"),
        expected_row(completed, event_name="Order Completed", user_id="user-42",
                     product_action="purchase", currency="EUR", order_id="T-2002",
                     revenue=114.9, items=[item(SHOE, 1.0), item(SOCKS, 2.0)]),
    ]
