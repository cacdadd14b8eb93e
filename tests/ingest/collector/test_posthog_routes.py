"""PostHog's capture API through a real `driftnet up`: real posthog-js requests to the lake.

The two requests below are real posthog-js 1.78.5 traffic, from PostHog's own capture tests
(PostHog/posthog, rust/capture/tests/requests_dump.jsonl, MIT): a form-encoded base64
``$pageview`` and a ``compression=gzip-js`` batch of five events.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
from collections.abc import Iterator
from typing import Any

import httpx
import lzstring  # type: ignore[import-untyped]
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.connect import connect
from tests.support import Server, serving

TOKEN = "phc_qgUFp5wz2BjC4RsFjMGpQ3PGDrsi6Q0CG0CP4NAac0I"
TENANTS = f"""
[[tenant]]
id = "hogshop"
write_keys = ["{TOKEN}"]
allowed_origins = ["http://localhost:8000"]
ip_mode = "none"

[[tenant]]
id = "other"
write_keys = ["phc_other"]
allowed_origins = ["*"]
ip_mode = "none"
"""

# posthog-js 1.78.5, POST /e/?ip=1&_=1694769302319&ver=1.78.5, form-encoded: data=<base64>.
FORM_PAGEVIEW = base64.b64decode(
    "ZGF0YT1leUoxZFdsa0lqb2lNREU0WVRrNE1XWXROR0l5WmkwM09URmhMVGxsWWpFdE5qZGhaVFZpT1dWalpqZzBJ"
    "aXdpWlhabGJuUWlPaUlrY0dGblpYWnBaWGNpTENKd2NtOXdaWEowYVdWeklqcDdJaVJ2Y3lJNklrMWhZeUJQVXlC"
    "WUlpd2lKRzl6WDNabGNuTnBiMjRpT2lJeE1DNHhOUzR3SWl3aUpHSnliM2R6WlhJaU9pSkdhWEpsWm05NElpd2lK"
    "R1JsZG1salpWOTBlWEJsSWpvaVJHVnphM1J2Y0NJc0lpUmpkWEp5Wlc1MFgzVnliQ0k2SW1oMGRIQTZMeTlzYjJO"
    "aGJHaHZjM1E2T0RBd01DOGlMQ0lrYUc5emRDSTZJbXh2WTJGc2FHOXpkRG80TURBd0lpd2lKSEJoZEdodVlXMWxJ"
    "am9pTHlJc0lpUmljbTkzYzJWeVgzWmxjbk5wYjI0aU9qRXhOeXdpSkdKeWIzZHpaWEpmYkdGdVozVmhaMlVpT2lK"
    "bGJpMVZVeUlzSWlSelkzSmxaVzVmYUdWcFoyaDBJam94TURVeUxDSWtjMk55WldWdVgzZHBaSFJvSWpveE5qSXdM"
    "Q0lrZG1sbGQzQnZjblJmYUdWcFoyaDBJam81TVRFc0lpUjJhV1YzY0c5eWRGOTNhV1IwYUNJNk1UVTBPQ3dpSkd4"
    "cFlpSTZJbmRsWWlJc0lpUnNhV0pmZG1WeWMybHZiaUk2SWpFdU56Z3VOU0lzSWlScGJuTmxjblJmYVdRaU9pSnpj"
    "SEozT0RVM2JHVnVOM0ZxTXpSMklpd2lKSFJwYldVaU9qRTJPVFEzTmprek1ESXVNekU1TENKa2FYTjBhVzVqZEY5"
    "cFpDSTZJakF4T0dFNU9ERm1MVFJpTW1RdE56aGhaUzA1TkRkaUxXSmxaR0poWVRBeVlUQm1OQ0lzSWlSa1pYWnBZ"
    "MlZmYVdRaU9pSXdNVGhoT1RneFppMDBZakprTFRjNFlXVXRPVFEzWWkxaVpXUmlZV0V3TW1Fd1pqUWlMQ0lrY21W"
    "bVpYSnlaWElpT2lJa1pHbHlaV04wSWl3aUpISmxabVZ5Y21sdVoxOWtiMjFoYVc0aU9pSWtaR2x5WldOMElpd2lk"
    "R2wwYkdVaU9pSlFiM04wU0c5bklpd2lkRzlyWlc0aU9pSndhR05mY1dkVlJuQTFkM295UW1wRE5GSnpSbXBOUjNC"
    "Uk0xQkhSSEp6YVRaUk1FTkhNRU5RTkU1QllXTXdTU0lzSWlSelpYTnphVzl1WDJsa0lqb2lNREU0WVRrNE1XWXRO"
    "R0l5WlMwM1ltUXpMV0ppTXpBdE5qWXhOMkptTkRnNE9EWTVJaXdpSkhkcGJtUnZkMTlwWkNJNklqQXhPR0U1T0RG"
    "bUxUUmlNbVV0TjJKa015MWlZak13TFRZMk1UZ3hNR1psWkRZMVppSjlMQ0owYVcxbGMzUmhiWEFpT2lJeU1ESXpM"
    "VEE1TFRFMVZEQTVPakUxT2pBeUxqTXhPVm9pZlElM0QlM0Q=")
# posthog-js 1.78.5, POST /e/?ip=1&_=1694769329412&ver=1.78.5, gzip (events carry `offset`).
GZIP_BATCH = base64.b64decode(
    "H4sIAAAAAAAAA+0Ya2/bNvCvGF4/bEPo6EVSyjBgbdq0HdauaZp2Q1EIFElZqmlRkehXiwL7Lftp+yU7yo7jV2KkHYo"
    "ikz/Y1t3xXryX7u3H7miUi+5R13FDFoVuihhLMaJp6qAoTQUKUyzdNMTUpWn3oCvHsjBAfo+NjOasNKNKArisdCkrk8"
    "u6e/Sxe0/DT/cZ453fzzp/ABoA8VhWda4LQLhOz8U9x8KTSk9qWQHwJK9kqqcWKOQ45zI2s1IC4qGsB0aXFsFHVQXi4"
    "1GlAJEZUx4dHipQQ2W6Nkeh4ziHoEati8OlOUHiCURDJlEU0AQlUiSMOR5z0uA7xk0+lq9Y8nMta6vcS8l1JfKiX1tx"
    "linIWRdgESUzWcGGVrvbyFsx+MobrktXwIoV/RHrW86yQOdn9kjNKymLOJN5PwN9XAd7V9BJLkwGQOI5ABznclLqyiy"
    "JI9ddBV9S4yAEsMoTkDORiZUCD6tX1KNhD1t4XoBeJp7HiB6LQTRVxThKs5QNLN7k1g8uAWtJ5HukF/pgkMhrkxd8ca"
    "58c3/w9NXs1D9+Tn3fO784nRZPSOmfvA5f/ypo+ScJ6CPxfDB9w1fufz0s9/h1ZL33GcLyOhZyqGMI4PeSg8dSpmoJD"
    "PuVHpVNNC9Rl8pIlIaJhyAYHCSwFCjyQ0dKzJgIrC911WdF/oGZuS+vTmHM56dYiAXyMHexxBgLLKwmRW1Ywe3V74zs"
    "7ifQaiXrYvAxS5QUMZgONxfXuYDDl/rPYztOJWuIU8UgqI/evgPUKiwu2UxpJqylIKCSTA2tBiAVDOMq54NMg3Nt6g9"
    "Zrhph9nbYGJ6s/KXIWjE+uAGfsTpOcqUgveISAn2JgBTikNYQ9vGohu8eeFyMIHhYwdTM5ByUg+heZv8NNFusFokdVx"
    "JEznbw2UGwxWTDiVs8tvH3oJhJILGV7Z6A0gbxs4RaBwgN3rTRsYJtautl2Wtc3xQ9uVIsLJWSQ6Czl/mxC0rGi0pUl"
    "+DSgy4zpopjwQxD9q9NiKZC1aiSitlLbbREhtlQLUwW8yxXkDjA2z7pdKHBXFZs5NSG/sncxM7cxE8Ha6JFPgZeXLEa"
    "vAl6dX+DlCqgrtZxDHIQ14WxbQOCb65eQwoHr6G7Wa8N4Sq/SfY+mUuPVdqGKjC+ArEqZ6gGf3NwG+CacF1igTIvhJz"
    "aDF/XGG9ojDc0HqlrNU5YdaPGFr+tsYJqezunXX9jN4hfSq7NrBGNEMSiLmws1ahWUH8q1LSYow4Neh6Bj4cjSjD8lN"
    "OfOrvodZrW0hx1XEp6XhRFIaWRF5GQ2hM3xrPlsm51sGF1sM9qm4OIleX1EbpF8WVuPgObHzDL/zqBWxRfZuGC3bVyb"
    "mbv72OfofkcAtBUQS7Mf8BZalviJS3UEDltvhq6z3DonG/T7SutN1zk72GRaDG7SuIMimlTROy4tKnxOmOYujYYg4lGD"
    "8B6CMqMxxf985MSTz54D94fBy/rk/fPHpen/ovHD6F6k1Pn+LFz/CJ4fp9x52kz1y06z9acIxFNhI+SxHcQIS5N0iAMQ"
    "xLZQxOoOXqy90zoOqkUBKd2apinGBiAqWedsWPiZ4hGMkQMRKFAklAmJOC+szbxl9Dq7CR5B8b9RcM+aZpZO+lvT/ozf"
    "0qJZGR4cZF7Fw7bPekHoF476beTfjvp327S/+abBqiYm2bEmzIoKdUvJURJpvs9roedf/76u/NiPoPN/wPuie6vdxpCd"
    "3aa1IfUjkQAWR0wJKgXcQqFxhG2wtzR3VLbbPY0G2UmtFJBmuVB0r8g/o5mQ3uRD8Np22zaZtM2m6+6Vvq6u521ndPm"
    "munb2/RsvhI2r1f/s01PCHsbHyqi5wY+xgGJ9m16fEJ7Dmx6KMYhjvx20dMuetpFz3+66HED2uyct8fvgMCw43soYiRC"
    "HBNCscvtlvaOLnoam9qpe9fUTWbKxxNhxnjsupo0I/L21N2ueNqpu5262xXP1orHDXaveBLHCRH1KQOZAchkhIVuwjwv"
    "sKl92WMuRrKadUBUqaQdudtOc4c7TdgfTcbD0Jtlk1mWarKj04Q91ydtp2k7TdtpbttpmlJqA24ALQAwj5pCdNpAwbvN"
    "UsO+wf24LL+NqlB97BueZkrWXH5/VX57q0XyoLOKWBQPW8N+gFf8znmlOoeds8sXw1VSWyRsixlKCM9haV8S50Kfrqcn"
    "j9g8tkmYwqNLAwBTjhNbRVhqGlcgL8hsHItRtcgOl0KB+uZ77Gq79Kj/6d2/ToySO28rAAA=")
GZIP_UUIDS = ["018a981f-aaf5-7ff0-9ffd-8f5e1f85717f", "018a981f-aafa-79e8-abf4-4e68eb64c30f",
              "018a981f-af3d-79d4-be4a-d729c776e0da", "018a981f-af46-7832-9a69-c566751c6625",
              "018a981f-b008-737a-bb40-6a6a81ba2244"]


@pytest.fixture(scope="module")
def hog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("posthog"), TENANTS) as srv:
        yield srv


def rows(server: Server, sql: str, params: list[Any] | None = None,
         tenant: str = "hogshop") -> list[tuple[Any, ...]]:
    return server.query(tenant, sql, params)


def event(uuid: str, name: str = "clicked", token: str = TOKEN, **props: Any) -> dict[str, Any]:
    return {"uuid": uuid, "event": name, "timestamp": "2026-03-01T10:00:00Z",
            "properties": {"distinct_id": "d-1", "token": token, **props}}


def test_real_form_encoded_base64_pageview(hog: Server) -> None:
    r = httpx.post(f"{hog.url}/e/?ip=1&_=1694769302319&ver=1.78.5", content=FORM_PAGEVIEW,
                   headers={"Content-Type": "application/x-www-form-urlencoded",
                            "Origin": "http://localhost:8000"})
    assert r.status_code == 200 and r.json() == {"status": 1}
    assert r.headers["access-control-allow-origin"] == "http://localhost:8000"
    assert r.headers["access-control-allow-credentials"] == "true"
    got = rows(hog, "SELECT event_type, event_name, protocol, page_url, page_title, anonymous_id, "
                    "session_id, client_ts, sent_ts, language, screen, properties->>'$.$os' "
                    "FROM events WHERE event_id = '018a981f-4b2f-791a-9eb1-67ae5b9ecf84'")
    assert got == [("page", "page_view", "posthog", "http://localhost:8000/", "PostHog",
                    "018a981f-4b2d-78ae-947b-bedbaa02a0f4", "018a981f-4b2e-7bd3-bb30-6617bf488869",
                    dt.datetime(2023, 9, 15, 9, 15, 2, 319000, tzinfo=dt.UTC),
                    dt.datetime(2023, 9, 15, 9, 15, 2, 319000, tzinfo=dt.UTC),
                    "en-US", "1620x1052", "Mac OS X")]
    raw = rows(hog, "SELECT headers->>'$.x-driftnet-decoded', body FROM raw WHERE query = "
                    "'ip=1&_=1694769302319&ver=1.78.5'")
    assert raw[0][0] == "form,base64"
    assert orjson.loads(raw[0][1])["uuid"] == "018a981f-4b2f-791a-9eb1-67ae5b9ecf84"


def test_real_gzip_js_batch(hog: Server) -> None:
    r = httpx.post(f"{hog.url}/e/?compression=gzip-js&ip=1&_=1694769329412&ver=1.78.5",
                   content=GZIP_BATCH, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200
    got = rows(hog, "SELECT event_id, event_name, event_type, client_ts, item_index FROM events "
                    "WHERE event_id IN (SELECT unnest(?)) ORDER BY item_index", [GZIP_UUIDS])
    sent = dt.datetime(2023, 9, 15, 9, 15, 29, 412000, tzinfo=dt.UTC)
    offsets = [2572, 2567, 1475, 1467, 1273]  # ms before sending, as posthog-js sent them
    assert got == [(u, n, k, sent - dt.timedelta(milliseconds=o), i) for i, (u, n, k, o) in
                   enumerate(zip(GZIP_UUIDS, ["$autocapture", "page_view", "$autocapture",
                                              "page_view", "query completed"],
                                 ["track", "page", "track", "page", "track"], offsets,
                                 strict=True))]
    elements = rows(hog, "SELECT properties->'$.$elements'->0->>'$.$el_text' FROM events "
                         "WHERE event_id = ?", [GZIP_UUIDS[0]])
    assert elements == [("Feature flags",)]


@pytest.mark.parametrize("path", ["/e", "/e/", "/i/v0/e/", "/capture/", "/batch/"])
def test_every_path_takes_a_plain_json_body(hog: Server, path: str) -> None:
    uid = f"plain-{path.strip('/').replace('/', '-')}"
    r = httpx.post(f"{hog.url}{path}", content=orjson.dumps([event(uid)]))
    assert r.status_code == 200, r.text
    assert rows(hog, "SELECT event_name FROM events WHERE event_id = ?", [uid]) == [("clicked",)]


def test_lz64_base64_get_data_and_batch(hog: Server) -> None:
    lz = lzstring.LZString().compressToBase64(orjson.dumps([event("lz-1")]).decode())
    assert httpx.post(f"{hog.url}/e/?compression=lz64", content=lz).status_code == 200
    b64 = base64.b64encode(orjson.dumps(event("b64-1"))).decode()
    assert httpx.post(f"{hog.url}/e/?compression=base64", content=b64).status_code == 200
    assert httpx.get(f"{hog.url}/e/", params={"data": base64.b64encode(
        orjson.dumps(event("get-1"))).decode(), "ip": "1"}).status_code == 200
    batch = {"api_key": TOKEN, "sent_at": "2026-03-01T10:00:05Z",
             "batch": [{**event("batch-1"), "properties": {"distinct_id": "d-2"}}]}
    assert httpx.post(f"{hog.url}/batch/", content=gzip.compress(orjson.dumps(batch)),
                      headers={"Content-Type": "application/json"}).status_code == 200
    got = rows(hog, "SELECT event_id, sent_ts FROM events WHERE event_id IN "
                    "('lz-1', 'b64-1', 'get-1', 'batch-1') ORDER BY event_id")
    assert [g[0] for g in got] == ["b64-1", "batch-1", "get-1", "lz-1"]
    assert got[1][1] == dt.datetime(2026, 3, 1, 10, 0, 5, tzinfo=dt.UTC)
    decoded = dict(rows(hog, "SELECT query, headers->>'$.x-driftnet-decoded' FROM raw "
                             "WHERE query IN ('compression=lz64', 'compression=base64')"))
    assert decoded == {"compression=lz64": "lz64", "compression=base64": "base64"}


def test_big_encoded_payloads_decode_off_the_event_loop_in_parallel_with_other_clients(
        hog: Server) -> None:
    """Big lz64 payloads (the token is inside: it cannot be checked before decoding) are
    decoded on a bounded pool; meanwhile the server keeps answering everyone else."""
    import threading
    import uuid

    big = [event(f"big-{i}") for i in range(40)]
    for e in big:
        e["properties"]["padding"] = " ".join(uuid.uuid4().hex for _ in range(20))
    lz = lzstring.LZString().compressToBase64(orjson.dumps(big).decode())
    assert len(lz) > 8 * 1024
    unknown = lzstring.LZString().compressToBase64(orjson.dumps(
        [{**e, "properties": {**e["properties"], "token": "phc_unknown"}} for e in big]).decode())
    statuses: list[int] = []

    def hammer() -> None:
        with httpx.Client(timeout=60) as client:
            for _ in range(3):
                statuses.append(client.post(f"{hog.url}/e/?compression=lz64",
                                            content=unknown).status_code)

    attackers = [threading.Thread(target=hammer) for _ in range(4)]
    for t in attackers:
        t.start()
    health = [httpx.get(f"{hog.url}/healthz", timeout=30).status_code for _ in range(20)]
    r = httpx.post(f"{hog.url}/e/?compression=lz64", content=lz, timeout=60)
    for t in attackers:
        t.join()
    assert health == [200] * 20 and r.status_code == 200
    assert set(statuses) <= {401, 503} and 401 in statuses
    assert rows(hog, "SELECT count(*) FROM events WHERE starts_with(event_id, 'big-')") == [
        (40,)]


def test_beacon_gets_204(hog: Server) -> None:
    r = httpx.post(f"{hog.url}/e/?beacon=1", content=orjson.dumps([event("beacon-1")]))
    assert r.status_code == 204 and r.content == b""
    assert rows(hog, "SELECT count(*) FROM events WHERE event_id = 'beacon-1'") == [(1,)]


def test_token_names_the_tenant(hog: Server) -> None:
    r = httpx.post(f"{hog.url}/capture/", content=orjson.dumps(
        {"api_key": "phc_other", "event": "e", "distinct_id": "x", "uuid": "other-1"}))
    assert r.status_code == 200
    assert rows(hog, "SELECT event_id FROM events WHERE event_id = 'other-1'",
                tenant="other") == [("other-1",)]
    assert rows(hog, "SELECT count(*) FROM events WHERE event_id = 'other-1'") == [(0,)]


def test_orders_sent_with_the_user_id_as_distinct_id_are_the_users(hog: Server) -> None:
    """After an identify, SDKs without $device_id (posthog-js before it, server SDKs) send
    distinct_id = the user id: `users` counts those orders under the user. The same id sent
    anonymously to another tenant stays that tenant's anonymous visitor."""
    def ev(name: str, uuid: str, distinct_id: str, minute: int,
           **props: Any) -> dict[str, Any]:
        return {"event": name, "uuid": uuid, "distinct_id": distinct_id,
                "timestamp": f"2026-03-02T10:{minute:02}:00Z", "properties": props}

    def order(uuid: str, distinct_id: str, **props: Any) -> dict[str, Any]:
        return ev("Order Completed", uuid, distinct_id, 30, order_id=uuid, revenue=30,
                  currency="EUR", **props)

    server = {"$lib": "posthog-python"}
    hogshop = [
        # posthog-js from before $device_id and $is_identified: only the $identify links
        ev("$pageview", "st-a1", "st-anon-a", 0, **{"$session_id": "st-sa"}),
        ev("$identify", "st-a2", "st-user-a", 1, **{"$anon_distinct_id": "st-anon-a",
                                                    "$session_id": "st-sa"}),
        order("st-a3", "st-user-a", **{"$session_id": "st-sa"}),
        # posthog-js with $device_id in the browser, the order from the server
        ev("$identify", "st-b1", "st-user-b", 2, **{"$device_id": "st-dev-b",
                                                    "$anon_distinct_id": "st-dev-b"}),
        order("st-b2", "st-user-b", **server),
        # a server SDK only: its $identify names the user, no anonymous id
        ev("$identify", "st-c1", "st-user-c", 3, **server),
        order("st-c2", "st-user-c", **server),
        # posthog-js without $device_id, with $is_identified
        order("st-d1", "st-user-d", **{"$is_identified": True}),
    ]
    for key, batch in (("phc_other", [order("st-o1", "st-user-a")]), (TOKEN, hogshop)):
        r = httpx.post(f"{hog.url}/batch/", content=orjson.dumps({"api_key": key,
                                                                  "batch": batch}))
        assert r.status_code == 200, r.text

    people = ("SELECT tenant, person_id, user_id, orders FROM users "
              "WHERE person_id LIKE '%:st-%' ORDER BY ALL")
    ours = [("hogshop", f"u:st-user-{v}", f"st-user-{v}", 1) for v in "abcd"]
    theirs = [("other", "a:st-user-a", None, 1)]
    assert rows(hog, people) == ours
    assert rows(hog, people, tenant="other") == theirs
    with connect(hog.lake_location, all_tenants=True) as con:  # an operator's view
        assert con.sql(people).fetchall() == ours + theirs


@pytest.mark.parametrize(
    ("body", "query", "status", "reason"),
    [
        (b"", "", 400, "empty body"),
        (b"\x1f\x8b\x08garbage", "", 400, "not valid gzip"),
        (gzip.compress(b"[" + b" " * 3_000_000 + b"]"), "", 413, "exceeds"),
        (lzstring.LZString().compressToBase64("A" * 600_000), "compression=lz64", 413,
         "limit"),
        (b"@@@", "compression=lz64", 400, "lz64"),
        (b"{not json", "", 400, "not valid JSON"),
        (b"42", "", 400, "PostHog event"),
        (orjson.dumps([{"event": "e"}]), "", 401, "no project token"),
        (orjson.dumps([{"event": "e", "token": "phc_nope"}]), "", 401, "unknown write key"),
        (orjson.dumps([event("m1"), event("m2", token="phc_other")]), "", 400,
         "different project tokens"),
    ],
)
def test_refusals(hog: Server, body: bytes, query: str, status: int, reason: str) -> None:
    r = httpx.post(f"{hog.url}/e/?{query}", content=body)
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]


def test_form_body_without_data_is_refused(hog: Server) -> None:
    r = httpx.post(f"{hog.url}/e/", content=b"ver=1&compression=base64&x=data%3D",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "no data field" in r.json()["error"]


def test_accepted_but_unparsable_is_quarantined(hog: Server) -> None:
    body = orjson.dumps([{"event": "no distinct id", "token": TOKEN, "uuid": "q-1"},
                         event("q-ok")])
    assert httpx.post(f"{hog.url}/e/", content=body).status_code == 200
    assert rows(hog, "SELECT count(*) FROM events WHERE event_id = 'q-ok'") == [(1,)]
    got = rows(hog, "SELECT reason, detail, item_index FROM quarantine WHERE protocol = "
                    "'posthog' AND detail = 'distinct_id is required'")
    assert ("protocol_violation", "distinct_id is required", 0) in got


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)),
       query=st.sampled_from(["", "compression=gzip-js", "compression=lz64",
                              "compression=base64", "beacon=1"]))
def test_random_bodies_never_5xx(hog: Server, body: bytes, query: str) -> None:
    r = httpx.post(f"{hog.url}/e/?{query}", content=body, timeout=10)
    assert r.status_code < 500, r.text
