"""Snowplow's collector endpoints over real HTTP: answers, the sp cookie, SP-Anonymous, app ids."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import orjson
import pytest

from tests.support import Server

TP2 = "/com.snowplowanalytics.snowplow/tp2"
COOKIE = re.compile(r"sp=([0-9a-f-]{36}); Max-Age=31536000; SameSite=None; Secure; HttpOnly; "
                    r"Path=/")


def pv(**fields: str) -> dict[str, str]:
    return {"e": "pv", "tv": "js-4", "p": "web", "aid": "acme-key",
            "eid": str(uuid.uuid4()), **fields}


def body(*events: dict[str, Any]) -> bytes:
    return orjson.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/"
                                   "jsonschema/1-0-4", "data": list(events)})


def lake(server: Server, sql: str, params: list[Any], table: str = "events") -> list[Any]:
    return server.query("acme", sql.replace("@t", table), params)


@pytest.mark.parametrize("path", ["/i", "/ice.png", "/com.snowplowanalytics.snowplow/i",
                                  "/com.acme/v1"])
def test_get_answers_a_gif_with_a_cookie(shared_server: Server, path: str) -> None:
    event = pv()
    r = httpx.get(f"{shared_server.url}{path}", params=event)
    assert r.status_code == 200 and r.content.startswith(b"GIF89a")
    assert (r.headers["content-type"], r.headers["cache-control"]) == (
        "image/gif", "no-cache, no-store, must-revalidate")
    match = COOKIE.fullmatch(r.headers["set-cookie"])
    assert match is not None, r.headers["set-cookie"]
    assert lake(shared_server, "SELECT protocol, network_user_id, ip FROM @t WHERE event_id = ?",
                [event["eid"]]) == [("snowplow", match[1], "127.0.0.1")]


def test_head_is_answered_but_records_nothing(shared_server: Server) -> None:
    """HEAD (link checkers, prefetch) gets GET's status and type, no body, no cookie, and no
    event: only a GET or POST is a hit."""
    event = pv()
    r = httpx.head(f"{shared_server.url}/i", params=event)
    assert r.status_code == 200 and r.content == b"" and "set-cookie" not in r.headers
    assert r.headers["content-type"] == "image/gif"
    assert lake(shared_server, "SELECT count(*) FROM @t WHERE event_id = ?",
                [event["eid"]]) == [(0,)]


def test_post_answers_ok(shared_server: Server) -> None:
    events = [pv(), pv()]
    r = httpx.post(f"{shared_server.url}{TP2}", content=body(*events),
                   headers={"Content-Type": "application/json; charset=UTF-8"})
    assert (r.status_code, r.text) == (200, "ok")
    nuid = COOKIE.fullmatch(r.headers["set-cookie"])
    assert nuid is not None
    assert sorted(lake(shared_server, "SELECT event_id, network_user_id FROM @t WHERE event_id "
                                      "IN (SELECT unnest(?))", [[e["eid"] for e in events]])
                  ) == sorted((e["eid"], nuid[1]) for e in events)


@pytest.mark.parametrize(("nuid", "cookie", "chosen"), [
    ("3f0c3d1e-0000-4000-8000-00000000000a", "sp=ignored-for-nuid", "param"),
    (None, "other=1; sp=5b1e2c3d-0000-4000-8000-00000000000b", "cookie"),
    ("bad;nuid", "sp=bad cookie!", "new"),
])
def test_network_user_id_is_nuid_else_cookie_else_new(shared_server: Server, nuid: str | None,
                                                      cookie: str, chosen: str) -> None:
    event = pv(**({"nuid": nuid} if nuid else {}))
    r = httpx.get(f"{shared_server.url}/i", params=event, headers={"Cookie": cookie})
    value = r.headers["set-cookie"].split(";")[0].removeprefix("sp=")
    expected = {"param": nuid, "cookie": cookie.rsplit("sp=", 1)[-1]}.get(chosen)
    if expected is None:
        assert uuid.UUID(value).version == 4
    else:
        assert value == expected
    assert lake(shared_server, "SELECT network_user_id FROM @t WHERE event_id = ?",
                [event["eid"]]) == [(value,)]


def test_sp_anonymous_keeps_no_cookie_and_no_ip(shared_server: Server) -> None:
    event = pv()
    r = httpx.post(f"{shared_server.url}{TP2}", content=body(event), headers={
        "SP-Anonymous": "*", "Cookie": "sp=5b1e2c3d-0000-4000-8000-00000000000c",
        "X-Forwarded-For": "198.51.100.9"})
    assert r.status_code == 200 and "set-cookie" not in r.headers
    assert lake(shared_server, "SELECT network_user_id, ip FROM @t WHERE event_id = ?",
                [event["eid"]]) == [(None, None)]
    raw = lake(shared_server, "SELECT ip, headers FROM @t WHERE body = ?", [body(event)], "raw")
    assert len(raw) == 1 and raw[0][0] is None
    assert {"cookie", "x-forwarded-for"}.isdisjoint(orjson.loads(raw[0][1]))


def test_preflight_allows_snowplow_headers(shared_server: Server) -> None:
    r = httpx.options(f"{shared_server.url}{TP2}", headers={
        "Origin": "https://shop.acme.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,sp-anonymous"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://shop.acme.example"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")} >= {
        "content-type", "sp-anonymous"}


def test_credentialed_post_gets_its_origin_back(shared_server: Server) -> None:
    r = httpx.post(f"{shared_server.url}{TP2}", content=body(pv()),
                   headers={"Origin": "https://shop.acme.example"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://shop.acme.example"
    assert r.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize(("method", "path", "query", "content", "status", "reason"), [
    ("POST", TP2, "", body(pv(), pv(aid="globex-key")), 400, "different tenants"),
    ("POST", TP2, "", body(pv(), {k: v for k, v in pv().items() if k != "aid"}), 401,
     "no app id"),
    ("POST", TP2, "", body(pv(), pv(aid="nope")), 401, "unknown write key"),
    ("POST", TP2, "", body({k: v for k, v in pv().items() if k != "aid"}), 401, "no app id"),
    ("POST", TP2, "", body(pv(aid="nope")), 401, "unknown write key"),
    ("POST", TP2, "", b"{not json", 400, "not valid JSON"),
    ("POST", TP2, "", body(), 400, "at least one event"),
    ("POST", TP2, "", b"", 400, "empty body"),
    ("GET", "/i", "e=pv&tv=js&p=web", b"", 401, "no app id"),
    ("GET", "/i", "aid=acme-key", b"", 403, "not allowed"),
    ("GET", "/nodot/i", "aid=acme-key", b"", 404, "no collector endpoint"),
    ("PUT", TP2, "aid=acme-key", b"", 405, "not accepted"),
    ("POST", TP2, "", body(*[pv(page="x" * 1000) for _ in range(600)]), 413, "limit"),
])
def test_refusals(shared_server: Server, method: str, path: str, query: str, content: bytes,
                  status: int, reason: str) -> None:
    headers = {"Origin": "https://www.evil.example"} if status == 403 else {}
    r = httpx.request(method, f"{shared_server.url}{path}?{query}", content=content,
                      headers=headers)
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]


def test_events_naming_several_app_ids_of_one_tenant_are_accepted(shared_server: Server
                                                                   ) -> None:
    """Snowplow's own collector accepts mixed app ids; all of these are acme's keys."""
    first, second = pv(), pv(aid="acme-app-2")
    r = httpx.post(f"{shared_server.url}{TP2}", content=body(first, second))
    assert r.status_code == 200, r.text
    ids = [first["eid"], second["eid"]]
    rows = shared_server.query("acme", "SELECT app_id FROM events WHERE list_contains(?, event_id) "
                               "ORDER BY 1", [ids])
    assert rows == [("acme-app-2",), ("acme-key",)]


def test_empty_post_with_the_app_id_in_the_query_is_quarantined(shared_server: Server) -> None:
    marker = str(uuid.uuid4())
    payload = orjson.dumps({"schema": marker, "data": []})
    r = httpx.post(f"{shared_server.url}{TP2}", params={"aid": "acme-key"}, content=payload)
    assert r.status_code == 200
    rows = lake(shared_server, "SELECT reason, detail FROM @t WHERE payload = ?", [payload],
                "quarantine")
    assert rows == [("protocol_violation", "payload_data holds no events")]
