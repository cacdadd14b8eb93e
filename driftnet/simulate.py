"""``driftnet simulate``: realistic shopper traffic over HTTP, for the demo, tests and bench.

Each session belongs to one tenant and one visitor (30% returning, some logged in, 3% bots)
and walks: landing page (search, social, email, paid or direct) -> category lists,
searches, product views (Zipf-skewed popularity) -> add to cart -> checkout -> purchase.
Sessions are sent the ways real trackers send: one request per event with Basic auth
(server SDKs), analytics.js short paths with the key in a text/plain body, whole-session
batches, and GET pixels. Some requests are sent twice (tracker retries) and some sessions
add one malformed hit. The report counts what the collector acknowledged.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime as dt
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from schemas.tenants import Tenants

USER_AGENTS = [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", 40),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.1 Safari/605.1.15", 15),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", 8),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", 20),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Mobile Safari/537.36", 14),
    ("Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.6 Mobile/15E148 Safari/604.1", 3),
]
BOT_AGENTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36",
]
LOCALES = [("en-US", "America/New_York", 40), ("de-DE", "Europe/Berlin", 25),
           ("fr-FR", "Europe/Paris", 15), ("en-GB", "Europe/London", 15),
           ("es-ES", "Europe/Madrid", 5)]
SCREENS = [(1920, 1080, 1880, 960), (1440, 900, 1440, 789), (390, 844, 390, 664),
           (412, 915, 412, 780), (1366, 768, 1349, 657)]
CATEGORIES = ["shoes", "jackets", "shirts", "bags", "hats", "socks", "watches", "scarves"]
SEARCH_TERMS = ["running shoes", "rain jacket", "linen shirt", "leather bag", "wool hat",
                "gift", "sale", "black sneakers", "travel backpack", "summer dress"]
ACQUISITION = [  # (referrer, utm params, click id param, weight)
    ("https://www.google.com/", {}, None, 30),
    ("https://www.google.com/", {"utm_source": "google", "utm_medium": "cpc",
                                 "utm_campaign": "brand"}, "gclid", 10),
    ("https://www.facebook.com/", {"utm_source": "facebook", "utm_medium": "social",
                                   "utm_campaign": "autumn"}, "fbclid", 10),
    ("https://www.bing.com/", {}, None, 5),
    ("", {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "weekly"},
     None, 10),
    ("", {}, None, 30),
    ("https://blog.example.org/best-gear", {}, None, 5),
]


def _weighted(rng: random.Random, items: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    return rng.choices(items, weights=[i[-1] for i in items])[0]


@dataclass
class Catalog:
    """A tenant's products, with Zipf-skewed popularity."""

    products: list[dict[str, Any]]
    weights: list[float]

    @classmethod
    def build(cls, tenant: str, rng: random.Random, size: int = 400) -> Catalog:
        """Deterministic catalog for a tenant."""
        products = []
        for i in range(size):
            category = CATEGORIES[i % len(CATEGORIES)]
            products.append({
                "product_id": f"{tenant[:3]}-{i:05d}",
                "name": f"{category.title()[:-1]} {i}",
                "category": category,
                "price": round(rng.lognormvariate(3.5, 0.6), 2),
            })
        rng.shuffle(products)
        weights = [1.0 / (rank + 1) ** 1.1 for rank in range(size)]
        return cls(products, weights)

    def pick(self, rng: random.Random, category: str | None = None) -> dict[str, Any]:
        """A product, popular ones more often."""
        if category is None:
            return rng.choices(self.products, weights=self.weights)[0]
        pool = [(p, w) for p, w in zip(self.products, self.weights, strict=True)
                if p["category"] == category]
        return rng.choices([p for p, _ in pool], weights=[w for _, w in pool])[0]


@dataclass
class SimulationConfig:
    """What to simulate."""

    url: str
    tenants: Tenants
    sessions: int = 200
    only_tenants: tuple[str, ...] = ()
    seed: int = 7
    concurrency: int = 32
    duplicate_rate: float = 0.03
    malformed_rate: float = 0.05
    origin: str | None = None
    """Origin header of browser-style requests (default: the tenant's first allowed origin)."""
    days: int = 0
    """Spread sessions over this many past days (0: every session ends just now). Trackers
    send them now with their event times (an offline queue): derived_ts is in the past."""


@dataclass
class Request:
    """One HTTP request of the simulation."""

    tenant: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None
    params: dict[str, str] | None = None
    events: int = 1
    kind: str = "event"
    """event | duplicate | malformed:<what>."""


@dataclass
class SimulationReport:
    """What was sent and what the collector answered."""

    sessions: int = 0
    requests: int = 0
    events_sent: int = 0
    events_acked: int = 0
    duplicates_sent: int = 0
    malformed_sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    acked_by_tenant: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data."""
        return {
            "sessions": self.sessions, "requests": self.requests,
            "events_sent": self.events_sent, "events_acked": self.events_acked,
            "duplicates_sent": self.duplicates_sent, "malformed_sent": self.malformed_sent,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "acked_by_tenant": dict(self.acked_by_tenant),
            "malformed": dict(self.malformed), "errors": dict(self.errors),
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        """A few lines for a terminal."""
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        rate = self.requests / self.seconds if self.seconds else 0.0
        return (
            f"{self.sessions} sessions, {self.requests} requests in {self.seconds:.1f}s "
            f"({rate:,.0f} req/s)\n"
            f"events sent {self.events_sent}, acknowledged {self.events_acked} "
            f"(retried {self.duplicates_sent} requests, {self.malformed_sent} malformed hits)\n"
            f"HTTP statuses: {statuses}"
            + (f"\nerrors: {dict(self.errors)}" if self.errors else "")
        )


def _iso(ts: dt.datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


class SessionBuilder:
    """Builds the requests of one tenant's sessions."""

    def __init__(self, tenant_id: str, key: str, origin: str, rng: random.Random) -> None:
        self.tenant = tenant_id
        self.key = key
        self.origin = origin
        self.host = origin.split("://", 1)[-1] if origin != "*" else "shop.example"
        self.rng = rng
        self.catalog = Catalog.build(tenant_id, random.Random(tenant_id))
        self.visitors: list[tuple[str, str | None]] = []

    def _visitor(self) -> tuple[str, str | None]:
        rng = self.rng
        if self.visitors and rng.random() < 0.3:
            return rng.choice(self.visitors)
        visitor = (str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                   f"user-{rng.randrange(10**6)}" if rng.random() < 0.15 else None)
        self.visitors.append(visitor)
        return visitor

    def session(self, now: dt.datetime) -> tuple[list[dict[str, Any]], dt.timedelta]:
        """The Segment-spec messages of one session ending just before ``now``, oldest first,
        and the device clock skew."""
        rng = self.rng
        anonymous_id, user_id = self._visitor()
        is_bot = rng.random() < 0.03
        ua = rng.choice(BOT_AGENTS) if is_bot else _weighted(rng, USER_AGENTS)[0]
        locale, tz, _ = _weighted(rng, LOCALES)
        screen = rng.choice(SCREENS)
        referrer, utm, click_param, _ = _weighted(rng, ACQUISITION)
        skew = dt.timedelta(seconds=rng.choice([0] * 8 + [-3600, 7200]))  # wrong device clocks
        steps = 1 if is_bot else min(1 + int(rng.expovariate(1 / 6)), 40)
        query = dict(utm)
        if click_param:
            query[click_param] = uuid.UUID(int=rng.getrandbits(128)).hex[:20]
        landing = f"https://{self.host}/" + (f"?{urlencode(query)}" if query else "")
        context_base: dict[str, Any] = {
            "userAgent": ua, "locale": locale, "timezone": tz,
            "screen": {"width": screen[0], "height": screen[1],
                       "innerWidth": screen[2], "innerHeight": screen[3]},
            "library": {"name": "driftnet-simulate", "version": "1"},
        }
        messages: list[dict[str, Any]] = []
        t = now
        page_url, page_title, page_ref = landing, "Home", referrer
        cart: list[dict[str, Any]] = []

        def emit(kind: str, **fields: Any) -> None:
            nonlocal t
            t += dt.timedelta(seconds=rng.uniform(3, 60))
            message: dict[str, Any] = {
                "type": kind, "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "anonymousId": anonymous_id, "timestamp": t,
                "context": {**context_base, "page": {
                    "url": page_url, "title": page_title, "referrer": page_ref,
                    "path": "/" + page_url.split("/", 3)[-1].split("?")[0]}},
                **fields,
            }
            if user_id:
                message["userId"] = user_id
            messages.append(message)

        emit("page", name="Home", properties={"title": page_title, "url": page_url})
        for _ in range(steps - 1):
            r = rng.random()
            page_ref = page_url
            if r < 0.2:
                category = rng.choice(CATEGORIES)
                page_url, page_title = f"https://{self.host}/c/{category}", category.title()
                emit("page", name="Category", properties={"category": category})
                emit("track", event="Product List Viewed",
                     properties={"list_id": category, "category": category})
            elif r < 0.3:
                term = rng.choice(SEARCH_TERMS)
                page_url = f"https://{self.host}/search?{urlencode({'q': term})}"
                page_title = f"Search: {term}"
                emit("track", event="Products Searched", properties={"query": term})
            else:
                product = self.catalog.pick(rng)
                page_url = f"https://{self.host}/p/{product['product_id']}"
                page_title = product["name"]
                emit("page", name="Product", properties={"title": page_title})
                emit("track", event="Product Viewed",
                     properties={**product, "currency": "EUR", "quantity": 1})
                if rng.random() < 0.25:
                    cart.append(product)
                    emit("track", event="Product Added",
                         properties={**product, "currency": "EUR", "quantity": 1,
                                     "cart_id": anonymous_id[:8]})
        if cart and rng.random() < 0.45:
            total = round(sum(p["price"] for p in cart), 2)
            products = [{**p, "quantity": 1} for p in cart]
            page_url, page_title = f"https://{self.host}/checkout", "Checkout"
            emit("track", event="Checkout Started",
                 properties={"value": total, "currency": "EUR", "products": products})
            if rng.random() < 0.7:
                if not user_id:
                    user_id = f"user-{rng.randrange(10**6)}"
                    emit("identify", traits={"plan": rng.choice(["guest", "member"])})
                emit("track", event="Order Completed", properties={
                    "order_id": f"o-{rng.getrandbits(40):x}", "revenue": total,
                    "currency": "EUR", "products": products,
                })
        # The session ended a moment ago: shift it so its last event is just before `now`,
        # then apply the device clock's skew.
        shift = now - dt.timedelta(seconds=rng.uniform(0.5, 3)) - t
        for message in messages:
            message["timestamp"] = _iso(message["timestamp"] + shift + skew)
        return messages, skew

    def requests(self, messages: list[dict[str, Any]], sent_at: dt.datetime,
                 skew: dt.timedelta) -> list[Request]:
        """How this session's messages travel: per event, browser short paths, batch, pixel."""
        rng = self.rng
        mode = rng.choices(["server", "browser", "batch", "pixel"], weights=[30, 35, 30, 5])[0]
        sent = _iso(sent_at + skew)
        browser_headers = {"Content-Type": "text/plain", "Origin": self.origin,
                           "User-Agent": messages[0]["context"]["userAgent"]}
        out: list[Request] = []
        if mode == "batch":
            body = {"batch": messages, "sentAt": sent}
            out.append(Request(self.tenant, "POST", "/v1/batch",
                               {"Authorization": _basic(self.key),
                                "Content-Type": "application/json"},
                               orjson.dumps(body), events=len(messages)))
            return out
        short = {"track": "t", "page": "p", "identify": "i"}
        for original in messages:
            message = {**original, "sentAt": sent}
            if mode == "server":
                out.append(Request(self.tenant, "POST", f"/v1/{message['type']}",
                                   {"Authorization": _basic(self.key),
                                    "Content-Type": "application/json"},
                                   orjson.dumps(message)))
            elif mode == "pixel" and message["type"] == "page":
                params = {"k": self.key, "t": "page", "id": message["messageId"],
                          "a": message["anonymousId"], "url": message["context"]["page"]["url"],
                          "title": message["context"]["page"]["title"],
                          "ref": message["context"]["page"]["referrer"]}
                out.append(Request(self.tenant, "GET", "/p.gif",
                                   {"User-Agent": browser_headers["User-Agent"]},
                                   params=params))
            else:
                message["writeKey"] = self.key
                out.append(Request(self.tenant, "POST", f"/v1/{short[message['type']]}",
                                   browser_headers, orjson.dumps(message)))
        return out

    def malformed(self) -> Request:
        """One bad hit of a random kind; each must get a 4xx or a quarantine row."""
        rng = self.rng
        auth = {"Authorization": _basic(self.key), "Content-Type": "application/json"}
        kind = rng.choice(["bad_json", "missing_ids", "wrong_types", "oversized_item",
                           "unknown_key", "bad_origin", "not_utf8", "empty_body"])
        if kind == "bad_json":
            return Request(self.tenant, "POST", "/v1/track", auth, b'{"type": "track", "event":',
                           kind=f"malformed:{kind}")
        if kind == "missing_ids":
            body = orjson.dumps({"type": "track", "event": "Product Viewed",
                                 "messageId": str(uuid.uuid4())})
            return Request(self.tenant, "POST", "/v1/track", auth, body, kind=f"malformed:{kind}")
        if kind == "wrong_types":
            body = orjson.dumps({"type": "track", "event": 42, "anonymousId": "x",
                                 "properties": [1, 2], "messageId": str(uuid.uuid4())})
            return Request(self.tenant, "POST", "/v1/track", auth, body, kind=f"malformed:{kind}")
        if kind == "oversized_item":
            big = {"type": "track", "event": "Big", "anonymousId": "x",
                   "properties": {"blob": "x" * 40_000}, "messageId": str(uuid.uuid4())}
            body = orjson.dumps({"batch": [big]})
            return Request(self.tenant, "POST", "/v1/batch", auth, body, kind=f"malformed:{kind}")
        if kind == "unknown_key":
            body = orjson.dumps({"type": "track", "event": "X", "anonymousId": "x",
                                 "writeKey": "no-such-key"})
            return Request(self.tenant, "POST", "/v1/t", {"Content-Type": "text/plain"}, body,
                           kind=f"malformed:{kind}")
        if kind == "bad_origin":
            body = orjson.dumps({"type": "track", "event": "X", "anonymousId": "x",
                                 "writeKey": self.key})
            return Request(self.tenant, "POST", "/v1/t",
                           {"Content-Type": "text/plain", "Origin": "https://evil.example"},
                           body, kind=f"malformed:{kind}")
        if kind == "not_utf8":
            return Request(self.tenant, "POST", "/v1/track", auth, b'{"event": "\xff\xfe"}',
                           kind=f"malformed:{kind}")
        return Request(self.tenant, "POST", "/v1/track", auth, b"", kind=f"malformed:{kind}")


def build_requests(config: SimulationConfig) -> list[Request]:
    """Every request of a simulation, in send order (sessions interleaved by tenant)."""
    rng = random.Random(config.seed)
    tenants = [t for t in config.tenants if not config.only_tenants
               or t.id in config.only_tenants]
    if not tenants:
        raise ValueError("no tenant to simulate")
    builders = []
    for t in tenants:
        origin = config.origin or next((o for o in t.allowed_origins if "*" not in o),
                                       "https://shop.example")
        builders.append(SessionBuilder(t.id, t.write_keys[0].get_secret_value(), origin,
                                       random.Random(rng.getrandbits(64))))
    now = dt.datetime.now(dt.UTC)
    out: list[Request] = []
    for i in range(config.sessions):
        builder = builders[i % len(builders)]
        ended = now - dt.timedelta(seconds=rng.uniform(0, config.days * 86400))
        messages, skew = builder.session(ended)
        requests = builder.requests(messages, now, skew)
        for request in requests:
            out.append(request)
            if rng.random() < config.duplicate_rate:
                out.append(Request(request.tenant, request.method, request.path,
                                   request.headers, request.body, request.params,
                                   request.events, kind="duplicate"))
        if rng.random() < config.malformed_rate:
            out.append(builder.malformed())
    return out


async def send_requests(url: str, requests: list[Request], concurrency: int,
                        report: SimulationReport) -> None:
    """Send requests with ``concurrency`` in flight; count answers in ``report``."""
    queue: asyncio.Queue[Request] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:

        async def worker() -> None:
            while True:
                try:
                    request = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    async with session.request(
                        request.method, request.path, headers=request.headers,
                        data=request.body, params=request.params,
                    ) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    report.errors[type(exc).__name__] += 1
                    continue
                report.requests += 1
                report.statuses[status] += 1
                if request.kind.startswith("malformed"):
                    report.malformed_sent += 1
                    report.malformed[request.kind.split(":", 1)[1]] += 1
                    continue
                if request.kind == "duplicate":
                    report.duplicates_sent += 1
                    continue
                report.events_sent += request.events
                if 200 <= status < 300:
                    report.events_acked += request.events
                    report.acked_by_tenant[request.tenant] += request.events

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def run_simulation(config: SimulationConfig) -> SimulationReport:
    """Build and send a simulation; return its report.

    Usable from code that already runs an event loop (a notebook, Playwright's sync API):
    the simulation then gets a loop of its own in a worker thread.
    """
    report = SimulationReport(sessions=config.sessions)
    requests = build_requests(config)
    started = time.perf_counter()
    work = send_requests(config.url.rstrip("/"), requests, config.concurrency, report)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(work)
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, work).result()
    report.seconds = time.perf_counter() - started
    return report
