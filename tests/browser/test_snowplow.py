"""The real Snowplow browser tracker (@snowplow/browser-tracker + its e-commerce plugin) in
headless Chromium, sending cross-origin to `driftnet up`; the lake must hold exactly what it
sent. The ids and times to expect are read off the wire (recorded, not altered)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from playwright.sync_api import Page

from analytics import connect
from tests.browser.support import Exchange, Wire
from tests.support import Server

APP_ID = "snowshop-app"
SHOE = {"id": "sku-trail-2", "name": "Trail Runner 2", "category": "shoes/running",
        "price": 89.9, "currency": "EUR", "quantity": 1}
SOCKS = {"id": "sku-socks", "name": "Merino Socks", "category": "socks", "price": 12.5,
         "currency": "EUR", "quantity": 2}
PING_OFFSETS = {"pp_mix": "pp_xoffset_min", "pp_max": "pp_xoffset_max",
                "pp_miy": "pp_yoffset_min", "pp_may": "pp_yoffset_max"}
COLUMNS = ("event_id, event_type, event_name, tenant, app_id, platform, page_url, page_title, "
           "referrer, client_ts, sent_ts, anonymous_id, session_id, session_index, "
           "network_user_id, ip, product_id, product_action, price, currency, quantity, "
           "order_id, revenue, items, properties")


def sent(exchanges: list[Exchange]) -> list[dict[str, str]]:
    """Every event the tracker put on the wire, in order: POST data items, GET query strings.

    (Events queued while a POST is in flight go out together in the next one.)"""
    events: list[dict[str, str]] = []
    for ex in exchanges:
        if ex.method == "POST":
            assert ex.body is not None
            events += orjson.loads(ex.body)["data"]
        else:
            events.append(dict(parse_qsl(urlsplit(ex.url).query)))
    return events


def ms(value: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(value) / 1000, dt.UTC)


def lake_rows(collector: Server, ids: list[str]) -> list[dict[str, Any]]:
    collector.wait_loaded()
    with connect(collector.lake, "snowshop") as con:
        cursor = con.execute(f"SELECT {COLUMNS} FROM events WHERE event_id IN (SELECT unnest(?)) "
                             "ORDER BY client_ts, event_id", [ids])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def expected_row(e: dict[str, str], nuid: str | None, ip: str | None, **columns: Any) -> dict[
        str, Any]:
    """The row a wire event must become: ids and times as sent, plus ``columns``."""
    return {
        "event_id": e["eid"], "tenant": "snowshop", "app_id": APP_ID, "platform": "web",
        "page_url": e["url"], "page_title": e.get("page"), "referrer": e.get("refr"),
        "client_ts": ms(e["dtm"]), "sent_ts": ms(e["stm"]), "anonymous_id": e.get("duid"),
        "session_id": e.get("sid"), "session_index": int(e["vid"]) if "vid" in e else None,
        "network_user_id": nuid, "ip": ip, "product_id": None, "product_action": None,
        "price": None, "currency": None, "quantity": None, "order_id": None, "revenue": None,
        "items": None, "properties": None, **columns,
    }


def item(p: dict[str, Any]) -> dict[str, Any]:
    return {"product_id": p["id"], "name": p["name"], "category": p["category"],
            "brand": p.get("brand"), "variant": p.get("variant"), "price": p["price"],
            "quantity": float(p["quantity"]), "currency": p["currency"]}


def test_page_views_pings_and_ecommerce_over_post(page: Page, pages: str,
                                                  collector: Server) -> None:
    wire = Wire(collector.url)
    wire.attach(page)
    started = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=1)
    product_url = f"{pages}/pages/snowplow.html?collector={collector.url}&aid={APP_ID}"
    page.goto(product_url)
    page.evaluate("p => snowplowEcommerceAccelerator.trackProductView(p)", SHOE)
    page.evaluate("p => snowplowEcommerceAccelerator.trackAddToCart({total_value: 89.9, "
                  "currency: 'EUR', products: [p]})", SHOE)
    wire.wait(page, lambda ex: len(sent(ex)) == 3)
    page.click("#next")
    page.wait_for_url(lambda url: "/snowplow_cart.html?" in url)
    wire.wait(page, lambda ex: len(sent(ex)) == 4)
    page.mouse.move(100, 100)
    page.mouse.wheel(0, 600)  # activity: the cart page sends a page ping a second later
    wire.wait(page, lambda ex: len(sent(ex)) == 5)
    page.evaluate("ps => snowplowEcommerceAccelerator.trackTransaction({transaction_id: 'T-1001',"
                  " revenue: 114.9, currency: 'EUR', payment_method: 'card', products: ps})",
                  [SHOE, SOCKS])
    page.evaluate("() => snowplowBrowserTracking.trackStructEvent({category: 'checkout', "
                  "action: 'coupon_applied', label: 'SUMMER10', value: 10})")
    exchanges = wire.wait(page, lambda ex: len(sent(ex)) == 7)
    finished = dt.datetime.now(dt.UTC)

    assert all(ex.status == 200 and ex.response_headers["access-control-allow-origin"] == pages
               and ex.response_headers["access-control-allow-credentials"] == "true"
               for ex in exchanges)
    # The collector set the sp cookie once; Chromium sent it back with every later request.
    nuid = exchanges[0].response_headers["set-cookie"].split(";")[0].removeprefix("sp=")
    assert all(f"sp={nuid}" in ex.headers["cookie"] for ex in exchanges[1:])
    assert wire.foreign == []

    events = sent(exchanges)
    assert [e["e"] for e in events] == ["pv", "ue", "ue", "pv", "pp", "ue", "se"]
    pv1, view, add, pv2, ping, purchase, coupon = events
    cart_url = product_url.replace("snowplow.html", "snowplow_cart.html")
    assert (pv1["url"], pv2["url"], pv2["refr"]) == (product_url, cart_url, product_url)
    assert len({e["duid"] for e in events}) == 1 and len({e["sid"] for e in events}) == 1
    assert all(started <= ms(e["dtm"]) <= ms(e["stm"]) <= finished for e in events)

    row = {"nuid": nuid, "ip": "127.0.0.1"}
    assert lake_rows(collector, [e["eid"] for e in events]) == [
        expected_row(pv1, **row, event_type="page", event_name="page_view"),
        expected_row(view, **row, event_type="self_describing", event_name="product_view",
                     product_id=SHOE["id"], product_action="view", price=89.9, currency="EUR",
                     quantity=1.0, items=[item(SHOE)],
                     properties='{"type":"product_view"}'),
        expected_row(add, **row, event_type="self_describing", event_name="add_to_cart",
                     product_id=SHOE["id"], product_action="add", price=89.9, currency="EUR",
                     quantity=1.0, items=[item(SHOE)],
                     properties='{"type":"add_to_cart"}'),
        expected_row(pv2, **row, event_type="page", event_name="page_view"),
        expected_row(ping, **row, event_type="page_ping", event_name="page_ping",
                     properties=orjson.dumps({  # the tracker leaves out offsets of 0
                         name: int(ping[param]) for param, name in PING_OFFSETS.items()
                         if param in ping}).decode()),
        expected_row(purchase, **row, event_type="self_describing", event_name="transaction",
                     product_action="purchase", currency="EUR", order_id="T-1001",
                     revenue=114.9, items=[item(SHOE), item(SOCKS)],
                     properties='{"type":"transaction"}'),
        expected_row(coupon, **row, event_type="structured", event_name="coupon_applied",
                     properties='{"category":"checkout","action":"coupon_applied",'
                                '"label":"SUMMER10","value":10.0}'),
    ]
    assert int(ping["pp_may"]) > 0  # the scroll reached the lake


def test_get_pixels_with_base64_payloads(page: Page, pages: str, collector: Server) -> None:
    wire = Wire(collector.url)
    wire.attach(page)
    page.goto(f"{pages}/pages/snowplow.html?collector={collector.url}&aid={APP_ID}&method=get")
    page.evaluate("p => snowplowEcommerceAccelerator.trackProductView(p)", SOCKS)
    exchanges = wire.wait(page, lambda ex: len(sent(ex)) == 2)

    assert [(ex.method, urlsplit(ex.url).path) for ex in exchanges] == [("GET", "/i")] * 2
    assert all(ex.status == 200 and ex.response_headers["content-type"] == "image/gif"
               and ex.response_headers["cache-control"] == "no-cache, no-store, must-revalidate"
               for ex in exchanges)
    pv, view = sent(exchanges)
    assert "ue_px" in view and "cx" in view  # the GET form base64-encodes JSON payloads
    nuid = exchanges[0].response_headers["set-cookie"].split(";")[0].removeprefix("sp=")
    row = {"nuid": nuid, "ip": "127.0.0.1"}
    assert lake_rows(collector, [pv["eid"], view["eid"]]) == [
        expected_row(pv, **row, event_type="page", event_name="page_view"),
        expected_row(view, **row, event_type="self_describing", event_name="product_view",
                     product_id=SOCKS["id"], product_action="view", price=12.5, currency="EUR",
                     quantity=2.0, items=[item(SOCKS)],
                     properties='{"type":"product_view"}'),
    ]


def test_server_anonymisation_keeps_no_cookie_and_no_ip(page: Page, pages: str,
                                                        collector: Server) -> None:
    wire = Wire(collector.url)
    wire.attach(page)
    page.goto(f"{pages}/pages/snowplow.html?collector={collector.url}&aid={APP_ID}&anonymous=1")
    exchanges = wire.wait(page, lambda ex: len(sent(ex)) == 1)

    ex = exchanges[0]
    assert ex.status == 200 and ex.headers["sp-anonymous"] == "*"  # passed the CORS preflight
    assert "set-cookie" not in ex.response_headers
    (pv,) = sent(exchanges)
    rows = lake_rows(collector, [pv["eid"]])
    assert rows == [expected_row(pv, nuid=None, ip=None, event_type="page",
                                 event_name="page_view")]
