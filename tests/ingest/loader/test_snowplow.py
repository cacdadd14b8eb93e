"""The Snowplow adapter, through the loader pipeline, on crafted transport records."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import tomllib
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from ingest.loader.config import LoaderSettings
from ingest.loader.pipeline import BatchTables, Pipeline
from ingest.loader.protocols import snowplow
from ingest.transport.base import Record
from schemas.envelope import encode_bundle
from schemas.tenants import Tenants, TenantsFile
from tests.ingest.loader.helpers import envelope, only
from tests.support import ROOT, TEST_TENANTS

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
ECOM = "iglu:com.snowplowanalytics.snowplow.ecommerce/"
ACTION = ECOM + "snowplow_ecommerce_action/jsonschema/1-0-2"
HEADERS = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", "x-driftnet-nuid": "n-1"}


def get(params: dict[str, str] | str, path: str = "/i", **headers: str) -> bytes:
    """A GET hit as the collector envelopes it."""
    query = params if isinstance(params, str) else urlencode(params)
    return _frame("GET", path, query, b"", headers or HEADERS)


def post(events: Any, path: str = TP2, **headers: str) -> bytes:
    """A POST tp2 hit; ``events`` is the data list, or raw bytes for the whole body."""
    body = events if isinstance(events, bytes) else orjson.dumps(
        {"schema": PAYLOAD_DATA, "data": events})
    return _frame("POST", path, "", body, headers or HEADERS)


def _frame(method: str, path: str, query: str, body: bytes, headers: dict[str, str]) -> bytes:
    return envelope("snowplow", body, path, query, method, headers)


# acme keeps client IPs as they are (ip_mode "none"), so the test sees what was sent.
TENANTS = Tenants(TenantsFile.model_validate(tomllib.loads(TEST_TENANTS)).tenant)


def run(*frames: bytes) -> BatchTables:
    pipeline = Pipeline(LoaderSettings(), TENANTS)
    try:
        return pipeline.process([Record(0, 1, encode_bundle(list(frames)))], "log")
    finally:
        pipeline.close()


def b64(doc: Any, alphabet: str = "url", pad: bool = False) -> str:
    raw = orjson.dumps(doc)
    text = (base64.urlsafe_b64encode(raw) if alphabet == "url" else base64.b64encode(raw)).decode()
    return text if pad else text.rstrip("=")


def ue(schema: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"schema": UNSTRUCT, "data": {"schema": schema, "data": data}}


def contexts(*entities: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"schema": CONTEXTS, "data": [{"schema": s, "data": d} for s, d in entities]}


def event(**fields: str) -> dict[str, str]:
    return {"tv": "js-4.10.1", "p": "web", "aid": "acme-app", **fields}


def ms(value: dt.datetime) -> str:
    return str(int(value.timestamp() * 1000))


T0 = dt.datetime(2026, 11, 26, 10, 0, 0, 250000, tzinfo=dt.UTC)


def test_get_page_view_maps_every_field() -> None:
    params = event(
        e="pv", eid="0b9c7c1e-1111-4c2b-9d5e-1a2b3c4d5e6f", dtm=ms(T0),
        stm=ms(T0 + dt.timedelta(seconds=2)), tna="sp1", duid="d-1", uid="user@example.com",
        sid="s-1", vid="3", url="https://shop.example/p/1?utm_source=news&utm_medium=email",
        page="Trail Runner 2 | Shop", refr="https://www.google.com/", lang="de-DE",
        tz="Europe/Berlin", res="1920x1080", vp="1280x720", cd="24", cs="UTF-8", ds="1280x4000",
        cookie="1", custom_x="42")
    e = only(run(get(params)).events)
    assert (e["event_id"], e["event_type"], e["event_name"], e["protocol"]) == (
        params["eid"], "page", "page_view", "snowplow")
    assert (e["app_id"], e["platform"], e["tenant"]) == ("acme-app", "web", "acme")
    assert (e["client_ts"], e["sent_ts"]) == (T0, T0 + dt.timedelta(seconds=2))
    assert e["received_at"] - e["derived_ts"] == dt.timedelta(seconds=2)
    assert (e["anonymous_id"], e["user_id"], e["network_user_id"]) == (
        "d-1", "user@example.com", "n-1")
    assert (e["session_id"], e["session_index"]) == ("s-1", 3)
    assert (e["page_url"], e["page_title"], e["referrer"]) == (
        params["url"], "Trail Runner 2 | Shop", "https://www.google.com/")
    assert (e["page_host"], e["page_path"], e["utm_source"], e["utm_medium"]) == (
        "shop.example", "/p/1", "news", "email")
    assert (e["language"], e["timezone"], e["screen"], e["viewport"]) == (
        "de-DE", "Europe/Berlin", "1920x1080", "1280x720")
    assert (e["user_agent"], e["ip"]) == (HEADERS["user-agent"], "203.0.113.7")
    assert orjson.loads(e["extra"]) == {"tv": "js-4.10.1", "tna": "sp1", "cd": "24",
                                        "cs": "UTF-8", "ds": "1280x4000", "cookie": "1",
                                        "custom_x": "42"}
    assert e["properties"] is None and e["context"] is None


def test_get_decoding_plus_percent_repeats_and_empty_values() -> None:
    query = ("e=pv&tv=js&p=web&eid=first&eid=second&page=Caf%C3%A9+%26+Bar&url=https%3A%2F%2Fs"
             "%2F%3Fa%3Db%3Dc&uid=&lone&=orphan")
    e = only(run(get(query)).events)
    assert (e["event_id"], e["page_title"], e["page_url"]) == ("first", "Café & Bar",
                                                               "https://s/?a=b=c")
    assert e["user_id"] is None
    assert orjson.loads(e["extra"]) == {"tv": "js", "lone": ""}


def test_post_batch_keeps_order_and_lineage() -> None:
    events = [event(e="pv", eid=f"e{i}", url=f"https://shop.example/{i}") for i in range(3)]
    out = run(post(events))
    rows = sorted(out.events.to_pylist(), key=lambda r: r["item_index"])
    assert [(r["event_id"], r["item_index"], r["page_url"]) for r in rows] == [
        (f"e{i}", i, f"https://shop.example/{i}") for i in range(3)]
    assert {r["source_offset"] for r in rows} == {1}
    assert out.raw.num_rows == 1 and out.quarantine.num_rows == 0


@pytest.mark.parametrize(("alphabet", "pad"), [("url", False), ("url", True), ("std", True),
                                                ("std", False)])
def test_self_describing_event_base64_in_any_alphabet(alphabet: str, pad: bool) -> None:
    # Data chosen so the base64 holds '-'/'_' (url) or '+'/'/' (standard) and needs padding.
    data = {"targetUrl": "https://shop.example/?q=>>>???", "elementId": "ÿÿ"}
    schema = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
    while len(orjson.dumps(ue(schema, data))) % 3 != 1:
        data["elementId"] += "x"
    doc = ue(schema, data)
    encoded = b64(doc, alphabet, pad)
    assert encoded.endswith("==") == pad
    assert set("-_" if alphabet == "url" else "+/") & set(encoded)
    e = only(run(get(event(e="ue", eid="u1", ue_px=encoded))).events)
    assert (e["event_type"], e["event_name"]) == ("self_describing", "link_click")
    assert orjson.loads(e["properties"]) == data
    assert orjson.loads(e["extra"])["event_schema"] == doc["data"]["schema"]


def test_self_describing_event_data_is_kept_as_sent_nulls_included() -> None:
    """json_merge_patch('{}', data) dropped every null of the event's data, at any depth."""
    data = {"coupon": None, "step": 2, "address": {"line2": None, "city": "X"},
            "tags": [None, {"k": None}], "big": 12345678901234567890123}
    doc = ue("iglu:com.acme/form_submit/jsonschema/1-0-0", data)
    out = run(post([event(e="ue", eid="n1", ue_pr=json.dumps(doc))]),  # orjson: 64 bits
              get(event(e="ue", eid="n2", ue_px=b64(
                  ue("iglu:com.acme/empty/jsonschema/1-0-0", {"x": None})))))
    rows = {r["event_id"]: r for r in out.events.to_pylist()}
    assert json.loads(rows["n1"]["properties"]) == data
    assert orjson.loads(rows["n2"]["properties"]) == {"x": None}


def test_self_describing_event_as_json_with_json_contexts() -> None:
    ctx = contexts(("iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
                    {"id": "pv-1"}), ("iglu:com.acme/user/jsonschema/1-0-0", {"tier": "gold"}))
    doc = ue("iglu:com.acme/newsletter_signup/jsonschema/1-0-0", {"list": "weekly"})
    e = only(run(post([event(e="ue", eid="u2", ue_pr=orjson.dumps(doc).decode(),
                             co=orjson.dumps(ctx).decode())])).events)
    assert e["event_name"] == "newsletter_signup"
    assert orjson.loads(e["properties"]) == {"list": "weekly"}
    assert orjson.loads(e["context"]) == ctx["data"]
    assert "co" not in orjson.loads(e["extra"]) and "ue_pr" not in orjson.loads(e["extra"])


def test_structured_and_page_ping_fields_go_to_properties() -> None:
    out = run(post([
        event(e="se", eid="s1", se_ca="auth", se_ac="login", se_la="header", se_va="2.5"),
        event(e="pp", eid="p1", pp_mix="0", pp_max="10", pp_miy="-5", pp_may="350"),
    ]))
    rows = {r["event_id"]: r for r in out.events.to_pylist()}
    assert (rows["s1"]["event_type"], rows["s1"]["event_name"]) == ("structured", "login")
    assert orjson.loads(rows["s1"]["properties"]) == {"category": "auth", "action": "login",
                                                      "label": "header", "value": 2.5}
    assert (rows["p1"]["event_type"], rows["p1"]["event_name"]) == ("page_ping", "page_ping")
    assert orjson.loads(rows["p1"]["properties"]) == {
        "pp_xoffset_min": 0, "pp_xoffset_max": 10, "pp_yoffset_min": -5, "pp_yoffset_max": 350}


def test_classic_transaction_and_item() -> None:
    out = run(post([
        event(e="tr", eid="t1", tr_id="o-1", tr_tt="59.90", tr_tx="9.56", tr_sh="4.90",
              tr_cu="EUR", tr_af="web", tr_ci="Berlin", tr_co="DE"),
        event(e="ti", eid="t2", ti_id="o-1", ti_sk="sku-1", ti_nm="Shoe", ti_ca="shoes",
              ti_pr="27.50", ti_qu="2", ti_cu="EUR"),
    ]))
    rows = {r["event_id"]: r for r in out.events.to_pylist()}
    tr, ti = rows["t1"], rows["t2"]
    assert (tr["event_type"], tr["order_id"], tr["revenue"], tr["currency"],
            tr["product_action"]) == ("transaction", "o-1", 59.9, "EUR", "purchase")
    assert orjson.loads(tr["properties"]) == {"affiliation": "web", "tax": 9.56,
                                              "shipping": 4.9, "city": "Berlin", "country": "DE"}
    assert (ti["event_type"], ti["order_id"], ti["product_id"], ti["product_name"],
            ti["product_category"], ti["price"], ti["quantity"], ti["currency"],
            ti["product_action"]) == ("transaction_item", "o-1", "sku-1", "Shoe", "shoes",
                                      27.5, 2.0, "EUR", "purchase")


def _product(pid: str, price: float, quantity: int = 1) -> tuple[str, dict[str, Any]]:
    return (ECOM + "product/jsonschema/1-0-0",
            {"id": pid, "name": f"Name {pid}", "category": "shoes", "price": price,
             "currency": "EUR", "quantity": quantity})


def _action(eid: str, kind: str, *entities: tuple[str, dict[str, Any]]) -> dict[str, str]:
    return event(e="ue", eid=eid, ue_px=b64(ue(ACTION, {"type": kind})),
                 cx=b64(contexts(*entities)))


def test_snowplow_ecommerce_actions() -> None:
    out = run(post([
        _action("v", "product_view", _product("sku-1", 27.5)),
        _action("a", "add_to_cart", _product("sku-1", 27.5, 2),
                (ECOM + "cart/jsonschema/1-0-0", {"total_value": 55, "currency": "EUR"})),
        _action("t", "transaction", _product("sku-1", 27.5, 2), _product("sku-2", 4.9),
                (ECOM + "transaction/jsonschema/1-0-0",
                 {"transaction_id": "o-9", "revenue": 59.9, "currency": "EUR",
                  "payment_method": "card", "total_quantity": 3})),
        _action("x", "promo_view", (ECOM + "promotion/jsonschema/1-0-0", {"id": "summer"})),
    ]))
    rows = {r["event_id"]: r for r in out.events.to_pylist()}
    assert {k: (r["event_name"], r["product_action"]) for k, r in rows.items()} == {
        "v": ("product_view", "view"), "a": ("add_to_cart", "add"),
        "t": ("transaction", "purchase"), "x": ("promo_view", None)}
    a = rows["a"]
    assert (a["product_id"], a["product_name"], a["product_category"], a["price"],
            a["quantity"], a["currency"]) == ("sku-1", "Name sku-1", "shoes", 27.5, 2.0, "EUR")
    t = rows["t"]
    assert (t["product_id"], t["order_id"], t["revenue"], t["currency"]) == (
        None, "o-9", 59.9, "EUR")
    assert t["items"] == [
            {"product_id": "sku-1", "name": "Name sku-1", "category": "shoes", "brand": None,
             "variant": None, "price": 27.5, "quantity": 2.0, "currency": "EUR"},
            {"product_id": "sku-2", "name": "Name sku-2", "category": "shoes", "brand": None,
             "variant": None, "price": 4.9, "quantity": 1.0, "currency": "EUR"}]
    assert orjson.loads(t["properties"]) == {"type": "transaction"}
    assert len(orjson.loads(t["context"])) == 3


def test_site_search() -> None:
    doc = ue("iglu:com.snowplowanalytics.snowplow/site_search/jsonschema/1-0-0",
             {"terms": ["trail", "shoes"], "totalResults": 12})
    e = only(run(get(event(e="ue", ue_px=b64(doc)))).events)
    assert (e["event_name"], e["search_query"], e["product_action"]) == (
        "site_search", "trail shoes", "search")


def test_network_user_id_precedence() -> None:
    out = run(
        post([event(e="pv", eid="tn", tnuid="from-tracker", nuid="param")]),
        post([event(e="pv", eid="col", nuid="param")]),
        post([event(e="pv", eid="nu", nuid="param")], **{"user-agent": "UA"}),
        post([event(e="pv", eid="none")], **{"user-agent": "UA", "sp-anonymous": "*"}),
    )
    got = {r["event_id"]: r["network_user_id"] for r in out.events.to_pylist()}
    assert got == {"tn": "from-tracker", "col": "n-1", "nu": "param", "none": None}
    # the tracker's nuid, where the column took another id, stays in extra (it was in the
    # raw archive only); where the column took it, it is not repeated
    kept = {r["event_id"]: orjson.loads(r["extra"]).get("nuid")
            for r in out.events.to_pylist()}
    assert kept == {"tn": "param", "col": "param", "nu": None, "none": None}


def test_a_get_nuid_that_the_collector_took_is_not_repeated_in_extra() -> None:
    e = only(run(get(event(e="pv", eid="g", nuid="n-1"))).events)
    assert e["network_user_id"] == "n-1" and "nuid" not in orjson.loads(e["extra"])


def test_sp_anonymous_stores_no_network_id_and_no_ip_whoever_sent_them() -> None:
    out = run(post([event(e="pv", eid="a", tnuid="t-1", nuid="n-9", ip="198.51.100.23")],
                   **{"user-agent": "UA", "sp-anonymous": "*", "x-driftnet-nuid": "n-1"}))
    e = only(out.events)
    assert (e["network_user_id"], e["ip"]) == (None, None)
    assert not {"nuid", "tnuid", "ip"} & set(orjson.loads(e["extra"]))


def test_event_without_eid_gets_a_stable_content_hash() -> None:
    first = only(run(get(event(e="pv", url="https://s/"))).events)["event_id"]
    again = only(run(get(event(e="pv", url="https://s/"))).events)["event_id"]
    assert first == again and first.startswith("dn:")


# -- what cannot be loaded is quarantined with a typed reason ------------------------------

QUARANTINED = [
    (post(b"\xff\xfe"), "payload_format", "not valid UTF-8"),
    (post(b"   "), "payload_format", "body is empty"),
    (post(b'{"data": ['), "payload_format", "not valid JSON"),
    (post(b"[1, 2]"), "protocol_violation", "not a payload_data object"),
    (post(b'{"schema": "x"}'), "protocol_violation", "no data array"),
    (post([]), "protocol_violation", "holds no events"),
    (post([event(e="pv")] * 2501), "size", "exceeds the 2500-event limit"),
    (post(["pv"]), "schema_violation", "event is a JSON string, not an object"),
    (post([None]), "schema_violation", "event is a JSON null, not an object"),
    (post([event(e="pv", page="x" * 40_000)]), "size", "exceeds the 32768-byte limit"),
    (get(""), "protocol_violation", "no tracker parameters"),
    (get("e=pv&tv=js&p=web&page=%FF"), "payload_format", "not valid percent-encoded UTF-8"),
    (get({"e": "pv", "p": "web"}), "protocol_violation", "tv (tracker version) is required"),
    (get({"e": "pv", "tv": "js"}), "protocol_violation", "p (platform) is required"),
    (get({"tv": "js", "p": "web"}), "protocol_violation", "e (event type) is required"),
    (get(event(e="xx")), "protocol_violation", "unknown event type e=xx"),
    (get(event(e="pv", dtm="yesterday")), "schema_violation", "dtm is not a time in epoch"),
    (get(event(e="pv", stm="1e30")), "schema_violation", "stm is not a time in epoch"),
    (get(event(e="pv", ttm="nan")), "schema_violation", "ttm is not a time in epoch"),
    (get(event(e="pv", vid="1.5")), "schema_violation", "vid is not an integer"),
    (get(event(e="pp", pp_may="lots")), "schema_violation", "pp_may is not an integer"),
    (get(event(e="se", se_ca="c", se_ac="a", se_va="x")), "schema_violation",
     "se_va is not a number"),
    (get(event(e="tr", tr_id="o", tr_tt="free")), "schema_violation", "tr_tt is not a number"),
    (get(event(e="ti", ti_qu="two")), "schema_violation", "ti_qu is not a number"),
    (get(event(e="se", se_ca="c")), "protocol_violation", "needs se_ca and se_ac"),
    (get(event(e="ue")), "protocol_violation", "without ue_pr or ue_px"),
    (get(event(e="ue", ue_px="!!!not base64")), "payload_format", "not base64 of UTF-8"),
    (get(event(e="ue", ue_px=base64.b64encode(b"\xff\xfe").decode())), "payload_format",
     "not base64 of UTF-8"),
    (get(event(e="ue", ue_pr="{nope")), "payload_format", "is not valid JSON"),
    (get(event(e="ue", ue_pr='{"data": 5}')), "schema_violation",
     "self-describing event must be"),
    (get(event(e="ue", ue_pr=orjson.dumps(ue("not-iglu", {})).decode())), "schema_violation",
     "not an Iglu URI: not-iglu"),
    (get(event(e="pv", cx="%%%")), "payload_format", "cx is not base64"),
    (get(event(e="pv", co="[1")), "payload_format", "contexts (co/cx) are not valid JSON"),
    (get(event(e="pv", co='{"data": {}}')), "schema_violation", "contexts must be"),
]


@pytest.mark.parametrize(("frame", "reason", "detail"), QUARANTINED)
def test_quarantine_reasons(frame: bytes, reason: str, detail: str) -> None:
    out = run(frame)
    assert out.events.num_rows == 0
    q = only(out.quarantine)
    assert (q["reason"], q["protocol"], q["tenant"]) == (reason, "snowplow", "acme")
    assert detail in q["detail"], q["detail"]
    assert q["payload"] or detail == "no tracker parameters"


def test_one_bad_event_does_not_cost_its_batch() -> None:
    out = run(post([event(e="pv", eid="ok-1"), event(e="pv", eid="bad", dtm="x"),
                    event(e="pv", eid="ok-2")]))
    assert sorted(out.events.column("event_id").to_pylist()) == ["ok-1", "ok-2"]
    q = only(out.quarantine)
    assert (q["event_id"], q["item_index"]) == ("bad", 1)
    assert orjson.loads(q["payload"])["dtm"] == "x"


def test_every_hit_is_accounted_for() -> None:
    frames = [frame for frame, _, _ in QUARANTINED] + [get(event(e="pv")), post([event(e="pv")])]
    out = run(*frames)
    assert out.raw.num_rows == len(frames)
    accounted = set(out.events.column("source_index").to_pylist()) | set(
        out.quarantine.column("source_index").to_pylist())
    assert accounted == set(range(len(frames)))


def test_docs_map_every_field_the_adapter_reads() -> None:
    docs = (ROOT / "docs" / "protocols.md").read_text()
    section = docs.split("## Snowplow", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", section))
    missing = [f for f in snowplow._READ if f not in documented]
    assert not missing, f"docs/protocols.md does not map {missing}"
