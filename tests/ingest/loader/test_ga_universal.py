"""The Universal Analytics adapter (``/collect``, ``/batch``) through the loader pipeline, on
crafted transport records; Hypothesis fuzzing at the end."""

from __future__ import annotations

import time
import urllib.parse

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.loader.pipeline import Pipeline
from schemas.quarantine import ReasonCode
from tests.ingest.collector.test_ga_universal_routes import PAGEVIEW, PURCHASE
from tests.ingest.loader.helpers import envelope, events, run


def hit(query: str = "", body: bytes | str = b"", path: str = "/collect",
        method: str = "POST", **headers: str) -> bytes:
    return envelope("ga_universal", body.encode() if isinstance(body, str) else body, path,
                    query, method, headers)


def test_pageview_from_the_query_string(pipeline: Pipeline) -> None:
    [e] = events(run(pipeline, hit(PAGEVIEW, method="GET", **{"user-agent": "UA/2"})))
    assert (e["event_type"], e["event_name"], e["app_id"], e["anonymous_id"]) == (
        "page", "page_view", "UA-XXXXX-Y", "1234.5678")
    assert (e["page_path"], e["utm_source"], e["utm_medium"], e["screen"], e["viewport"]) == (
        "/shoes", "news", "email", "1920x1080", "1280x720")
    assert e["user_agent"] == "UA/2"
    assert set(orjson.loads(e["extra"])) == {"v", "_v", "a", "_s", "de", "sd", "je", "_u", "jid",
                                             "gjid", "_gid", "z"}


def test_enhanced_ecommerce_purchase(pipeline: Pipeline) -> None:
    [e] = events(run(pipeline, hit(body=PURCHASE)))
    assert (e["product_action"], e["order_id"], e["revenue"], e["product_id"]) == (
        "purchase", "T12345", 37.39, "P12345")
    assert e["items"] == [{"product_id": "P12345", "name": "Android Warhol T-Shirt",
                           "category": "Apparel", "brand": "Google", "variant": "Black",
                           "price": None, "quantity": None, "currency": None}]


def test_classic_ecommerce_item_and_queue_time(pipeline: Pipeline) -> None:
    before = time.time()
    [e] = events(run(pipeline, hit(body="v=1&tid=UA-1-1&cid=9&t=item&ti=T1&in=Sock&ic=S-1"
                                        "&iv=wool&ip=4.5&iq=3&cu=EUR&qt=60000")))
    assert (e["event_type"], e["product_id"], e["product_name"], e["product_category"],
            e["price"], e["quantity"], e["currency"], e["order_id"]) == (
        "transaction_item", "S-1", "Sock", "wool", 4.5, 3.0, "EUR", "T1")
    # queue time: the hit happened a minute before it was sent
    assert abs(e["client_ts"].timestamp() - (before - 60)) < 5
    assert e["derived_ts"] == e["client_ts"]


@pytest.mark.parametrize("qt", ["9223372036854775807", "99999999999999999", "63000000000000"])
def test_a_queue_time_past_ten_years_leaves_the_client_time_unknown(pipeline: Pipeline,
                                                                    qt: str) -> None:
    """The largest made the interval overflow: the adapter raised, the hit was quarantined as
    a parser error (and the batch re-parsed); the last put the event in year 30."""
    out = run(pipeline, hit(f"v=1&tid=UA-1-1&cid=9&t=pageview&dp=%2F&qt={qt}", method="GET"))
    [e] = events(out)
    assert out.quarantine.num_rows == 0
    assert e["client_ts"] is None and e["derived_ts"] == e["received_at"]


def test_a_dclid_beside_a_gclid_stays_in_extra(pipeline: Pipeline) -> None:
    """click_id takes the gclid; the dclid, a column parameter, was dropped."""
    both, alone = events(run(pipeline,
                             hit("v=1&tid=UA-1-1&cid=c&t=pageview&gclid=G&dclid=D", method="GET"),
                             hit("v=1&tid=UA-1-1&cid=c&t=pageview&dclid=D", method="GET")))
    assert (both["click_id"], both["click_id_type"]) == ("G", "gclid")
    assert orjson.loads(both["extra"]) == {"v": "1", "dclid": "D"}
    assert (alone["click_id"], alone["click_id_type"]) == ("D", "dclid")
    assert orjson.loads(alone["extra"]) == {"v": "1"}


def test_body_hit_overrides_query_and_impressions(pipeline: Pipeline) -> None:
    [e] = events(run(pipeline, hit("tid=UA-1-1&cid=q&dt=Query", "t=pageview&dt=Body"
                                   "&il1nm=Results&il1pi1id=P1&il1pi1nm=Shoe&cd3=gold&cm1=7")))
    assert (e["page_title"], e["anonymous_id"], e["product_action"]) == ("Body", "q",
                                                                          "list_view")
    assert orjson.loads(e["properties"]) == {"il1nm": "Results", "il1pi1id": "P1",
                                             "il1pi1nm": "Shoe", "cd3": "gold", "cm1": 7}


def test_batch_lines_are_hits(pipeline: Pipeline) -> None:
    body = "\n".join(f"v=1&tid=UA-1-1&cid=b&t=event&ec=c&ea=a{i}&gclid=G{i}" for i in range(3))
    out = events(run(pipeline, hit(body=body, path="/batch")))
    assert [(e["event_name"], e["click_id"], e["click_id_type"], e["item_index"])
            for e in out] == [(f"a{i}", f"G{i}", "gclid", i) for i in range(3)]


@pytest.mark.parametrize(
    ("frame", "reason", "detail"),
    [
        (hit(body=b"\xff"), "payload_format", "body is not valid UTF-8"),
        (hit(body="t=pageview&cid=%FF&tid=UA-1-1"), "payload_format", "hit line is not"),
        (hit("", ""), "protocol_violation", "no hit parameters"),
        (hit(body="tid=UA-1-1&cid=1"), "protocol_violation", "hit has no type"),
        (hit(body="tid=UA-1-1&cid=1&t=event&ec=x"), "protocol_violation", "needs ec and ea"),
        (hit(body="tid=UA-1-1&cid=1&t=item&ip=cheap"), "schema_violation", "ip is not a number"),
    ],
)
def test_bad_hits_are_quarantined(pipeline: Pipeline, frame: bytes, reason: str,
                                  detail: str) -> None:
    rows = run(pipeline, frame).quarantine.to_pylist()
    assert any(r["reason"] == reason and detail in r["detail"] for r in rows), rows


_REASONS = {r.value for r in ReasonCode}
_PARAM = st.sampled_from(["tid", "cid", "uid", "t", "ec", "ea", "ev", "pa", "pr1id", "pr1pr",
                          "pr2nm", "il1pi1id", "cd1", "cm1", "cm", "qt", "ti", "tr", "ip", "x"])
_VALUE = st.one_of(st.text(max_size=10), st.sampled_from(
    ["pageview", "event", "item", "transaction", "purchase", "detail", "%FF", "1e999", "-5",
     "99999999999999999999"]))
_HIT = st.lists(st.tuples(_PARAM, _VALUE), max_size=10).map(
    lambda kv: "&".join(f"{k}={urllib.parse.quote(v, safe='%')}" for k, v in kv))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hits=st.lists(st.tuples(_HIT, st.lists(_HIT, max_size=3).map("\n".join),
                               st.sampled_from(["/collect", "/batch"])), min_size=1, max_size=4))
def test_fuzz(pipeline: Pipeline, hits: list[tuple[str, str, str]]) -> None:
    frames = [hit(q, b, path=p) for q, b, p in hits]
    out = run(pipeline, *frames)
    seen = set(out.events.column("source_index").to_pylist())
    seen |= set(out.quarantine.column("source_index").to_pylist())
    assert seen == set(range(len(frames)))
    for row in out.quarantine.to_pylist():
        assert row["reason"] in _REASONS
        assert not row["detail"].startswith("parser error"), row
