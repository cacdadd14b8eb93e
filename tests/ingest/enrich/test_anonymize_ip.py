"""anonymize_ip per tenant mode, in events and in the raw archive."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.enrich.anonymize_ip import IpAnonymizer, keyed_hash, truncate
from ingest.loader.pipeline import Pipeline
from schemas.tenants import Tenants, load_tenants
from tests.ingest.enrich.helpers import event, frame, no_lake, records, run_step, track

TENANTS = """
[[tenant]]
id = "trunc"
write_keys = ["k1"]

[[tenant]]
id = "hashed"
write_keys = ["k2"]
ip_mode = "hash"
ip_salt = "salt-of-hashed"

[[tenant]]
id = "other-hashed"
write_keys = ["k3"]
ip_mode = "hash"
ip_salt = "another-salt"

[[tenant]]
id = "kept"
write_keys = ["k4"]
ip_mode = "none"
"""


@pytest.fixture
def tenants(tmp_path: Path) -> Tenants:
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS)
    return load_tenants(path)


@pytest.mark.parametrize(("ip", "truncated"), [
    ("203.0.113.77", "203.0.113.0"),
    ("10.1.2.3", "10.1.2.0"),
    ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
    ("2001:0DB8:85A3:0000:0000:8A2E:0370:7334", "2001:db8:85a3::"),
    ("::ffff:203.0.113.77", "203.0.113.0"),  # IPv4-mapped counts as IPv4
    ("203.0.113.77:51234", "203.0.113.0"),  # proxies write ports too
    ("[2001:db8:85a3::1]:443", "2001:db8:85a3::"),
    ("203.0.113.0", "203.0.113.0"),  # idempotent: replaying raw is safe
    ("256.1.1.1", None), ("unknown", None), ("", None),
])
def test_truncate(ip: str, truncated: str | None) -> None:
    assert truncate(ip) == truncated


def test_hash_is_keyed_canonical_and_idempotent() -> None:
    salt = b"s3cret"
    expected = hmac.new(salt, b"2001:db8::1", hashlib.sha256).hexdigest()[:32]
    assert keyed_hash("2001:0db8:0000::0001", salt) == expected
    assert keyed_hash("::ffff:198.51.100.7", salt) == keyed_hash("198.51.100.7", salt)
    assert keyed_hash("198.51.100.7", salt) != keyed_hash("198.51.100.7", b"other")
    assert keyed_hash(expected, salt) == expected  # already a hash: kept


def test_modes_per_tenant_in_events(tenants: Tenants) -> None:
    rows = [event(0, tenant="trunc", ip="203.0.113.77"),
            event(1, tenant="hashed", ip="203.0.113.77"),
            event(2, tenant="other-hashed", ip="203.0.113.77"),
            event(3, tenant="kept", ip="203.0.113.77"),
            event(4, tenant="not-in-file", ip="203.0.113.77"),
            event(5, tenant="hashed", ip=None)]
    out = [r["ip"] for r in run_step("anonymize_ip", IpAnonymizer(tenants), rows)]
    assert out[0] == "203.0.113.0"
    assert out[1] == keyed_hash("203.0.113.77", b"salt-of-hashed")
    assert out[2] not in (out[1], "203.0.113.77") and len(out[2]) == 32
    assert out[3:] == ["203.0.113.77", "203.0.113.0", None]


def test_context_ip_is_anonymised_too(tenants: Tenants) -> None:
    context = orjson.dumps({"ip": "198.51.100.23", "locale": "de-DE"}).decode()
    rows = [event(0, tenant="trunc", ip="198.51.100.23", context=context),
            event(1, tenant="trunc", context=orjson.dumps({"ip": "bogus"}).decode())]
    out = run_step("anonymize_ip", IpAnonymizer(tenants), rows)
    assert orjson.loads(out[0]["context"]) == {"ip": "198.51.100.0", "locale": "de-DE"}
    assert orjson.loads(out[1]["context"]) == {}  # not an IP: dropped, never kept whole


def _strings(table: pa.Table) -> list[str]:
    values: list[str] = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_binary(column.type):
            for v in column.to_pylist():
                if v is not None:
                    values.append(v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
    return values


def _process(tenants: Tenants, frames: list[bytes]) -> Any:
    pipeline = Pipeline(no_lake(), tenants)
    try:
        return pipeline.process(records(*frames), "log")
    finally:
        pipeline.close()


def test_hash_mode_never_writes_the_ip_to_events_or_raw(tenants: Tenants,
                                                        tmp_path: Path) -> None:
    ip, forwarded = "198.51.100.23", "203.0.113.99"
    headers = {"x-forwarded-for": f"{ip}, {forwarded}", "user-agent": "UA"}
    out = _process(tenants, [
        frame(track(), tenant="hashed", ip=ip, headers=headers),
        frame(track(context={"ip": ip}), tenant="hashed", ip=ip, headers=headers),
    ])
    assert out.events.num_rows == 2 and out.raw.num_rows == 2
    for name in ("raw", "events", "quarantine"):
        table = getattr(out, name)
        assert not [s for s in _strings(table) if ip in s or forwarded in s], name
        # Uncompressed Parquet bytes hold strings verbatim: a grep would find them.
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path, compression="none")
        data = path.read_bytes()
        assert ip.encode() not in data and forwarded.encode() not in data, name
    salt = b"salt-of-hashed"
    assert out.raw["ip"].to_pylist() == [keyed_hash(ip, salt)] * 2
    raw_headers = orjson.loads(out.raw["headers"][0].as_py())
    assert raw_headers == {"x-forwarded-for": f"{keyed_hash(ip, salt)}, "
                                              f"{keyed_hash(forwarded, salt)}",
                           "user-agent": "UA"}
    assert set(out.events["ip"].to_pylist()) == {keyed_hash(ip, salt)}


def test_raw_truncation_and_forwarded_header(tenants: Tenants) -> None:
    headers = {"forwarded": 'for=198.51.100.23;proto=https, for="[2001:db8:cafe::17]:4711"',
               "x-real-ip": "198.51.100.23"}
    out = _process(tenants, [frame(track(), tenant="trunc", ip="2001:db8:cafe::17",
                                   headers=headers)])
    assert out.raw["ip"].to_pylist() == ["2001:db8:cafe::"]
    kept = orjson.loads(out.raw["headers"][0].as_py())
    assert kept == {"forwarded": 'for="198.51.100.0";proto=https, for="2001:db8:cafe::"',
                    "x-real-ip": "198.51.100.0"}


def test_none_mode_keeps_everything_and_sp_anonymous_keeps_no_ip(tenants: Tenants) -> None:
    out = _process(tenants, [
        frame(track(), tenant="kept", ip="198.51.100.23",
              headers={"x-forwarded-for": "198.51.100.23"}),
        frame(track(), tenant="trunc", ip="198.51.100.23",
              headers={"sp-anonymous": "*", "x-forwarded-for": "198.51.100.23"}),
    ])
    raw = sorted(out.raw.to_pylist(), key=lambda r: r["source_index"])
    assert raw[0]["ip"] == "198.51.100.23"
    assert orjson.loads(raw[0]["headers"]) == {"x-forwarded-for": "198.51.100.23"}
    assert raw[1]["ip"] is None
    assert orjson.loads(raw[1]["headers"]) == {"sp-anonymous": "*"}


def test_ips_in_payloads_are_replaced_whole_and_nothing_else(tenants: Tenants) -> None:
    body = {"batch": [
        track(context={"ip": "1.2.3.4"}, properties={"note": "11.2.3.45 near 1.2.3.4"}),
        {"type": "track", "event": 42, "anonymousId": "x", "context": {"ip": "1.2.3.4"}},
    ]}
    out = _process(tenants, [frame(body, tenant="trunc", path="/v1/batch", ip="192.0.2.1")])
    (raw,) = out.raw.to_pylist()
    stored = orjson.loads(raw["body"])
    assert [item["context"]["ip"] for item in stored["batch"]] == ["1.2.3.0", "1.2.3.0"]
    assert stored["batch"][0]["properties"]["note"] == "11.2.3.45 near 1.2.3.0"
    (q,) = out.quarantine.to_pylist()
    assert orjson.loads(q["payload"])["context"]["ip"] == "1.2.3.0"
    (e,) = out.events.to_pylist()
    assert e["ip"] == "1.2.3.0" and orjson.loads(e["properties"])["note"].startswith("11.2.3.45")


def test_ips_senders_write_into_properties_and_extra_are_anonymised(tenants: Tenants) -> None:
    """PostHog's properties.$ip, the Measurement Protocol's ip_override and gtag's _uip are
    the client's IP as much as the ip column: no full address stays in events or raw, even
    when the hit's events are all quarantined."""
    from tests.ingest.loader.helpers import envelope

    posthog = orjson.dumps({"api_key": "k", "event": "e", "distinct_id": "d",
                            "properties": {"$ip": "198.51.1.22", "plan": "pro"}})
    mp = orjson.dumps({"client_id": "c1", "ip_override": "198.51.1.44",
                       "events": [{"name": "page_view"}]})
    mp_bad = orjson.dumps({"client_id": "c1", "ip_override": "198.51.1.66",
                           "events": [{"params": {}}]})  # no name: quarantined
    gtag = "v=2&tid=G-1&cid=c1&en=page_view&_uip=198.51.1.55"
    out = _process(tenants, [
        envelope("posthog", posthog, "/e/", tenant="trunc"),
        envelope("ga4", mp, "/mp/collect", "measurement_id=G-1", tenant="trunc"),
        envelope("ga4", mp_bad, "/mp/collect", "measurement_id=G-1", tenant="trunc"),
        envelope("ga4", b"", "/g/collect", gtag, tenant="trunc"),
    ])
    assert out.events.num_rows == 3 and out.quarantine.num_rows == 1
    for name in ("events", "raw", "quarantine"):
        leaked = [s for s in _strings(getattr(out, name))
                  if any(f"198.51.1.{n}" in s for n in (22, 44, 55, 66))]
        assert not leaked, (name, leaked)
    rows = {r["protocol"] + str(r["source_index"]): r for r in out.events.to_pylist()}
    assert orjson.loads(rows["posthog0"]["properties"]) == {"$ip": "198.51.1.0", "plan": "pro"}
    assert orjson.loads(rows["ga41"]["extra"])["ip_override"] == "198.51.1.0"
    assert orjson.loads(rows["ga43"]["extra"])["_uip"] == "198.51.1.0"


def test_a_universal_analytics_item_price_is_no_ip(tenants: Tenants) -> None:
    """UA's ip= is the item price: the raw hit keeps it (and the order total of the same
    value), so replaying it gives the same events."""
    from tests.ingest.loader.helpers import envelope

    body = ("v=1&tid=UA-1-1&cid=c1&t=transaction&ti=T1&tr=12.50&cu=EUR\n"
            "v=1&tid=UA-1-1&cid=c1&t=item&ti=T1&in=Shirt&ic=SKU1&ip=12.50&iq=1&cu=EUR")
    for tenant in ("trunc", "hashed"):
        out = _process(tenants, [envelope("ga_universal", body.encode(), "/batch",
                                          tenant=tenant)])
        (raw,) = out.raw.to_pylist()
        assert raw["body"] == body.encode(), tenant
        assert sorted((e["event_name"], e["revenue"], e["price"])
                      for e in out.events.to_pylist()) == [
            ("item", None, 12.5), ("transaction", 12.5, None)], tenant
