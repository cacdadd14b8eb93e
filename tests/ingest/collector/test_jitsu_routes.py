"""Jitsu through a real `driftnet up`: ``/api/s/{type}`` with the ``X-Write-Key`` header.

Payloads are what @jitsu/js (libs/jitsu-js, analytics-plugin.ts) sends: a Segment-spec
event with its context, the write key masked in the body (``id:***``) and sent in clear only
in the ``X-Write-Key`` header, JSON content type (so browsers preflight).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.support import Server, serving

KEY = "clx9jitsukey:s3cret"
TENANTS = f"""
[[tenant]]
id = "jshop"
write_keys = ["{KEY}"]
allowed_origins = ["https://shop.example"]
ip_mode = "none"
"""


def jitsu_event(kind: str, message_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind, "messageId": message_id, "anonymousId": "j-anon-1",
        "timestamp": "2026-02-01T09:00:00.000Z", "sentAt": "2026-02-01T09:00:00.000Z",
        "writeKey": "clx9jitsukey:***",
        "context": {
            "library": {"name": "@jitsu/js", "version": "1.9.12", "env": "browser"},
            "userAgent": "Mozilla/5.0 (Macintosh) Safari/605.1.15", "locale": "fr-FR",
            "screen": {"width": 1512, "height": 982, "innerWidth": 1512, "innerHeight": 861,
                       "density": 2},
            "page": {"path": "/cart", "referrer": "", "host": "shop.example", "search": "",
                     "title": "Cart", "url": "https://shop.example/cart", "encoding": "UTF-8"},
            "clientIds": {}, "campaign": {},
        },
        **fields,
    }


@pytest.fixture(scope="module")
def js(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("jitsu"), TENANTS) as srv:
        yield srv


def rows(server: Server, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return server.query("jshop", sql, params)


def test_preflight_allows_the_write_key_header(js: Server) -> None:
    r = httpx.options(f"{js.url}/api/s/track", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-write-key"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-headers"] == "content-type,x-write-key"
    assert r.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize("path", ["/api/s/page", "/api/s/s2s/page"])
def test_page_with_write_key_header(js: Server, path: str) -> None:
    mid = f"j{path.count('/')}"
    r = httpx.post(f"{js.url}{path}", content=orjson.dumps(
        {k: v for k, v in jitsu_event("page", mid).items() if k != "type"}),
        headers={"Content-Type": "application/json", "X-Write-Key": KEY,
                 "Origin": "https://shop.example"})
    assert r.status_code == 200 and isinstance(r.json(), dict)
    got = rows(js, "SELECT protocol, event_type, event_name, page_url, page_title, language, "
                   "viewport FROM events WHERE event_id = ?", [mid])
    assert got == [("jitsu", "page", "page_view", "https://shop.example/cart", "Cart", "fr-FR",
                    "1512x861")]
    raw = rows(js, "SELECT headers FROM raw WHERE decode(body) LIKE ?", [f'%"{mid}"%'])
    assert "x-write-key" not in orjson.loads(raw[0][0])  # a credential is never stored


def test_track_with_basic_auth_and_query_key(js: Server) -> None:
    r = js.post("/api/s/track", jitsu_event("track", "jt-1", event="Product Viewed",
                                            properties={"product_id": "p-9"}), key=KEY)
    assert r.status_code == 200
    r = httpx.post(f"{js.url}/api/s/identify?writekey={KEY}", content=orjson.dumps(
        jitsu_event("identify", "ji-1", userId="u-1", traits={"plan": "pro"})))
    assert r.status_code == 200
    got = rows(js, "SELECT event_id, event_type, product_action, user_id, traits FROM events "
                   "WHERE event_id IN ('jt-1', 'ji-1') ORDER BY event_id")
    assert got == [("ji-1", "identify", None, "u-1", '{"plan":"pro"}'),
                   ("jt-1", "track", "view", None, None)]


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({}, 401, "unknown write key"),  # only the masked key in the body
        ({"X-Write-Key": "other:key"}, 401, "unknown write key"),
        ({"X-Write-Key": KEY, "Origin": "https://evil.example"}, 403, "not allowed"),
    ],
)
def test_refusals(js: Server, headers: dict[str, str], status: int, reason: str) -> None:
    r = httpx.post(f"{js.url}/api/s/track", content=orjson.dumps(
        jitsu_event("track", "jr", event="E")), headers=headers)
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]


@pytest.mark.parametrize(("credentials", "key"), [
    ("id:secret", "id:secret"), ("id:secret:", "id:secret"), ("id:se:cret::", "id:se:cret:")])
def test_basic_auth_carries_the_key_whole_or_with_an_empty_password(credentials: str,
                                                                     key: str) -> None:
    import base64

    from ingest.collector.hit import Hit
    from ingest.collector.keys import jitsu_key
    auth = "Basic " + base64.b64encode(credentials.encode()).decode()
    hit = Hit("POST", "/api/s/page", b"", {"authorization": auth}, b"{}", 1 << 20)
    assert jitsu_key(hit) == key
