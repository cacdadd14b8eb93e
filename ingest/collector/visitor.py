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
- Snowplow: ``duid`` (domain user id), else ``uid``, of the query, else of the body's first
  event.
- GA4 (gtag) and Universal Analytics: ``cid``, from the query, else the body's first line.
- GA4 Measurement Protocol: ``client_id`` (``app_instance_id`` when it is absent), else
  ``user_id``.
- PostHog: the first event's ``$device_id`` property, else its ``distinct_id``.
- driftnet's pixel: ``a``, else ``u``.
- dn.js: the collector's cookieless visitor id when the event names no anonymous id, or
  when the tenant honours Global Privacy Control and the browser sends it (the loader's
  visitor then).

A request that names none (a body the collector cannot read: the loader quarantines it)
falls back to the client IP and User-Agent. A request whose events
name several visitors (a server-side Segment batch) goes where its first event's visitor
goes; its other visitors' events may then be sessionized by another loader than the rest of
their events.

Only the first event is needed, so a large batch body (50 events are ~32 KB) is not parsed
whole: :func:`_scan_first_item` reads the top-level object up to its list's first element.
Parsing the whole body took about half the collector's CPU for 50-event batches on Kafka
(bench/kafka_results.md); the embedded log, with one partition, never routes.
"""

from __future__ import annotations

import math
import zlib
from json import JSONDecoder
from json.scanner import make_scanner
from typing import Any, cast
from urllib.parse import parse_qs

from ingest.collector.hit import Hit

SCAN_MIN_BYTES = 4096
"""Bodies from this size on are scanned for their first event instead of parsed whole."""

def _orjson_int(text: str) -> int | float:
    # orjson reads integers beyond 64 bits as floats; the scan must read them alike.
    value = int(text)
    return value if -(1 << 63) <= value < (1 << 64) else float(text)


def _orjson_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number is infinity when parsed as double")  # orjson refuses it
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")  # orjson refuses NaN and Infinity


_scan_value = make_scanner(cast(Any, JSONDecoder(parse_int=_orjson_int, parse_float=_orjson_float,
                                                 parse_constant=_no_constant)))
_WS = " \t\n\r"
_NOT_SCANNED: Any = object()


def _scan_first_item(body: bytes, list_key: str) -> Any:
    """What ``_first_event(orjson.loads(body), list_key)`` gives, reading only the top-level
    keys up to ``list_key`` and the first element of its list; ``_NOT_SCANNED`` when that is
    not certain to be the same (no such list, a duplicate or escaped key, not an object:
    the caller then parses the whole body)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _NOT_SCANNED
    quoted = f'"{list_key}"'
    # One occurrence of the key and no escape that could spell it otherwise: the top-level
    # key found below is the only one, as in a full parse (which keeps the last duplicate).
    if text.count(quoted) != 1 or "\\u" in text:
        return _NOT_SCANNED
    end = len(text)
    i = _skip(text, 0)
    if i >= end or text[i] != "{":
        return _NOT_SCANNED
    i += 1
    try:
        while True:
            i = _skip(text, i)
            if i >= end or text[i] != '"':
                return _NOT_SCANNED  # an empty object, or not JSON: parse it whole
            key, i = _scan_value(text, i)
            i = _skip(text, i)
            if i >= end or text[i] != ":":
                return _NOT_SCANNED
            i = _skip(text, i + 1)
            if key == list_key:
                if i >= end or text[i] != "[":
                    return _NOT_SCANNED
                i = _skip(text, i + 1)
                if i < end and text[i] == "]":
                    return None
                first, _ = _scan_value(text, i)
                return first if isinstance(first, dict) else None
            _, i = _scan_value(text, i)
            i = _skip(text, i)
            if i >= end or text[i] != ",":
                return _NOT_SCANNED
            i += 1
    except (ValueError, StopIteration, RecursionError):  # JSONDecodeError is a ValueError
        return _NOT_SCANNED


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _first_item(hit: Hit, list_key: str) -> dict[str, Any] | None:
    """The first event of a body that lists its events under ``list_key`` (or is one event)."""
    if len(hit.body) >= SCAN_MIN_BYTES and not hit.parsed:
        first = _scan_first_item(hit.body, list_key)
        if first is not _NOT_SCANNED:
            return first  # type: ignore[no-any-return]
    return _first_event(_json(hit), list_key)


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
    event = _first_item(hit, "batch")
    return _ids(event.get("anonymousId"), event.get("userId")) if event else None


def _snowplow(hit: Hit) -> str | None:
    duid = hit.param("duid")
    if duid or hit.method != "POST":
        return _ids(duid, hit.param("uid"))
    event = _first_item(hit, "data")
    return _ids(event.get("duid"), event.get("uid")) if event else None


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
    # As the loader reads it: an empty client_id is taken, then counts as none.
    client = doc.get("client_id")
    return _ids(doc.get("app_instance_id") if client is None else client, doc.get("user_id"))


def _posthog(hit: Hit) -> str | None:
    event = _first_item(hit, "batch")
    if event is None:
        return None
    props = event.get("properties")
    device = props.get("$device_id") if isinstance(props, dict) else None
    return _ids(device or event.get("distinct_id"), None)


def _pixel(hit: Hit) -> str | None:
    return _ids(hit.param("a"), hit.param("u"))


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


def routing_hash(tenant: str, protocol: str, hit: Hit, ip: str | None,
                 cookieless: str | None = None, gpc: bool = False) -> int:
    """A stable 32-bit hash of the request's visitor (fallback: client IP and User-Agent).

    ``cookieless``: a dn.js hit's cookieless visitor id, which the loader takes as the
    visitor when the event names no anonymous id, or when ``gpc`` (the tenant honours the
    browser's Global Privacy Control and it is on)."""
    visitor = None if gpc and cookieless else visitor_of(protocol, hit)
    if cookieless and (visitor is None or not visitor.startswith("a:")):
        visitor = "a:" + cookieless
    if visitor is None:
        visitor = f"ip:{ip or ''}\0{hit.headers.get('user-agent', '')}"
    return zlib.crc32(f"{tenant}\0{visitor}".encode())
