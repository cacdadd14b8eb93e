"""dn.js on the collector, through a real `driftnet up`: the script at its three URLs, its
batches at ``/dn/e`` and at a tenant's aliases, the cookieless visitor id, GPC.

What a real browser does with the snippet is in tests/browser/test_dn.py; here the requests
are hand-made so the server's side of each rule is pinned on its own."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from ingest.collector.snippet import STATIC, build
from schemas.errors import ConfigError
from schemas.tenants import load_tenants
from tests.ingest.metrics.scrape import by_label, scrape
from tests.support import Server, serving

TENANTS = """
[[tenant]]
id = "dnshop"
write_keys = ["dnshop-key"]
allowed_origins = ["https://shop.example"]
ip_mode = "truncate"

[tenant.snippet]
script_path = "/assets/app-7c1.js"
ingest_path = "/api/v/e"
honor_gpc = true

[[tenant]]
id = "other"
write_keys = ["other-key"]
allowed_origins = ["https://other.example"]
"""
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("dn"), TENANTS) as srv:
        yield srv


def message(mid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Clicked", "messageId": mid,
            "timestamp": "2026-02-01T09:00:00.000Z",
            "context": {"page": {"url": "https://shop.example/p?gclid=abc",
                                 "title": "P", "referrer": ""},
                        "library": {"name": "dn.js", "version": "1.0.0"},
                        "idMode": "persistent" if "anonymousId" in fields else "cookieless"},
            **fields}


def post(server: Server, path: str, batch: list[dict[str, Any]], key: str = "dnshop-key",
         **headers: str) -> httpx.Response:
    body = orjson.dumps({"writeKey": key, "sentAt": "2026-02-01T09:00:01.000Z", "batch": batch})
    return httpx.post(f"{server.url}{path}", content=body, timeout=10, headers={
        "Content-Type": "text/plain;charset=UTF-8", "User-Agent": UA,
        "Origin": "https://shop.example", **headers})


def ids(server: Server, mids: list[str]) -> dict[str, tuple[Any, ...]]:
    rows = server.query("dnshop", "SELECT event_id, anonymous_id, protocol, platform, ip, "
                        "click_id FROM events WHERE event_id IN (SELECT unnest(?))", [mids])
    return {r[0]: r[1:] for r in rows}


def test_script_is_served_with_version_cache_and_integrity(dn: Server) -> None:
    b = build()
    assert b.code == (STATIC / "dn.js").read_bytes()
    plain = httpx.get(f"{dn.url}/dn.js")
    versioned = httpx.get(f"{dn.url}/dn/{b.version}.js")
    alias = httpx.get(f"{dn.url}/assets/app-7c1.js")
    for r in (plain, versioned, alias):
        assert r.status_code == 200
        assert r.content == b.code
        assert r.headers["content-type"] == "text/javascript; charset=utf-8"
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["etag"] == f'"{b.version}"'
    assert plain.headers["cache-control"] == "public, max-age=3600"
    assert alias.headers["cache-control"] == "public, max-age=3600"
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert b.version == hashlib.sha256(b.code).hexdigest()[:12]
    assert b.integrity == "sha384-" + base64.b64encode(hashlib.sha384(b.code).digest()).decode()
    assert httpx.get(f"{dn.url}/dn/000000000000.js").status_code == 404
    head = httpx.head(f"{dn.url}/dn.js")
    assert head.status_code == 200 and head.content == b""


def test_cookieless_batch_gets_a_daily_visitor_id(dn: Server) -> None:
    r = post(dn, "/dn/e", [message("dn-c1"), message("dn-c2")])
    assert r.status_code == 200 and r.json() == {"success": True}
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    # Same IP and User-Agent, same day: same id; another User-Agent: another id.
    assert post(dn, "/dn/e", [message("dn-c3")], **{"User-Agent": "Other/1.0"}).status_code == 200
    got = ids(dn, ["dn-c1", "dn-c2", "dn-c3"])
    first = got["dn-c1"][0]
    assert first.startswith("cl-") and len(first) == 35
    assert got["dn-c2"][0] == first
    assert got["dn-c3"][0].startswith("cl-") and got["dn-c3"][0] != first
    assert {g[1:] for g in got.values()} == {("dn", "web", "127.0.0.0", "abc")}
    raw = dn.query("dnshop", "SELECT headers, body FROM raw WHERE protocol = 'dn'")
    assert raw and all(b"dnshop-key" not in bytes(body) for _, body in raw)
    assert all(orjson.loads(h)["x-driftnet-visitor"].startswith("cl-") for h, _ in raw)


def test_a_consented_id_is_kept_and_gpc_turns_it_back_into_the_cookieless_one(
        dn: Server) -> None:
    assert post(dn, "/dn/e", [message("dn-p1", anonymousId="0f1e2d3c-persist")]).status_code \
        == 200
    assert post(dn, "/dn/e", [message("dn-g1", anonymousId="0f1e2d3c-persist")],
                **{"Sec-GPC": "1"}).status_code == 200
    assert post(dn, "/dn/e", [message("dn-g0")]).status_code == 200
    got = ids(dn, ["dn-p1", "dn-g1", "dn-g0"])
    assert got["dn-p1"][0] == "0f1e2d3c-persist"
    assert got["dn-g1"][0] == got["dn-g0"][0]
    assert got["dn-g1"][0].startswith("cl-")


def test_the_ingest_alias_takes_only_its_tenants_keys(dn: Server) -> None:
    assert post(dn, "/api/v/e", [message("dn-a1")]).status_code == 200
    refused = post(dn, "/api/v/e", [message("dn-a2")], key="other-key",
                   Origin="https://other.example")
    assert refused.status_code == 403
    assert "own tenant" in refused.json()["error"]
    assert httpx.get(f"{dn.url}/api/v/e").status_code == 405
    assert set(ids(dn, ["dn-a1", "dn-a2"])) == {"dn-a1"}


def test_bad_batches_are_refused_or_quarantined_never_500(dn: Server) -> None:
    assert post(dn, "/dn/e", [message("dn-x")], key="nope").status_code == 401
    bad = httpx.post(f"{dn.url}/dn/e", content=b'{"writeKey":"dnshop-key","batch":[1]}')
    assert bad.status_code == 200
    assert httpx.post(f"{dn.url}/dn/e", content=b"\xff\x00").status_code == 400
    rows = dn.query("dnshop", "SELECT reason FROM quarantine WHERE protocol = 'dn'")
    assert ("schema_violation",) in rows


@pytest.mark.parametrize(("snippet", "problem"), [
    ('script_path = "/v1/t"', "collector endpoint"),
    ('ingest_path = "/dn.js"', "collector endpoint"),
    ('ingest_path = "/metrics"', "collector endpoint"),  # answered first: batches lost
    ('ingest_path = "/a/../b"', "absolute URL path"),
    ('script_path = "/x.js"\ningest_path = "/x.js"', "used twice"),
])
def test_alias_paths_are_checked(tmp_path: Any, snippet: str, problem: str) -> None:
    from driftnet.runner import build_app
    from ingest.settings import DriftnetSettings

    path = tmp_path / "tenants.toml"
    path.write_text(f'[[tenant]]\nid = "t"\nwrite_keys = ["k"]\n[tenant.snippet]\n{snippet}\n')
    with pytest.raises(ConfigError, match=problem):
        build_app(DriftnetSettings(), load_tenants(path))


def test_dn_paths_are_bounded_metrics_labels(dn: Server) -> None:
    """A tenant's own paths count under fixed route labels, never as themselves."""
    assert post(dn, "/api/v/e", [message("dn-m1")]).status_code == 200
    assert httpx.get(f"{dn.url}/assets/app-7c1.js").status_code == 200
    assert httpx.get(f"{dn.url}/dn.js").status_code == 200
    routes = by_label(scrape(f"{dn.url}/metrics"), "driftnet_collector_requests_total", "route")
    assert routes["{tenant ingest path}"] >= 1 and routes["{dn.js script path}"] >= 1
    assert routes["/dn.js"] >= 1
    assert not {"/api/v/e", "/assets/app-7c1.js"} & set(routes)
