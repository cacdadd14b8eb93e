"""Routing by visitor: which visitor each tracker's request names, and bundles per partition."""

from __future__ import annotations

import orjson
import pytest

from ingest.collector.group_commit import split_bundles
from ingest.collector.hit import Hit
from ingest.collector.visitor import routing_hash, visitor_of
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
