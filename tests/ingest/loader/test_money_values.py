"""Prices, quantities and revenue a model can sum: finite or NULL in every protocol, exact
where the wire is, in the order's currency."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

import orjson
import pyarrow as pa
import pytest

from ingest.loader.pipeline import Pipeline, canonical_values
from schemas.event import EVENT_SCHEMA
from tests.ingest.loader.helpers import envelope, events, only, run
from tests.ingest.loader.test_protocol_parity import (
    ECOM,
    _b64,
    snowplow_body,
    snowplow_event,
)


def _snowplow(action: str, entities: list[tuple[str, dict[str, Any]]]) -> bytes:
    ue = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
          "data": {"schema": ECOM + "snowplow_ecommerce_action/jsonschema/1-0-2",
                   "data": {"type": action}}}
    cx = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
          "data": [{"schema": f"{ECOM}{kind}/jsonschema/1-0-0", "data": data}
                   for kind, data in entities]}
    body = snowplow_body(snowplow_event(e="ue", ue_px=_b64(ue), cx=_b64(cx)))
    return envelope("snowplow", body, "/com.snowplowanalytics.snowplow/tp2")


def _segment(revenue: Any, price: Any) -> bytes:
    return envelope("segment", orjson.dumps({
        "type": "track", "event": "Order Completed", "anonymousId": "a", "properties": {
            "order_id": "o1", "revenue": revenue, "currency": "EUR",
            "products": [{"product_id": "p1", "price": price, "quantity": 1}]}}), "/v1/track")


# A tracker may send these as strings ("NaN" from a Python SDK's float, "Infinity"), or as a
# number past the double range; DuckDB, which parses every JSON body, reads NaN and
# Infinity literals too. Each would be a non-finite double in the money columns.
NON_FINITE: dict[str, bytes] = {
    "segment strings": _segment("NaN", "Infinity"),
    "segment literals": envelope("segment", b'{"type":"track","event":"Order Completed",'
                                 b'"anonymousId":"a","properties":{"order_id":"o1","revenue":'
                                 b'NaN,"currency":"EUR","products":[{"product_id":"p1",'
                                 b'"price":1e400,"quantity":-Infinity}]}}', "/v1/track"),
    "posthog": envelope("posthog", orjson.dumps([{
        "event": "Order Completed", "distinct_id": "d", "properties": {
            "token": "phc_acme", "order_id": "o1", "revenue": "-Infinity", "currency": "EUR",
            "products": [{"product_id": "p1", "price": "NaN", "quantity": 1}]}}]), "/e/"),
    "ga4 measurement protocol": envelope("ga4", orjson.dumps({
        "client_id": "c", "events": [{"name": "purchase", "params": {
            "currency": "EUR", "transaction_id": "o1", "value": "NaN",
            "items": [{"item_id": "p1", "price": "1e400", "quantity": 1}]}}]}),
        "/mp/collect", "measurement_id=G-ACME&api_secret=s"),
    "gtag": envelope("ga4", b"", "/g/collect", urlencode({
        "v": "2", "tid": "G-ACME", "cid": "1.2", "en": "purchase", "cu": "EUR",
        "ep.transaction_id": "o1", "ep.value": "Infinity", "pr1": "idp1~prNaN~qt1"}), "GET"),
    "universal analytics": envelope("ga_universal", urlencode({
        "v": "1", "tid": "UA-1-1", "cid": "1.2", "t": "event", "ec": "e", "ea": "p",
        "pa": "purchase", "ti": "o1", "cu": "EUR", "pr1id": "p1", "pr1pr": "Infinity",
        "pr1qt": "NaN"}).encode(), "/collect"),
    "snowplow e-commerce": _snowplow("transaction", [
        ("product", {"id": "p1", "price": "NaN", "quantity": 1, "currency": "EUR"}),
        ("transaction", {"transaction_id": "o1", "revenue": "Infinity", "currency": "EUR",
                         "payment_method": "card"})]),
}


@pytest.mark.parametrize("hit", NON_FINITE)
def test_a_number_that_is_not_finite_is_null_and_the_event_is_kept(pipeline: Pipeline,
                                                                   hit: str) -> None:
    out = run(pipeline, NON_FINITE[hit])
    assert out.quarantine.num_rows == 0, out.quarantine.to_pylist()
    event = only(out.events)
    assert event["product_action"] == "purchase" and event["order_id"] == "o1"
    numbers = [event["price"], event["quantity"], event["revenue"]]
    numbers += [v for item in event["items"] or [] for v in (item["price"], item["quantity"])]
    assert all(v is None or math.isfinite(v) for v in numbers), numbers
    assert event["revenue"] is None
    assert [item["price"] for item in event["items"]] == [None]


def test_canonical_values_keep_finite_numbers_and_nulls_across_chunks() -> None:
    def item(price: float | None, quantity: float | None) -> dict[str, Any]:
        return {"product_id": "p", "price": price, "quantity": quantity, "currency": "EUR"}

    rows = [
        {"price": math.nan, "quantity": 2.0, "revenue": math.inf,
         "items": [item(-math.inf, 1.0), item(3.0, math.nan)]},
        {"price": 1.5, "quantity": None, "revenue": -0.0, "items": None},
        {"price": 2.0, "quantity": 1.0, "revenue": 5.0, "items": []},
        {"items": [item(1.0, None), None]},
    ]
    whole = pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)
    table = pa.concat_tables([whole.slice(0, 1), whole.slice(1, 2), whole.slice(3)])
    out = canonical_values(table).select(["price", "quantity", "revenue", "items"]).to_pylist()
    assert out == [
        {"price": None, "quantity": 2.0, "revenue": None,
         "items": [{**item(None, 1.0), "name": None, "category": None, "brand": None,
                    "variant": None}, {**item(3.0, None), "name": None, "category": None,
                                       "brand": None, "variant": None}]},
        {"price": 1.5, "quantity": None, "revenue": -0.0, "items": None},
        {"price": 2.0, "quantity": 1.0, "revenue": 5.0, "items": []},
        {"price": None, "quantity": None, "revenue": None,
         "items": [{**item(1.0, None), "name": None, "category": None, "brand": None,
                    "variant": None}, None]},
    ]
    clean = pa.Table.from_pylist(rows[1:3], schema=EVENT_SCHEMA)
    assert canonical_values(clean) is clean  # nothing to change: the same table, no copy


def test_currencies_are_upper_case_codes(pipeline: Pipeline) -> None:
    """``eur`` would be a currency of its own in every per-currency total, and convert at
    no rate (the rates file's codes are upper-cased); the event's and each item's."""
    out = run(pipeline, envelope("segment", orjson.dumps({
        "type": "track", "event": "Order Completed", "anonymousId": "a", "properties": {
            "order_id": "o1", "revenue": 12.5, "currency": " eur ", "products": [
                {"product_id": "p1", "price": 10, "currency": "usd"},
                {"product_id": "p2", "price": 2.5}]}}), "/v1/track"),
        envelope("segment", orjson.dumps({
            "type": "track", "event": "Product Viewed", "anonymousId": "a",
            "properties": {"product_id": "p3", "price": 1, "currency": ""}}), "/v1/track"))
    order, view = events(out)
    assert order["currency"] == "EUR"
    assert [i["currency"] for i in order["items"]] == ["USD", "EUR"]
    assert orjson.loads(order["properties"])["currency"] == " eur "  # as sent
    assert view["currency"] is None


@pytest.mark.parametrize("stray", [None, "x", 3, {}, {"coupon": "SPRING"}])
def test_an_element_that_holds_no_product_is_no_item(pipeline: Pipeline, stray: Any) -> None:
    """A stray element (``JSON.stringify`` writes an ``undefined`` product as ``null``)
    would make a one-product order a two-item order, and lose its product columns."""
    segment = envelope("segment", orjson.dumps({
        "type": "track", "event": "Order Completed", "anonymousId": "a", "properties": {
            "order_id": "o1", "revenue": 10, "currency": "EUR",
            "products": [{"product_id": "p1", "price": 5, "quantity": 2}, stray]}}),
        "/v1/track")
    mp = envelope("ga4", orjson.dumps({"client_id": "c", "events": [{
        "name": "purchase", "params": {"currency": "EUR", "transaction_id": "o1", "value": 10,
                                       "items": [stray, {"item_id": "p1", "price": 5,
                                                         "quantity": 2}]}}]}),
        "/mp/collect", "measurement_id=G-ACME&api_secret=s")
    for event in events(run(pipeline, segment, mp)):
        assert [(i["product_id"], i["price"], i["quantity"]) for i in event["items"]] == [
            ("p1", 5.0, 2.0)]
        assert (event["product_id"], event["price"], event["quantity"]) == ("p1", 5.0, 2.0)


def _pixel(**params: str) -> bytes:
    query = urlencode({"k": "acme-live-3f9c1e7a", "e": "Order Completed", "a": "anon",
                       "p.order_id": "o1", "p.currency": "EUR", **params})
    return envelope("pixel", b"", "/p.gif", query, "GET")


@pytest.mark.parametrize(("value", "revenue", "stored"), [
    ("1e20", 1e20, "1e+20"),  # past 64 bits: a float (it was a "parser error")
    ("18446744073709551616", 2.0**64, "1.8446744073709552e+19"),
    ("9007199254740993", 9007199254740992.0, "9007199254740993"),  # exact in properties
    ("-12", -12.0, "-12"),
    ("1e3", 1000.0, "1000"),
])
def test_pixel_numbers_past_64_bits_are_floats_and_integers_stay_exact(
        pipeline: Pipeline, value: str, revenue: float, stored: str) -> None:
    out = run(pipeline, _pixel(**{"pn.revenue": value}))
    assert out.quarantine.num_rows == 0, out.quarantine.to_pylist()
    event = only(out.events)
    assert event["revenue"] == revenue
    assert f'"revenue":{stored}' in event["properties"]


@pytest.mark.parametrize("digits", ["\u0661\u0662\u0663", "\uff11\uff12", "+-5",
                                    "1" * 5000])
def test_pixel_reads_only_ascii_digits_as_numbers(pipeline: Pipeline, digits: str) -> None:
    """As the SQL adapters do: float() alone would read other scripts' digits. Signs twice
    and digits past the double range are no number either (with the reason, not a parser
    error)."""
    refused = run(pipeline, _pixel(**{"pn.revenue": digits}))
    assert only(refused.quarantine)["reason"] == "schema_violation"
    products = orjson.dumps([{"product_id": "p1", "price": digits, "quantity": 1}]).decode()
    event = only(run(pipeline, _pixel(**{"p.products": products})).events)
    assert event["price"] is None and event["items"][0]["price"] is None


def test_snowplow_order_currency_and_refund_amount(pipeline: Pipeline) -> None:
    """The transaction's currency is the order's, whatever its lone product is priced in;
    a refund entity's amount is the refund's revenue (its field is ``refund_amount``)."""
    usd_product = ("product", {"id": "p1", "price": 10, "quantity": 1, "currency": "USD"})
    purchase, refund = events(run(pipeline, _snowplow("transaction", [
        usd_product, ("transaction", {"transaction_id": "o1", "revenue": 9.2,
                                      "currency": "EUR", "payment_method": "card"})]),
        _snowplow("refund", [usd_product, ("refund", {
            "transaction_id": "o1", "currency": "EUR", "refund_amount": 4.5,
            "refund_reason": "broken"})])))
    assert (purchase["product_action"], purchase["revenue"], purchase["currency"]) == (
        "purchase", 9.2, "EUR")
    assert (refund["product_action"], refund["order_id"], refund["revenue"],
            refund["currency"]) == ("refund", "o1", 4.5, "EUR")
    assert purchase["items"][0]["currency"] == "USD"  # the line keeps its own


def test_a_query_string_number_past_the_double_range_is_kept_as_text(pipeline: Pipeline) -> None:
    """Universal Analytics' custom metrics and gtag item prices go into the JSON columns as
    numbers; 1e400 is none (strict JSON readers refuse it): it stays the text it was."""
    ua = envelope("ga_universal", urlencode({"v": "1", "tid": "UA-1-1", "cid": "1.2",
                                             "t": "pageview", "cm1": "1e400",
                                             "cm2": "7"}).encode(), "/collect")
    gtag = envelope("ga4", b"", "/g/collect", urlencode({
        "v": "2", "tid": "G-ACME", "cid": "1.2", "en": "view_item", "cu": "EUR",
        "pr1": "idp1~pr1e400"}), "GET")
    first, second = events(run(pipeline, ua, gtag))
    assert orjson.loads(first["properties"]) == {"cm1": "1e400", "cm2": 7}
    assert orjson.loads(second["properties"])["items"] == [{"item_id": "p1", "price": "1e400"}]
    assert second["items"][0]["price"] is None
