"""The PostHog adapter through the loader pipeline, on crafted transport records (bodies as
the collector leaves them: JSON); Hypothesis fuzzing at the end."""

from __future__ import annotations

import gzip
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.loader.pipeline import Pipeline
from schemas.quarantine import ReasonCode
from tests.ingest.collector.test_posthog_routes import GZIP_BATCH
from tests.ingest.loader.helpers import envelope, events, run


def hit(body: Any, query: str = "", path: str = "/e/", **headers: str) -> bytes:
    return envelope("posthog", body if isinstance(body, bytes) else orjson.dumps(body), path,
                    query, headers=headers)


def test_real_posthog_js_batch(pipeline: Pipeline) -> None:
    body = gzip.decompress(GZIP_BATCH)  # what the collector stores after undoing gzip-js
    out = events(run(pipeline, hit(body, "ip=1&_=1694769329412&ver=1.78.5")))
    assert [(e["event_type"], e["event_name"]) for e in out] == [
        ("track", "$autocapture"), ("page", "page_view"), ("track", "$autocapture"),
        ("page", "page_view"), ("track", "query completed")]
    pv = out[1]
    assert (pv["event_id"], pv["anonymous_id"], pv["user_id"], pv["platform"]) == (
        "018a981f-aafa-79e8-abf4-4e68eb64c30f", "018a981f-4b2d-78ae-947b-bedbaa02a0f4",
        "pWAkITyQ3CN7332UqQxnH6p3FV8VJd7pY647EdNkxWc", "web")
    assert (pv["page_path"], pv["page_title"], pv["referrer"], pv["language"]) == (
        "/person/018a981f-4b2d-78ae-947b-bedbaa02a0f4", "xavier@posthog.com • Persons • PostHog",
        None, "en-US")
    assert (pv["sent_ts"] - pv["client_ts"]).total_seconds() == 2.567  # its offset
    props = orjson.loads(pv["properties"])
    assert "token" not in props and props["$lib_version"] == "1.78.5"


def test_identify_without_device_id_links_its_anonymous_distinct_id(pipeline: Pipeline
                                                                     ) -> None:
    """posthog-js before $device_id: $identify carries the anonymous id it links in
    $anon_distinct_id, distinct_id is the user. Other events that do not say they are
    identified keep distinct_id as visitor (analytics stitches it to the user)."""
    body = [{"event": "$identify", "uuid": "i-1", "distinct_id": "user-42",
             "properties": {"$anon_distinct_id": "anon-42"}},
            {"event": "Order Completed", "uuid": "o-1", "distinct_id": "user-42",
             "properties": {"$anon_distinct_id": "not-read"}}]
    ident, order = events(run(pipeline, hit(body)))
    assert (ident["anonymous_id"], ident["user_id"]) == ("anon-42", "user-42")
    assert (order["anonymous_id"], order["user_id"]) == ("user-42", None)


def test_distinct_id_is_the_user_when_the_event_says_it_is_identified(pipeline: Pipeline
                                                                     ) -> None:
    """Without $device_id, distinct_id is the user on an $identify (server SDKs send no
    anonymous id) and on events posthog-js marks `$is_identified: true` (the JSON boolean)."""
    body = [{"event": "$identify", "uuid": "i-1", "distinct_id": "user-1",
             "properties": {"$lib": "posthog-python"}},
            {"event": "Order Completed", "uuid": "o-1", "distinct_id": "user-2",
             "properties": {"$is_identified": True}},
            {"event": "Order Completed", "uuid": "o-2", "distinct_id": "anon-3",
             "properties": {"$is_identified": False}},
            {"event": "Order Completed", "uuid": "o-3", "distinct_id": "anon-4",
             "properties": {"$is_identified": "true"}},
            {"event": "Order Completed", "uuid": "o-4", "distinct_id": "user-5",
             "properties": {"$is_identified": True, "$device_id": "dev-5"}}]
    got = [(e["anonymous_id"], e["user_id"]) for e in events(run(pipeline, hit(body)))]
    assert got == [("user-1", "user-1"), ("user-2", "user-2"), ("anon-3", None),
                   ("anon-4", None), ("dev-5", "user-5")]


def test_identify_set_and_ecommerce(pipeline: Pipeline) -> None:
    body = [{"event": "$identify", "uuid": "i-1", "distinct_id": "user@x",
             "properties": {"$device_id": "dev-1", "$anon_distinct_id": "dev-1"},
             "$set": {"email": "user@x"}, "$set_once": {"first_seen": "2026", "email": "old"}},
            {"event": "Product Added", "uuid": "p-1", "properties": {
                "distinct_id": "dev-1", "product_id": "sku-3", "price": 12.5, "quantity": 2,
                "currency": "EUR", "$session_id": "s-1", "utm_source": "news"}},
            {"event": "$groupidentify", "uuid": "g-1", "distinct_id": "dev-1",
             "properties": {"$group_type": "company", "$group_set": {"name": "Acme"}}}]
    ident, added, group = events(run(pipeline, hit(body)))
    assert (ident["event_type"], ident["user_id"], ident["anonymous_id"]) == (
        "identify", "user@x", "dev-1")
    assert orjson.loads(ident["traits"]) == {"first_seen": "2026", "email": "user@x"}
    assert orjson.loads(ident["extra"]) == {"$set": {"email": "user@x"},
                                            "$set_once": {"first_seen": "2026", "email": "old"}}
    assert (added["product_action"], added["product_id"], added["price"], added["quantity"],
            added["currency"], added["session_id"], added["utm_source"]) == (
        "add", "sku-3", 12.5, 2.0, "EUR", "s-1", "news")
    assert (group["event_type"], group["event_name"], orjson.loads(group["traits"])) == (
        "group", "group", {"name": "Acme"})


def test_batch_object_and_single_event(pipeline: Pipeline) -> None:
    batch = {"api_key": "phc_x", "sent_at": "2026-05-01T12:00:10Z", "historical_migration": False,
             "batch": [{"event": "a", "distinct_id": 42, "timestamp": "2026-05-01T12:00:00Z"}]}
    single = {"event": "b", "api_key": "phc_x", "properties": {"distinct_id": "d",
                                                               "$time": 1767225600.5}}
    a, b = events(run(pipeline, hit(batch, path="/batch/"), hit(single, path="/capture/")))
    assert (a["anonymous_id"], a["sent_ts"].isoformat()) == ("42", "2026-05-01T12:00:10+00:00")
    assert a["event_id"].startswith("dn:")
    assert (b["anonymous_id"], b["client_ts"].isoformat()) == (
        "d", "2026-01-01T00:00:00.500000+00:00")


def test_a_batchs_other_fields_go_to_each_events_extra(pipeline: Pipeline) -> None:
    """Batch-level fields but the events and the token were kept on no event."""
    batch = {"api_key": "phc_x", "sent_at": "2026-05-01T12:00:10Z", "historical_migration": True,
             "lib": {"name": "posthog-python", "beta": None},
             "batch": [{"event": "a", "distinct_id": "d", "type": "capture"},
                       {"event": "b", "distinct_id": "d", "lib": {"name": "own", "x": None}}]}
    a, b = events(run(pipeline, hit(batch, path="/batch/")))
    assert orjson.loads(a["extra"]) == {"historical_migration": True, "type": "capture",
                                        "lib": {"name": "posthog-python", "beta": None}}
    # the event's own fields win, key by key, nulls included
    assert orjson.loads(b["extra"]) == {"historical_migration": True,
                                        "lib": {"name": "own", "beta": None, "x": None}}
    assert a["sent_ts"].isoformat() == "2026-05-01T12:00:10+00:00"
    # a sent_at that is no date is no sent_ts: it stays in extra; the token does not
    (c,) = events(run(pipeline, hit({"api_key": "phc_x", "sent_at": "soon",
                                     "batch": [{"event": "c", "distinct_id": "d"}]},
                                    path="/batch/")))
    assert (c["sent_ts"], orjson.loads(c["extra"])) == (None, {"sent_at": "soon"})


@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (b"\xff", "payload_format", "body is not valid UTF-8"),
        (b"{", "payload_format", "not valid JSON"),
        (b"3", "protocol_violation", "not an event, a list of events or a batch"),
        (b"[]", "protocol_violation", "holds no events"),
        (orjson.dumps({"batch": {}}), "protocol_violation", "batch must be a list"),
        (orjson.dumps([7]), "schema_violation", "not an object"),
        (orjson.dumps([{"distinct_id": "d"}]), "protocol_violation", "has no name"),
        (orjson.dumps([{"event": 1, "distinct_id": "d"}]), "schema_violation", "non-empty string"),
        (orjson.dumps([{"event": "e", "distinct_id": ""}]), "protocol_violation",
         "distinct_id is required"),
        (orjson.dumps([{"event": "e", "distinct_id": "d", "properties": [1]}]),
         "schema_violation", "properties must be an object"),
        (orjson.dumps([{"event": "e", "distinct_id": "d", "offset": "soon"}]),
         "schema_violation", "offset"),
        (orjson.dumps([{"event": "e", "distinct_id": "d", "p": "x" * 40_000}]), "size",
         "32768-byte limit"),
    ],
)
def test_bad_input_is_quarantined(pipeline: Pipeline, body: bytes, reason: str,
                                  detail: str) -> None:
    rows = run(pipeline, hit(body)).quarantine.to_pylist()
    assert any(r["reason"] == reason and detail in r["detail"] for r in rows), rows


_REASONS = {r.value for r in ReasonCode}
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3), max_leaves=10)
_PROPS = st.dictionaries(st.sampled_from(["distinct_id", "$device_id", "$current_url",
                                          "$screen_width", "price", "products", "token",
                                          "$time", "$set"]), _JSON, max_size=5)
_EVENT = st.fixed_dictionaries({}, optional={
    "event": st.one_of(st.sampled_from(["$pageview", "$identify", "Order Completed"]), _JSON),
    "distinct_id": _JSON, "properties": st.one_of(_PROPS, _JSON), "timestamp": _JSON,
    "offset": _JSON, "uuid": _JSON, "$set": _JSON})
_BODY = st.one_of(st.lists(_EVENT, max_size=4), _EVENT,
                  st.fixed_dictionaries({"batch": st.one_of(st.lists(_EVENT, max_size=3), _JSON)},
                                        optional={"sent_at": _JSON, "api_key": _JSON}), _JSON)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(st.one_of(_BODY.map(lambda d: json.dumps(d).encode()),
                                 st.binary(max_size=30)), min_size=1, max_size=4),
       query=st.sampled_from(["", "_=1694769329412", "_=abc", "_=99999999999999999999"]))
def test_fuzz(pipeline: Pipeline, bodies: list[bytes], query: str) -> None:
    frames = [hit(b, query) for b in bodies]
    out = run(pipeline, *frames)
    seen = set(out.events.column("source_index").to_pylist())
    seen |= set(out.quarantine.column("source_index").to_pylist())
    assert seen == set(range(len(frames)))
    for row in out.quarantine.to_pylist():
        assert row["reason"] in _REASONS
        assert not row["detail"].startswith("parser error"), row


def test_times_no_python_datetime_holds_are_refused_or_left_out(pipeline: Pipeline) -> None:
    """A timestamp past year 9999 is not a date (as an unreadable one); a sent_at past it
    leaves the send time unknown rather than putting a year-99999 time in the lake."""
    far = "99999-01-01T00:00:00Z"
    out = run(pipeline, hit({"api_key": "k", "event": "e", "distinct_id": "d", "timestamp": far}),
              hit({"api_key": "k", "event": "e", "distinct_id": "d", "sent_at": far,
                   "properties": {"$time": 1767225600}}))
    (q,) = out.quarantine.to_pylist()
    assert (q["reason"], q["detail"]) == ("schema_violation",
                                          f"timestamp is not an ISO-8601 date: {far}")
    (event,) = events(out)
    assert event["sent_ts"] is None and event["client_ts"].year == 2026


def test_a_null_in_set_is_a_trait_set_to_null(pipeline: Pipeline) -> None:
    """PostHog sets a person property to null when $set says null: the traits keep it (a
    merge patch read it as a deletion, and the $set_once value showed instead)."""
    body = {"event": "$identify", "uuid": "i-null", "distinct_id": "user@y",
            "$set": {"plan": None, "email": "user@y"},
            "$set_once": {"plan": "free", "first_seen": "2026"}}
    ident, = events(run(pipeline, hit(body)))
    assert orjson.loads(ident["traits"]) == {"plan": None, "email": "user@y",
                                             "first_seen": "2026"}
