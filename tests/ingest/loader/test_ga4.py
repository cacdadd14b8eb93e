"""The GA4 adapter (gtag ``/g/collect``, Measurement Protocol ``/mp/collect``) through the
loader pipeline, on crafted transport records; Hypothesis fuzzing at the end."""

from __future__ import annotations

import json
import urllib.parse

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.loader.pipeline import BatchTables, Pipeline
from schemas.quarantine import ReasonCode
from tests.ingest.collector.test_ga4_routes import ADD_TO_CART, PURCHASE
from tests.ingest.loader.helpers import envelope, events, only, run


def hit(query: str = "", body: bytes | str = b"", path: str = "/g/collect",
        method: str = "POST", **headers: str) -> bytes:
    return envelope("ga4", body.encode() if isinstance(body, str) else body, path, query,
                    method, headers)


def test_real_purchase_maps_to_columns(pipeline: Pipeline) -> None:
    e = only(run(pipeline, hit(PURCHASE, method="GET", **{"user-agent": "UA/1"})).events)
    assert (e["event_type"], e["event_name"], e["protocol"], e["platform"]) == (
        "track", "purchase", "ga4", "web")
    assert (e["app_id"], e["anonymous_id"], e["session_id"], e["session_index"]) == (
        "G-ABC123", "1677925765.1764678332", "1677925765.1764678332:1766755460", 2)
    assert (e["page_host"], e["page_path"], e["page_title"]) == (
        "www.example.com", "/", "Example Domain")
    assert (e["product_action"], e["order_id"], e["revenue"], e["currency"]) == (
        "purchase", "T_12345", 72.05, "USD")
    assert e["product_id"] is None  # two items: the event is not about one product
    assert [i["product_id"] for i in e["items"]] == ["SKU_12345", "SKU_12346"]
    assert (e["language"], e["screen"], e["user_agent"]) == ("en-us", "1920x1080", "UA/1")
    extra = orjson.loads(e["extra"])
    assert extra["gtm"] == "45je5ca1za200" and extra["tfd"] == "18058"
    assert extra["uafvl"].startswith("Microsoft%20Edge;143")  # gtag double-encodes it
    assert not {"tid", "cid", "en", "pr1", "ep.coupon"} & set(extra)
    assert extra["client_session_id"] == "1766755460"  # the sid as sent
    assert e["event_id"].startswith("dn:")


def test_one_item_fills_the_product_columns(pipeline: Pipeline) -> None:
    e = only(run(pipeline, hit(ADD_TO_CART)).events)
    assert (e["product_id"], e["product_name"], e["product_category"], e["price"],
            e["quantity"], e["product_action"]) == ("city001", "Switzerland", "Switzerland",
                                                    799.0, 1.0, "add")
    props = orjson.loads(e["properties"])
    assert props["items"] == [{"item_id": "city001", "item_name": "Switzerland",
                               "item_list_name": "destinations",
                               "item_category": "Switzerland", "quantity": 1, "price": 799}]
    assert (props["value"], props["debug_mode"]) == (799, "false")


def test_lines_override_the_shared_parameters(pipeline: Pipeline) -> None:
    out = run(pipeline, hit("v=2&tid=G-1&cid=c1&dt=Shared&en=ignored&ep.kind=shared&sid=s",
                            "en=first\nen=second&dt=Own&ep.kind=own&epn.kind=5\r\n\r\n"))
    first, second = events(out)
    assert (first["event_name"], first["page_title"], first["session_id"]) == (
        "first", "Shared", "c1:s")  # sid is unique per client only: scoped by cid
    assert orjson.loads(first["properties"]) == {"kind": "shared"}
    assert (second["event_name"], second["page_title"]) == ("second", "Own")
    assert orjson.loads(second["properties"]) == {"kind": 5}  # a number parameter wins
    assert first["event_id"] != second["event_id"]


def test_retry_of_the_same_hit_gets_the_same_event_ids(pipeline: Pipeline) -> None:
    a = events(run(pipeline, hit("tid=G-1&cid=c", "en=a\nen=a")))
    b = events(run(pipeline, hit("tid=G-1&cid=c", "en=a\nen=a")))
    assert [e["event_id"] for e in a] == [e["event_id"] for e in b]
    assert a[0]["event_id"] != a[1]["event_id"]


def test_user_properties_numbers_and_decoding(pipeline: Pipeline) -> None:
    q = urllib.parse.urlencode({"tid": "G-1", "cid": "c", "en": "sign up",
                                "up.plan": "pro+", "upn.age": "42", "upn.score": "1.50",
                                "ep.q": "a&b=c", "ep.note": "ünïcødé", "uid": "u-9"})
    e = only(run(pipeline, hit(q, method="GET")).events)
    assert (e["event_name"], e["user_id"]) == ("sign up", "u-9")
    assert orjson.loads(e["traits"]) == {"plan": "pro+", "age": 42, "score": 1.5}
    assert orjson.loads(e["properties"]) == {"q": "a&b=c", "note": "ünïcødé"}


def test_repeated_parameter_first_wins(pipeline: Pipeline) -> None:
    e = only(run(pipeline, hit("tid=G-1&cid=c&en=one&en=two&x=1&x=2", method="GET")).events)
    assert e["event_name"] == "one"
    assert orjson.loads(e["extra"]) == {"x": "1"}


def test_measurement_protocol(pipeline: Pipeline) -> None:
    body = {"client_id": "123.456", "user_id": "u1", "timestamp_micros": "1767225600000000",
            "non_personalized_ads": False, "user_properties": {"tier": {"value": "gold"}},
            "events": [{"name": "view_item", "params": {
                "session_id": "77", "ga_session_number": 3, "page_location": "https://s.example/x",
                "currency": "EUR", "value": 9.5,
                "items": [{"item_id": "I1", "item_name": "Sock", "price": 9.5, "quantity": 2}]}},
                {"name": "purchase", "timestamp_micros": 1767225601000000,
                 "params": {"transaction_id": "T1", "value": 19, "currency": "EUR"}}]}
    out = run(pipeline, hit("measurement_id=G-MP", orjson.dumps(body), path="/mp/collect"))
    view, purchase = events(out)
    assert (view["event_name"], view["app_id"], view["platform"], view["anonymous_id"],
            view["user_id"], view["session_id"], view["session_index"]) == (
        "view_item", "G-MP", "server", "123.456", "u1", "123.456:77", 3)
    assert (view["product_id"], view["price"], view["quantity"], view["product_action"]) == (
        "I1", 9.5, 2.0, "view")
    assert view["client_ts"].isoformat() == "2026-01-01T00:00:00+00:00"
    assert purchase["client_ts"].isoformat() == "2026-01-01T00:00:01+00:00"
    assert (purchase["order_id"], purchase["revenue"]) == ("T1", 19.0)
    assert orjson.loads(view["extra"]) == {"non_personalized_ads": False}
    assert orjson.loads(view["traits"]) == {"tier": {"value": "gold"}}
    # the request's time is the purchase's column no more: it stays in extra
    assert orjson.loads(purchase["extra"]) == {"non_personalized_ads": False,
                                               "timestamp_micros": "1767225600000000"}


def test_measurement_protocol_keeps_request_and_event_fields_nulls_included(
        pipeline: Pipeline) -> None:
    """An event's fields were merge-patched over the request's: the request's consent value
    was replaced, and the event's nulls deleted."""
    body = {"client_id": "c1", "consent": {"ad_user_data": "GRANTED",
                                           "ad_personalization": "DENIED"},
            "user_data": {"sha256_email_address": None}, "user_location": None,
            "events": [{"name": "a", "consent": {"ad_user_data": "DENIED"},
                        "x": {"n": None, "m": 1}, "y": None},
                       {"name": "b", "params": {"p": None}}]}
    a, b = events(run(pipeline, hit("measurement_id=G-MP", orjson.dumps(body),
                                    path="/mp/collect")))
    request = {k: v for k, v in body.items() if k not in ("client_id", "events")}
    assert orjson.loads(a["extra"]) == {
        "consent": {"ad_user_data": "DENIED", "ad_personalization": "DENIED"},
        "user_data": {"sha256_email_address": None}, "user_location": None,
        "x": {"n": None, "m": 1}, "y": None, "request": request}
    assert orjson.loads(b["extra"]) == request
    assert orjson.loads(b["properties"]) == {"p": None}


def test_measurement_protocol_time_past_year_9999_is_left_out(pipeline: Pipeline) -> None:
    """A microsecond count DuckDB turns into year 294247 would break every Python reader of
    the row: the event lands, its client time unknown (received_at stands in)."""
    body = {"client_id": "c", "timestamp_micros": 9_000_000_000_000_000_000,
            "events": [{"name": "e"}]}
    (event,) = events(run(pipeline, hit("measurement_id=G-MP", orjson.dumps(body),
                                         path="/mp/collect")))
    assert event["client_ts"] is None and event["derived_ts"] == event["received_at"]


@pytest.mark.parametrize(
    ("frame", "reason", "detail"),
    [
        (hit("tid=G-1", b"\xff\xfe"), "payload_format", "body is not valid UTF-8"),
        (hit("tid=G-1&en=%FF", method="GET"), "payload_format", "query string is not"),
        (hit("tid=G-1", "en=%C3%28"), "payload_format", "event line is not"),
        (hit("tid=G-1&cid=1", method="GET"), "protocol_violation", "event has no name"),
        (hit("tid=G-1&en=x&epn.v=NaN", method="GET"), "schema_violation", "epn.v is not a number"),
        (hit("tid=G-1&en=x&sct=two", method="GET"), "schema_violation", "sct (session count)"),
        (hit("tid=G-1", "en=x&p=" + "y" * 40_000), "size", "exceeds the 32768-byte limit"),
        (hit("tid=G-1", "\n".join(["en=x"] * 2600)), "size", "2500-event limit"),
        (hit("measurement_id=G-1", b"{", path="/mp/collect"), "payload_format", "not valid JSON"),
        (hit("measurement_id=G-1", b'{"events": []}', path="/mp/collect"), "protocol_violation",
         "holds no events"),
        (hit("measurement_id=G-1", orjson.dumps({"client_id": "c", "events": [{"name": "e"}] * 26}),
             path="/mp/collect"), "size", "25-event limit"),
        (hit("measurement_id=G-1", b'{"events": [{"name": "e"}]}', path="/mp/collect"),
         "protocol_violation", "client_id (or app_instance_id) is required"),
        (hit("measurement_id=G-1", b'{"client_id": "c", "events": [{"params": {}}]}',
             path="/mp/collect"), "protocol_violation", "event has no name"),
        (hit("measurement_id=G-1", b'{"client_id": "c", "events": [{"name": "e", "params": 3}]}',
             path="/mp/collect"), "schema_violation", "params must be an object"),
        (hit("measurement_id=G-1", b'{"client_id": "c", "timestamp_micros": 1.5, "events": '
             b'[{"name": "e"}]}', path="/mp/collect"), "schema_violation", "timestamp_micros"),
    ],
)
def test_bad_input_is_quarantined_with_a_reason(pipeline: Pipeline, frame: bytes, reason: str,
                                               detail: str) -> None:
    out = run(pipeline, frame)
    rows = out.quarantine.to_pylist()
    assert any(r["reason"] == reason and detail in r["detail"] for r in rows), rows


# -- fuzzing: never an exception, every hit accounted for, every failure with a reason -------

_REASONS = {r.value for r in ReasonCode}
_PARAM = st.sampled_from(["tid", "cid", "en", "sid", "sct", "dl", "dt", "ep.x", "epn.n", "up.u",
                          "upn.v", "pr1", "pr2", "cu", "uid", "_et", "x%20y", "", "=", "pr"])
_VALUE = st.one_of(st.text(max_size=12), st.sampled_from(
    ["idA~nmB~pr1.5~qt2~k0c~v0d", "~~", "%", "%FF", "%E2%82", "1e999", "-0", "page_view",
     "purchase", "k0~v1", "idX~lp1.2.3"]))
_QUERY = st.lists(st.tuples(_PARAM, _VALUE), max_size=12).map(
    lambda kv: "&".join(f"{k}={urllib.parse.quote(v, safe='%~')}" for k, v in kv))


def _accounted(out: BatchTables, n_hits: int) -> None:
    seen = set(out.events.column("source_index").to_pylist())
    seen |= set(out.quarantine.column("source_index").to_pylist())
    assert seen == set(range(n_hits))
    for row in out.quarantine.to_pylist():
        assert row["reason"] in _REASONS
        assert not row["detail"].startswith("parser error"), row  # no SQL failure on data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hits=st.lists(st.tuples(_QUERY, st.lists(_QUERY, max_size=4).map("\n".join),
                               st.sampled_from(["GET", "POST"])), min_size=1, max_size=5))
def test_fuzz_gtag(pipeline: Pipeline, hits: list[tuple[str, str, str]]) -> None:
    frames = [hit(q, b if m == "POST" else "", method=m) for q, b, m in hits]
    _accounted(run(pipeline, *frames), len(frames))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3), max_leaves=12)
def _dumps(doc: object) -> bytes:
    return json.dumps(doc).encode()  # unlike orjson: integers past 64 bits, Infinity


_MP_EVENT = st.fixed_dictionaries({"name": st.one_of(st.text(max_size=10), _JSON)},
                                  optional={"params": st.one_of(_JSON, st.fixed_dictionaries(
                                      {"items": _JSON, "value": _JSON, "session_id": _JSON})),
                                      "timestamp_micros": _JSON})
_MP = st.fixed_dictionaries({"events": st.one_of(st.lists(_MP_EVENT, max_size=4), _JSON)},
                            optional={"client_id": _JSON, "user_id": _JSON,
                                      "timestamp_micros": _JSON, "user_properties": _JSON})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(st.one_of(_MP.map(_dumps), _JSON.map(_dumps),
                                 st.binary(max_size=40)), min_size=1, max_size=4))
def test_fuzz_measurement_protocol(pipeline: Pipeline, bodies: list[bytes]) -> None:
    frames = [hit("measurement_id=G-1", b, path="/mp/collect") for b in bodies]
    _accounted(run(pipeline, *frames), len(frames))
