"""Universal Analytics through a real `driftnet up`: ``/collect`` and ``/batch`` to the lake.

The hits follow Google's Measurement Protocol v1 reference (the enhanced e-commerce purchase
is its documented example) and analytics.js's own pageview parameters. ``/batch`` is shared
with PostHog: URL-encoded hit lines go to Universal Analytics, JSON to PostHog.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.support import Server, serving

TENANTS = """
[[tenant]]
id = "uashop"
write_keys = ["UA-XXXXX-Y", "phc_uashop"]
allowed_origins = ["https://shop.example"]
ip_mode = "none"
"""
PAGEVIEW = ("v=1&_v=j101&a=1182437512&t=pageview&_s=1&dl=https%3A%2F%2Fshop.example%2Fshoes"
            "%3Futm_source%3Dnews%26utm_medium%3Demail&ul=en-us&de=UTF-8&dt=Shoes&sd=24-bit"
            "&sr=1920x1080&vp=1280x720&je=0&_u=IEBAAEABAAAAAC~&jid=&gjid=&cid=1234.5678"
            "&tid=UA-XXXXX-Y&_gid=1.2&z=913372")
PURCHASE = ("v=1&tid=UA-XXXXX-Y&cid=555&t=pageview&dh=mydemo.com&dp=%2Freceipt&dt=Receipt%20Page"
            "&ti=T12345&ta=Google%20Store%20-%20Online&tr=37.39&tt=2.85&ts=5.34&tcc=SUMMER2013"
            "&pa=purchase&pr1id=P12345&pr1nm=Android%20Warhol%20T-Shirt&pr1ca=Apparel&pr1br=Google"
            "&pr1va=Black&pr1ps=1")


@pytest.fixture(scope="module")
def ua(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("ua"), TENANTS) as srv:
        yield srv


def rows(server: Server, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return server.query("uashop", sql, params)


def test_get_collect_pageview(ua: Server) -> None:
    r = httpx.get(f"{ua.url}/collect?{PAGEVIEW}", headers={"Origin": "https://shop.example"})
    assert r.status_code == 200 and r.content.startswith(b"GIF89a")
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    got = rows(ua, "SELECT event_type, event_name, protocol, app_id, page_url, page_title, "
                   "utm_source, utm_medium, viewport, extra->>'$.de' FROM events "
                   "WHERE anonymous_id = '1234.5678'")
    assert got == [("page", "page_view", "ga_universal", "UA-XXXXX-Y",
                    "https://shop.example/shoes?utm_source=news&utm_medium=email", "Shoes",
                    "news", "email", "1280x720", "UTF-8")]


def test_post_collect_enhanced_ecommerce_purchase(ua: Server) -> None:
    r = httpx.post(f"{ua.url}/collect", content=PURCHASE.encode())
    assert r.status_code == 200
    got = rows(ua, "SELECT product_action, order_id, revenue, page_host, page_path, product_id, "
                   "product_name, items, properties FROM events WHERE order_id = 'T12345'")
    assert len(got) == 1
    *fields, items, props = got[0]
    assert fields == ["purchase", "T12345", 37.39, "mydemo.com", "/receipt", "P12345",
                      "Android Warhol T-Shirt"]
    assert items[0]["category"] == "Apparel"
    props = orjson.loads(props)
    assert (props["tt"], props["ts"], props["tcc"]) == (2.85, 5.34, "SUMMER2013")
    assert props["products"] == [{"brand": "Google", "category": "Apparel", "id": "P12345",
                                  "name": "Android Warhol T-Shirt", "position": 1,
                                  "variant": "Black"}]


def test_batch_of_hit_lines(ua: Server) -> None:
    lines = ["v=1&tid=UA-XXXXX-Y&cid=b.1&t=event&ec=video&ea=play&el=intro&ev=3",
             "v=1&tid=UA-XXXXX-Y&cid=b.1&t=screenview&cd=Home&an=app",
             "v=1&tid=UA-XXXXX-Y&cid=b.1&t=timing&utc=load&utv=dom&utt=840"]
    r = httpx.post(f"{ua.url}/batch", content="\n".join(lines).encode())
    assert r.status_code == 200
    got = rows(ua, "SELECT item_index, event_type, event_name, properties FROM events "
                   "WHERE anonymous_id = 'b.1' ORDER BY item_index")
    assert [g[:3] for g in got] == [(0, "track", "play"), (1, "screen", "screen_view"),
                                    (2, "track", "timing")]
    assert orjson.loads(got[0][3]) == {"ec": "video", "ea": "play", "el": "intro", "ev": 3}


def test_batch_path_is_shared_with_posthog(ua: Server) -> None:
    body = {"api_key": "phc_uashop", "batch": [{"event": "signed up", "distinct_id": "ph.1",
                                                "uuid": "ph-batch-1"}]}
    r = httpx.post(f"{ua.url}/batch/", content=orjson.dumps(body))
    assert r.status_code == 200 and r.json() == {"status": 1}
    assert rows(ua, "SELECT protocol, event_name FROM events WHERE event_id = 'ph-batch-1'") == [
        ("posthog", "signed up")]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        ("GET", "/collect?v=1&t=pageview&cid=1", b"", 401, "no property id"),
        ("GET", "/collect?v=1&tid=UA-NOPE-1&t=pageview&cid=1", b"", 401, "unknown write key"),
        ("POST", "/batch", b"v=1&tid=UA-XXXXX-Y&t=event\nv=1&tid=UA-2-2&t=event", 400,
         "different property ids"),
        ("GET", "/batch?v=1&tid=UA-XXXXX-Y", b"", 400, "empty body"),
    ],
)
def test_refusals(ua: Server, method: str, path: str, body: bytes, status: int,
                  reason: str) -> None:
    r = httpx.request(method, f"{ua.url}{path}", content=body)
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]


def test_bad_hits_are_quarantined(ua: Server) -> None:
    r = httpx.post(f"{ua.url}/batch", content=b"v=1&tid=UA-XXXXX-Y&t=pageview\n"
                                               b"v=1&tid=UA-XXXXX-Y&cid=9&t=warp\n"
                                               b"v=1&tid=UA-XXXXX-Y&cid=9&t=event&ec=a&ea=b&ev=x")
    assert r.status_code == 200
    got = rows(ua, "SELECT reason, detail, item_index FROM quarantine "
                   "WHERE protocol = 'ga_universal' ORDER BY item_index")
    assert got == [("protocol_violation", "cid or uid is required", 0),
                   ("protocol_violation", "unknown hit type warp", 1),
                   ("schema_violation", "ev is not a number", 2)]
