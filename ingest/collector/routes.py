"""The route table: path -> protocol, accepted methods, where the key is, what to answer.

Issue-by-issue, protocols add routes here; the app itself never changes for a new tracker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ingest.collector import answers, keys
from ingest.collector.hit import Hit

KeyFinder = Callable[[Hit], str]


@dataclass(frozen=True)
class Route:
    """How one path is collected."""

    protocol: str
    methods: frozenset[str]
    find_key: KeyFinder
    answer: answers.Answer
    single_event: bool = False
    """The body is one event: it is held to max_event_bytes instead of max_request_bytes."""


_POST = frozenset({"POST"})
_GET = frozenset({"GET", "HEAD"})


def _segment_routes() -> dict[str, Route]:
    routes: dict[str, Route] = {}
    singles = {
        "track": "t", "page": "p", "identify": "i", "screen": "s", "group": "g", "alias": "a",
    }
    for long, short in singles.items():
        route = Route("segment", _POST, keys.segment_key, answers.JSON_SUCCESS, single_event=True)
        routes[f"/v1/{long}"] = route
        routes[f"/v1/{short}"] = route
    batch = Route("segment", _POST, keys.segment_key, answers.JSON_SUCCESS)
    routes["/v1/batch"] = batch
    routes["/v1/b"] = batch
    routes["/v1/import"] = batch
    return routes


ROUTES: dict[str, Route] = {
    **_segment_routes(),
    "/p.gif": Route("pixel", _GET, keys.pixel_key, answers.GIF, single_event=True),
}
"""Exact-path routes."""


def find_route(path: str) -> Route | None:
    """The route for a request path, or None (404)."""
    return ROUTES.get(path) or ROUTES.get(path.rstrip("/"))
