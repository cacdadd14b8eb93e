"""The collector's ASGI app: route, authenticate, check limits and CORS, envelope, ack when durable.

Raw ASGI rather than a framework: the collector's per-request work is small and on the hot
path, and bench/ measures it against a bare ASGI app (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from ingest.collector.answers import Answer, error_body
from ingest.collector.config import CollectorSettings
from ingest.collector.cookieless import GPC_HEADER, VISITOR_HEADER, DailySalt, visitor_id
from ingest.collector.errors import HttpError
from ingest.collector.group_commit import GroupCommitter
from ingest.collector.hit import Hit, without_param, without_write_key
from ingest.collector.http import body_received
from ingest.collector.routes import DN, Route, find_route, route_name
from ingest.collector.snippet import script_answers
from ingest.collector.visitor import routing_hash
from ingest.metrics.collector import CollectorMetrics
from ingest.metrics.exposition import render
from ingest.transport.base import Producer
from schemas.envelope import ENVELOPE_VERSION, encode_frame
from schemas.errors import ConfigError, DriftnetError
from schemas.tenants import Tenant, Tenants

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Respond = Callable[[int, Sequence[tuple[bytes, bytes]], bytes], None]
"""Sends a response (status, headers, body) on the connection of a request taken by
:meth:`CollectorApp.collect_ready`."""

KEPT_HEADERS = frozenset({
    "user-agent", "referer", "origin", "content-type", "content-encoding", "accept-language",
    "sp-anonymous", "x-forwarded-for", "host", "dnt", "sec-ch-ua", "sec-ch-ua-mobile",
    "sec-ch-ua-platform", "sec-ch-ua-platform-version", "sec-ch-ua-model",
    "sec-ch-ua-full-version-list", "sec-gpc",
})
"""Request headers copied into the envelope. Authorization is never kept."""
DECODE_WORKERS = 2
"""Threads decoding big encoded payloads (PostHog) off the event loop."""
DECODE_QUEUE = 30
"""Payloads that may wait for a decoding thread; past it, 503 + Retry-After."""
INLINE_DECODE_BYTES = 8 * 1024
"""Smaller payloads decode inline: a thread hop would cost more than the decoding."""

GC_YOUNG_THRESHOLD = 20_000
"""Allocations between collections of the youngest generation (Python's default: 700)."""

SECRET_HEADERS = frozenset({"authorization", "x-write-key"})
"""Headers carrying keys: the key finder reads them, the envelope never keeps them."""

_JSON = (b"content-type", b"application/json")
_PROMETHEUS = (b"content-type", CONTENT_TYPE_PLAIN_0_0_4.encode())  # what every Prometheus reads
_NO_PROTOCOL = "none"
"""Protocol label of requests that reached no route."""
# What uvicorn refuses in a response header value: an Origin echoed by the fast path must
# pass the same check (else the request takes the ASGI path, as before).
_UNSAFE_HEADER_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")

# Header name (as the server hands it, lower-case bytes) -> (kind, str name); one dict lookup
# per header on the hot path instead of decoding every name.
_KEEP, _SECRET, _COOKIE, _LENGTH = range(4)
_HEADER_KINDS: dict[bytes, tuple[int, str]] = {
    **{n.encode(): (_KEEP, n) for n in KEPT_HEADERS},
    **{n.encode(): (_SECRET, n) for n in SECRET_HEADERS},
    b"cookie": (_COOKIE, "cookie"),
    b"content-length": (_LENGTH, "content-length"),
}


def _scan_headers(
    raw: list[tuple[bytes, bytes]],
) -> tuple[dict[str, str], dict[str, str], str | None, int]:
    """The kept headers, the secret ones, the Cookie header and the bytes of all headers."""
    headers: dict[str, str] = {}
    secrets: dict[str, str] = {}
    cookie = None
    kinds = _HEADER_KINDS
    header_bytes = 0
    for raw_name, raw_value in raw:
        header_bytes += len(raw_name) + len(raw_value)
        found = kinds.get(raw_name)
        if found is None:
            continue
        kind, name = found
        if kind == _SECRET:
            secrets[name] = raw_value.decode("latin-1")
        elif kind == _COOKIE:
            cookie = raw_value.decode("latin-1")
        else:
            headers[name] = raw_value.decode("latin-1")
    return headers, secrets, cookie, header_bytes


class _Envelope(NamedTuple):
    frame: bytes
    lane: int
    answer: Answer
    tenant: str


class CollectorApp:
    """ASGI application of the collector.

    ``producer_factory`` opens the transport at startup (lifespan); the app answers
    ``/healthz`` with 200 only once it can accept hits. With ``metrics`` it counts what it
    answers and serves ``/metrics`` (Prometheus text format, docs/operations.md).
    """

    def __init__(
        self,
        tenants: Tenants,
        settings: CollectorSettings,
        producer_factory: Callable[[], Producer],
        metrics: CollectorMetrics | None = None,
    ) -> None:
        self.tenants = tenants
        self.metrics = metrics
        self.settings = settings
        self._producer_factory = producer_factory
        self._producer: Producer | None = None
        self.committer: GroupCommitter | None = None
        self._kept_cookies = tuple(f"{c}=" for c in settings.kept_cookies)
        self.counts: dict[str, int] = {"accepted": 0, "rejected": 0}
        # PostHog's token is inside its (lz64/gzip/base64-encoded) payload: it cannot be
        # checked before decoding. Big payloads are decoded on a small pool, not on the event
        # loop, with a bounded queue: unauthenticated decoding can cost the other clients
        # little, and past the queue it is refused with 503.
        self._decoder = ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="decode")
        self._decode_slots = asyncio.Semaphore(DECODE_WORKERS + DECODE_QUEUE)
        # dn.js: where it is served, tenants' ingest aliases, the cookieless ids' daily salt.
        self._ingest_aliases = {t.snippet.ingest_path: t for t in tenants
                                if t.snippet.ingest_path is not None}
        script_aliases = tuple(t.snippet.script_path for t in tenants
                               if t.snippet.script_path is not None)
        builtin = script_answers()
        for path in (*self._ingest_aliases, *script_aliases):
            if path in ("/healthz", "/metrics") or path in builtin or find_route(path) is not None:
                raise ConfigError("a tenant's snippet path is a collector endpoint already; "
                                  "choose another", path=path)
        self._scripts = script_answers(script_aliases)
        self._salt = DailySalt(settings.visitor_salt_secret)

    # -- ASGI entry point
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except DriftnetError as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Open the transport and start the group-commit writer."""
        self._producer = self._producer_factory()
        self.committer = GroupCommitter(self._producer, self.settings.max_bundle_bytes)
        self.committer.start()
        if self.metrics is not None:
            self.metrics.watch_spool(lambda: self._producer)
        # What is loaded by now (modules, tenants, routes) lives as long as the process: out
        # of the cyclic collector's way, its collections walk only what requests allocate.
        # Requests make a score of containers each that reference counting frees; collecting
        # the young generation every 700 of them only walks the requests in flight.
        gc.freeze()
        gc.set_threshold(max(gc.get_threshold()[0], GC_YOUNG_THRESHOLD))

    async def shutdown(self) -> None:
        """Commit what is queued, then close the transport."""
        if self.committer is not None:
            await self.committer.close()
        if self._producer is not None:
            self._producer.close()
        self._decoder.shutdown(wait=False, cancel_futures=True)

    # -- HTTP
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        headers, secrets, cookie, header_bytes = _scan_headers(scope["headers"])
        origin = headers.get("origin")
        route: Route | None = None
        try:
            if header_bytes > self.settings.max_header_bytes:
                # Before anything reads them: a 50 MB User-Agent must cost nothing downstream.
                raise HttpError(431, f"request headers of {header_bytes} bytes exceed the "
                                f"{self.settings.max_header_bytes}-byte limit")
            if path == "/healthz":
                self._count("/healthz", _NO_PROTOCOL, await self._healthz(send))
                return
            if path == "/metrics" and self.metrics is not None:
                await self._metrics(send, method)
                self._count("/metrics", _NO_PROTOCOL, 200)
                return
            script = self._scripts.get(path)
            if script is not None and method in ("GET", "HEAD"):
                await _send_answer(send, script, method)
                self._count(self._route_name(path), DN.protocol, script.status)
                return
            alias = self._ingest_aliases.get(path)
            route = DN if alias is not None else find_route(path)
            if route is None:
                raise HttpError(404, f"no collector endpoint at {path}")
            if method == "OPTIONS":
                await self._preflight(scope, origin, send)
                self._count(self._route_name(path), route.protocol, 204)
                return
            if method not in route.methods:
                raise HttpError(405, f"{method} is not accepted on {path}; "
                                f"use {', '.join(sorted(route.methods))}")
            if method == "HEAD":
                # A HEAD (link checkers, prefetchers, monitoring) asks what a GET would answer:
                # it is answered, never recorded and never authenticated (docs/protocols.md).
                await self._head(route, origin, send)
                self._count(self._route_name(path), route.protocol, route.answer.status)
                return
            answer, protocol, tenant, nbytes = await self._collect(
                scope, receive, route, method, path, headers, secrets, cookie, origin, alias)
        except HttpError as exc:
            self.counts["rejected"] += 1
            self._refused(path, route, exc.status, transport=False)
            await self._send_error(send, exc, origin, method)
            return
        except DriftnetError as exc:  # transport trouble: the client should retry
            self.counts["rejected"] += 1
            self._refused(path, route, 503, transport=True)
            await self._send_error(send, HttpError(503, f"not accepted, retry: {exc}", 1),
                                   origin, method)
            return
        self.counts["accepted"] += 1
        if self.metrics is not None:
            self.metrics.acknowledged(protocol, tenant, nbytes, started)
            self.metrics.request(self._route_name(path), protocol, answer.status)
        response_headers: Any = answer.headers
        if origin is not None:
            response_headers = [*answer.headers, *_cors_headers(origin)]
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": response_headers})
        await send({"type": "http.response.body",
                    "body": b"" if method == "HEAD" else answer.body})

    # -- the fast path: a POST whose whole body came with its headers
    def collect_ready(self, scope: Scope, body: bytes, respond: Respond) -> bool:
        """Take a POST whose whole body has arrived, without an ASGI task: route, authenticate,
        envelope and queue it as the ASGI path does; once its group is durable, count it and
        ``respond`` (the protocol writes the response). ingest/collector/http.py calls it.

        Returns False, having counted, queued and sent nothing, for anything off the common
        path (refusals of every kind, encoded or oversized bodies, PostHog payloads decoded
        off the loop, the app not started): the request then goes through the ASGI app,
        which answers it as it always has.
        """
        committer = self.committer
        if committer is None or not committer.running:
            return False
        started = time.perf_counter()
        path: str = scope["path"]
        headers, secrets, cookie, header_bytes = _scan_headers(scope["headers"])
        if header_bytes > self.settings.max_header_bytes or "content-encoding" in headers:
            return False
        alias = self._ingest_aliases.get(path)
        first = DN if alias is not None else find_route(path)
        if first is None or "POST" not in first.methods:
            return False
        limit = (self.settings.max_event_bytes if first.single_event
                 else self.settings.max_request_bytes)
        if len(body) > limit:
            return False
        headers.pop("content-length", None)
        origin = headers.get("origin")
        if origin is not None and _UNSAFE_HEADER_VALUE.search(origin):
            return False
        try:
            hit, route = self._hit(scope, first, "POST", path, headers, secrets, body, limit)
            if route.protocol == "posthog" and len(hit.body) > INLINE_DECODE_BYTES:
                return False
            envelope = self._envelope(scope, route, hit, route.find_key(hit), secrets, cookie,
                                      origin, alias)
        except DriftnetError:
            return False
        protocol = route.protocol
        answer = envelope.answer
        nbytes = len(hit.body)

        def durable(error: BaseException | None) -> None:
            if error is not None:  # as the ASGI path: 503, the client retries
                self.counts["rejected"] += 1
                if self.metrics is not None:
                    self.metrics.received(protocol, len(body))
                self._refused(path, first, 503, transport=True)
                refusal = HttpError(503, f"not accepted, retry: {error}", 1)
                refusal_headers, refusal_body = self._error_response(refusal, origin, "POST")
                respond(503, refusal_headers, refusal_body)
                return
            self.counts["accepted"] += 1
            if self.metrics is not None:  # folded in before a scrape (or every 4096 hits)
                self.metrics.tally((self._route_name(path), protocol, answer.status,
                                    envelope.tenant), len(body), nbytes, started)
            if origin is None:
                respond(answer.status, answer.headers, answer.body)
            else:
                respond(answer.status, [*answer.headers, *_cors_headers(origin)], answer.body)

        committer.submit_callback(envelope.frame, envelope.lane, durable)
        return True

    def _route_name(self, path: str) -> str:
        """:func:`route_name`, with tenants' dn.js paths under two fixed labels (bounded)."""
        if path in self._ingest_aliases:
            return INGEST_ALIAS_ROUTE
        if path in self._scripts:
            return "/dn.js" if path == "/dn.js" else SCRIPT_ROUTE
        return route_name(path)

    def _count(self, route: str, protocol: str, status: int) -> None:
        if self.metrics is not None:
            self.metrics.request(route, protocol, status)

    def _refused(self, path: str, route: Route | None, status: int, transport: bool) -> None:
        if self.metrics is not None:
            self.metrics.request(self._route_name(path),
                                 _NO_PROTOCOL if route is None else route.protocol, status)
            self.metrics.refused(status, transport)

    async def _collect(
        self, scope: Scope, receive: Receive, route: Route, method: str, path: str,
        headers: dict[str, str], secrets: dict[str, str], cookie: str | None, origin: str | None,
        alias: Tenant | None = None,
    ) -> tuple[Any, str, str, int]:
        """Envelope and hand over one hit; its answer, protocol, tenant and enveloped bytes."""
        limit = (self.settings.max_event_bytes if route.single_event
                 else self.settings.max_request_bytes)
        query: bytes = scope["query_string"]
        if method == "GET" and len(query) > self.settings.max_event_bytes:
            # A GET hit's event is its query string (pixel, Snowplow, GA, PostHog's data=).
            raise HttpError(413, f"query string of {len(query)} bytes exceeds the "
                            f"{self.settings.max_event_bytes}-byte event limit")
        declared = headers.pop("content-length", None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HttpError(413, f"body of {declared} bytes exceeds the {limit}-byte limit")
        if body_received(receive):
            # The usual beacon: its body came with its headers, reading it cannot wait on the
            # client, and a deadline (a timer armed and cancelled per request) would only cost.
            body = await _receive_body(receive, limit)
        else:
            body = await _read_body(receive, limit, self.settings.body_timeout_s)
        received_bytes = len(body)
        encoding = headers.get("content-encoding")
        if encoding is not None:
            encoding = encoding.strip().lower()
            if encoding and encoding != "identity":
                if body:
                    body = _decompress(body, encoding, limit)
                # The envelope holds the inflated body; say so instead of claiming it is gzip.
                headers["x-driftnet-inflated"] = headers.pop("content-encoding")
        hit, route = self._hit(scope, route, method, path, headers, secrets, body, limit)
        if self.metrics is not None:
            self.metrics.received(route.protocol, received_bytes)
        if route.protocol == "posthog" and (len(hit.body) > INLINE_DECODE_BYTES
                                            or len(hit.query_string) > INLINE_DECODE_BYTES):
            key = await self._find_key_off_loop(route, hit)
        else:
            key = route.find_key(hit)
        envelope = self._envelope(scope, route, hit, key, secrets, cookie, origin, alias)
        assert self.committer is not None
        await self.committer.submit(envelope.frame, envelope.lane)
        return envelope.answer, route.protocol, envelope.tenant, len(hit.body)

    def _hit(self, scope: Scope, route: Route, method: str, path: str, headers: dict[str, str],
             secrets: dict[str, str], body: bytes, limit: int) -> tuple[Hit, Route]:
        """The hit, and its route (a shared path picks one by a look at the request)."""
        if secrets:
            headers.update(secrets)  # read by the key finder, removed by _envelope
        hit = Hit(method, path, scope.get("query_string", b""), headers, body, limit)
        if route.choose is not None:
            route = route.choose(hit)
        return hit, route

    def _envelope(
        self, scope: Scope, route: Route, hit: Hit, key: str | tuple[str, ...],
        secrets: dict[str, str], cookie: str | None, origin: str | None, alias: Tenant | None,
    ) -> _Envelope:
        """Authenticate the hit's key and build its envelope frame: no await, no side effect
        beyond the hit (both the ASGI path and :meth:`collect_ready` call it)."""
        headers = hit.headers
        for name in secrets:
            headers.pop(name, None)
        _scrub_credentials(hit, route.protocol)
        if isinstance(key, tuple):  # events naming several keys: all must be one tenant's
            found = {self.tenants.by_key(k) for k in key}
            if None in found:
                raise HttpError(401, "unknown write key")
            if len({t.id for t in found if t is not None}) > 1:
                raise HttpError(400, f"the events of one request name {len(key)} app ids of "
                                "different tenants; send each tenant's events separately")
            tenant = found.pop()
        else:
            tenant = self.tenants.by_key(key)
        if tenant is None:
            raise HttpError(401, "unknown write key")
        if alias is not None and tenant.id != alias.id:
            raise HttpError(403, f"{hit.path} accepts only its own tenant's write keys")
        if origin is not None and not tenant.origin_allowed(origin):
            raise HttpError(403, f"origin {origin} is not allowed for this write key")
        # SP-Anonymous (Snowplow's server-side anonymisation): keep no IP and no cookie.
        anonymous = "sp-anonymous" in headers
        if cookie and self._kept_cookies and not anonymous:
            kept = "; ".join(
                c.strip() for c in cookie.split(";") if c.strip().startswith(self._kept_cookies)
            )
            if kept:
                headers["cookie"] = kept
        ip = None if anonymous else self._client_ip(scope, headers)
        if anonymous:
            headers.pop("x-forwarded-for", None)
        cookieless = None
        if route is DN:
            # Computed here, from the IP before the loader anonymises it (docs/snippet.md).
            cookieless = headers[VISITOR_HEADER] = visitor_id(
                self._salt.today(), tenant.id, ip, headers.get("user-agent"))
            if tenant.snippet.honor_gpc and headers.get("sec-gpc", "").strip() == "1":
                headers[GPC_HEADER] = "1"
        answer = route.answer if route.respond is None else route.respond(hit, cookie)
        header = {
            "v": ENVELOPE_VERSION,
            "tenant": tenant.id,
            "received_at": time.time_ns() // 1000,
            "protocol": route.protocol,
            "method": hit.method,
            "path": hit.path,
            "query": hit.query_string.decode("latin-1"),
            "headers": headers,
            "ip": ip,
        }
        assert self.committer is not None
        # One visitor's hits go to one partition, so one loader sessionizes them all.
        lane = (routing_hash(tenant.id, route.protocol, hit, ip, cookieless,
                             GPC_HEADER in headers)
                if self.committer.partitions > 1 else 0)
        # hit.body: a key finder that had to decode the body (PostHog) left the decoded one.
        return _Envelope(encode_frame(header, hit.body), lane, answer, tenant.id)

    def _client_ip(self, scope: Scope, headers: dict[str, str]) -> str | None:
        if self.settings.trust_forwarded_for:
            forwarded = headers.get("x-forwarded-for")
            if forwarded:
                return forwarded.split(",")[0].strip()
        client = scope.get("client")
        return str(client[0]) if client else None

    async def _find_key_off_loop(self, route: Route, hit: Hit) -> str | tuple[str, ...]:
        if self._decode_slots.locked():
            raise HttpError(503, "too many encoded payloads being decoded; retry", 1)
        async with self._decode_slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._decoder, route.find_key, hit)

    async def _head(self, route: Route, origin: str | None, send: Send) -> None:
        headers = [(k, v) for k, v in route.answer.headers
                   if k.lower() not in (b"set-cookie", b"content-length")]
        headers.append((b"content-length", str(len(route.answer.body)).encode()))
        if origin is not None:
            headers += _cors_headers(origin)
        await send({"type": "http.response.start", "status": route.answer.status,
                    "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _healthz(self, send: Send) -> int:
        ok = self.committer is not None and self.committer.running
        status = 200 if ok else 503
        body = b'{"status":"ok"}' if ok else b'{"status":"starting"}'
        await send({"type": "http.response.start", "status": status, "headers": [_JSON]})
        await send({"type": "http.response.body", "body": body})
        return status

    async def _metrics(self, send: Send, method: str) -> None:
        assert self.metrics is not None
        self.metrics.flush()
        body = render(self.metrics.registry)
        await send({"type": "http.response.start", "status": 200, "headers": [
            _PROMETHEUS, (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def _preflight(self, scope: Scope, origin: str | None, send: Send) -> None:
        if origin is None:
            raise HttpError(400, "preflight without an Origin header")
        if not self.tenants.any_origin_allowed(origin):
            raise HttpError(403, f"origin {origin} is not allowed for any tenant")
        requested = b"content-type"
        for name, value in scope["headers"]:
            if name == b"access-control-request-headers":
                requested = value
        headers = [
            *_cors_headers(origin),
            (b"access-control-allow-methods", b"GET, POST, HEAD, OPTIONS"),
            (b"access-control-allow-headers", requested),
            (b"access-control-max-age", str(self.settings.cors_max_age_s).encode()),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _send_error(self, send: Send, exc: HttpError, origin: str | None,
                          method: str) -> None:
        headers, body = self._error_response(exc, origin, method)
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _error_response(self, exc: HttpError, origin: str | None,
                        method: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        headers = [_JSON]
        # Every refusal is readable by the page that sent it, even from an origin no tenant
        # allows: a browser shows a refusal without CORS headers to the script as a network
        # error, which a tracker retries for ever (dn.js: 4xx is final, a network error not).
        if origin is not None and not _UNSAFE_HEADER_VALUE.search(origin):
            headers += _cors_headers(origin)
        if exc.retry_after_s is not None:
            headers.append((b"retry-after", str(exc.retry_after_s).encode()))
        if exc.status in (408, 413, 431):  # the rest of the request may still be on its way
            headers.append((b"connection", b"close"))
        return headers, b"" if method == "HEAD" else error_body(exc.status, exc.reason)


INGEST_ALIAS_ROUTE = "{tenant ingest path}"
"""Metrics label of requests to a tenant's own dn.js ingest path (tenants.toml)."""
SCRIPT_ROUTE = "{dn.js script path}"
"""Metrics label of dn.js served at its versioned URL or a tenant's own script path."""

_SECRET_PARAMS: dict[str, tuple[bytes, ...]] = {
    "segment": (b"writeKey",), "rudderstack": (b"writeKey",), "dn": (b"writeKey",),
    "jitsu": (b"writeKey", b"writekey"), "pixel": (b"k",),
}
"""Query parameters that carry a write key, per protocol (GA4's api_secret is cut by its key
finder). Public identifiers that name a stream stay: Snowplow's app id (``aid``, the event's
app_id), GA's measurement/property id (``tid``), PostHog's project token; docs/lake.md."""


def _scrub_credentials(hit: Hit, protocol: str) -> None:
    """Remove write keys from what the envelope keeps, as the Authorization header is: from
    the query string (however the name is percent-encoded), and the top-level ``writeKey`` of
    a Segment-family JSON body, cut from the text (the rest stays as sent)."""
    names = _SECRET_PARAMS.get(protocol)
    if names is None:
        return
    if hit.query_string:
        for name in names:
            hit.query_string = without_param(hit.query_string, name)
    # (a name spelt with escapes is looked for only past a backslash: a one-byte search is
    # memchr, "\\u" a scan of ~1 ns a byte, 25 µs on a 32 KB batch)
    if hit.method == "POST" and protocol != "pixel" and (
            b'"writeKey"' in hit.body or (b"\\" in hit.body and b"\\u" in hit.body)):
        try:
            doc = hit.json()  # parsed once: the key finder or the router may have done it
        except HttpError:
            return  # the loader quarantines it; an unparsable body names no usable key
        if isinstance(doc, dict) and "writeKey" in doc:
            hit.body = without_write_key(hit.body, doc)


async def _send_answer(send: Send, answer: Answer, method: str) -> None:
    await send({"type": "http.response.start", "status": answer.status,
                "headers": answer.headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else answer.body})


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]


async def _read_body(receive: Receive, limit: int, timeout_s: float) -> bytes:
    """The whole body, within ``timeout_s`` (a client trickling bytes gets 408)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _receive_body(receive, limit)
    except TimeoutError:
        raise HttpError(408, f"the body did not arrive within {timeout_s:g} s") from None


async def _receive_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate a gzip/deflate body, refusing anything that inflates past ``limit`` (bombs).

    A gzip body may hold several members (concatenated gzip files, as ``cat a.gz b.gz`` or
    some SDKs' chunked writers make): every member is inflated, in order. Bytes after the
    last member that are not a gzip member are refused (400), never silently dropped.
    """
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise HttpError(415, f"Content-Encoding {encoding} is not supported; use gzip")
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise HttpError(400, f"body is not valid {encoding}: {exc}") from exc
        size += len(out)
        parts.append(out)
        if size > limit or inflater.unconsumed_tail:
            raise HttpError(413, f"decompressed body exceeds the {limit}-byte limit")
        if not inflater.eof:
            raise HttpError(400, f"body is not valid {encoding}: truncated")
        rest = inflater.unused_data
        if not rest or wbits != 16 + zlib.MAX_WBITS:
            if rest:
                raise HttpError(400, f"body is not valid {encoding}: data after its end")
            return b"".join(parts)
