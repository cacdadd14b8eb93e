"""The Segment adapter, through the loader pipeline, on crafted transport records."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from ingest.loader.config import LoaderSettings
from ingest.loader.pipeline import BatchTables, Pipeline
from ingest.loader.protocols.segment import SegmentAdapter
from ingest.transport.base import Record
from schemas.envelope import encode_bundle, encode_frame
from schemas.tenants import Tenant, Tenants
from tests.ingest.loader.helpers import envelope, only


def hit(body: Any, path: str = "/v1/track", tenant: str = "acme", **headers: str) -> bytes:
    return envelope("segment", body if isinstance(body, bytes) else orjson.dumps(body), path,
                    headers=headers, tenant=tenant)


TENANTS = Tenants([Tenant(id="acme", write_keys=(SecretStr("k"),), ip_mode="none")])


def run(*frames: bytes) -> BatchTables:
    pipeline = Pipeline(LoaderSettings(), TENANTS)
    try:
        return pipeline.process([Record(0, 1, encode_bundle(list(frames)))], "log")
    finally:
        pipeline.close()


def test_track_maps_to_columns() -> None:
    message = {
        "type": "track", "event": "Product Added", "messageId": "m1", "anonymousId": "a1",
        "userId": 42, "timestamp": "2026-11-26T10:00:00.250Z", "sentAt": "2026-11-26T10:00:02Z",
        "properties": {"product_id": "sku-1", "name": "Shoe", "category": "shoes",
                       "price": "12.50", "quantity": 2, "currency": "EUR", "x": [1]},
        "context": {"page": {"url": "https://s.example/p/1?utm_source=news&utm_medium=email",
                             "title": "Shoe", "referrer": "https://www.google.com/"},
                    "userAgent": "UA", "locale": "de-DE", "timezone": "Europe/Berlin",
                    "screen": {"width": 390, "height": 844}, "ip": "198.51.100.1"},
        "integrations": {"All": True},
    }
    out = run(hit(message))
    e = only(out.events)
    assert (e["event_id"], e["event_type"], e["event_name"]) == ("m1", "track", "Product Added")
    assert (e["anonymous_id"], e["user_id"]) == ("a1", "42")
    assert (e["product_id"], e["product_name"], e["product_category"]) == ("sku-1", "Shoe",
                                                                           "shoes")
    assert (e["product_action"], e["price"], e["quantity"], e["currency"]) == ("add", 12.5, 2,
                                                                               "EUR")
    assert (e["page_host"], e["page_path"], e["page_title"]) == ("s.example", "/p/1", "Shoe")
    assert (e["utm_source"], e["utm_medium"]) == ("news", "email")
    assert (e["language"], e["timezone"], e["screen"]) == ("de-DE", "Europe/Berlin", "390x844")
    assert e["ip"] == "198.51.100.1"
    assert e["sent_ts"] - e["client_ts"] == e["received_at"] - e["derived_ts"]
    assert orjson.loads(e["properties"]) == message["properties"]
    assert orjson.loads(e["extra"]) == {"integrations": {"All": True}}
    assert out.quarantine.num_rows == 0
    assert out.raw.num_rows == 1


def test_times_no_column_reads_stay_in_extra() -> None:
    """A forwarded message carries four times: receivedAt (Segment's) is no column, and
    originalTimestamp is read only without a timestamp; beside one it is kept in extra."""
    times = {"timestamp": "2026-11-26T10:00:00Z", "originalTimestamp": "2026-11-26T09:59:58Z",
             "sentAt": "2026-11-26T10:00:01Z", "receivedAt": "2026-11-26T10:00:03Z"}
    out = run(
        hit({"type": "track", "event": "a", "messageId": "all", "anonymousId": "x", **times}),
        hit({"type": "track", "event": "b", "messageId": "orig", "anonymousId": "x",
             "originalTimestamp": "2026-11-26T09:59:58Z"}))
    rows = {e["event_id"]: e for e in out.events.to_pylist()}
    assert orjson.loads(rows["all"]["extra"]) == {
        "originalTimestamp": "2026-11-26T09:59:58Z", "receivedAt": "2026-11-26T10:00:03Z"}
    assert rows["all"]["client_ts"].isoformat() == "2026-11-26T10:00:00+00:00"
    assert rows["orig"]["extra"] is None
    assert rows["orig"]["client_ts"].isoformat() == "2026-11-26T09:59:58+00:00"


def test_order_completed_items() -> None:
    message = {"type": "track", "event": "Order Completed", "anonymousId": "a",
               "properties": {"order_id": "o1", "revenue": 30, "currency": "USD",
                              "products": [{"product_id": "p1", "price": 10, "quantity": 1},
                                           {"sku": "p2", "price": 20, "quantity": 1}]}}
    e = only(run(hit(message)).events)
    assert (e["order_id"], e["revenue"], e["product_action"]) == ("o1", 30.0, "purchase")
    assert [i["product_id"] for i in e["items"]] == ["p1", "p2"]


def test_missing_message_id_gets_a_content_hash_so_retries_dedupe() -> None:
    message = {"type": "track", "event": "E", "anonymousId": "a"}
    out = run(hit(message), hit(message))
    ids = out.events.column("event_id").to_pylist()
    assert ids[0] == ids[1] and ids[0].startswith("dn:")


def test_user_agent_and_ip_fall_back_to_the_envelope() -> None:
    e = only(run(hit({"type": "page", "anonymousId": "a"}, **{"user-agent": "HeaderUA"})).events)
    assert (e["user_agent"], e["ip"], e["event_name"]) == ("HeaderUA", "203.0.113.7", "page_view")


def test_batch_context_merges_under_item_context() -> None:
    body = {"batch": [{"type": "track", "event": "E", "anonymousId": "a",
                       "context": {"locale": "fr-FR"}},
                      {"type": "identify", "userId": "u", "traits": {"plan": "pro"}}],
            "context": {"locale": "en-US", "timezone": "UTC"}, "sentAt": "2026-01-01T00:00:00Z"}
    out = run(hit(body, path="/v1/batch"))
    rows = sorted(out.events.to_pylist(), key=lambda r: r["item_index"])
    assert [r["language"] for r in rows] == ["fr-FR", "en-US"]
    assert [r["timezone"] for r in rows] == ["UTC", "UTC"]
    assert orjson.loads(rows[1]["traits"]) == {"plan": "pro"}
    assert all(r["sent_ts"] is not None for r in rows)


def test_a_messages_context_wins_over_the_batchs_key_by_key_nulls_included() -> None:
    """json_merge_patch read a message's nulls as deletions: ``"locale": null`` deleted the
    batch's locale, and every other null of the message's context was gone."""
    body = {"context": {"locale": "fr-FR", "shared": "s", "n": None,
                        "library": {"name": "analytics.js", "beta": None}},
            "batch": [{"type": "track", "event": "E", "anonymousId": "a",
                       "context": {"campaign_id": None, "locale": None,
                                   "library": {"version": "1.0", "build": None},
                                   "traits": {"email": None, "plan": "pro"},
                                   "note": 'a "null" in text'}},
                      {"type": "track", "event": "F", "anonymousId": "a"}]}
    rows = sorted(run(hit(body, path="/v1/batch")).events.to_pylist(),
                  key=lambda r: r["item_index"])
    assert orjson.loads(rows[0]["context"]) == {
        "locale": None, "shared": "s", "n": None, "campaign_id": None,
        "library": {"name": "analytics.js", "beta": None, "version": "1.0", "build": None},
        "traits": {"email": None, "plan": "pro"}, "note": 'a "null" in text'}
    assert rows[0]["language"] is None
    assert orjson.loads(rows[1]["context"]) == body["context"]
    assert rows[1]["language"] == "fr-FR"


def test_a_batchs_other_fields_apply_to_each_message_in_extra() -> None:
    """A batch's integrations (and any field it has no column for) were dropped."""
    body = {"integrations": {"Mixpanel": False, "All": True, "Amplitude": None},
            "channel": "server", "context": "not an object",
            "sentAt": "2026-01-01T00:00:00Z", "writeKey": "k",
            "batch": [{"type": "track", "event": "E", "anonymousId": "a",
                       "integrations": {"Mixpanel": True, "Braze": None}},
                      {"type": "track", "event": "F", "anonymousId": "a",
                       "sentAt": "2026-01-01T00:00:01Z", "channel": None}]}
    rows = sorted(run(hit(body, path="/v1/batch")).events.to_pylist(),
                  key=lambda r: r["item_index"])
    assert orjson.loads(rows[0]["extra"]) == {
        "integrations": {"Mixpanel": True, "All": True, "Amplitude": None, "Braze": None},
        "channel": "server", "context": "not an object"}
    assert orjson.loads(rows[1]["extra"]) == {
        "integrations": {"Mixpanel": False, "All": True, "Amplitude": None},
        "channel": None, "context": "not an object"}
    assert [r["sent_ts"].second for r in rows] == [0, 1]
    # a batch of nothing but its messages, context and sentAt adds nothing
    plain = {"context": {"locale": "de"}, "sentAt": "2026-01-01T00:00:00Z",
             "batch": [{"type": "track", "event": "E", "anonymousId": "a"}]}
    assert only(run(hit(plain, path="/v1/batch")).events)["extra"] is None


def test_one_bad_item_does_not_cost_the_batch() -> None:
    body = {"batch": [{"type": "track", "event": "Good", "anonymousId": "a"},
                      {"type": "track", "event": "Bad"},
                      "not an object"]}
    out = run(hit(body, path="/v1/batch"))
    assert out.events.column("event_name").to_pylist() == ["Good"]
    q = sorted(out.quarantine.to_pylist(), key=lambda r: r["item_index"])
    assert [(r["item_index"], r["reason"]) for r in q] == [(1, "protocol_violation"),
                                                            (2, "schema_violation")]
    assert orjson.loads(q[0]["payload"]) == {"type": "track", "event": "Bad"}


def test_every_hit_is_accounted_for() -> None:
    frames = [hit(b"garbage"), hit({"batch": []}, path="/v1/batch"), hit(b"\xff"),
              hit({"type": "track", "event": "E", "userId": "u"})]
    out = run(*frames)
    keys = {(r["source_offset"], r["source_index"]) for r in out.events.to_pylist()}
    keys |= {(r["source_offset"], r["source_index"]) for r in out.quarantine.to_pylist()}
    assert keys == {(1, i) for i in range(len(frames))}
    hit_level = [r for r in out.quarantine.to_pylist() if r["item_index"] is None]
    assert {r["payload"] for r in hit_level} >= {b"garbage", b"\xff"}


def test_corrupt_record_is_quarantined_unattributed() -> None:
    pipeline = Pipeline(LoaderSettings())
    out = pipeline.process([Record(0, 5, b"not a bundle")], "log")
    q = only(out.quarantine)
    assert (q["tenant"], q["reason"], q["payload"]) == ("_unattributed", "transport",
                                                        b"not a bundle")


def _quarantined_beside_a_good_record(bad: bytes) -> dict[str, Any]:
    """The quarantine row of the record ``bad`` (offset 5), read before a good one (6) whose
    event still lands."""
    good = hit({"type": "track", "event": "E", "userId": "u"})
    pipeline = Pipeline(LoaderSettings(), TENANTS)
    try:
        out = pipeline.process([Record(0, 5, bad), Record(0, 6, encode_bundle([good]))], "log")
    finally:
        pipeline.close()
    assert [e["source_offset"] for e in out.events.to_pylist()] == [6]
    q = only(out.quarantine)
    assert (q["tenant"], q["reason"], q["source_offset"]) == ("_unattributed", "transport", 5)
    return q


@pytest.mark.parametrize("change", [
    {"v": None}, {"received_at": 10**19}, {"received_at": -1},
    {"received_at": 253402300800000000},  # 10000-01-01: no Python datetime holds it
    {"headers": "user-agent: x"}, {"headers": ["x"]},
], ids=str)
def test_a_foreign_envelope_header_is_quarantined_not_fatal(change: dict[str, Any]) -> None:
    """Valid JSON, but not the header the collector writes: each of these once raised out of
    the pipeline (a cast to the raw schema, a date no Python datetime holds, an adapter
    reading the headers), and the loader read the record again forever."""
    header = {"v": 1, "tenant": "acme", "received_at": 1765100000000000, "protocol": "pixel",
              "method": "GET", "path": "/p.gif", "query": "k=k&e=E", "headers": {},
              "ip": None, **change}
    bad = encode_bundle([encode_frame(header, b"")])
    q = _quarantined_beside_a_good_record(bad)
    assert q["detail"].startswith("envelope header is not valid")


@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt"])
@pytest.mark.parametrize("value", ["99999-01-01T00:00:00Z", "0000-06-01T00:00:00Z",
                                   "0001-01-01T00:00:00+14:00", "294247-01-01T00:00:00Z"])
def test_a_time_no_python_datetime_holds_is_not_a_date(field: str, value: str) -> None:
    """DuckDB reads these as times; in the lake one would break every fetchall() and pandas
    frame that reads its row. Like any other unreadable time, the event is refused."""
    message = {"type": "track", "event": "E", "userId": "u", "messageId": "m1", field: value}
    q = only(run(hit(message)).quarantine)
    assert (q["reason"], q["detail"]) == ("schema_violation",
                                          f"{field} is not an ISO-8601 date: {value}")


def test_a_batch_sent_at_out_of_range_leaves_sent_ts_empty() -> None:
    body = {"batch": [{"type": "track", "event": "E", "userId": "u", "messageId": "m1",
                       "timestamp": "2026-11-26T10:00:00Z"}],
            "sentAt": "99999-01-01T00:00:00Z"}
    (event,) = run(hit(body, path="/v1/batch")).events.to_pylist()
    assert event["sent_ts"] is None and event["client_ts"] is not None
    # what no column could take stays in extra
    assert orjson.loads(event["extra"]) == {"sentAt": "99999-01-01T00:00:00Z"}


def test_a_record_whose_envelope_header_is_not_utf8_is_quarantined_not_fatal() -> None:
    """A foreign producer's record once raised in decode, outside any handler: the loader
    exited and read it again forever."""
    bad = encode_bundle([b"".join([len(b'{"v":1,"tenant":"acme\xff"}').to_bytes(4, "big"),
                                   b'{"v":1,"tenant":"acme\xff"}', (2).to_bytes(4, "big"),
                                   b"{}"])])
    q = _quarantined_beside_a_good_record(bad)
    assert "UTF-8" in q["detail"]


class FailsOnBoom(SegmentAdapter):
    """The Segment adapter with a bug: it raises on any set of hits holding a 'boom' event."""

    def __init__(self) -> None:
        super().__init__()
        self.parses = 0

    def parse(self, con: Any, relation: str, limits: Any) -> Any:
        self.parses += 1
        if con.sql(f"SELECT count(*) FROM {relation} "
                   f"WHERE contains(decode(body), 'boom')").fetchall()[0][0]:
            raise RuntimeError("adapter bug")
        return super().parse(con, relation, limits)


def test_an_adapter_failure_costs_its_hits_and_some_parses_not_one_per_hit() -> None:
    """The batch is halved down to the failing hits (a parse costs tens of ms: re-parsing a
    1,000-hit batch hit by hit took 74 s for one failing hit)."""
    adapter = FailsOnBoom()
    frames = [hit({"type": "track", "event": "boom" if i in (7, 150) else "E",
                   "anonymousId": f"a{i}", "messageId": f"m{i}"}) for i in range(200)]
    pipeline = Pipeline(LoaderSettings(), TENANTS, adapter_list=[adapter])
    try:
        out = pipeline.process([Record(0, 1, encode_bundle(frames))], "log")
    finally:
        pipeline.close()
    assert sorted(out.quarantine["source_index"].to_pylist()) == [7, 150]
    assert set(out.quarantine["detail"].to_pylist()) == {
        "parser error: RuntimeError: adapter bug"}
    assert out.events["event_id"].to_pylist() == [f"m{i}" for i in range(200)
                                                  if i not in (7, 150)]
    assert adapter.parses <= 40
