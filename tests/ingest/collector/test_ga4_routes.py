"""GA4 through a real `driftnet up`: gtag.js hits and the Measurement Protocol, to the lake.

The gtag query strings are real hits published in public repositories (a server-side-GTM
benchmark profile's purchase, a tag-checker's add_to_cart, d8a's README page_view); the
batched POST spreads real parameters the way gtag batches: shared ones in the query string,
one line per event in a text/plain body.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Server, serving

TENANTS = """
[[tenant]]
id = "gshop"
write_keys = ["G-ABC123", "G-8HK542DQMG"]
allowed_origins = ["https://www.example.com"]
ip_mode = "none"
"""

PURCHASE = (
    "v=2&tid=G-ABC123&gtm=45je5ca1za200&_p=1766755449798&gcd=13l3l3l3l1l1&npa=0&dma=0"
    "&cid=1677925765.1764678332&ul=en-us&sr=1920x1080&uaa=arm&uab=64&uafvl=Microsoft%2520Edge%3B"
    "143.0.3650.96%7CChromium%3B143.0.7499.147%7CNot%2520A(Brand%3B24.0.0.0&uamb=0&uam=&uap=macOS"
    "&uapv=26.1.0&uaw=0&are=1&frm=0&pscdl=noapi&_eu=AAAAAAQ&_s=2&tag_exp=103116026~103200004~"
    "104527906~104528501~104684208~104684211~105391252~115583767~115616986~115938466~115938468~"
    "116184927~116184929~116251938~116251940&cu=USD&sid=1766755460&sct=2&seg=0&dl=https%3A%2F%2F"
    "www.example.com%2F%3Fg%3D123123&dt=Example%20Domain&en=purchase&_ee=1&pr1=idSKU_12345~nmStan"
    "%20and%20Friends%20Tee~afGoogle%20Merchandise%20Store~cpSUMMER_FUN~ds2.22~lp0~brGoogle~caApp"
    "arel~c2Adult~c3Shirts~c4Crew~c5Short%20sleeve~lirelated_products~lnRelated%20Products~vagreen"
    "~loChIJIQBpAG2ahYAR_6128GcTUEo~pr10.01~k0google_business_vertical~v0retail~qt3&pr2=idSKU_1234"
    "6~nmGoogle%20Grey%20Women%27s%20Tee~afGoogle%20Merchandise%20Store~cpSUMMER_FUN~ds3.33~lp1~br"
    "Google~caApparel~c2Adult~c3Shirts~c4Crew~c5Short%20sleeve~lirelated_products~lnRelated%20Prod"
    "ucts~vagray~loChIJIQBpAG2ahYAR_6128GcTUEo~pr21.01~piP_12345~pnSummer%20Sale~k0google_business"
    "_vertical~v0retail~qt2&ep.transaction_id=T_12345&epn.value=72.05&epn.tax=3.6&epn.shipping=5.9"
    "9&ep.coupon=SUMMER_SALE&ep.customer_type=new&tfd=18058")
ADD_TO_CART = (
    "v=2&tid=G-8HK542DQMG&gtm=45je4410v9171567282z89168785492za200&_p=1712224628461&gcs=G111"
    "&gcd=13r3r3r3q7&npa=1&dma=0&cid=485839296.1712224634&ul=en-us&sr=2195x1235&uaa=x86&uab=64"
    "&uafvl=Chromium%3B121.0.6167.85%7CNot%2520A(Brand%3B99.0.0.0&uamb=0&uam=&uap=Windows"
    "&uapv=15.0.0&uaw=0&pscdl=noapi&_s=5&dr=&dl=&cu=USD&sid=1712224634&sct=1&seg=1"
    "&dt=Ng%20GTM%20Integration%20App&en=add_to_cart&pr1=idcity001~nmSwitzerland~lndestinations"
    "~caSwitzerland~qt1~pr799&ep.debug_mode=false&epn.value=799&ep.promotion_id=city001"
    "&ep.promotion_name=Switzerland&ep.creative_name=travel_slide"
    "&ep.creative_slot=featured_attributor&_et=8682&tfd=30981")
SHARED = (
    "v=2&tid=G-ABC123&gtm=45je5580h2v9219555710za200&_p=1746817938582&cid=2026.1&ul=en-us"
    "&sr=1745x982&_s=1&sid=1746817858&sct=3&seg=1&dl=https%3A%2F%2Fwww.example.com%2Fshoes"
    "%3Futm_source%3Dnews&dr=https%3A%2F%2Fwww.google.com%2F&dt=Shoes")
LINES = ("en=page_view&_ee=1&tfd=565&ep.content_group=product\r\n"
         "en=view_item&cu=EUR&pr1=idSKU_1~nmRunner~caShoes~pr89.9~qt1&epn.value=89.9\r\n"
         "en=scroll&epn.percent_scrolled=90&_et=1200&dt=Shoes%20(scrolled)\r\n")


@pytest.fixture(scope="module")
def ga(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("ga4"), TENANTS) as srv:
        yield srv


def rows(server: Server, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return server.query("gshop", sql, params)


def test_real_purchase_hit(ga: Server) -> None:
    r = httpx.get(f"{ga.url}/g/collect?{PURCHASE}", headers={"Origin": "https://www.example.com"})
    assert r.status_code == 204 and r.content == b""
    assert r.headers["access-control-allow-origin"] == "https://www.example.com"
    assert r.headers["access-control-allow-credentials"] == "true"
    got = rows(ga, "SELECT event_type, event_name, protocol, app_id, anonymous_id, session_id, "
                   "session_index, page_url, page_title, language, screen, product_action, "
                   "order_id, revenue, currency, items FROM events WHERE order_id = 'T_12345'")
    assert len(got) == 1
    *fields, items = got[0]
    assert fields == ["track", "purchase", "ga4", "G-ABC123", "1677925765.1764678332",
                      "1677925765.1764678332:1766755460", 2,
                      "https://www.example.com/?g=123123", "Example Domain", "en-us",
                      "1920x1080", "purchase", "T_12345", 72.05, "USD"]
    assert items == [
        {"product_id": "SKU_12345", "name": "Stan and Friends Tee", "category": "Apparel",
         "brand": "Google", "variant": "green", "price": 10.01, "quantity": 3.0,
         "currency": "USD"},
        {"product_id": "SKU_12346", "name": "Google Grey Women's Tee", "category": "Apparel",
         "brand": "Google", "variant": "gray", "price": 21.01, "quantity": 2.0,
         "currency": "USD"}]
    props = orjson.loads(rows(ga, "SELECT properties FROM events WHERE order_id = 'T_12345'")[0][0])
    assert (props["value"], props["tax"], props["coupon"]) == (72.05, 3.6, "SUMMER_SALE")
    assert props["items"][1]["promotion_name"] == "Summer Sale"
    assert props["items"][0]["google_business_vertical"] == "retail"  # custom item parameter


def test_real_add_to_cart_hit_as_post_without_body(ga: Server) -> None:
    r = httpx.post(f"{ga.url}/g/collect?{ADD_TO_CART}", content=b"")
    assert r.status_code == 204
    got = rows(ga, "SELECT product_action, product_id, product_name, price, quantity, referrer, "
                   "page_url, properties->>'$.creative_slot' FROM events "
                   "WHERE anonymous_id = '485839296.1712224634'")
    assert got == [("add", "city001", "Switzerland", 799.0, 1.0, None, None,
                    "featured_attributor")]


def test_batched_post_shares_the_query_string(ga: Server) -> None:
    r = httpx.post(f"{ga.url}/g/collect?{SHARED}", content=LINES.encode(),
                   headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert r.status_code == 204
    got = rows(ga, "SELECT item_index, event_type, event_name, session_index, page_title, "
                   "page_path, utm_source, product_id, currency, properties FROM events "
                   "WHERE anonymous_id = '2026.1' ORDER BY item_index")
    assert [g[:9] for g in got] == [
        (0, "page", "page_view", 3, "Shoes", "/shoes", "news", None, None),
        (1, "track", "view_item", 3, "Shoes", "/shoes", "news", "SKU_1", "EUR"),
        (2, "track", "scroll", 3, "Shoes (scrolled)", "/shoes", "news", None, None),
    ]
    assert orjson.loads(got[2][9]) == {"percent_scrolled": 90}
    assert len({g[0] for g in rows(ga, "SELECT event_id FROM events "
                                       "WHERE anonymous_id = '2026.1'")}) == 3


def test_measurement_protocol(ga: Server) -> None:
    body = {"client_id": "mp.1", "user_id": "u-7", "timestamp_micros": 1767225600000000,
            "user_properties": {"tier": {"value": "gold"}},
            "events": [{"name": "refund", "params": {"currency": "EUR", "value": 19.5,
                                                     "transaction_id": "T-9"}},
                       {"name": "login", "params": {"method": "email"}}]}
    r = httpx.post(f"{ga.url}/mp/collect?measurement_id=G-ABC123&api_secret=s3cr3t",
                   content=orjson.dumps(body))
    assert r.status_code == 204
    got = rows(ga, "SELECT event_name, user_id, client_ts, product_action, revenue, traits "
                   "FROM events WHERE anonymous_id = 'mp.1' ORDER BY item_index")
    ts = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert [g[:5] for g in got] == [("refund", "u-7", ts, "refund", 19.5),
                                    ("login", "u-7", ts, None, None)]
    assert orjson.loads(got[0][5]) == {"tier": {"value": "gold"}}
    # api_secret is a credential: it never reaches the lake, not even the raw archive
    assert rows(ga, "SELECT query FROM raw WHERE path = '/mp/collect'") == [
        ("measurement_id=G-ABC123",)]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        ("GET", "/g/collect?v=2&en=page_view", b"", 401, "no measurement id"),
        ("GET", "/g/collect?v=2&tid=G-NOPE&en=x", b"", 401, "unknown write key"),
        ("POST", "/g/collect?v=2", b"tid=G-ABC123&en=a\ntid=G-OTHER&en=b", 400,
         "different measurement ids"),
        ("POST", "/mp/collect?api_secret=x", b"{}", 401, "no measurement id"),
        ("GET", "/mp/collect?measurement_id=G-ABC123", b"", 405, "POST"),
    ],
)
def test_refusals(ga: Server, method: str, path: str, body: bytes, status: int,
                  reason: str) -> None:
    r = httpx.request(method, f"{ga.url}{path}", content=body)
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]


def test_tid_in_the_body_lines_is_enough(ga: Server) -> None:
    r = httpx.post(f"{ga.url}/g/collect", content=b"v=2&tid=G-ABC123&cid=body.1&en=sign_up")
    assert r.status_code == 204
    assert rows(ga, "SELECT event_name FROM events WHERE anonymous_id = 'body.1'") == [
        ("sign_up",)]


def test_unparsable_events_are_quarantined(ga: Server) -> None:
    r = httpx.post(f"{ga.url}/g/collect?v=2&tid=G-ABC123&cid=q.1",
                   content=b"en=ok\n_et=5\nen=bad&epn.value=lots")
    assert r.status_code == 204
    assert rows(ga, "SELECT event_name FROM events WHERE anonymous_id = 'q.1'") == [("ok",)]
    got = rows(ga, "SELECT reason, detail, item_index FROM quarantine WHERE protocol = 'ga4' "
                   "ORDER BY item_index")
    assert ("protocol_violation", "event has no name (en)", 1) in got
    assert ("schema_violation", "epn.value is not a number", 2) in got


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=st.text(max_size=120), body=st.binary(max_size=200),
       path=st.sampled_from(["/g/collect", "/mp/collect"]))
def test_random_hits_never_5xx(ga: Server, query: str, body: bytes, path: str) -> None:
    url = f"{ga.url}{path}"
    r = httpx.post(url, params={"tid": "G-ABC123", "measurement_id": "G-ABC123", "x": query},
                   content=body, timeout=10)
    assert r.status_code < 500, r.text
