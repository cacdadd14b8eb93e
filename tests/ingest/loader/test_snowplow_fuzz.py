"""Bad input for the Snowplow protocol, fuzzed with Hypothesis: random and mutated payloads.

Through the loader (Pipeline.process on crafted transport records): no exception escapes,
every hit ends up as events or quarantine rows, and quarantine rows carry a typed reason.
Through the collector (a real `driftnet up`): never a 5xx.
"""

from __future__ import annotations

import base64
import time
import tomllib
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ingest.loader.config import LoaderSettings
from ingest.loader.pipeline import Pipeline
from ingest.transport.base import Record
from schemas.envelope import encode_bundle, encode_frame
from schemas.event import EventType
from schemas.quarantine import ReasonCode
from schemas.tenants import Tenants, TenantsFile
from tests.support import TEST_TENANTS, Server

TENANTS = Tenants(TenantsFile.model_validate(tomllib.loads(TEST_TENANTS)).tenant)
TP2 = "/com.snowplowanalytics.snowplow/tp2"
EVENT_TYPES = set(EventType.__args__)  # type: ignore[attr-defined]
REASONS = {r.value for r in ReasonCode}

texts = st.text(max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
numbers = st.integers(-(2**63), 2**63).map(str) | st.floats().map(str)


def b64(raw: bytes, url: bool, pad: bool) -> str:
    text = (base64.urlsafe_b64encode(raw) if url else base64.b64encode(raw)).decode()
    return text if pad else text.rstrip("=")


@st.composite
def self_describing(draw: st.DrawFn) -> dict[str, Any]:
    return {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            "data": {"schema": draw(st.sampled_from([
                "iglu:com.acme/thing/jsonschema/1-0-0",
                "iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/"
                "jsonschema/1-0-2",
                "iglu:com.snowplowanalytics.snowplow/site_search/jsonschema/1-0-0", "nope"])),
                "data": draw(st.dictionaries(st.sampled_from(["type", "terms", "x"]),
                                             json_values, max_size=3))}}


@st.composite
def tracker_events(draw: st.DrawFn) -> dict[str, str]:
    """A plausible tracker event, then mutated: fields dropped, replaced or garbled."""
    event = {"e": draw(st.sampled_from(["pv", "pp", "se", "ue", "tr", "ti", "xx"])),
             "tv": "js-4.10.1", "p": "web", "aid": "initech-key",
             "eid": draw(st.uuids()).hex, "dtm": str(draw(st.integers(0, 2**45))),
             "stm": str(draw(st.integers(0, 2**45))), "url": "https://shop.example/p?q=1",
             "se_ca": "c", "se_ac": "a", "vid": str(draw(st.integers(0, 99))),
             "pp_mix": "0", "pp_may": "120", "tr_tt": "9.5", "ti_pr": "1", "ti_qu": "2"}
    ue = orjson.dumps(draw(self_describing()))
    contexts = orjson.dumps({"schema": "iglu:x/contexts/jsonschema/1-0-0", "data": draw(
        st.lists(st.fixed_dictionaries({"schema": texts, "data": json_values}), max_size=3))})
    url, pad = draw(st.booleans()), draw(st.booleans())
    if draw(st.booleans()):
        event["ue_px"], event["cx"] = b64(ue, url, pad), b64(contexts, url, pad)
    else:
        event["ue_pr"], event["co"] = ue.decode(), contexts.decode()
    for name in draw(st.lists(st.sampled_from(sorted(event)), max_size=4)):
        action = draw(st.sampled_from(["drop", "text", "number", "garble"]))
        if action == "drop":
            event.pop(name, None)
        elif action == "text":
            event[name] = draw(texts)
        elif action == "number":
            event[name] = draw(numbers)
        elif name in event:
            value = event[name]
            cut = draw(st.integers(0, len(value)))
            event[name] = value[:cut] + draw(texts) + value[cut + 1:]
    return event


@st.composite
def hits(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(method, query, body) of one Snowplow hit: random bytes or mutated tracker payloads."""
    kind = draw(st.sampled_from(["bytes", "query", "get", "post", "post_items"]))
    if kind == "bytes":
        return "POST", "", draw(st.binary(max_size=200))
    if kind == "query":
        return "GET", draw(st.text(max_size=100)).encode("utf-8", "surrogatepass").decode(
            "latin-1"), b""
    if kind == "get":
        return "GET", urlencode(draw(tracker_events()), quote_via=quote), b""
    items: list[Any] = draw(st.lists(tracker_events(), max_size=4))
    if kind == "post_items":
        items += draw(st.lists(json_values, max_size=2))
    body = orjson.dumps({"schema": "iglu:x/payload_data/jsonschema/1-0-4", "data": items})
    return "POST", "", body[:draw(st.integers(0, len(body)))] if draw(st.booleans()) else body


def envelope(method: str, query: str, body: bytes) -> bytes:
    header = {"v": 1, "tenant": "initech", "received_at": time.time_ns() // 1000,
              "protocol": "snowplow", "method": method, "path": "/i" if method == "GET" else TP2,
              "query": query, "headers": {"user-agent": "UA"}, "ip": "198.51.100.4"}
    return encode_frame(header, body)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batch=st.lists(hits(), min_size=1, max_size=12))
def test_the_loader_accounts_for_every_hit(batch: list[tuple[str, str, bytes]]) -> None:
    pipeline = Pipeline(LoaderSettings(), TENANTS)
    try:
        out = pipeline.process([Record(0, 7, encode_bundle([envelope(*h) for h in batch]))], "log")
    finally:
        pipeline.close()
    assert out.raw.num_rows == len(batch)
    accounted = set(out.events.column("source_index").to_pylist()) | set(
        out.quarantine.column("source_index").to_pylist())
    assert accounted == set(range(len(batch)))
    for q in out.quarantine.to_pylist():
        assert q["reason"] in REASONS and q["detail"], q
    for e in out.events.to_pylist():
        assert e["event_type"] in EVENT_TYPES and e["event_name"], e


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(hit=hits(), aid=st.sampled_from(["initech-key", "unknown", ""]),
       anonymous=st.booleans(), nuid=st.text(max_size=40),
       cookie=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
def test_the_collector_never_answers_5xx(shared_server: Server, hit: tuple[str, str, bytes],
                                         aid: str, anonymous: bool, cookie: str,
                                         nuid: str) -> None:
    method, query, body = hit
    query = quote(query, safe="=&%+;,/:")  # a URL httpx sends as is, %-escapes and all
    params = f"aid={quote(aid)}&nuid={quote(nuid)}&{query}" if aid else query
    headers = {"Cookie": f"sp={cookie}".rstrip()}  # HTTP allows no trailing whitespace
    if anonymous:
        headers["SP-Anonymous"] = "*"
    path = TP2 if method == "POST" else "/i"
    r = httpx.request(method, f"{shared_server.url}{path}?{params}", content=body or None,
                      headers=headers, timeout=10)
    assert r.status_code < 500, r.text
    event(f"HTTP {r.status_code}")  # --hypothesis-show-statistics: how often each path ran
    if r.status_code == 200:
        cookies = r.headers.get_list("set-cookie")
        assert (cookies == []) == anonymous
        assert all(c.startswith("sp=") and c.count(";") == 5 for c in cookies), cookies
