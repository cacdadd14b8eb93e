"""Which visitor a request belongs to: one transport partition holds all of a visitor's hits.

Sessions and dedupe are computed per visitor by the loader that owns the partition a hit is
in. With several partitions (Kafka), the collector therefore routes each request by its
visitor: the same visitor always lands in the same partition, so one loader sees every event
of that visitor, in order, whatever the number of loaders (docs/ARCHITECTURE.md, "Loaders on
many hosts").

The visitor read here is the one the loader's sessionize step uses (the event's anonymous id,
else its user id), taken from the cheapest place each tracker puts it:

- Segment, RudderStack, Jitsu, dn.js: the body's (first event's) ``anonymousId``, else ``userId``;
  RudderStack's pixel: the same query parameters.
- Snowplow: ``duid`` (domain user id) of the query, else of the body's first event.
- GA4 (gtag) and Universal Analytics: ``cid``, from the query, else the body's first line.
- GA4 Measurement Protocol: ``client_id`` / ``app_instance_id``, else ``user_id``.
- PostHog: the first event's ``$device_id`` property, else its ``distinct_id``.
- driftnet's pixel: ``a``.

A request that names none (a cookieless dn.js hit, or a body the collector cannot read: the
loader quarantines it) falls back to the client IP and User-Agent. A request whose events
name several visitors (a server-side Segment batch) goes where its first event's visitor
goes; its other visitors' events may then be sessionized by another loader than the rest of
their events.
"""

from __future__ import annotations

import zlib
from typing import Any
from urllib.parse import parse_qs

from ingest.collector.hit import Hit


def _first_event(doc: Any, list_key: str) -> dict[str, Any] | None:
    if isinstance(doc, dict):
        items = doc.get(list_key)
        if isinstance(items, list):
            doc = items[0] if items else None
        return doc if isinstance(doc, dict) else None
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        return doc[0]
    return None


def _json(hit: Hit) -> Any:
    try:
        return hit.json()
    except Exception:  # noqa: BLE001 - an unreadable body routes by the fallback
        return None


def _str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _segment(hit: Hit) -> str | None:
    if hit.method != "POST":
        return _ids(hit.param("anonymousId"), hit.param("userId"))
    event = _first_event(_json(hit), "batch")
    return _ids(event.get("anonymousId"), event.get("userId")) if event else None


def _snowplow(hit: Hit) -> str | None:
    duid = hit.param("duid")
    if duid or hit.method != "POST":
        return _ids(duid, None)
    event = _first_event(_json(hit), "data")
    return _ids(event.get("duid"), None) if event else None


def _cid(hit: Hit) -> str | None:
    cid = hit.param("cid")
    if cid or hit.method != "POST" or not hit.body:
        return _ids(cid, hit.param("uid"))
    line = hit.body.split(b"\n", 1)[0].decode("latin-1")
    params = parse_qs(line, keep_blank_values=True)
    return _ids(params.get("cid", [None])[0], params.get("uid", [None])[0])


def _ga4_mp(hit: Hit) -> str | None:
    doc = _json(hit)
    if not isinstance(doc, dict):
        return None
    return _ids(doc.get("client_id") or doc.get("app_instance_id"), doc.get("user_id"))


def _posthog(hit: Hit) -> str | None:
    event = _first_event(_json(hit), "batch")
    if event is None:
        return None
    props = event.get("properties")
    device = props.get("$device_id") if isinstance(props, dict) else None
    return _ids(device or event.get("distinct_id"), None)


def _pixel(hit: Hit) -> str | None:
    return _ids(hit.param("a"), None)


def _ids(anonymous_id: Any, user_id: Any) -> str | None:
    anonymous = _str(anonymous_id)
    if anonymous is not None:
        return "a:" + anonymous
    user = _str(user_id)
    return "u:" + user if user is not None else None


_BY_PROTOCOL = {
    "segment": _segment, "rudderstack": _segment, "jitsu": _segment, "dn": _segment,
    "snowplow": _snowplow, "ga_universal": _cid,
    "ga4": lambda hit: _ga4_mp(hit) if hit.path.endswith("/mp/collect") else _cid(hit),
    "posthog": _posthog, "pixel": _pixel,
}


def visitor_of(protocol: str, hit: Hit) -> str | None:
    """The visitor a request names (``a:<anonymous id>`` or ``u:<user id>``), else None."""
    find = _BY_PROTOCOL.get(protocol)
    return find(hit) if find is not None else None


def routing_hash(tenant: str, protocol: str, hit: Hit, ip: str | None) -> int:
    """A stable 32-bit hash of the request's visitor (fallback: client IP and User-Agent)."""
    visitor = visitor_of(protocol, hit)
    if visitor is None:
        visitor = f"ip:{ip or ''}\0{hit.headers.get('user-agent', '')}"
    return zlib.crc32(f"{tenant}\0{visitor}".encode())
