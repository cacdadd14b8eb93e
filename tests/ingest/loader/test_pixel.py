"""driftnet's GET pixel through the loader pipeline (its e-commerce is in test_protocol_parity)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import orjson

from analytics.connect import connect
from ingest.lake.writer import append_rows
from ingest.loader.pipeline import Pipeline
from schemas.envelope import encode_frame
from schemas.storage import LakeLocation
from tests.ingest.loader.helpers import envelope, events, only, run


def pixel(**params: str) -> bytes:
    return envelope("pixel", b"", "/p.gif", urlencode(params), "GET",
                    {"referer": "https://shop.example/p/1"})


def test_page_view_is_a_page_and_counts_in_sessions(pipeline: Pipeline, tmp_path: Path) -> None:
    out = run(pipeline, pixel(e="page_view", a="anon-1", s="17"),
              pixel(e="Newsletter Opened", a="anon-1", s="17"), pixel(a="anon-1", s="17"))
    rows = events(out)
    assert [(r["event_type"], r["event_name"]) for r in rows] == [
        ("page", "page_view"), ("track", "Newsletter Opened"), ("page", "page_view")]
    # the pixel's s is made up by the page: unique per visitor only
    assert {r["session_id"] for r in rows} == {"anon-1:17"}
    assert orjson.loads(rows[0]["extra"]) == {"client_session_id": "17"}
    append_rows(LakeLocation.parse(tmp_path), "events", out.events)
    with connect(tmp_path, "acme") as con:
        assert con.sql("SELECT session_id, pages FROM sessions").fetchall() == [("anon-1:17", 2)]


def test_products_must_be_a_json_list_whose_other_elements_are_no_items(
        pipeline: Pipeline) -> None:
    out = run(pipeline, pixel(e="Order Completed", a="a", **{"p.products": '{"id": 1}'}))
    assert out.events.num_rows == 0
    q = only(out.quarantine)
    assert (q["reason"], q["detail"]) == ("schema_violation", "p.products is not a JSON list")
    # as the SQL adapters: what is not a product is no item, and stays in properties
    stray = '[1, null, {}, {"product_id": "p1", "price": 5}]'
    event = only(run(pipeline, pixel(e="Order Completed", a="a",
                                     **{"p.products": stray})).events)
    assert [i["product_id"] for i in event["items"]] == ["p1"]
    assert (event["product_id"], event["price"]) == ("p1", 5.0)
    assert orjson.loads(event["properties"])["products"][:3] == [1, None, {}]


def test_header_values_that_are_not_strings_are_not_read(pipeline: Pipeline) -> None:
    """The envelope's headers are strings; a foreign producer's number once made the pixel
    parser raise ('parser error', and the adapter re-run hit by hit)."""
    frame = envelope("pixel", b"", "/p.gif", urlencode({"e": "Opened", "a": "a"}), "GET",
                     {"referer": "https://shop.example/p/1"})
    header_length = int.from_bytes(frame[:4], "big")
    header = orjson.loads(frame[4:4 + header_length])
    header["headers"] = {"user-agent": 1.5, "referer": ["x"], "accept-language": "de-DE"}
    out = run(pipeline, encode_frame(header, b""))
    row = only(out.events)
    assert (row["user_agent"], row["page_url"], row["language"]) == (None, None, "de-DE")


def test_a_repeated_parameter_keeps_its_first_value(pipeline: Pipeline) -> None:
    """As documented (and as the columns did): properties and extra kept the last."""
    query = urlencode([("e", "Order Completed"), ("a", "a"), ("p.coupon", "FIRST"),
                       ("p.coupon", "SECOND"), ("pn.coupon", "3"), ("pn.n", "1"),
                       ("pn.n", "not a number"), ("src", "newsletter"), ("src", "banner"),
                       ("e", "Other")])
    frame = envelope("pixel", b"", "/p.gif", query, "GET", {})
    event = only(run(pipeline, frame).events)
    assert event["event_name"] == "Order Completed"
    assert orjson.loads(event["properties"]) == {"coupon": "FIRST", "n": 1}
    assert orjson.loads(event["extra"]) == {"src": "newsletter"}


def test_integers_past_64_bits_in_products_are_kept_exact(pipeline: Pipeline) -> None:
    """orjson read them as floats: 12345678901234567890123 became 1.2345678901234568e+22."""
    products = ('[{"product_id": 12345678901234567890123, "ean": 12345678901234567890123, '
                '"price": 5, "quantity": 18446744073709551615, "n": -9223372036854775809}]')
    event = only(run(pipeline, pixel(e="Order Completed", a="a",
                                     **{"p.products": products})).events)
    assert event["properties"] == (
        '{"products":[{"product_id":12345678901234567890123,"ean":12345678901234567890123,'
        '"price":5,"quantity":18446744073709551615,"n":-9223372036854775809}]}')
    # as the SQL adapters read them: the id as its digits, the number as a float
    assert (event["product_id"], event["quantity"]) == (
        "12345678901234567890123", 18446744073709551615.0)
    # what orjson refuses stays refused (NaN, a lone surrogate): no JSON list
    for bad in ('[{"price": NaN, "ean": 12345678901234567890123}]',
                '[{"name": "\\ud800", "ean": 12345678901234567890123}]'):
        q = only(run(pipeline, pixel(e="Order Completed", a="a",
                                     **{"p.products": bad})).quarantine)
        assert q["detail"] == "p.products is not a JSON list"
