"""driftnet's GET pixel: ``/p.gif?k=<write key>&e=<event>&...`` (one event per hit).

Parameters (all optional but ``k``): ``e`` event name, ``t`` type (``page`` or ``track``;
default page when ``e`` is missing or ``page_view``, else track), ``id`` event id, ``a``
anonymous id, ``u`` user id, ``s`` session id (scoped by the visitor, see session.py),
``url``/``ref``/``title`` page, ``ts`` client time (ms since the epoch), ``p.<name>`` string
property, ``pn.<name>`` numeric property. Other parameters go to ``extra``. Without ``url``
the page is the Referer header (an <img> on the page sends it).

Properties follow the Segment e-commerce spec, as driftnet's own snippet does: events named
``Product Viewed``, ``Order Completed``, ... with ``p.product_id`` (or ``p.sku``/``p.id``),
``p.name``, ``p.category``, ``p.brand``, ``p.variant``, ``pn.price``, ``pn.quantity``,
``p.currency``, ``p.order_id``, ``pn.revenue`` (or ``pn.total``), ``p.query``, and
``p.products``: a JSON list of product objects (an order's lines; other elements are no
item).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl

import duckdb
import orjson
import pyarrow as pa

from ingest.loader.protocols import Limits, Parsed
from ingest.loader.protocols.ecommerce import ITEM_FIELDS, SEGMENT_ACTIONS
from ingest.loader.protocols.session import scoped_session
from schemas.event import EVENT_SCHEMA
from schemas.quarantine import QUARANTINE_SCHEMA, ReasonCode
from schemas.version import PIPELINE_VERSION

_COLUMNS = {"e", "t", "id", "a", "u", "s", "url", "ref", "title", "ts", "k"}
_HIT_COLS = ("tenant, received_at, protocol, query, headers, ip, body, source, "
             "source_partition, source_offset, source_index")


class PixelError(ValueError):
    """A pixel hit that cannot become an event."""

    def __init__(self, reason: ReasonCode, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _client_ts(value: str | None) -> dt.datetime | None:
    if value is None or value == "":
        return None
    try:
        ms = float(value)
    except ValueError as exc:
        raise PixelError(ReasonCode.SCHEMA_VIOLATION, f"ts is not a number: {value!r}") from exc
    if not math.isfinite(ms) or not 0 <= ms < 253402300800000:
        raise PixelError(ReasonCode.SCHEMA_VIOLATION, f"ts is out of range: {value!r}")
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _text(value: Any) -> str | None:
    if value is None or value == "" or isinstance(value, (dict, list)):
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _number(value: Any) -> float | None:
    """A finite number, from a JSON number or a string of ASCII digits (as the SQL adapters
    read them: ``float()`` alone would take other scripts' digits, ``"١٢٣"``)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, orjson.Fragment):  # an integer past 64 bits (see _json)
        value = orjson.dumps(value).decode()
    if isinstance(value, str) and not value.isascii():
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


_INT64_RANGE = range(-(2**63), 2**64)
"""Integers a JSON writer keeps exact (orjson: signed and unsigned 64 bits)."""
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
"""An integer in ASCII digits, short enough for ``int()`` (which refuses thousands of
digits) and for :data:`_INT64_RANGE` to decide."""


def _pn(key: str, value: str) -> int | float:
    """The number of a ``pn.`` parameter: an integer as written when it is one that JSON
    writers keep exact (``9007199254740993`` stays that; ``1e3`` is 1000), else a finite
    float (``1e20``: past 64 bits, orjson could not write it as an integer)."""
    text = value.strip()
    if _INTEGER.fullmatch(text) and int(text) in _INT64_RANGE:
        return int(text)
    try:
        if not text.isascii():
            raise ValueError("not ASCII digits")
        number = float(text)
    except ValueError as exc:
        raise PixelError(ReasonCode.SCHEMA_VIOLATION,
                         f"{key} is not a number: {value!r}") from exc
    if not math.isfinite(number):
        raise PixelError(ReasonCode.SCHEMA_VIOLATION, f"{key} is not finite")
    if number.is_integer() and "." not in text and int(number) in _INT64_RANGE:
        return int(number)  # 1e3: 1000
    return number


def _exact_int(text: str) -> int | orjson.Fragment:
    """A JSON integer: as an int when orjson can write it, else kept as written."""
    return int(text) if len(text) <= 20 and int(text) in _INT64_RANGE else orjson.Fragment(text)


_LONG_DIGITS = re.compile(r"[0-9]{20}")


def _json(text: str) -> Any:
    """JSON ``text`` as orjson reads it (it refuses ``NaN`` and lone surrogates, which its
    writer could not write back), but an integer past 64 bits exact, as the SQL adapters
    keep it: orjson reads ``12345678901234567890123`` as a float."""
    value = orjson.loads(text)
    if _LONG_DIGITS.search(text):
        value = json.loads(text, parse_int=_exact_int)
    return value


def _item(product: dict[str, Any], currency: str | None) -> dict[str, Any]:
    """A Segment-spec product -> an element of ``items``."""
    item: dict[str, Any] = {
        "product_id": _text(product.get("product_id")) or _text(product.get("sku"))
        or _text(product.get("id")),
        "name": _text(product.get("name")), "category": _text(product.get("category")),
        "brand": _text(product.get("brand")), "variant": _text(product.get("variant")),
        "price": _number(product.get("price")), "quantity": _number(product.get("quantity")),
        "currency": _text(product.get("currency")) or currency,
    }
    assert tuple(item) == ITEM_FIELDS
    return item


def _ecommerce(name: str | None, kind: str, props: dict[str, Any]) -> dict[str, Any]:
    """The e-commerce columns of a pixel event (Segment e-commerce spec properties)."""
    action = SEGMENT_ACTIONS.get(name.lower()) if name and kind == "track" else None
    currency = _text(props.get("currency"))
    products = props.get("products")
    if products is not None:
        if isinstance(products, str):
            try:
                products = _json(products)
            except orjson.JSONDecodeError:
                products = None
        if not isinstance(products, list):
            raise PixelError(ReasonCode.SCHEMA_VIOLATION, "p.products is not a JSON list")
        props["products"] = products  # as Segment's properties hold them
    # As the SQL adapters' item lists: an element with no item field is no item.
    items = [item for item in (_item(p, currency) for p in products or []
                               if isinstance(p, dict))
             if any(v is not None for k, v in item.items() if k != "currency")]
    own_id = (_text(props.get("product_id")) or _text(props.get("sku"))
              or _text(props.get("id")))
    if not items and action is not None and own_id is not None:
        items = [_item(props, currency)]
    one = items[0] if len(items) == 1 else {}
    revenue = _number(props.get("revenue"))
    return {
        "product_id": own_id or one.get("product_id"),
        "product_name": _text(props.get("name")) or one.get("name"),
        "product_category": _text(props.get("category")) or one.get("category"),
        "product_action": action,
        "price": _number(props.get("price")) if "price" in props else one.get("price"),
        "currency": currency or one.get("currency"),
        "quantity": (_number(props.get("quantity")) if "quantity" in props
                     else one.get("quantity")),
        "order_id": _text(props.get("order_id")),
        "revenue": revenue if revenue is not None else _number(props.get("total")),
        "items": items or None,
        "search_query": _text(props.get("query")),
    }


def parse_pixel(hit: dict[str, Any]) -> dict[str, Any]:
    """Canonical columns of one pixel hit; PixelError when it cannot be one."""
    try:
        params = parse_qsl(hit["query"], keep_blank_values=True, strict_parsing=False,
                           errors="strict", max_num_fields=1000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PixelError(ReasonCode.PAYLOAD_FORMAT, f"query string is not valid: {exc}") from exc
    first: dict[str, str] = {}
    props: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for key, value in params:  # a repeated parameter keeps its first value
        if key.startswith("p."):
            props.setdefault(key[2:], value)
        elif key.startswith("pn."):
            if key[3:] not in props:
                props[key[3:]] = _pn(key, value)
        elif key in _COLUMNS:
            first.setdefault(key, value)
        else:
            extra.setdefault(key, value)
    name = first.get("e") or None
    kind = first.get("t") or ("track" if name and name != "page_view" else "page")
    if kind not in ("page", "track"):
        raise PixelError(ReasonCode.PROTOCOL_VIOLATION, f"t must be page or track, not {kind!r}")
    ecommerce = _ecommerce(name, kind, props)
    anonymous_id, user_id = first.get("a") or None, first.get("u") or None
    if first.get("s"):
        extra["client_session_id"] = first["s"]  # session_id is scoped by the visitor
    sent = orjson.loads(hit["headers"]) if hit["headers"] else {}
    # The envelope holds str -> str (a JSON object, checked with the header); a value of
    # another type (a foreign producer's) is not one of the request's headers.
    headers = {k: v for k, v in sent.items() if isinstance(v, str)}
    event_id = first.get("id") or "dn:" + hashlib.md5(
        hit["query"].encode(), usedforsecurity=False).hexdigest()
    return {
        "tenant": hit["tenant"],
        "event_id": event_id,
        "event_type": kind,
        "event_name": name if kind == "track" else (name or "page_view"),
        "protocol": hit["protocol"],
        "platform": "web",
        "client_ts": _client_ts(first.get("ts")),
        "received_at": hit["received_at"],
        "derived_ts": hit["received_at"],
        "anonymous_id": anonymous_id,
        "user_id": user_id,
        "session_id": scoped_session(first.get("s"), anonymous_id, user_id),
        "page_url": first.get("url") or headers.get("referer"),
        "page_title": first.get("title") or None,
        "referrer": first.get("ref") or None,
        "user_agent": headers.get("user-agent"),
        "language": (headers.get("accept-language") or "").split(",")[0].strip() or None,
        "ip": hit["ip"],
        **ecommerce,
        "properties": orjson.dumps(props).decode() if props else None,
        "extra": orjson.dumps(extra).decode() if extra else None,
        "source": hit["source"],
        "source_partition": hit["source_partition"],
        "source_offset": hit["source_offset"],
        "source_index": hit["source_index"],
        "item_index": 0,
        "pipeline_version": PIPELINE_VERSION,
    }


class PixelAdapter:
    """The GET pixel, parsed per hit in Python (pixels are few and tiny)."""

    protocols: tuple[str, ...] = ("pixel",)

    def parse(self, con: duckdb.DuckDBPyConnection, hits: str, limits: Limits) -> Parsed:
        """Parse pixel hits in relation ``hits``."""
        rows = con.sql(f"SELECT {_HIT_COLS} FROM {hits}").to_arrow_table().to_pylist()
        events: list[dict[str, Any]] = []
        quarantined: list[dict[str, Any]] = []
        for hit in rows:
            try:
                events.append(parse_pixel(hit))
            except PixelError as exc:
                quarantined.append({
                    "tenant": hit["tenant"], "received_at": hit["received_at"],
                    "reason": exc.reason.value, "detail": exc.detail,
                    "protocol": hit["protocol"], "payload": hit["query"].encode(),
                    "source": hit["source"], "source_partition": hit["source_partition"],
                    "source_offset": hit["source_offset"], "source_index": hit["source_index"],
                    "pipeline_version": PIPELINE_VERSION,
                })
        return Parsed(
            pa.Table.from_pylist(events, schema=EVENT_SCHEMA),
            pa.Table.from_pylist(quarantined, schema=QUARANTINE_SCHEMA),
        )
