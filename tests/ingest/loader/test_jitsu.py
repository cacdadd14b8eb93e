"""Jitsu hits through the loader: the Segment adapter, the type named by the path."""

from __future__ import annotations

from typing import Any

import orjson

from ingest.loader.config import LoaderSettings
from ingest.loader.pipeline import Pipeline
from ingest.transport.base import Record
from schemas.envelope import encode_bundle
from tests.ingest.collector.test_jitsu_routes import jitsu_event
from tests.ingest.loader.helpers import envelope


def hit(path: str, body: Any) -> bytes:
    return envelope("jitsu", orjson.dumps(body), path, headers={"user-agent": "Header/1"})


def test_jitsu_events_map_like_segment() -> None:
    page = {k: v for k, v in jitsu_event("page", "jp").items() if k != "type"}
    track = jitsu_event("track", "jt", event="Product Viewed", properties={"product_id": "p"},
                        groupId="g-1")
    pipeline = Pipeline(LoaderSettings())
    try:
        out = pipeline.process([Record(0, 1, encode_bundle(
            [hit("/api/s/page", page), hit("/api/s/s2s/track", track)]))], "log")
    finally:
        pipeline.close()
    rows = {e["event_id"]: e for e in out.events.to_pylist()}
    assert (rows["jp"]["protocol"], rows["jp"]["event_type"], rows["jp"]["page_title"],
            rows["jp"]["user_agent"]) == ("jitsu", "page", "Cart",
                                          "Mozilla/5.0 (Macintosh) Safari/605.1.15")
    assert (rows["jt"]["event_type"], rows["jt"]["product_action"]) == ("track", "view")
    extra = orjson.loads(rows["jt"]["extra"])
    assert extra == {"groupId": "g-1"}  # the masked writeKey is not kept in the event
    assert out.quarantine.num_rows == 0
