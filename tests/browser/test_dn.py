"""dn.js, driftnet's own tracker, in headless Chromium against a real `driftnet up`: what it
sends must land in the lake as rows, for page views (load and SPA), track, identify and the
e-commerce helpers, on unload, offline, around consent, under GPC and through first-party
aliases behind a proxy. Each test's browser context has its own User-Agent (so its own
cookieless visitor id) and its pages a ``run`` token in their URL that selects its rows.

Playwright's User-Agent override does not reach requests a page sends while it unloads:
those carry Chromium's own User-Agent, and so another cookieless id than the test's."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from ingest.collector.snippet import build
from tests.browser.support import http_server
from tests.support import Server

KEY = "dnshop-key"
COLUMNS = ("event_id, event_type, event_name, anonymous_id, user_id, page_url, page_path, "
           "page_title, referrer, screen, viewport, language, timezone, utm_source, utm_medium, "
           "utm_campaign, click_id, click_id_type, product_id, product_action, price, currency, "
           "quantity, order_id, revenue, items, properties, context, protocol, platform")
SHOE = {"product_id": "sku-trail-2", "name": "Trail Runner 2", "category": "shoes",
        "price": 89.9, "currency": "EUR"}
SOCKS = {"product_id": "sku-socks", "name": "Merino Socks", "category": "socks", "price": 12.5}
CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/131.0.0.0 Safari/537.36")


@contextmanager
def shop_context(browser: Browser, **options: Any) -> Iterator[tuple[BrowserContext, str]]:
    """A browser context with a User-Agent of its own (so a visitor of its own)."""
    run = uuid.uuid4().hex[:12]
    context = browser.new_context(user_agent=f"{CHROME_UA} dn-test/{run}", locale="de-DE",
                                  timezone_id="Europe/Berlin",
                                  viewport={"width": 1200, "height": 800}, **options)
    try:
        yield context, run
    finally:
        context.close()


@pytest.fixture
def shop(browser: Browser) -> Iterator[tuple[Page, str]]:
    with shop_context(browser) as (context, run):
        yield context.new_page(), run


def dn_url(base: str, run: str, script: str, endpoint: str, **params: Any) -> str:
    query = {"script": script, "endpoint": endpoint, "key": KEY, "run": run, **params}
    return f"{base}/pages/dn.html?{urlencode(query)}"


def collector_url(pages: str, run: str, collector: Server, **params: Any) -> str:
    """The test page loading dn.js from the collector's versioned URL, sending to /dn/e."""
    return dn_url(pages, run, f"{collector.url}/dn/{build().version}.js",
                  f"{collector.url}/dn/e", **params)


def rows(collector: Server, run: str, n: int, where: str = "TRUE",
         timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The rows sent from the pages of test ``run``, once there are ``n`` (then exactly
    ``n``: once everything sent is loaded, none more)."""
    sql = (f"SELECT {COLUMNS} FROM events_all WHERE contains(page_url, ?) AND ({where}) "
           "ORDER BY source_offset, source_index, item_index")  # the order sent
    deadline = time.monotonic() + timeout_s
    while True:
        collector.wait_loaded()
        got = collector.query("dnshop", sql, [f"run={run}"])
        if len(got) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    names = [c.strip() for c in COLUMNS.split(",")]
    out = [dict(zip(names, r, strict=True)) for r in got]
    assert len(out) == n, [(r["event_name"], r["page_url"]) for r in out]
    for r in out:
        r["properties"] = orjson.loads(r["properties"]) if r["properties"] else None
        r["context"] = orjson.loads(r["context"])
    return out


def drained(collector: Server, run: str, n: int, timeout_s: float = 60.0) -> None:
    """Wait until at least ``n`` rows of test ``run`` are in the lake."""
    deadline = time.monotonic() + timeout_s
    while True:
        collector.wait_loaded()
        (count,), = collector.query("dnshop", "SELECT count(*) FROM events_all WHERE "
                                    "contains(page_url, ?)", [f"run={run}"])
        if count >= n:
            return
        assert time.monotonic() < deadline, f"{count} of {n} rows after {timeout_s} s"
        time.sleep(0.2)


def loaded(page: Page) -> None:
    page.wait_for_function("window.dn && window.dn.version")


def test_page_views_on_load_and_on_spa_navigation(shop: tuple[Page, str], pages: str,
                                                  collector: Server) -> None:
    page, run = shop
    url = collector_url(pages, run, collector, utm_source="news", utm_medium="email",
                        utm_campaign="dec", gclid="g-123")
    page.goto(url)
    loaded(page)
    page.wait_for_timeout(1000)  # time spent on the page: its engaged time
    page.evaluate(f"spa('/pages/shoes?run={run}', 'Shoes | dnshop')")
    page.wait_for_timeout(1000)
    page.evaluate("history.back()")
    page.wait_for_url(url)
    shoes = f"{pages}/pages/shoes?run={run}"

    got = rows(collector, run, 5)
    assert [(r["event_name"], r["page_url"]) for r in got] == [
        ("page_view", url), ("Page Engaged", url), ("page_view", shoes),
        ("Page Engaged", shoes), ("page_view", url)]
    views = [r for r in got if r["event_type"] == "page"]
    assert [(r["page_title"], r["referrer"]) for r in views] == [
        # history.back() leaves the title as it was: the page view reads it as it is.
        ("Home | dnshop", None), ("Shoes | dnshop", url), ("Shoes | dnshop", shoes)]
    assert views[1]["page_path"] == "/pages/shoes"
    first = views[0]
    assert (first["utm_source"], first["utm_medium"], first["utm_campaign"]) == (
        "news", "email", "dec")
    assert (first["click_id"], first["click_id_type"]) == ("g-123", "gclid")
    assert views[1]["utm_source"] is None
    for r in got:
        assert (r["protocol"], r["platform"], r["language"], r["timezone"]) == (
            "dn", "web", "de-DE", "Europe/Berlin")
        assert r["viewport"] == "1200x800" and r["screen"] is not None
        assert r["anonymous_id"] == first["anonymous_id"] and r["user_id"] is None
        assert r["context"]["idMode"] == "cookieless"
        assert r["context"]["library"] == {"name": "dn.js", "version": "1.0.0"}
    assert first["anonymous_id"].startswith("cl-")
    for engaged in (got[1], got[3]):
        assert 900 <= engaged["properties"]["engaged_ms"] <= 30_000


def test_track_identify_and_ecommerce_helpers(shop: tuple[Page, str], pages: str,
                                              collector: Server) -> None:
    page, run = shop
    page.goto(collector_url(pages, run, collector))
    order = {"order_id": "T-77", "revenue": 114.9, "currency": "EUR",
             "products": [{**SHOE, "quantity": 1}, {**SOCKS, "quantity": 2}]}
    page.evaluate("""([shoe, socks, order]) => {
        dn('product_view', shoe);
        dn('list_view', {list_id: 'running', products: [shoe, socks]});
        dn('add_to_cart', {...shoe, quantity: 1});
        dn('remove_from_cart', {...socks, quantity: 1});
        dn('search', 'trail shoes');
        dn('checkout', {currency: 'EUR', revenue: 114.9, products: order.products});
        dn('identify', 'user-42', {plan: 'gold'});
        dn('purchase', order);
        dn('track', 'Newsletter Signup', {list: 'weekly'});
    }""", [SHOE, SOCKS, order])

    got = rows(collector, run, 10, "event_name <> 'Page Engaged'")
    assert [(r["event_type"], r["event_name"], r["product_action"]) for r in got] == [
        ("page", "page_view", None),
        ("track", "Product Viewed", "view"),
        ("track", "Product List Viewed", "list_view"),
        ("track", "Product Added", "add"),
        ("track", "Product Removed", "remove"),
        ("track", "Products Searched", "search"),
        ("track", "Checkout Started", "checkout"),
        ("identify", "identify", None),
        ("track", "Order Completed", "purchase"),
        ("track", "Newsletter Signup", None),
    ]
    by_name = {r["event_name"]: r for r in got}
    viewed = by_name["Product Viewed"]
    assert (viewed["product_id"], viewed["price"], viewed["currency"]) == (
        "sku-trail-2", 89.9, "EUR")
    assert [i["product_id"] for i in viewed["items"]] == ["sku-trail-2"]
    assert [i["product_id"] for i in by_name["Product List Viewed"]["items"]] == [
        "sku-trail-2", "sku-socks"]
    assert by_name["Product Added"]["quantity"] == 1.0
    assert by_name["Product Removed"]["product_id"] == "sku-socks"
    purchase = by_name["Order Completed"]
    assert (purchase["order_id"], purchase["revenue"], purchase["currency"]) == (
        "T-77", 114.9, "EUR")
    assert [(i["product_id"], i["quantity"], i["currency"]) for i in purchase["items"]] == [
        ("sku-trail-2", 1.0, "EUR"), ("sku-socks", 2.0, "EUR")]
    assert by_name["Newsletter Signup"]["properties"] == {"list": "weekly"}
    assert [r["user_id"] for r in got] == [None] * 7 + ["user-42"] * 3
    assert len({r["anonymous_id"] for r in got}) == 1


def test_nothing_is_lost_when_the_page_unloads_right_after_an_event(
        shop: tuple[Page, str], pages: str, collector: Server) -> None:
    page, run = shop
    # A 10 s flush delay: everything is still queued when the page goes.
    page.goto(collector_url(pages, run, collector, flushMs=10_000))
    loaded(page)
    page.wait_for_timeout(1000)  # read the page a while: engaged time to report on leave
    page.evaluate("dn('track', 'Last Click', {n: 1}); document.getElementById('leave').click()")
    page.wait_for_url("**/pages/plain.html")

    got = rows(collector, run, 3)
    assert [r["event_name"] for r in got] == ["page_view", "Last Click", "Page Engaged"]
    assert 900 <= got[2]["properties"]["engaged_ms"] <= 30_000
    assert len({r["event_id"] for r in got}) == 3


def test_events_sent_offline_arrive_once_back_online(browser: Browser, pages: str,
                                                     collector: Server) -> None:
    with shop_context(browser) as (context, run):
        page = context.new_page()
        page.goto(collector_url(pages, run, collector, flushMs=100))
        rows(collector, run, 1)
        context.set_offline(True)
        page.evaluate("dn('track', 'Offline One'); dn('track', 'Offline Two')")
        page.wait_for_timeout(3000)  # flushes fail and back off meanwhile
        assert rows(collector, run, 1, timeout_s=0)[0]["event_name"] == "page_view"
        context.set_offline(False)
        got = rows(collector, run, 3)
        assert [r["event_name"] for r in got] == ["page_view", "Offline One", "Offline Two"]
        assert len({r["event_id"] for r in got}) == 3


def test_a_refused_batch_is_retried_with_backoff(browser: Browser, pages: str,
                                                 collector: Server) -> None:
    """The collector's first answer is a 503 (as when its transport is down): the batch is
    sent again, after a backoff, and lands once."""
    with shop_context(browser) as (context, run):
        page = context.new_page()
        attempts: list[float] = []

        def fail_first(route: Any) -> None:
            attempts.append(time.monotonic())
            if len(attempts) == 1:
                route.fulfill(status=503, body='{"error":"retry","status":503}',
                              headers={"Access-Control-Allow-Origin": pages,
                                       "Retry-After": "1"})
            else:
                route.continue_()

        page.route(f"{collector.url}/dn/e", fail_first)
        page.goto(collector_url(pages, run, collector, flushMs=100))
        deadline = time.monotonic() + 30
        while len(attempts) < 2 and time.monotonic() < deadline:
            page.wait_for_timeout(200)  # Playwright runs route handlers while it is called
        got = rows(collector, run, 1)
        assert got[0]["event_name"] == "page_view"
        assert len(attempts) == 2 and attempts[1] - attempts[0] >= 0.9


def test_the_queue_is_bounded_and_says_what_it_dropped(browser: Browser, pages: str,
                                                       collector: Server) -> None:
    """600 events made offline: the newest 500 are kept, and events say how many went."""
    with shop_context(browser) as (context, run):
        page = context.new_page()
        page.goto(collector_url(pages, run, collector, flushMs=100))
        rows(collector, run, 1)
        context.set_offline(True)
        page.evaluate("for (let i = 0; i < 600; i++) dn('track', 'e' + i)")
        context.set_offline(False)
        # The queue is full (500): an event queued before the first batch is back out
        # would push the oldest one out too. Wait until the retried queue drains a batch.
        drained(collector, run, 21)
        page.evaluate("dn('track', 'after')")
        got = rows(collector, run, 502, "event_name <> 'Page Engaged'")
    names = [r["event_name"] for r in got]
    assert names == ["page_view", *(f"e{i}" for i in range(100, 600)), "after"]
    assert sum(r["context"].get("dropped", 0) for r in got) == 100


def storage(page: Page) -> list[Any]:
    return [page.evaluate("document.cookie"),
            page.evaluate("localStorage.length + sessionStorage.length")]


def test_consent_upgrades_to_a_first_party_id_and_earlier_events_stay_cookieless(
        shop: tuple[Page, str], pages: str, collector: Server) -> None:
    page, run = shop
    url = collector_url(pages, run, collector, flushMs=100)
    page.goto(url)
    loaded(page)
    page.evaluate("dn('track', 'Before Consent')")
    assert page.context.cookies() == [] and storage(page) == ["", 0]
    page.evaluate("dn('consent', {analytics: true}); dn('track', 'After Consent')")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert set(cookies) == {"_dn_id"}
    persistent = cookies["_dn_id"]["value"]
    assert cookies["_dn_id"]["domain"] == "127.0.0.1" and cookies["_dn_id"]["expires"] > 0
    # Sent before the page goes (what a page sends while unloading has Chromium's own
    # User-Agent here, so another cookieless id: see the module docstring).
    rows(collector, run, 4, "event_name <> 'Page Engaged'")
    page.goto(url)  # the next page view: the id is kept
    loaded(page)

    got = rows(collector, run, 5, "event_name <> 'Page Engaged'")
    assert [r["event_name"] for r in got] == [
        "page_view", "Before Consent", "Consent Updated", "After Consent", "page_view"]
    ids = [r["anonymous_id"] for r in got]
    assert ids[0] == ids[1] and ids[0].startswith("cl-")
    assert ids[2:] == [persistent] * 3
    assert [r["context"]["idMode"] for r in got] == ["cookieless"] * 2 + ["persistent"] * 3
    assert got[2]["properties"] == {"analytics": True}
    assert got[3]["context"]["consent"] == {"analytics": True}


GPC_NAVIGATOR = ("Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', "
                 "{get: () => true})")


@pytest.mark.parametrize("client_honours", [True, False])
def test_global_privacy_control_keeps_the_visitor_cookieless(
        browser: Browser, pages: str, collector: Server, client_honours: bool) -> None:
    """dnshop honours GPC (tenants.toml): with ``init({gpc: true})`` the snippet never sets
    its cookie; without, the collector still keeps the cookieless id."""
    with shop_context(browser, extra_http_headers={"Sec-GPC": "1"}) as (context, run):
        context.add_init_script(GPC_NAVIGATOR)
        page = context.new_page()
        gpc = {"gpc": "1"} if client_honours else {}
        page.goto(collector_url(pages, run, collector, flushMs=100, **gpc))
        loaded(page)
        page.evaluate("dn('consent', {analytics: true}); dn('track', 'After Consent')")
        names = {c["name"] for c in context.cookies()}
        assert names == (set() if client_honours else {"_dn_id"})

        got = rows(collector, run, 3, "event_name <> 'Page Engaged'")
        assert [r["event_name"] for r in got] == ["page_view", "Consent Updated",
                                                  "After Consent"]
        assert len({r["anonymous_id"] for r in got}) == 1
        assert got[0]["anonymous_id"].startswith("cl-")
        expected = "cookieless" if client_honours else "persistent"
        assert got[2]["context"]["idMode"] == expected


class _Proxy(BaseHTTPRequestHandler):
    """The shop's own reverse proxy (docs/snippet.md's nginx example): the tenant's script and
    ingest aliases go to the collector, everything else to the shop's pages."""

    collector = ""
    shop = ""
    ALIASES = ("/assets/app-7c1.js", "/api/v/e")

    def _forward(self) -> None:
        path = urlsplit(self.path).path
        upstream = self.collector if path in self.ALIASES else self.shop
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection", "content-length",
                                        "accept-encoding")}
        headers["X-Forwarded-For"] = self.client_address[0]
        r = httpx.request(self.command, upstream + self.path, content=body, headers=headers,
                          timeout=10)
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in ("content-length", "connection", "transfer-encoding",
                                 "content-encoding", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    do_GET = do_POST = do_OPTIONS = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def proxy(collector: str, shop: str) -> Iterator[str]:
    handler = type("Proxy", (_Proxy,), {"collector": collector, "shop": shop})
    with http_server(handler) as origin:
        yield origin


def test_first_party_aliases_behind_the_shops_proxy(shop: tuple[Page, str], pages: str,
                                                    collector: Server) -> None:
    page, run = shop
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    with proxy(collector.url, pages) as origin:
        page.goto(dn_url(origin, run, "/assets/app-7c1.js", "/api/v/e", flushMs=100))
        loaded(page)
        page.evaluate("dn('add_to_cart', {product_id: 'sku-1', price: 5, quantity: 1})")
        got = rows(collector, run, 2, "event_name <> 'Page Engaged'")
        page.title()  # lets Playwright deliver the request events it holds
    assert [(r["event_name"], r["product_id"]) for r in got] == [
        ("page_view", None), ("Product Added", "sku-1")]
    assert got[0]["anonymous_id"].startswith("cl-")
    # Script and beacons came from the shop's own origin; nothing went elsewhere.
    assert seen and all(u.startswith(origin + "/") for u in seen), seen
    assert f"{origin}/assets/app-7c1.js" in seen
    assert any(u == f"{origin}/api/v/e" for u in seen)


def set_visibility(page: Page, state: str) -> None:
    """Hide or show the page as a tab switch does (a headless page is never hidden itself):
    dn.js's own handler runs on the visibilitychange."""
    page.evaluate("""s => {
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => s});
        document.dispatchEvent(new Event('visibilitychange'));
    }""", state)


BIG = "for (let i = 0; i < 15; i++) dn('track', 'E' + i, {blob: 'x'.repeat(6000)})"
"""15 events of about 6.7 KB: more than the 64 KB a page may have in flight with keepalive."""


def test_events_queued_offline_survive_a_tab_switch(browser: Browser, pages: str,
                                                     collector: Server) -> None:
    """Hiding the tab sends the queue at once; offline that fails, and the events go back
    into the queue and arrive once back online (sendBeacon took them and lost them)."""
    with shop_context(browser) as (context, run):
        page = context.new_page()
        page.goto(collector_url(pages, run, collector, flushMs=100))
        rows(collector, run, 1)
        context.set_offline(True)
        page.evaluate("dn('track', 'Offline One'); dn('track', 'Offline Two')")
        page.wait_for_timeout(1500)  # the first flush fails and backs off
        set_visibility(page, "hidden")
        page.wait_for_timeout(500)
        set_visibility(page, "visible")
        context.set_offline(False)
        got = rows(collector, run, 4)
    assert [r["event_name"] for r in got] == [
        "page_view", "Offline One", "Offline Two", "Page Engaged"]
    assert len({r["event_id"] for r in got}) == 4


def test_a_hidden_page_sends_what_keepalive_allows_then_the_rest(
        shop: tuple[Page, str], pages: str, collector: Server) -> None:
    """More than 64 KB queued when the tab is hidden: what fits goes with keepalive, the rest
    stays queued and follows (one beacon of everything was refused, and all of it lost)."""
    page, run = shop
    page.goto(collector_url(pages, run, collector, flushMs=60_000))  # nothing sent until hidden
    loaded(page)
    page.evaluate(BIG)
    set_visibility(page, "hidden")
    got = rows(collector, run, 17)
    assert sorted(r["event_name"] for r in got) == sorted(
        ["page_view", "Page Engaged", *(f"E{i}" for i in range(15))])
    assert [r["event_name"] for r in got if r["event_name"].startswith("E")] == [
        f"E{i}" for i in range(15)]
    assert len({r["event_id"] for r in got}) == 17


@pytest.mark.parametrize("keepalive", [True, False], ids=["fetch", "beacon"])
def test_leaving_with_more_than_keepalive_allows_sends_what_fits(
        shop: tuple[Page, str], pages: str, collector: Server, keepalive: bool) -> None:
    """A page that closes can hand the browser 64 KB with keepalive (Chromium refuses more):
    the oldest events that fit arrive, in order; before, the one oversized request was
    refused whole. Without fetch keepalive (Firefox before 133) sendBeacon does the same."""
    page, run = shop
    if not keepalive:
        page.add_init_script("delete Request.prototype.keepalive")
    page.goto(collector_url(pages, run, collector, flushMs=60_000))
    loaded(page)
    assert page.evaluate("'keepalive' in Request.prototype") is keepalive
    page.evaluate(BIG)
    page.evaluate("document.getElementById('leave').click()")
    page.wait_for_url("**/pages/plain.html")
    drained(collector, run, 8)
    names = [n for (n,) in collector.query(
        "dnshop", "SELECT event_name FROM events_all WHERE contains(page_url, ?) AND "
        "event_name LIKE 'E%' ORDER BY source_offset, source_index, item_index", [f"run={run}"])]
    assert len(names) >= 7 and names == [f"E{i}" for i in range(len(names))]


def test_an_event_json_cannot_write_is_dropped_alone(shop: tuple[Page, str], pages: str,
                                                     collector: Server) -> None:
    """A cycle or a BigInt in one event's properties: that event is dropped with a console
    warning and counted in the next event's context.dropped; the events around it arrive."""
    page, run = shop
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.goto(collector_url(pages, run, collector, flushMs=300))
    loaded(page)
    page.evaluate("""() => {
        dn('add_to_cart', {product_id: 'sku-1', price: 10, quantity: 1});
        const p = {product_id: 'sku-2'};
        p.self = p;
        dn('track', 'Circular', {p});
        dn('track', 'Big Number', {n: 10n});
        dn('track', 'After');
    }""")
    got = rows(collector, run, 3, "event_name <> 'Page Engaged'")
    assert [r["event_name"] for r in got] == ["page_view", "Product Added", "After"]
    assert got[2]["context"]["dropped"] == 2
    assert [w.split(":")[:2] for w in warnings] == [
        ["dn", " dropped Circular"], ["dn", " dropped Big Number"]]


def test_batches_are_cut_below_the_collectors_request_limit(
        shop: tuple[Page, str], pages: str, collector: Server) -> None:
    """20 events of 27 KB (one batch of them is over the collector's 500 KB) all arrive; an
    event over the 32 KB event limit is still sent, and quarantined with reason size."""
    page, run = shop
    page.goto(collector_url(pages, run, collector, flushMs=100))
    loaded(page)
    page.evaluate("""() => {
        for (let i = 0; i < 20; i++) dn('track', 'Big ' + i, {notes: 'x'.repeat(27000)});
        dn('track', 'Too Big', {notes: 'x'.repeat(40000)});
    }""")
    got = rows(collector, run, 21, "event_name <> 'Page Engaged'")
    assert [r["event_name"] for r in got] == ["page_view", *(f"Big {i}" for i in range(20))]
    quarantined = collector.query(
        "dnshop", "SELECT reason FROM quarantine WHERE contains(decode(payload), ?)",
        [f"run={run}"])
    assert quarantined == [("size",)]


def test_a_second_copy_of_dn_js_leaves_the_first_in_place(
        shop: tuple[Page, str], pages: str, collector: Server) -> None:
    page, run = shop
    page.goto(collector_url(pages, run, collector, flushMs=100))
    loaded(page)
    first = page.evaluate_handle("() => window.dn")
    page.add_script_tag(url=f"{collector.url}/dn/{build().version}.js")  # a tag manager's copy
    assert page.evaluate("first => window.dn === first", first)
    page.evaluate("dn('track', 'After Second Copy')")
    got = rows(collector, run, 2, "event_name <> 'Page Engaged'")
    assert [r["event_name"] for r in got] == ["page_view", "After Second Copy"]


def test_a_page_view_keeps_the_time_it_was_called_at(
        shop: tuple[Page, str], pages: str, collector: Server) -> None:
    """The script arrives late: the page view init queued keeps the time of its call, like
    the product view the page called after init, so it comes first."""
    page, run = shop
    released: list[float] = []

    def slow(route: Any) -> None:  # a slow network for the script
        time.sleep(1.5)
        released.append(time.time())
        route.continue_()

    page.route("**/dn/*.js", slow)
    page.goto(collector_url(pages, run, collector, flushMs=100, product="sku-1"),
              wait_until="commit")
    page.wait_for_function("window.dn && window.dn.version", timeout=20_000)
    rows(collector, run, 2, "event_name <> 'Page Engaged'")
    (view, view_ts), (product, product_ts) = collector.query(
        "dnshop", "SELECT event_name, client_ts FROM events_all WHERE contains(page_url, ?) "
        "AND event_name <> 'Page Engaged' ORDER BY client_ts, event_name DESC",
        [f"run={run}"])
    assert (view, product) == ("page_view", "Product Viewed")
    assert view_ts <= product_ts
    assert view_ts.timestamp() < released[0] - 1.0
