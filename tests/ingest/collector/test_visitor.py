"""Routing by visitor: which visitor each tracker's request names, and bundles per partition."""

from __future__ import annotations

import contextlib
import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.collector.errors import HttpError
from ingest.collector.group_commit import split_bundles
from ingest.collector.hit import Hit
from ingest.collector.visitor import SCAN_MIN_BYTES, routing_hash, visitor_of
from schemas.envelope import encode_frame, iter_frames


def _hit(method: str, path: str, query: str = "", body: object = b"",
         headers: dict[str, str] | None = None) -> Hit:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Hit(method, path, query.encode(), headers or {}, raw, 1 << 20)


@pytest.mark.parametrize(("protocol", "hit", "visitor"), [
    ("segment", _hit("POST", "/v1/track", body={"anonymousId": "A", "userId": "U"}), "a:A"),
    ("segment", _hit("POST", "/v1/identify", body={"userId": "U"}), "u:U"),
    ("segment", _hit("POST", "/v1/batch", body={"batch": [{"anonymousId": "B"},
                                                           {"anonymousId": "C"}]}), "a:B"),
    ("rudderstack", _hit("GET", "/pixel/v1/track", "anonymousId=R&writeKey=k"), "a:R"),
    ("jitsu", _hit("POST", "/api/s/page", body={"anonymousId": "J"}), "a:J"),
    ("snowplow", _hit("GET", "/i", "e=pv&duid=D1&aid=k"), "a:D1"),
    ("snowplow", _hit("POST", "/com.snowplowanalytics.snowplow/tp2",
                      body={"data": [{"e": "pv", "duid": "D2"}]}), "a:D2"),
    ("ga4", _hit("POST", "/g/collect", "v=2&tid=G-1&cid=123.456"), "a:123.456"),
    ("ga4", _hit("POST", "/g/collect", "v=2&tid=G-1", b"cid=9.9&en=page_view\nen=x"), "a:9.9"),
    ("ga4", _hit("POST", "/mp/collect", "measurement_id=G-1",
                 {"client_id": "C.1", "events": []}), "a:C.1"),
    ("ga_universal", _hit("GET", "/collect", "v=1&tid=UA-1&cid=77"), "a:77"),
    ("posthog", _hit("POST", "/e/", body={"event": "x", "distinct_id": "P",
                                          "properties": {"$device_id": "DEV"}}), "a:DEV"),
    ("posthog", _hit("POST", "/batch", body={"batch": [{"distinct_id": "P2"}]}), "a:P2"),
    ("pixel", _hit("GET", "/p.gif", "k=key&a=PX"), "a:PX"),
    # signed-in users known only by their user id (server-side trackers send no device id)
    ("snowplow", _hit("GET", "/i", "e=pv&uid=U1&aid=k"), "u:U1"),
    ("snowplow", _hit("POST", "/com.snowplowanalytics.snowplow/tp2",
                      body={"data": [{"e": "pv", "uid": "U2"}]}), "u:U2"),
    ("pixel", _hit("GET", "/p.gif", "k=key&u=PU"), "u:PU"),
    # an empty client_id is taken by the loader, then counts as none: the user id
    ("ga4", _hit("POST", "/mp/collect", "measurement_id=G-1",
                 {"client_id": "", "app_instance_id": "APP", "user_id": "U3", "events": []}),
     "u:U3"),
])
def test_each_tracker_names_its_visitor_where_the_loader_finds_it(
        protocol: str, hit: Hit, visitor: str) -> None:
    assert visitor_of(protocol, hit) == visitor


def test_requests_without_a_visitor_route_by_ip_and_user_agent() -> None:
    blank = _hit("POST", "/v1/track", body=b"{not json")
    assert visitor_of("segment", blank) is None
    ua = {"user-agent": "Firefox"}
    one = routing_hash("acme", "segment", _hit("POST", "/v1/track", body=b"{", headers=ua),
                       "203.0.113.9")
    two = routing_hash("acme", "segment", _hit("POST", "/v1/track", body=b"[", headers=ua),
                       "203.0.113.9")
    other = routing_hash("acme", "segment", _hit("POST", "/v1/track", body=b"{", headers=ua),
                         "203.0.113.10")
    assert one == two != other


def test_a_dn_hit_routes_by_the_visitor_the_loader_takes() -> None:
    """dn.js: the cookieless id when the event names no anonymous id or Global Privacy
    Control is honoured, else the anonymous id (the loader's visitor each time)."""
    def lane(body: dict[str, str], gpc: bool = False) -> int:
        return routing_hash("acme", "dn", _hit("POST", "/dn/e", body=body), "198.51.100.7",
                            "cookieless-1", gpc)
    by_cookieless = lane({"anonymousId": "cookieless-1"})
    assert lane({"userId": "U"}) == by_cookieless
    assert lane({"anonymousId": "A"}, gpc=True) == by_cookieless
    assert lane({"anonymousId": "A"}) == lane({"anonymousId": "A", "userId": "U"})


def test_the_same_visitor_always_routes_the_same_and_tenants_apart() -> None:
    def route(tenant: str, anonymous_id: str) -> int:
        return routing_hash(tenant, "segment", _hit("POST", "/v1/track",
                                                    body={"anonymousId": anonymous_id}), None)

    assert route("acme", "v1") == route("acme", "v1")
    spread = {route("acme", f"v{i}") % 6 for i in range(200)}
    assert spread == set(range(6))  # visitors spread over every partition
    assert route("acme", "v1") != route("globex", "v1")


def test_bundles_hold_one_partitions_frames_in_order_keyed_with_its_index() -> None:
    frames = [encode_frame({"i": i}, f"body-{i}".encode()) for i in range(12)]
    bodies = [f"body-{i}".encode() for i in range(12)]
    routes = [i * 7 for i in range(12)]
    records = split_bundles(frames, 1 << 20, routes, partitions=3)
    assert [k for k, _ in records] == [p.to_bytes(4, "big") for p in range(3)]
    for key, value in records:
        partition = int.from_bytes(key or b"", "big")
        expected = [b for b, r in zip(bodies, routes, strict=True) if r % 3 == partition]
        assert [body for _, body in iter_frames(value)] == expected
    # one partition: no keys, one bundle, as before routing existed
    assert [k for k, _ in split_bundles(frames, 1 << 20, routes, partitions=1)] == [None]


_PAD = {"context": {"page": {"url": "https://shop.example/" + "p" * 5000}}}
# No control characters and no backslash: JSON writes them as escapes, and a backslash
# before a `u` reads as a \u escape, which sends a body the slow way (tested below).
_TEXT = st.text(st.characters(min_codepoint=32, exclude_categories=["Cs"],
                              exclude_characters="\\"), max_size=12)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), _TEXT,
                     st.floats(allow_nan=False, allow_infinity=False))


@given(ids=st.lists(st.one_of(_TEXT, st.integers(), st.none()), max_size=4),
       before=st.dictionaries(_TEXT.filter(lambda k: "batch" not in k), _SCALARS,
                              max_size=3),
       pad_first=st.booleans(), spaced=st.booleans())
def test_a_large_batch_routes_as_if_parsed_whole(ids: list[object], before: dict[str, object],
                                                 pad_first: bool, spaced: bool) -> None:
    # Large bodies are scanned up to their first event (visitor.py): same visitor, always.
    events = [{"anonymousId": i, "event": "x", **_PAD} for i in ids]
    doc = {**before, **(_PAD if pad_first else {}), "batch": events, "sentAt": "now"}
    # json, not orjson: it writes integers beyond 64 bits too (orjson reads them as floats)
    raw = json.dumps(doc, ensure_ascii=False, indent=2 if spaced else None).encode()
    if len(raw) < SCAN_MIN_BYTES:
        raw += b" " * SCAN_MIN_BYTES
    scanned = _hit("POST", "/v1/batch", body=raw)
    parsed = _hit("POST", "/v1/batch", body=raw)
    parsed.json()  # parsed already: the router reads the parse
    assert visitor_of("segment", scanned) == visitor_of("segment", parsed)
    assert not scanned.parsed  # the fast path was taken


@pytest.mark.parametrize("raw", [
    # a duplicate key: a full parse keeps the last one
    b'{"batch": [{"anonymousId": "A"}], "batch": [{"anonymousId": "B"}]}',
    # an escaped spelling of the key
    b'{"batch": [{"anonymousId": "A"}], "b\\u0061tch": [{"anonymousId": "B"}]}',
    b'{"batch": "not a list", "anonymousId": "B"}',  # the body is then the event
    b'{"context": {"batch": [{"anonymousId": "A"}]}, "anonymousId": "B"}',  # nested only
    b'{"batch": [], "anonymousId": "B"}',
    b'{"batch": [{"anonymousId": "A"}]} trailing',  # not JSON: routed by IP and UA
    b'[{"anonymousId": "B"}]',
    b'{"batch": [{"anonymousId": 18446744073709551616}]}',  # orjson: a float
    b'{"batch": [{"anonymousId": "A", "n": 1e400}]}',  # orjson: not JSON
    b'{"batch": [{"anonymousId": "A", "n": NaN}]}',
])
def test_large_bodies_the_scan_cannot_vouch_for_are_parsed_whole(raw: bytes) -> None:
    raw = raw.replace(b"}]", b', "pad": "' + b"x" * SCAN_MIN_BYTES + b'"}]', 1)
    expected = visitor_of("segment", _parsed(raw))
    assert visitor_of("segment", _hit("POST", "/v1/batch", body=raw)) == expected


def _parsed(raw: bytes) -> Hit:
    hit = _hit("POST", "/v1/batch", body=raw)
    with contextlib.suppress(HttpError):
        hit.json()
    return hit
