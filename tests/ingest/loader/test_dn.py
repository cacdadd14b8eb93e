"""dn.js hits through the loader: the Segment adapter, the anonymous id from the collector's
cookieless id until consent, and that id kept under GPC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from ingest.loader.config import LoaderSettings
from ingest.loader.pipeline import Pipeline
from tests.ingest.loader.helpers import envelope, events, run

VISITOR = "cl-0123456789abcdef0123456789abcdef"


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    p = Pipeline(LoaderSettings())
    yield p
    p.close()


def hit(batch: list[dict[str, Any]], **headers: str) -> bytes:
    body = orjson.dumps({"sentAt": "2026-02-01T09:00:01.000Z", "batch": batch})
    return envelope("dn", body, "/dn/e",
                    headers={"user-agent": "UA/1", "x-driftnet-visitor": VISITOR, **headers})


def msg(mid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Clicked", "messageId": mid,
            "timestamp": "2026-02-01T09:00:00.000Z",
            "context": {"page": {"url": "https://shop.example/"}}, **fields}


def test_cookieless_consented_and_gpc_ids(pipeline: Pipeline) -> None:
    out = run(pipeline,
              hit([msg("c1"), msg("p1", anonymousId="persist-1"),
                   msg("u1", userId="user-9")]),
              hit([msg("g1", anonymousId="persist-1")], **{"x-driftnet-gpc": "1"}))
    got = {e["event_id"]: e for e in events(out)}
    assert out.quarantine.num_rows == 0
    assert {k: (e["anonymous_id"], e["user_id"]) for k, e in got.items()} == {
        "c1": (VISITOR, None), "p1": ("persist-1", None), "u1": (VISITOR, "user-9"),
        "g1": (VISITOR, None)}
    assert {(e["protocol"], e["platform"]) for e in got.values()} == {("dn", "web")}


def test_a_dn_hit_without_a_visitor_header_and_ids_is_quarantined(pipeline: Pipeline) -> None:
    body = orjson.dumps({"batch": [msg("n1")]})
    out = run(pipeline, envelope("dn", body, "/dn/e", headers={"user-agent": "UA/1"}))
    assert out.events.num_rows == 0
    row = out.quarantine.to_pylist()[0]
    assert (row["reason"], row["detail"]) == ("protocol_violation",
                                              "anonymousId or userId is required")
