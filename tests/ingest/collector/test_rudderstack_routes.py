"""RudderStack through a real `driftnet up`: its SDK's paths, beacon batches and pixels.

Payloads follow rudder-sdk-js v3 (RudderLabs JavaScript SDK): the XHR queue posts Segment
paths with Basic auth, the BeaconQueue plugin ``sendBeacon``s ``{"batch", "sentAt"}`` as
text/plain to ``/beacon/v1/batch?writeKey=``; the pixel API is RudderStack's documented one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.support import Server, serving

KEY = "2PBW0Y6Jm5sWd4XmKlJiFvFgkGq"
TENANTS = f"""
[[tenant]]
id = "rudder"
write_keys = ["{KEY}"]
allowed_origins = ["https://shop.example"]
ip_mode = "none"
"""


def rudder_event(kind: str = "track", **fields: Any) -> dict[str, Any]:
    """A message as rudder-sdk-js v3 builds it."""
    return {
        "type": kind, "channel": "web", "messageId": str(uuid.uuid4()),
        "anonymousId": "1f6b4c5a-8a4e-4f0e-9d65-6b0e3e6c2a11", "userId": "",
        "originalTimestamp": "2026-01-01T10:00:00.000Z", "sentAt": "2026-01-01T10:00:00.100Z",
        "integrations": {"All": True},
        "context": {
            "app": {"name": "RudderLabs JavaScript SDK", "namespace": "com.rudderlabs.javascript",
                    "version": "3.7.6", "installType": "npm"},
            "library": {"name": "RudderLabs JavaScript SDK", "version": "3.7.6"},
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0 Safari/537.36",
            "locale": "de-DE", "timezone": "GMT+0100", "sessionId": 1767261600000,
            "sessionStart": True, "traits": {}, "campaign": {},
            "screen": {"width": 1920, "height": 1080, "density": 1, "innerWidth": 1280,
                       "innerHeight": 720},
            "page": {"path": "/shoes", "referrer": "https://www.google.com/", "search": "",
                     "title": "Shoes", "url": "https://shop.example/shoes",
                     "initial_referrer": "$direct", "initial_referring_domain": ""},
        },
        **fields,
    }


@pytest.fixture(scope="module")
def rs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("rudder"), TENANTS) as srv:
        yield srv


def rows(server: Server, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return server.query("rudder", sql, params)


def test_sdk_track_on_segment_path(rs: Server) -> None:
    msg = rudder_event(event="Product Added", properties={"product_id": "sku-1", "price": 49.9,
                                                          "quantity": 1, "currency": "EUR"})
    r = rs.post("/v1/track", msg, key=KEY, headers={"Origin": "https://shop.example"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    got = rows(rs, "SELECT protocol, event_name, product_action, product_id, price, session_id, "
                   "screen, viewport, page_path, language FROM events WHERE event_id = ?",
               [msg["messageId"]])
    # RudderStack's sessionId is a device-side timestamp: scoped by the anonymous id
    session = f"{msg['anonymousId']}:1767261600000"
    assert got == [("segment", "Product Added", "add", "sku-1", 49.9, session,
                    "1920x1080", "1280x720", "/shoes", "de-DE")]


def test_beacon_batch(rs: Server) -> None:
    batch = [rudder_event("page", name="Shoes", properties={"path": "/shoes"}),
             rudder_event(event="Checkout Started", properties={"revenue": 49.9})]
    body = orjson.dumps({"batch": batch, "sentAt": "2026-01-01T10:00:05.000Z"})
    r = httpx.post(f"{rs.url}/beacon/v1/batch?writeKey={KEY}", content=body,
                   headers={"Content-Type": "text/plain;charset=UTF-8",
                            "Origin": "https://shop.example"})
    assert r.status_code == 200
    got = rows(rs, "SELECT protocol, event_type, event_name, product_action, item_index "
                   "FROM events WHERE event_id IN (SELECT unnest(?)) ORDER BY item_index",
               [[m["messageId"] for m in batch]])
    assert got == [("rudderstack", "page", "page_view", None, 0),
                   ("rudderstack", "track", "Checkout Started", "checkout", 1)]


def test_pixel_track_and_page(rs: Server) -> None:
    r = httpx.get(f"{rs.url}/pixel/v1/track", params={
        "writeKey": KEY, "anonymousId": "px-anon", "event": "Email Opened",
        "messageId": "px-1", "properties.subject": "Winter sale", "properties.campaign": "w26",
        "context.library.name": "RudderStack AMP SDK"})
    assert r.status_code == 200 and r.content.startswith(b"GIF89a")
    r = httpx.get(f"{rs.url}/pixel/v1/page", params={
        "writeKey": KEY, "anonymousId": "px-anon", "messageId": "px-2",
        "context.page.url": "https://shop.example/amp/shoes", "context.page.title": "Shoes AMP",
        "context.screen.width": "412", "context.screen.height": "915",
        "properties.path": "/amp/shoes"})
    assert r.status_code == 200
    got = rows(rs, "SELECT event_id, protocol, event_type, event_name, page_url, page_title, "
                   "properties, context->'$.library'->>'$.name' FROM events "
                   "WHERE anonymous_id = 'px-anon' ORDER BY event_id")
    assert [g[:6] for g in got] == [
        ("px-1", "rudderstack", "track", "Email Opened", None, None),
        ("px-2", "rudderstack", "page", "page_view", "https://shop.example/amp/shoes",
         "Shoes AMP")]
    assert orjson.loads(got[0][6]) == {"subject": "Winter sale", "campaign": "w26"}
    assert got[0][7] == "RudderStack AMP SDK"
    # the write key is a credential: it is not part of the event
    assert rows(rs, "SELECT count(*) FROM events WHERE extra LIKE ? OR properties LIKE ?",
                [f"%{KEY}%", f"%{KEY}%"]) == [(0,)]


@pytest.mark.parametrize(
    ("method", "path", "status", "reason"),
    [
        ("GET", "/pixel/v1/track?event=x", 401, "no write key"),
        ("GET", "/pixel/v1/page?writeKey=nope", 401, "unknown write key"),
        ("POST", "/pixel/v1/track?writeKey=" + KEY, 405, "GET"),
        ("POST", "/beacon/v1/batch", 400, "empty body"),
    ],
)
def test_refusals(rs: Server, method: str, path: str, status: int, reason: str) -> None:
    r = httpx.request(method, f"{rs.url}{path}")
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]


def test_pixel_without_identity_is_quarantined(rs: Server) -> None:
    r = httpx.get(f"{rs.url}/pixel/v1/track", params={"writeKey": KEY, "event": "Orphan"})
    assert r.status_code == 200
    got = rows(rs, "SELECT reason, detail, payload FROM quarantine WHERE protocol = 'rudderstack'")
    assert [g[:2] for g in got] == [("protocol_violation", "anonymousId or userId is required")]
    assert orjson.loads(got[0][2]) == {"event": "Orphan"}
