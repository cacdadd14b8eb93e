"""driftnet's GET pixel: ``/p.gif?k=<write key>&e=<event>&...`` (one event per hit).

Parameters (all optional but ``k``): ``e`` event name, ``t`` type (``page`` or ``track``;
default track when ``e`` is given, else page), ``id`` event id, ``a`` anonymous id, ``u``
user id, ``s`` session id, ``url``/``ref``/``title`` page, ``ts`` client time (ms since the
epoch), ``p.<name>`` string property, ``pn.<name>`` numeric property. Other parameters go to
``extra``. Without ``url`` the page is the Referer header (an <img> on the page sends it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from typing import Any
from urllib.parse import parse_qsl

import duckdb
import orjson
import pyarrow as pa

from ingest.loader.protocols import Limits, Parsed
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
    for key, value in params:
        if key.startswith("p."):
            props[key[2:]] = value
        elif key.startswith("pn."):
            try:
                number = float(value)
            except ValueError as exc:
                raise PixelError(ReasonCode.SCHEMA_VIOLATION,
                                 f"{key} is not a number: {value!r}") from exc
            if not math.isfinite(number):
                raise PixelError(ReasonCode.SCHEMA_VIOLATION, f"{key} is not finite")
            props[key[3:]] = int(number) if number.is_integer() and "." not in value else number
        elif key in _COLUMNS:
            first.setdefault(key, value)
        else:
            extra[key] = value
    name = first.get("e") or None
    kind = first.get("t") or ("track" if name else "page")
    if kind not in ("page", "track"):
        raise PixelError(ReasonCode.PROTOCOL_VIOLATION, f"t must be page or track, not {kind!r}")
    headers = orjson.loads(hit["headers"]) if hit["headers"] else {}
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
        "anonymous_id": first.get("a") or None,
        "user_id": first.get("u") or None,
        "session_id": first.get("s") or None,
        "page_url": first.get("url") or headers.get("referer"),
        "page_title": first.get("title") or None,
        "referrer": first.get("ref") or None,
        "user_agent": headers.get("user-agent"),
        "language": (headers.get("accept-language") or "").split(",")[0].strip() or None,
        "ip": hit["ip"],
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
