"""Same event, same row, whatever the tracker.

One product view, one add to cart (quantity 2), a one-item purchase and a two-item purchase,
each sent the way every tracker sends it (Segment, Snowplow's e-commerce plugin, GA4 gtag,
GA4 Measurement Protocol, Universal Analytics, PostHog, driftnet's pixel), go through the real
loader pipeline and must give the same e-commerce columns. Snowplow's legacy transaction
(``tr`` + one ``ti`` per line) spreads an order over rows: checked on its own at the end.
Then the session half: GA4 session ids are unique per client only.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest

from analytics.connect import connect
from ingest.lake.writer import append_rows
from ingest.loader.pipeline import Pipeline
from schemas.storage import LakeLocation
from tests.ingest.loader.helpers import envelope, events, run

SHOE = {"product_id": "SKU-1", "name": "Runner", "category": "Shoes", "brand": "Acme",
        "variant": "red", "price": 89.9}
SOCKS = {"product_id": "SKU-2", "name": "Socks", "category": "Apparel", "brand": "Acme",
         "variant": "wool", "price": 5.0}
Line = tuple[dict[str, Any], int]
SCENARIOS: dict[str, dict[str, Any]] = {
    "view": {"action": "view", "lines": [(SHOE, 1)]},
    "add": {"action": "add", "lines": [(SHOE, 2)]},
    "purchase_one": {"action": "purchase", "lines": [(SHOE, 2)], "order": "O-1",
                     "revenue": 179.8},
    "purchase_two": {"action": "purchase", "lines": [(SHOE, 1), (SOCKS, 3)], "order": "O-2",
                     "revenue": 104.9},
}
COLUMNS = ("product_action", "product_id", "product_name", "product_category", "price",
           "quantity", "currency", "order_id", "revenue", "items")


def expected(s: dict[str, Any]) -> dict[str, Any]:
    """The canonical columns of a scenario."""
    items = [{**p, "quantity": float(q), "currency": "EUR"} for p, q in s["lines"]]
    one = items[0] if len(items) == 1 else {}
    return {"product_action": s["action"], "product_id": one.get("product_id"),
            "product_name": one.get("name"), "product_category": one.get("category"),
            "price": one.get("price"), "quantity": one.get("quantity"), "currency": "EUR",
            "order_id": s.get("order"), "revenue": s.get("revenue"), "items": items}


# -- each tracker's wire format

SEGMENT_NAMES = {"view": "Product Viewed", "add": "Product Added", "purchase": "Order Completed"}


def segment_properties(s: dict[str, Any]) -> dict[str, Any]:
    """Segment e-commerce spec v2 properties (also what PostHog and the pixel carry)."""
    if s["action"] != "purchase":
        product, qty = s["lines"][0]
        return {**product, "quantity": qty, "currency": "EUR"}
    return {"order_id": s["order"], "revenue": s["revenue"], "currency": "EUR",
            "products": [{**p, "quantity": q} for p, q in s["lines"]]}


def segment(s: dict[str, Any]) -> bytes:
    message = {"type": "track", "event": SEGMENT_NAMES[s["action"]], "anonymousId": "anon-1",
               "messageId": f"m-{id(s)}", "properties": segment_properties(s)}
    return envelope("segment", orjson.dumps(message), "/v1/track")


def posthog(s: dict[str, Any]) -> bytes:
    event = {"event": SEGMENT_NAMES[s["action"]], "distinct_id": "anon-1",
             "properties": {"token": "phc_1", "$session_id": "0190a0a0-0000-7000-8000-000000000001",
                            **segment_properties(s)}}
    return envelope("posthog", orjson.dumps([event]), "/e/")


def pixel(s: dict[str, Any]) -> bytes:
    params: list[tuple[str, str]] = [("e", SEGMENT_NAMES[s["action"]]), ("a", "anon-1")]
    for key, value in segment_properties(s).items():
        if key == "products":
            params.append(("p.products", orjson.dumps(value).decode()))
        elif isinstance(value, str):
            params.append((f"p.{key}", value))
        else:
            params.append((f"pn.{key}", str(value)))
    return envelope("pixel", b"", "/p.gif", urlencode(params, quote_via=quote), "GET")


GA4_NAMES = {"view": "view_item", "add": "add_to_cart", "purchase": "purchase"}


def ga4_items(s: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"item_id": p["product_id"], "item_name": p["name"], "item_category": p["category"],
             "item_brand": p["brand"], "item_variant": p["variant"], "price": p["price"],
             "quantity": q} for p, q in s["lines"]]


def gtag(s: dict[str, Any]) -> bytes:
    codes = {"item_id": "id", "item_name": "nm", "item_category": "ca", "item_brand": "br",
             "item_variant": "va", "price": "pr", "quantity": "qt"}
    params = [("v", "2"), ("tid", "G-1"), ("cid", "111.222"), ("sid", "1767225600"),
              ("en", GA4_NAMES[s["action"]]), ("cu", "EUR")]
    for n, item in enumerate(ga4_items(s), 1):
        params.append((f"pr{n}", "~".join(f"{codes[k]}{v}" for k, v in item.items())))
    if s["action"] == "purchase":
        params += [("ep.transaction_id", s["order"]), ("epn.value", str(s["revenue"]))]
    return envelope("ga4", b"", "/g/collect", urlencode(params), "GET")


def ga4_mp(s: dict[str, Any]) -> bytes:
    params: dict[str, Any] = {"currency": "EUR", "session_id": "1767225600",
                              "items": ga4_items(s)}
    if s["action"] == "purchase":
        params |= {"transaction_id": s["order"], "value": s["revenue"]}
    body = {"client_id": "111.222", "events": [{"name": GA4_NAMES[s["action"]],
                                                "params": params}]}
    return envelope("ga4", orjson.dumps(body), "/mp/collect", "measurement_id=G-1")


UA_ACTIONS = {"view": "detail", "add": "add", "purchase": "purchase"}


def universal(s: dict[str, Any]) -> bytes:
    params = [("v", "1"), ("tid", "UA-1-1"), ("cid", "111.222"), ("t", "event"),
              ("ec", "ecommerce"), ("ea", s["action"]), ("pa", UA_ACTIONS[s["action"]]),
              ("cu", "EUR")]
    for n, (p, q) in enumerate(s["lines"], 1):
        params += [(f"pr{n}id", p["product_id"]), (f"pr{n}nm", p["name"]),
                   (f"pr{n}ca", p["category"]), (f"pr{n}br", p["brand"]),
                   (f"pr{n}va", p["variant"]), (f"pr{n}pr", str(p["price"])),
                   (f"pr{n}qt", str(q))]
    if s["action"] == "purchase":
        params += [("ti", s["order"]), ("tr", str(s["revenue"]))]
    return envelope("ga_universal", urlencode(params).encode(), "/collect")


ECOM = "iglu:com.snowplowanalytics.snowplow.ecommerce/"
SNOWPLOW_TYPES = {"view": "product_view", "add": "add_to_cart", "purchase": "transaction"}


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")


def snowplow_event(**fields: str) -> dict[str, str]:
    return {"tv": "js-4.1.0", "p": "web", "aid": "acme-key", "duid": "anon-1",
            "sid": "2f1b7e8c-0000-4000-8000-000000000001",
            "dtm": str(int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)),
            **fields}


def snowplow_body(*events: dict[str, str]) -> bytes:
    return orjson.dumps({
        "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
        "data": list(events)})


def snowplow(s: dict[str, Any]) -> bytes:
    entities = [{"schema": ECOM + "product/jsonschema/1-0-0",
                 "data": {"id": p["product_id"], "name": p["name"], "category": p["category"],
                          "brand": p["brand"], "variant": p["variant"], "price": p["price"],
                          "quantity": q, "currency": "EUR"}} for p, q in s["lines"]]
    if s["action"] == "purchase":
        entities.append({"schema": ECOM + "transaction/jsonschema/1-0-0",
                         "data": {"transaction_id": s["order"], "revenue": s["revenue"],
                                  "currency": "EUR", "payment_method": "card",
                                  "total_quantity": sum(q for _, q in s["lines"])}})
    ue = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
          "data": {"schema": ECOM + "snowplow_ecommerce_action/jsonschema/1-0-2",
                   "data": {"type": SNOWPLOW_TYPES[s["action"]]}}}
    cx = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
          "data": entities}
    body = snowplow_body(snowplow_event(e="ue", ue_px=_b64(ue), cx=_b64(cx)))
    return envelope("snowplow", body, "/com.snowplowanalytics.snowplow/tp2")


TRACKERS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "segment": segment, "snowplow": snowplow, "ga4_gtag": gtag, "ga4_mp": ga4_mp,
    "ga_universal": universal, "posthog": posthog, "pixel": pixel,
}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("tracker", TRACKERS)
def test_same_event_same_row(pipeline: Pipeline, tracker: str, scenario: str) -> None:
    out = run(pipeline, TRACKERS[tracker](SCENARIOS[scenario]))
    assert out.quarantine.num_rows == 0, out.quarantine.to_pylist()
    [row] = events(out)
    got = {c: row[c] for c in COLUMNS}
    for number in ("price", "quantity", "revenue"):  # 89.9 sent as text and as a double
        if got[number] is not None:
            got[number] = round(got[number], 6)
    assert got == expected(SCENARIOS[scenario])


@pytest.mark.parametrize("scenario", ["purchase_one", "purchase_two"])
def test_snowplow_legacy_transaction(pipeline: Pipeline, scenario: str) -> None:
    """``tr`` carries the order, each ``ti`` one line: together the same order."""
    s = SCENARIOS[scenario]
    hits = [snowplow_event(e="tr", eid="tr-1", tr_id=s["order"], tr_tt=str(s["revenue"]),
                           tr_cu="EUR")]
    for n, (p, q) in enumerate(s["lines"]):
        hits.append(snowplow_event(e="ti", eid=f"ti-{n}", ti_id=s["order"],
                                   ti_sk=p["product_id"], ti_nm=p["name"],
                                   ti_ca=p["category"], ti_pr=str(p["price"]),
                                   ti_qu=str(q), ti_cu="EUR"))
    out = run(pipeline, envelope("snowplow", snowplow_body(*hits),
                                 "/com.snowplowanalytics.snowplow/tp2"))
    tr, *lines = events(out)
    want = expected(s)
    assert {c: tr[c] for c in ("product_action", "order_id", "revenue", "currency")} == {
        c: want[c] for c in ("product_action", "order_id", "revenue", "currency")}
    items = [i for line in lines for i in line["items"]]
    assert items == [{**i, "brand": None, "variant": None} for i in want["items"]]
    for line, item in zip(lines, items, strict=True):
        assert (line["product_action"], line["order_id"], line["product_id"], line["price"],
                line["quantity"], line["currency"]) == (
            "purchase", s["order"], item["product_id"], item["price"], item["quantity"], "EUR")


# -- sessions: a client session id is unique per client only

def test_ga4_session_ids_are_scoped_by_the_client(pipeline: Pipeline, tmp_path: Path) -> None:
    """Four shoppers starting a session in the same second send the same ``sid``."""
    sid = "1767225600"
    hits = []
    for cid in ("1.1", "2.2"):
        hits.append(envelope("ga4", b"", "/g/collect", urlencode(
            {"v": "2", "tid": "G-1", "cid": cid, "sid": sid, "en": "page_view",
             "dl": "https://shop.example/"}), "GET"))
    for cid in ("3.3", "4.4"):
        hits.append(envelope("ga4", orjson.dumps({"client_id": cid, "events": [
            {"name": "page_view", "params": {"session_id": sid}}]}), "/mp/collect",
            "measurement_id=G-1"))
    out = run(pipeline, *hits)
    rows = events(out)
    assert [r["session_id"] for r in rows] == [f"{c}:{sid}" for c in ("1.1", "2.2", "3.3",
                                                                        "4.4")]
    assert orjson.loads(rows[0]["extra"])["client_session_id"] == sid   # as sent (gtag)
    assert orjson.loads(rows[2]["properties"])["session_id"] == sid     # as sent (MP)
    append_rows(LakeLocation.parse(tmp_path), "events", out.events)
    with connect(tmp_path, "acme") as con:
        sessions = con.sql("SELECT session_id, anonymous_id FROM sessions ORDER BY 1").fetchall()
    assert len(sessions) == 4
    assert {a for _, a in sessions} == {"1.1", "2.2", "3.3", "4.4"}
