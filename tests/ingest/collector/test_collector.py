"""The collector over real HTTP: routes, authentication, CORS, limits, bad input."""

from __future__ import annotations

import base64
import gzip
import socket
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from analytics import connect
from tests.support import Server, basic, responses, serving


def _track(**extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Product Viewed", "anonymousId": "anon-1",
            "messageId": str(uuid.uuid4()), **extra}


def _events(server: Server, tenant: str, where: str, params: list[Any]) -> list[tuple[Any, ...]]:
    return server.query(tenant, f"SELECT event_id, event_name FROM events WHERE {where}", params)


def _quarantine(server: Server, tenant: str) -> list[tuple[Any, ...]]:
    return server.query(tenant, "SELECT reason, detail, try(decode(payload)) FROM quarantine")


def test_healthz(shared_server: Server) -> None:
    r = httpx.get(f"{shared_server.url}/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/v1/track", "/v1/t"])
def test_single_event_with_basic_auth_lands(shared_server: Server, path: str) -> None:
    message = _track()
    r = shared_server.post(path, message, key="acme-key")
    assert r.status_code == 200
    assert r.json() == {"success": True}
    assert _events(shared_server, "acme", "event_id = ?", [message["messageId"]]) == [
        (message["messageId"], "Product Viewed")]


def test_write_key_in_text_plain_body(shared_server: Server) -> None:
    """analytics.js posts JSON as text/plain with the key in the body."""
    message = {**_track(), "writeKey": "globex-key"}
    r = shared_server.post("/v1/t", message, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200
    rows = _events(shared_server, "globex", "event_id = ?", [message["messageId"]])
    assert len(rows) == 1


def test_write_keys_are_not_kept_in_raw(shared_server: Server) -> None:
    """Like the Authorization header, a write key in the query or the body is cut before the
    hit is stored: raw holds no credential (docs/lake.md, "What raw keeps")."""
    in_body = {**_track(), "writeKey": "globex-key"}
    assert shared_server.post("/v1/t", in_body).status_code == 200
    in_query = _track()
    r = httpx.post(f"{shared_server.url}/v1/t?writeKey=globex-key&x=1",
                   content=orjson.dumps(in_query))
    assert r.status_code == 200
    pixel_id = str(uuid.uuid4())
    assert httpx.get(f"{shared_server.url}/p.gif",
                     params={"k": "globex-key", "e": "Opened", "id": pixel_id}).status_code == 200
    ids = [in_body["messageId"], in_query["messageId"], pixel_id]
    assert len(_events(shared_server, "globex", "list_contains(?, event_id)", [ids])) == 3
    with connect(shared_server.lake, "globex") as con:
        rows = con.execute("SELECT query, decode(body), headers FROM raw").fetchall()
    assert rows and not any("globex-key" in str(value) for row in rows for value in row)
    assert any("x=1" in row[0] for row in rows)  # the rest of the query stays


COLON_TENANTS = """
[[tenant]]
id = "colon"
write_keys = ["shop:live:7", "plain-key"]
allowed_origins = ["*"]
ip_mode = "none"

[[tenant]]
id = "decoy"
write_keys = ["shop", "shop:live"]
allowed_origins = ["*"]
ip_mode = "none"
"""


def test_a_write_key_with_colons_works_in_basic_auth_on_both_paths(tmp_path: Path) -> None:
    """Segment's and RudderStack's SDKs send ``Basic base64(<key>:)``, the key unescaped: the
    key is everything before the last colon (not the first: that named another tenant's key
    here). Checked on the fast path (a POST whose body came with its headers, over a raw
    socket) and the ASGI app (a gzip body, which the fast path leaves to it); the key is
    kept nowhere in raw."""
    ids = {name: str(uuid.uuid4()) for name in ("fast", "fast-batch", "app", "plain", "body")}

    def request(path: str, body: bytes, auth: str) -> bytes:
        head = [f"POST {path} HTTP/1.1", "Host: collector", "Content-Type: application/json",
                f"Authorization: {auth}", f"Content-Length: {len(body)}"]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    with serving(tmp_path, COLON_TENANTS) as srv:
        fast = [request("/v1/track", orjson.dumps(_track(messageId=ids["fast"])),
                        basic("shop:live:7")),
                request("/v1/batch", orjson.dumps({"batch": [_track(messageId=ids["fast-batch"])]}),
                        basic("shop:live:7")),
                # no colon at all: the whole credential is the key
                request("/v1/track", orjson.dumps(_track(messageId=ids["plain"])),
                        "Basic " + base64.b64encode(b"plain-key").decode())]
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            for one in fast:  # one write each, its answer awaited: a body with its headers
                sock.sendall(one)
                ((status, _, answer),) = responses(sock, 1)
                assert (status, answer) == (b"HTTP/1.1 200 OK", b'{"success":true}')
        r = httpx.post(f"{srv.url}/v1/track",
                       content=gzip.compress(orjson.dumps(_track(messageId=ids["app"]))),
                       headers={"Authorization": basic("shop:live:7"),
                                "Content-Encoding": "gzip"})
        assert r.status_code == 200, r.text
        r = srv.post("/v1/t", {**_track(messageId=ids["body"]), "writeKey": "shop:live:7"})
        assert r.status_code == 200, r.text
        assert sorted(_events(srv, "colon", "list_contains(?, event_id)", [list(ids.values())])
                      ) == sorted((i, "Product Viewed") for i in ids.values())
        assert srv.query("decoy", "SELECT count(*) FROM events") == [(0,)]
        with connect(srv.lake, "colon") as con:
            raw = con.execute("SELECT query, decode(body), headers FROM raw").fetchall()
    assert len(raw) == 5 and not any("shop:live" in str(value) for row in raw for value in row)


def test_a_body_key_is_cut_from_the_text_and_the_rest_kept_as_sent(
        shared_server: Server) -> None:
    """Cutting writeKey from a body keeps every other byte: an integer past 64 bits, the
    member order, spacing and escapes stay as sent (re-encoding made the order id a float)."""
    mid = str(uuid.uuid4())
    body = ('{"type": "track", "event": "Order Completed", "anonymousId": "a", '
            f'"messageId": "{mid}", "writeKey" : "globex-key", '
            '"properties": {"order_id": 123456789012345678901234567890, "note": "caf\u00e9"}}')
    r = httpx.post(f"{shared_server.url}/v1/t", content=body.encode(),
                   headers={"Content-Type": "text/plain"})
    assert r.status_code == 200
    shared_server.wait_loaded()
    with connect(shared_server.lake, "globex") as con:
        (stored,), = con.execute("SELECT decode(body) FROM raw WHERE contains(decode(body), ?)",
                                 [mid]).fetchall()
        (order,), = con.execute("SELECT order_id FROM events WHERE event_id = ?",
                                [mid]).fetchall()
    assert stored == body.replace(', "writeKey" : "globex-key"', "")
    assert order == "123456789012345678901234567890"


def test_a_batch_repeating_its_key_in_each_message_is_kept_byte_for_byte(
        shared_server: Server) -> None:
    """analytics.js in batching mode writes writeKey on the batch and on every message, and
    SDKs escape non-ASCII: each member holding the key is cut from the text, every other
    byte kept (the body was written again: numbers rounded, 1e400 as Infinity, one of two
    duplicate names lost, é as an escape)."""
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    message = ('{{"type": "track", "event": "Order Completed", "messageId": "{}", '
               '"anonymousId": "a1", "writeKey": "acme-key", "properties": {{"customer": '
               '"M\\u00fcller", "amount": 12.50, "qty": 1E2, "huge": 1e400, '
               '"note": "say \\"writeKey\\": \\"acme-key\\"", '
               '"tag": "first", "tag": "second"}}}}')
    other = '"writeKey": "not-the-key", '
    body = ('{"writeKey":"acme-key", "sentAt": "2026-05-01T10:00:00Z", "batch": ['
            + message.format(ids[0]) + ", {" + other + message.format(ids[1])[1:] + "]}")
    r = httpx.post(f"{shared_server.url}/v1/b", content=body.encode(),
                   headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    shared_server.wait_loaded()
    with connect(shared_server.lake, "acme") as con:
        (stored,), = con.execute("SELECT decode(body) FROM raw WHERE contains(decode(body), ?)",
                                 [ids[0]]).fetchall()
    expected = (body.replace('{"writeKey":"acme-key", ', "{")
                .replace('"anonymousId": "a1", "writeKey": "acme-key", ',
                         '"anonymousId": "a1", '))
    assert stored == expected
    assert stored.count('"writeKey"') == 1 and '"writeKey": "not-the-key"' in stored


@pytest.mark.parametrize("value", ["NaN", "1e400", '"\\ude00 Sale"'])
def test_a_body_key_is_read_from_json_orjson_refuses(shared_server: Server,
                                                    value: str) -> None:
    """Browsers send NaN-free JSON, but a string cut mid-emoji is a lone surrogate, and SDKs
    write NaN and huge numbers: the key is still read, the hit stored (a 400 lost the
    batch), and the loader judges the event."""
    mid = str(uuid.uuid4())
    body = (f'{{"type": "track", "event": "E", "anonymousId": "a", "messageId": "{mid}", '
            f'"writeKey": "globex-key", "properties": {{"title": {value}}}}}')
    r = httpx.post(f"{shared_server.url}/v1/t", content=body.encode(),
                   headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    shared_server.wait_loaded()
    with connect(shared_server.lake, "globex") as con:
        rows = con.execute("SELECT decode(body) FROM raw WHERE contains(decode(body), ?)",
                           [mid]).fetchall()
    assert len(rows) == 1 and "globex-key" not in rows[0][0]


def test_write_keys_with_encoded_names_are_cut_too(shared_server: Server) -> None:
    """The key finder decodes parameter names (%6B is k): what it reads is what is cut."""
    pixel_id, mid = str(uuid.uuid4()), str(uuid.uuid4())
    assert httpx.get(f"{shared_server.url}/p.gif?%6B=globex-key&e=Opened&id={pixel_id}"
                     ).status_code == 200
    assert httpx.post(f"{shared_server.url}/v1/t?write%4Bey=globex-key",
                      content=orjson.dumps(_track(messageId=mid))).status_code == 200
    escaped = ('{"type": "track", "event": "E", "anonymousId": "a", "messageId": "'
               + str(uuid.uuid4()) + '", "write\\u004bey": "globex-key"}')  # escaped
    assert httpx.post(f"{shared_server.url}/v1/t", content=escaped.encode()).status_code == 200
    shared_server.wait_loaded()
    with connect(shared_server.lake, "globex") as con:
        rows = con.execute("SELECT query, decode(body) FROM raw").fetchall()
    assert rows and not any("globex-key" in str(v) for row in rows for v in row)


def test_a_get_hit_is_held_to_the_event_limit(shared_server: Server) -> None:
    """A GET carries its event in the query string: past max_event_bytes it is a 413, as a
    body would be."""
    r = httpx.get(f"{shared_server.url}/p.gif",
                  params={"k": "acme-key", "e": "Big", "x": "y" * 40_000})
    assert r.status_code == 413 and "event limit" in r.json()["error"]


def test_short_paths_imply_the_type(shared_server: Server) -> None:
    ids = {}
    for path, kind in [("/v1/p", "page"), ("/v1/i", "identify"), ("/v1/s", "screen"),
                       ("/v1/g", "group"), ("/v1/a", "alias")]:
        message = {"anonymousId": "a", "userId": "u", "messageId": str(uuid.uuid4()),
                   "groupId": "g", "previousId": "p", "writeKey": "acme-key"}
        assert shared_server.post(path, message).status_code == 200
        ids[message["messageId"]] = kind
    shared_server.wait_loaded()
    with connect(shared_server.lake, "acme") as con:
        rows = dict(con.execute(
            "SELECT event_id, event_type FROM events WHERE event_id IN (SELECT unnest(?))",
            [list(ids)]).fetchall())
    assert rows == ids


def test_batch_with_shared_context(shared_server: Server) -> None:
    items = [_track(context={"page": {"url": f"https://shop.acme.example/p/{i}"}})
             for i in range(3)]
    body = {"batch": items, "context": {"locale": "de-DE", "page": {"title": "T"}},
            "sentAt": "2026-11-26T10:00:00Z"}
    assert shared_server.post("/v1/batch", body, key="acme-key").status_code == 200
    shared_server.wait_loaded()
    with connect(shared_server.lake, "acme") as con:
        rows = con.execute(
            "SELECT page_url, language, page_title, item_index FROM events "
            "WHERE event_id IN (SELECT unnest(?)) ORDER BY item_index",
            [[i["messageId"] for i in items]]).fetchall()
    assert rows == [(f"https://shop.acme.example/p/{i}", "de-DE", "T", i) for i in range(3)]


def test_gzip_body(shared_server: Server) -> None:
    message = _track()
    r = httpx.post(f"{shared_server.url}/v1/track", content=gzip.compress(orjson.dumps(message)),
                   headers={"Authorization": basic("acme-key"), "Content-Encoding": "gzip"})
    assert r.status_code == 200
    assert len(_events(shared_server, "acme", "event_id = ?", [message["messageId"]])) == 1


def test_a_multi_member_gzip_body_is_inflated_whole(shared_server: Server) -> None:
    """Concatenated gzip members are one valid gzip body: every member counts (none may be
    acknowledged and then lost), and trailing garbage is refused, not dropped."""
    messages = [_track() for _ in range(3)]
    text = orjson.dumps({"batch": messages})
    body = b"".join(gzip.compress(text[i:i + 40]) for i in range(0, len(text), 40))
    headers = {"Authorization": basic("acme-key"), "Content-Encoding": "gzip",
               "Content-Type": "application/json"}
    r = httpx.post(f"{shared_server.url}/v1/batch", content=body, headers=headers)
    assert r.status_code == 200
    ids = [m["messageId"] for m in messages]
    assert len(_events(shared_server, "acme", "list_contains(?, event_id)", [ids])) == 3
    r = httpx.post(f"{shared_server.url}/v1/batch", content=gzip.compress(text) + b"trailing",
                   headers=headers)
    assert r.status_code == 400


def test_pixel(shared_server: Server) -> None:
    event_id = str(uuid.uuid4())
    r = httpx.get(f"{shared_server.url}/p.gif", params={
        "k": "initech-key", "e": "Newsletter Opened", "id": event_id, "a": "anon-9",
        "p.campaign": "weekly", "pn.position": "3", "utm_x": "1"},
        headers={"Referer": "https://initech.example/mail"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/gif"
    assert r.content.startswith(b"GIF89a")
    assert "no-store" in r.headers["cache-control"]
    shared_server.wait_loaded()
    with connect(shared_server.lake, "initech") as con:
        row = con.execute("SELECT event_type, event_name, anonymous_id, page_url, properties, "
                          "extra FROM events WHERE event_id = ?", [event_id]).fetchall()
    assert len(row) == 1
    kind, name, anon, url, props, extra = row[0]
    assert (kind, name, anon, url) == ("track", "Newsletter Opened", "anon-9",
                                       "https://initech.example/mail")
    assert orjson.loads(props) == {"campaign": "weekly", "position": 3}
    assert orjson.loads(extra) == {"utm_x": "1"}


def test_head_is_answered_like_get_and_never_recorded(shared_server: Server) -> None:
    event_id = str(uuid.uuid4())
    params = {"k": "initech-key", "e": "Prefetched", "id": event_id, "a": "anon-h"}
    r = httpx.head(f"{shared_server.url}/p.gif", params=params)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"] == "image/gif"
    # a HEAD needs no key either: it records nothing
    assert httpx.head(f"{shared_server.url}/p.gif").status_code == 200
    # then a GET of the same pixel: only that one lands
    assert httpx.get(f"{shared_server.url}/p.gif", params=params).status_code == 200
    shared_server.wait_loaded()
    with connect(shared_server.lake, "initech") as con:
        rows = con.execute("SELECT count(*) FROM events_all WHERE event_id = ?",
                           [event_id]).fetchall()
        raw = con.execute("SELECT count(*) FROM raw WHERE method = 'HEAD'").fetchall()
    assert rows == [(1,)] and raw == [(0,)]


def test_oversized_headers_are_refused_with_431_before_anything_is_stored(
        shared_server: Server) -> None:
    event_id = str(uuid.uuid4())
    huge = "Mozilla/5.0 " + "x" * (64 * 1024)
    body = orjson.dumps(_track(messageId=event_id))
    r = httpx.post(f"{shared_server.url}/v1/track", content=body,
                   headers={"Authorization": basic("acme-key"), "User-Agent": huge,
                            "Content-Type": "application/json"})
    assert r.status_code == 431 and "header" in r.json()["error"]
    assert httpx.get(f"{shared_server.url}/healthz").status_code == 200
    assert _events(shared_server, "acme", "event_id = ?", [event_id]) == []


# -- refusals: a clear 4xx with a reason, never a 5xx ---------------------------------------

@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "reason"),
    [
        ("/v1/track", _track(), {}, 401, "no write key"),
        ("/v1/track", _track(), {"Authorization": basic("wrong")}, 401, "unknown write key"),
        ("/v1/track", _track(), {"Authorization": "Basic !!!"}, 401, "Basic"),
        ("/v1/track", _track(), {"Authorization": b"Basic YWNtZS1rZX\xe16"}, 401, "Basic"),
        ("/v1/track", _track(), {"Authorization": "Basic //79"}, 401, "Basic"),  # not UTF-8
        ("/v1/t", {**_track(), "writeKey": "nope"}, {}, 401, "unknown write key"),
        ("/v1/t", b"{not json", {}, 400, "not valid JSON"),
        ("/v1/t", b"[1, 2]", {}, 400, "JSON object"),
        ("/v1/t", b"", {}, 400, "empty body"),
        ("/v1/t", b"\xff\xfe\xfd", {}, 400, "not valid JSON"),
        ("/v1/nope", _track(), {"Authorization": basic("acme-key")}, 404, "no collector endpoint"),
        ("/v1/t", {**_track(), "writeKey": "acme-key"}, {"Origin": "https://evil.example"},
         403, "not allowed"),
        ("/v1/t", {**_track(), "writeKey": "acme-key"}, {"Origin": "https://www.globex.example"},
         403, "not allowed"),
        ("/v1/track", _track(), {"Authorization": basic("acme-key"), "Content-Encoding": "br"},
         415, "not supported"),
        ("/v1/track", b"not gzip", {"Authorization": basic("acme-key"),
                                    "Content-Encoding": "gzip"}, 400, "not valid gzip"),
    ],
)
def test_refusals(shared_server: Server, path: str, body: Any, headers: dict[str, str],
                  status: int, reason: str) -> None:
    r = shared_server.post(path, body, headers={"Content-Type": "text/plain", **headers})
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]
    # readable by the page that sent it (else a browser reports a network error, retried)
    if "Origin" in headers:
        assert r.headers["access-control-allow-origin"] == headers["Origin"]


def test_wrong_method(shared_server: Server) -> None:
    r = httpx.get(f"{shared_server.url}/v1/track")
    assert r.status_code == 405 and "POST" in r.json()["error"]


def test_oversized_event_and_request(shared_server: Server) -> None:
    big_event = _track(properties={"x": "y" * 33_000})
    r = shared_server.post("/v1/track", big_event, key="acme-key")
    assert r.status_code == 413 and "limit" in r.json()["error"]
    big_batch = {"batch": [_track(properties={"x": "y" * 20_000}) for _ in range(30)]}
    r = shared_server.post("/v1/batch", big_batch, key="acme-key")
    assert r.status_code == 413


def test_oversized_request_without_content_length_is_cut_off(shared_server: Server) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 10_000

    r = httpx.post(f"{shared_server.url}/v1/batch", content=chunks(),
                   headers={"Authorization": basic("acme-key")})
    assert r.status_code == 413


def test_gzip_bomb_is_refused(shared_server: Server) -> None:
    bomb = gzip.compress(b"{" + b" " * 50_000_000 + b"}")
    assert len(bomb) < 100_000
    r = httpx.post(f"{shared_server.url}/v1/batch", content=bomb,
                   headers={"Authorization": basic("acme-key"), "Content-Encoding": "gzip"})
    assert r.status_code == 413 and "decompressed" in r.json()["error"]


# -- accepted but unparsable: acknowledged, then quarantined with a reason ------------------

@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (b'{"type": "track", "event":', "payload_format", "not valid JSON"),
        (b'{"event": "\xff"}', "payload_format", "not valid UTF-8"),
        (b"", "payload_format", "body is empty"),
        (b'"a string"', "protocol_violation", "not an object"),
        (orjson.dumps({"type": "track", "event": "E", "messageId": "m"}), "protocol_violation",
         "anonymousId or userId is required"),
        (orjson.dumps({"type": "track", "anonymousId": "a"}), "protocol_violation",
         "no event name"),
        (orjson.dumps({"type": "track", "event": 5, "anonymousId": "a"}), "schema_violation",
         "event must be"),
        (orjson.dumps({"type": "track", "event": "E", "anonymousId": {"x": 1}}),
         "schema_violation", "anonymousId must be a string"),
        (orjson.dumps({"type": "track", "event": "E", "anonymousId": "a", "properties": [1]}),
         "schema_violation", "properties must be an object"),
        (orjson.dumps({"type": "track", "event": "E", "anonymousId": "a", "timestamp": "soon"}),
         "schema_violation", "timestamp is not an ISO-8601 date"),
        (orjson.dumps({"type": "bogus", "anonymousId": "a"}), "protocol_violation",
         "unknown type"),
        (orjson.dumps({"batch": {"not": "a list"}}), "protocol_violation",
         "batch must be an array"),
        (orjson.dumps({"batch": []}), "protocol_violation", "batch holds no events"),
        (orjson.dumps({"batch": [1]}), "schema_violation", "not an object"),
        (orjson.dumps({"batch": [{"type": "track", "event": "E", "anonymousId": "a",
                                  "properties": {"x": "y" * 40_000}}]}),
         "size", "exceeds the 32768-byte limit"),
        (orjson.dumps({"batch": [{}] * 3000}), "size", "exceeds the 2500-event limit"),
    ],
)
def test_bad_payloads_with_a_known_key_are_quarantined(
    server_for_quarantine: Server, body: bytes, reason: str, detail: str
) -> None:
    path = "/v1/batch" if body.startswith(b'{"batch"') else "/v1/track"
    r = server_for_quarantine.post(path, body, key="initech-key")
    assert r.status_code == 200, r.text
    rows = _quarantine(server_for_quarantine, "initech")
    assert any(q[0] == reason and detail in q[1] for q in rows), rows


@pytest.fixture(scope="module")
def server_for_quarantine(shared_server: Server) -> Server:
    return shared_server


def test_no_5xx_on_random_bytes(shared_server: Server) -> None:
    import random

    rng = random.Random(1)
    for _ in range(50):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
        for path in ("/v1/t", "/v1/batch", "/p.gif"):
            r = httpx.post(f"{shared_server.url}{path}", content=body,
                           headers={"Authorization": basic("initech-key")})
            assert r.status_code < 500


# -- CORS -------------------------------------------------------------------------------------

def test_preflight_echoes_an_allowed_origin(shared_server: Server) -> None:
    r = httpx.options(f"{shared_server.url}/v1/batch", headers={
        "Origin": "https://shop.acme.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://shop.acme.example"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == "content-type"


def test_preflight_refuses_unknown_origin(shared_server: Server) -> None:
    r = httpx.options(f"{shared_server.url}/v1/batch", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    # initech allows "*", so every origin passes the preflight; the request is checked by key
    assert r.status_code == 204


def test_credentialed_request_gets_origin_not_star(shared_server: Server) -> None:
    r = shared_server.post("/v1/t", {**_track(), "writeKey": "acme-key"},
                           headers={"Origin": "https://shop.acme.example",
                                    "Content-Type": "text/plain"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://shop.acme.example"
    assert r.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize(("body", "expected"), [
    # the name written with an escape; the key text inside a string stays
    ('{"write\\u004bey": "k", "p": {"q": "\\"writeKey\\": \\"k\\""}}',
     '{"p": {"q": "\\"writeKey\\": \\"k\\""}}'),
    # the value written with an escape; a backslash run before a real name
    ('{"a": "x\\\\", "writeKey": "\\u006b", "b": [1E2, -0]}', '{"a": "x\\\\", "b": [1E2, -0]}'),
    # a string holding a quote and the name, then the member itself
    ('{"n": "\\"writeKey\\":\\"k\\"", "writeKey":"k"}', '{"n": "\\"writeKey\\":\\"k\\""}'),
    # the last member, and an object holding only the key
    ('{"a": 1 , "writeKey" : "k" }', '{"a": 1  }'), ('{"writeKey":"k"}', "{}"),
])
def test_the_key_is_cut_from_the_text_however_it_is_written(body: str, expected: str) -> None:
    from ingest.collector.hit import loads, without_write_key
    raw = body.encode()
    assert without_write_key(raw, loads(raw)).decode() == expected


def test_a_key_the_text_cannot_be_cut_in_leaves_no_key() -> None:
    """Two top-level names with other values: the document is written again (rare,
    hostile) rather than left holding a key."""
    from ingest.collector.hit import loads, without_write_key
    raw = b'{"writeKey": "other", "e": 1, "writeKey": "k"}'
    assert loads(without_write_key(raw, loads(raw))) == {"e": 1}
