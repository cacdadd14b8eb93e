"""PostHog body unwrapping: every encoding posthog-js and older SDKs produce, and refusals."""

from __future__ import annotations

import base64
import gzip
import urllib.parse

import lzstring  # type: ignore[import-untyped]
import orjson
import pytest

from ingest.collector.errors import HttpError
from ingest.collector.hit import Hit
from ingest.collector.unwrap import DECODED_HEADER, FORM_HEADER, unwrap_posthog

EVENTS = orjson.dumps([{"event": "$pageview", "properties": {"token": "phc_t", "x": "a+b"}}])


def unwrap(body: bytes, query: str = "", method: str = "POST", **headers: str) -> tuple[
        bytes, dict[str, str]]:
    hit = Hit(method, "/e/", query.encode(), dict(headers), body, 500_000)
    return unwrap_posthog(hit, 500_000), hit.headers


@pytest.mark.parametrize(
    ("body", "query", "headers", "steps"),
    [
        (EVENTS, "", {}, None),
        (gzip.compress(EVENTS), "compression=gzip-js", {}, "gzip"),
        (gzip.compress(EVENTS), "", {}, "gzip"),  # magic bytes without the hint
        (base64.b64encode(EVENTS), "compression=base64", {}, "base64"),
        (base64.b64encode(EVENTS), "", {}, "base64"),  # bare base64 of old posthog-js
        (base64.b64encode(gzip.compress(EVENTS)), "", {}, "base64,gzip"),
        (lzstring.LZString().compressToBase64(EVENTS.decode()).encode(), "compression=lz64", {},
         "lz64"),
        (b"data=" + urllib.parse.quote(base64.b64encode(EVENTS)).encode() + b"&ver=1.2",
         "", {"content-type": "application/x-www-form-urlencoded"}, "form,base64"),
        (b"data=" + urllib.parse.quote(EVENTS).encode(), "", {}, "form"),
        (b"compression=lz64&data=" + urllib.parse.quote(
            lzstring.LZString().compressToBase64(EVENTS.decode())).encode(), "",
         {"content-type": "application/x-www-form-urlencoded"}, "form,lz64"),
    ],
)
def test_encodings(body: bytes, query: str, headers: dict[str, str], steps: str | None) -> None:
    out, kept = unwrap(body, query, **headers)
    assert out == EVENTS
    assert kept.get(DECODED_HEADER) == steps


def test_get_data_parameter_and_other_form_fields() -> None:
    data = base64.b64encode(EVENTS).decode()
    out, kept = unwrap(b"", urllib.parse.urlencode({"data": data, "ip": "1"}), "GET")
    assert out == EVENTS and kept[DECODED_HEADER] == "query,base64"
    _, kept = unwrap(b"data=" + urllib.parse.quote(EVENTS).encode() + b"&ver=1.2&ip=1")
    assert kept[FORM_HEADER] == "ver=1.2&ip=1"


def test_json_scalars_are_not_mistaken_for_base64() -> None:
    assert unwrap(b"42")[0] == b"42"
    assert unwrap(b"true")[0] == b"true"


@pytest.mark.parametrize(
    ("body", "query", "status"),
    [
        (b"", "", 400),
        (gzip.compress(b" " * 600_000), "", 413),
        (gzip.compress(EVENTS)[:-6], "compression=gzip", 400),
        (b"not base64!", "compression=base64", 400),
        (b"\xff\xfe", "compression=lz64", 400),
        (lzstring.LZString().compressToBase64("x" * 700_000).encode(), "compression=lz64", 413),
    ],
)
def test_refusals(body: bytes, query: str, status: int) -> None:
    with pytest.raises(HttpError) as err:
        unwrap(body, query)
    assert err.value.status == status
