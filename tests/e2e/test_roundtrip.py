"""Payload -> collector -> log -> loader -> lake -> DuckDB gives back what was sent."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics import connect
from tests.support import Server

json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10,
)
ids = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")
timestamps = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1),
                          timezones=st.just(dt.UTC))


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["track", "page", "identify", "screen"]))
    message: dict[str, Any] = {
        "type": kind,
        "anonymousId": draw(ids),
        "timestamp": draw(timestamps).isoformat(timespec="milliseconds"),
        "properties": draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5)),
        "context": {"page": {"url": "https://shop.acme.example/" + draw(st.text(
            alphabet="abcdefghij/", max_size=10))}, "locale": draw(st.sampled_from(
                ["en-US", "de-DE", None]))},
    }
    if draw(st.booleans()):
        message["userId"] = draw(ids)
    if kind == "track":
        message["event"] = draw(ids)
    if kind == "identify":
        message["traits"] = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3))
        del message["properties"]
    if draw(st.booleans()):
        message["custom_top_level"] = draw(json_values)
    return message


EXPECTED_NAMES = {"page": "page_view", "screen": "screen_view", "identify": "identify"}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(messages(), min_size=1, max_size=8), as_batch=st.booleans())
def test_what_was_sent_is_what_is_stored(shared_server: Server, batch: list[dict[str, Any]],
                                         as_batch: bool) -> None:
    for message in batch:  # unique per example: Hypothesis replays the same draws
        message["messageId"] = str(uuid.uuid4())
    if as_batch:
        r = shared_server.post("/v1/batch", {"batch": batch}, key="acme-key")
        assert r.status_code == 200, r.text
    else:
        for message in batch:
            r = shared_server.post(f"/v1/{message['type']}", message, key="acme-key")
            assert r.status_code == 200, r.text
    shared_server.wait_loaded()
    with connect(shared_server.lake, "acme") as con:
        rows = con.execute(
            "SELECT event_id, event_type, event_name, anonymous_id, user_id, client_ts, "
            "properties, traits, context, extra, page_url, language "
            "FROM events WHERE event_id IN (SELECT unnest(?))",
            [[m["messageId"] for m in batch]]).fetchall()
    stored = {r[0]: r for r in rows}
    assert len(rows) == len(batch)
    for m in batch:
        (_, kind, name, anon, user, client_ts, props, traits, context, extra, url,
         lang) = stored[m["messageId"]]
        assert kind == m["type"]
        assert name == (m["event"] if kind == "track" else EXPECTED_NAMES[kind])
        assert anon == m["anonymousId"]
        assert user == m.get("userId")
        assert client_ts == dt.datetime.fromisoformat(m["timestamp"])
        if "properties" in m:
            assert orjson.loads(props) == m["properties"]
        if "traits" in m:
            assert orjson.loads(traits) == m["traits"]
        assert orjson.loads(context) == m["context"]
        assert url == m["context"]["page"]["url"]
        assert lang == m["context"]["locale"]
        if "custom_top_level" in m:
            assert orjson.loads(extra) == {"custom_top_level": m["custom_top_level"]}
        else:
            assert extra is None
