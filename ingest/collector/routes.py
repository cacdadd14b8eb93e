"""The route table: path -> protocol, accepted methods, where the key is, what to answer.

Issue-by-issue, protocols add routes here; the app itself never changes for a new tracker.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ingest.collector import answers, keys
from ingest.collector.errors import HttpError
from ingest.collector.hit import Hit
from ingest.paths import BATCH, SEGMENT_PATHS

KeyFinder = Callable[[Hit], "str | tuple[str, ...]"]
"""The request's write key; several when its events name several (Snowplow app ids), which
must then all belong to one tenant."""
Responder = Callable[[Hit, str | None], answers.Answer]
"""Builds a per-request answer from the hit and its raw Cookie header (after authentication);
it may add ``x-driftnet-*`` entries to ``hit.headers``, which are the envelope's headers."""


@dataclass(frozen=True)
class Route:
    """How one path is collected."""

    protocol: str
    methods: frozenset[str]
    find_key: KeyFinder
    answer: answers.Answer
    single_event: bool = False
    """The body is one event: it is held to max_event_bytes instead of max_request_bytes."""
    respond: Responder | None = None
    """Per-request answer (Snowplow's ``sp`` cookie); None sends the fixed ``answer``."""
    choose: Callable[[Hit], Route] | None = None
    """For a path two trackers share (``/batch``: PostHog and Universal Analytics): picks the
    route by a look at the request; it raises HttpError 405 for a method the pick refuses."""


_POST = frozenset({"POST"})
_GET = frozenset({"GET", "HEAD"})


def _segment_routes() -> dict[str, Route]:
    """Segment's paths, and RudderStack's and Jitsu's own (their SDKs also use Segment's):
    the table of ingest/paths.py, which the loader reads too."""
    by_kind = {  # (protocol, batch?) -> route
        ("segment", False): Route("segment", _POST, keys.segment_key, answers.JSON_SUCCESS,
                                  single_event=True),
        ("segment", True): Route("segment", _POST, keys.segment_key, answers.JSON_SUCCESS),
        ("rudderstack", True): Route("rudderstack", _POST, keys.segment_key, answers.OK_TEXT),
        ("rudderstack", False): Route("rudderstack", _GET, keys.rudderstack_pixel_key,
                                      answers.GIF, single_event=True),
        ("jitsu", False): Route("jitsu", _POST, keys.jitsu_key, answers.JSON_SUCCESS,
                                single_event=True),
    }
    return {path: by_kind[p.protocol, p.message == BATCH] for path, p in SEGMENT_PATHS.items()}


# Snowplow: pixel GETs, POST tp2 batches, and any /{vendor}/{version} path (its collector's
# custom-path convention), answered by answers.snowplow (GIF or "ok", plus the sp cookie).
SNOWPLOW_PIXEL = Route("snowplow", _GET, keys.snowplow_key, answers.GIF, single_event=True,
                       respond=answers.snowplow)
SNOWPLOW_VENDOR = Route("snowplow", _GET | _POST, keys.snowplow_key, answers.GIF,
                        respond=answers.snowplow)
# A vendor is reverse-DNS (has a dot), so /v1/nope or /g/collect never fall through to here.
_VENDOR_PATH = re.compile(r"/[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+/[A-Za-z0-9_.-]+")


# Universal Analytics and PostHog both post to /batch: URL-encoded hit lines vs JSON.
UA_BATCH = Route("ga_universal", _POST, keys.ua_key, answers.GIF)
POSTHOG = Route("posthog", _GET | _POST, keys.posthog_key, answers.POSTHOG_OK,
                respond=answers.posthog)


def _choose_batch(hit: Hit) -> Route:
    first = hit.body.lstrip()[:512].split(b"\n", 1)[0]
    ua = (hit.method == "POST" and b"&" in first and b"=" in first
          and first[:1] not in (b"{", b"[") and not first.startswith((b"\x1f\x8b", b"data=")))
    route = UA_BATCH if ua else POSTHOG
    if hit.method not in route.methods:
        raise HttpError(405, f"{hit.method} is not accepted on {hit.path}; use POST")
    return route


def _google_and_posthog_routes() -> dict[str, Route]:
    routes = {
        # gtag.js (GA4): GET or batched POST (shared params in the query, a line per event).
        "/g/collect": Route("ga4", _GET | _POST, keys.ga4_key, answers.NO_CONTENT),
        "/mp/collect": Route("ga4", _POST, keys.ga4_mp_key, answers.NO_CONTENT),
        # analytics.js (Universal Analytics): one hit per request, or hit lines on /batch.
        "/collect": Route("ga_universal", _GET | _POST, keys.ua_key, answers.GIF),
        "/batch": Route("posthog", _GET | _POST, keys.posthog_key, answers.POSTHOG_OK,
                        choose=_choose_batch),
    }
    for path in ("/e", "/i/v0/e", "/capture"):
        routes[path] = POSTHOG
    return routes


# dn.js, driftnet's own tracker: Segment-spec batches, text/plain, write key in the body.
# Tenants may alias its path (tenants.toml [tenant.snippet] ingest_path; the app routes those).
DN = Route("dn", _POST, keys.segment_key, answers.JSON_SUCCESS)

ROUTES: dict[str, Route] = {
    **_segment_routes(),
    "/dn/e": DN,
    **_google_and_posthog_routes(),
    "/p.gif": Route("pixel", _GET, keys.pixel_key, answers.GIF, single_event=True),
    "/i": SNOWPLOW_PIXEL,
    "/ice.png": SNOWPLOW_PIXEL,
}
"""Exact-path routes."""


VENDOR_ROUTE = "/{vendor}/{version}"
"""The route name of Snowplow's custom vendor paths."""
UNMATCHED_ROUTE = "unmatched"
"""The route name of a path no route serves."""


def route_name(path: str) -> str:
    """The route table's name for a request path: bounded, so it can be a metrics label."""
    if path in ROUTES:
        return path
    stripped = path.rstrip("/")
    if stripped in ROUTES:
        return stripped
    if _VENDOR_PATH.fullmatch(path):
        return VENDOR_ROUTE
    return UNMATCHED_ROUTE


def find_route(path: str) -> Route | None:
    """The route for a request path, or None (404)."""
    route = ROUTES.get(path) or ROUTES.get(path.rstrip("/"))
    if route is None and _VENDOR_PATH.fullmatch(path):
        return SNOWPLOW_VENDOR
    return route
