"""RudderStack hits through the loader: the Segment adapter reads them, pixels included."""

from __future__ import annotations

import urllib.parse
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.loader.pipeline import Pipeline
from schemas.quarantine import ReasonCode
from tests.ingest.collector.test_rudderstack_routes import rudder_event
from tests.ingest.loader.helpers import envelope, run


def hit(path: str, body: Any = b"", query: str = "", method: str = "POST") -> bytes:
    return envelope("rudderstack", body if isinstance(body, bytes) else orjson.dumps(body),
                    path, query, method)


def test_beacon_batch_keeps_the_protocol(pipeline: Pipeline) -> None:
    body = {"batch": [rudder_event(event="Order Completed", properties={
        "order_id": "o-1", "revenue": 99, "products": [{"product_id": "a", "price": 99}]})],
            "sentAt": "2026-01-01T10:00:01.000Z"}
    [e] = run(pipeline, hit("/beacon/v1/batch", body, "writeKey=k")).events.to_pylist()
    assert (e["protocol"], e["event_name"], e["product_action"], e["order_id"], e["revenue"]) == (
        "rudderstack", "Order Completed", "purchase", "o-1", 99.0)
    # RudderStack's sessionId is a device-side timestamp: scoped by the anonymous id
    assert (e["session_id"], e["viewport"]) == (
        "1f6b4c5a-8a4e-4f0e-9d65-6b0e3e6c2a11:1767261600000", "1280x720")
    assert orjson.loads(e["extra"]) == {"channel": "web", "integrations": {"All": True}}


def test_pixel_query_becomes_the_message(pipeline: Pipeline) -> None:
    query = urllib.parse.urlencode({
        "writeKey": "secret-key", "anonymousId": "a1", "userId": "u1", "event": "Email Opened",
        "messageId": "m-1", "originalTimestamp": "2026-01-02T03:04:05Z",
        "properties.subject": "Hi", "properties.nested.deep": "x", "context.locale": "nl-NL",
        "context.page.url": "https://shop.example/mail", "integrations.All": "true"})
    [e] = run(pipeline, hit("/pixel/v1/track", query=query, method="GET")).events.to_pylist()
    assert (e["event_id"], e["event_type"], e["event_name"], e["user_id"], e["language"]) == (
        "m-1", "track", "Email Opened", "u1", "nl-NL")
    assert e["client_ts"].isoformat() == "2026-01-02T03:04:05+00:00"
    assert orjson.loads(e["properties"]) == {"subject": "Hi", "nested": {"deep": "x"}}
    assert orjson.loads(e["extra"]) == {"integrations": {"All": "true"}}
    assert "secret-key" not in str(e)


def test_pixel_page_and_bad_pixels(pipeline: Pipeline) -> None:
    out = run(pipeline,
              hit("/pixel/v1/page", query="writeKey=k&anonymousId=a&name=Home", method="GET"),
              hit("/pixel/v1/track", query="writeKey=k&anonymousId=a", method="GET"),
              hit("/pixel/v1/track", query="writeKey=k&event=%FF", method="GET"))
    [page] = out.events.to_pylist()
    assert (page["event_type"], page["event_name"]) == ("page", "page_view")
    q = sorted((r["source_index"], r["reason"], r["detail"]) for r in out.quarantine.to_pylist())
    assert q == [(1, "protocol_violation", "track message has no event name"),
                 (2, "payload_format", "query string is not percent-encoded UTF-8")]


_REASONS = {r.value for r in ReasonCode}
_KEY = st.sampled_from(["writeKey", "anonymousId", "userId", "event", "messageId", "type",
                        "properties.a", "properties.a.b", "context.page.url", "a..b", ".", "",
                        "timestamp", "properties", "context"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries=st.lists(st.lists(st.tuples(_KEY, st.text(max_size=8)), max_size=8).map(
    lambda kv: "&".join(f"{urllib.parse.quote(k)}={urllib.parse.quote(v)}" for k, v in kv)),
    min_size=1, max_size=4), path=st.sampled_from(["/pixel/v1/track", "/pixel/v1/page"]))
def test_fuzz_pixels(pipeline: Pipeline, queries: list[str], path: str) -> None:
    frames = [hit(path, query=q, method="GET") for q in queries]
    out = run(pipeline, *frames)
    seen = set(out.events.column("source_index").to_pylist())
    seen |= set(out.quarantine.column("source_index").to_pylist())
    assert seen == set(range(len(frames)))
    for row in out.quarantine.to_pylist():
        assert row["reason"] in _REASONS
        assert not row["detail"].startswith("parser error"), row
