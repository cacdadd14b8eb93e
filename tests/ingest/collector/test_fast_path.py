"""The collector's fast path (ingest/collector/http.py): a POST whose body came with its
headers is collected without an ASGI task. Over raw sockets, what HTTP/1.1 allows: pipelined
requests, requests sent in pieces cut anywhere, Connection: close, HTTP/1.0, a body that
arrives later, a client that leaves."""

from __future__ import annotations

import gzip
import random
import socket
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import orjson

from tests.ingest.metrics.scrape import by_label, scrape, value
from tests.support import KEYS, Server, basic, responses


def _request(body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = [f"POST /v1/track HTTP/{version}", "Host: collector", "Content-Type: application/json",
            f"Authorization: {basic(KEYS['acme'])}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _track(tag: str) -> tuple[str, bytes]:
    message_id = f"{tag}-{uuid.uuid4()}"
    return message_id, orjson.dumps({"type": "track", "event": "Fast", "anonymousId": "a",
                                     "messageId": message_id})


def _chunked(request: bytes, cut: int) -> bytes:
    """``request`` with its body sent as two chunks, the first ``cut`` bytes long."""
    head, body = request.split(b"\r\n\r\n", 1)
    head = head.replace(f"Content-Length: {len(body)}".encode(), b"Transfer-Encoding: chunked")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:cut], body[cut:]))
    return head + b"\r\n\r\n" + chunks + b"0\r\n\r\n"


def _mixed_request(kind: str, tag: str,
                   rng: random.Random | None = None) -> tuple[bytes, int, list[str]]:
    """One request of ``kind`` (:data:`MIXED`): its bytes, the status it must get and the ids
    it stores (``rng`` cuts a chunked body; without it, in the middle)."""
    message_id, body = _track(tag)
    if kind == "beacon":
        return _request(body), 200, [message_id]
    if kind == "large":  # a body of several TCP segments, so read in several parts
        body = orjson.dumps({"type": "track", "event": "Fast", "anonymousId": "a",
                             "messageId": message_id, "properties": {"x": "y" * 20_000}})
        return _request(body), 200, [message_id]
    if kind == "batch":
        ids = [f"{message_id}-{k}" for k in range(3)]
        batch = orjson.dumps({"batch": [{"type": "track", "event": "Fast", "anonymousId": "a",
                                         "messageId": i} for i in ids]})
        return _request(batch).replace(b"POST /v1/track", b"POST /v1/batch"), 200, ids
    if kind == "gzip":
        return _request(gzip.compress(body), "Content-Encoding: gzip"), 200, [message_id]
    if kind == "chunked":
        cut = rng.randint(1, len(body) - 1) if rng is not None else len(body) // 2
        return _chunked(_request(body), cut), 200, [message_id]
    if kind == "expect":  # the body sent without waiting for the interim answer
        return _request(body, "Expect: 100-continue"), 200, [message_id]
    if kind == "unknown key":
        return (_request(body).replace(basic(KEYS["acme"]).encode(), basic("nobody").encode()),
                401, [])
    if kind == "no route":
        return _request(body).replace(b"POST /v1/track", b"POST /v1/nowhere"), 404, []
    if kind == "preflight":
        return (b"OPTIONS /v1/track HTTP/1.1\r\nHost: collector\r\n"
                b"Origin: https://shop.acme.example\r\nAccess-Control-Request-Method: POST\r\n"
                b"\r\n"), 204, []
    assert kind == "health"
    return b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n", 200, []


MIXED = ("beacon", "beacon", "large", "batch", "gzip", "chunked", "expect", "unknown key",
         "no route", "preflight", "health")


def _stored(server: Server, ids: list[str]) -> set[str]:
    server.wait_loaded()
    marks = ", ".join("?" for _ in ids)
    rows = server.query("acme", f"SELECT event_id FROM events WHERE event_id IN ({marks})", ids)
    return {r[0] for r in rows}


def test_pipelined_posts_are_answered_in_order_and_all_stored(shared_server: Server) -> None:
    sent = [_track("pipelined") for _ in range(5)]
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=30) as sock:
        sock.sendall(b"".join(_request(body) for _, body in sent))  # one write, five requests
        answers = responses(sock, 5)
        # the connection is kept alive: one more request on it
        extra = _track("after-pipeline")
        sock.sendall(_request(extra[1]))
        answers += responses(sock, 1)
    assert [(a[0], a[2]) for a in answers] == [(b"HTTP/1.1 200 OK", b'{"success":true}')] * 6
    assert all(a[1][b"content-type"] == b"application/json" and b"date" in a[1]
               and b"connection" not in a[1] for a in answers)
    ids = [i for i, _ in sent] + [extra[0]]
    assert _stored(shared_server, ids) == set(ids)


def test_pipelined_requests_split_anywhere_are_answered_in_order(shared_server: Server) -> None:
    """Pipelined requests of every kind (beacons taken by the fast path, bodies it leaves to
    the app, refusals, other routes), their bytes sent in pieces cut anywhere: headers split,
    a body split from its headers or in two, two requests in one piece; the last one at
    times refused with the connection (413). Each is answered in order, and every accepted
    event is stored once. A fixed seed: the same pieces each run."""
    rng = random.Random(14)
    ids: list[str] = []
    for connection in range(60):
        parts, statuses = [], []
        for _ in range(rng.randint(1, 6)):
            request, status, stored = _mixed_request(rng.choice(MIXED), f"split{connection}", rng)
            parts.append(request)
            statuses.append(status)
            ids += stored
        if rng.random() < 0.2:  # declared over the limit: 413, and the connection is closed
            _, body = _track("too-large")
            request = _request(body).replace(f"Content-Length: {len(body)}".encode(),
                                             b"Content-Length: 2000000")
            parts.append(request[:request.index(b"\r\n\r\n") + 4])
            statuses.append(413)
        stream = b"".join(parts)
        with socket.create_connection(("127.0.0.1", shared_server.port), timeout=30) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each piece sent alone
            at = 0
            while at < len(stream):
                size = rng.choice((1, 2, 5, 17, 64, 300, 1500, 5000))
                sock.sendall(stream[at:at + size])
                at += size
                if rng.random() < 0.3:
                    time.sleep(rng.choice((0.0005, 0.002, 0.01)))  # read apart, most likely
            answers = responses(sock, len(statuses))
        assert [int(status.split()[1]) for status, _, _ in answers] == statuses, connection
    assert len(ids) > 100
    rows = shared_server.query("acme", "SELECT event_id FROM events WHERE event_id LIKE 'split%'")
    assert sorted(r[0] for r in rows) == sorted(ids)


def test_connection_close_and_http_1_0_are_answered_then_closed(shared_server: Server) -> None:
    ids = []
    for extra, version in ((("Connection: close",), "1.1"), ((), "1.0")):
        message_id, body = _track("closing")
        ids.append(message_id)
        with socket.create_connection(("127.0.0.1", shared_server.port), timeout=30) as sock:
            sock.sendall(_request(body, *extra, version=version))
            ((status, headers, answer),) = responses(sock, 1)
            assert (status, answer) == (b"HTTP/1.1 200 OK", b'{"success":true}')
            assert headers[b"connection"] == b"close"
            assert sock.recv(100) == b""  # the server closed it
    assert _stored(shared_server, ids) == set(ids)


def test_a_body_arriving_after_its_headers_is_collected(shared_server: Server) -> None:
    message_id, body = _track("late-body")
    request = _request(body)
    split = request.index(b"\r\n\r\n") + 4
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=30) as sock:
        sock.sendall(request[:split])
        time.sleep(1)  # the headers are parsed alone: the body is read under its deadline
        sock.sendall(request[split:])
        ((status, _, answer),) = responses(sock, 1)
    assert (status, answer) == (b"HTTP/1.1 200 OK", b'{"success":true}')
    assert _stored(shared_server, [message_id]) == {message_id}


def test_clients_gone_before_their_ack_are_still_stored_and_counted(server: Server) -> None:
    """A client that leaves before its answer: its hit was queued, so it is made durable
    (stored, counted once) and the others are served as usual."""
    gone = [_track("gone") for _ in range(20)]
    for _, body in gone:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(_request(body))
    message_id, body = _track("stayed")
    r = server.post("/v1/track", body, KEYS["acme"])
    assert r.status_code == 200 and r.json() == {"success": True}
    ids = [i for i, _ in gone] + [message_id]
    assert _stored(server, ids) == set(ids)
    m = scrape(f"{server.url}/metrics")
    assert value(m, "driftnet_collector_requests_total", route="/v1/track", protocol="segment",
                 status="200") == 21
    assert value(m, "driftnet_collector_ack_seconds_count", protocol="segment") == 21
    assert value(m, "driftnet_collector_event_bytes_total", protocol="segment") == sum(
        len(b) for _, b in [*gone, (message_id, body)])
    assert by_label(m, "driftnet_collector_hits_total", "tenant") == {"acme": 21}


def _count_stored(server: Server, ids: list[str]) -> dict[str, int]:
    """How many rows each of ``ids`` has in ``events_all`` (duplicates included)."""
    server.wait_loaded()
    marks = ", ".join("?" for _ in ids)
    return dict(server.query("acme", "SELECT event_id, count(*) FROM events_all "
                             f"WHERE event_id IN ({marks}) GROUP BY event_id", ids))


def test_a_client_that_half_closes_after_its_requests_gets_their_answers(
        shared_server: Server) -> None:
    """The client shuts its side of the connection right after its requests (a beacon alone;
    a beacon, a gzip body the app answers and a beacon, pipelined): each is answered, in
    order, then the server closes the connection. uvicorn closed it at the end of the input,
    so a hit still waiting for its group commit was stored but never answered."""
    ids = []
    for kinds in (("beacon",), ("beacon", "gzip", "beacon")):
        requests = [_mixed_request(kind, "half-closed") for kind in kinds]
        with socket.create_connection(("127.0.0.1", shared_server.port), timeout=30) as sock:
            sock.sendall(b"".join(request for request, _, _ in requests))
            sock.shutdown(socket.SHUT_WR)
            answers = responses(sock, len(requests))
            assert sock.recv(100) == b""  # then closed by the server
        assert [(a[0], a[2]) for a in answers] == [
            (b"HTTP/1.1 200 OK", b'{"success":true}')] * len(requests)
        ids += [i for _, _, stored in requests for i in stored]
    assert _count_stored(shared_server, ids) == dict.fromkeys(ids, 1)


def test_a_half_close_inside_a_request_closes_the_connection(shared_server: Server) -> None:
    """The client shuts its side in the middle of a request, which can then never be whole:
    the connection is closed at once (not at the body's 10 s deadline), after the answers of
    the whole requests before it."""
    message_id, body = _track("half-closed-whole")
    whole = _request(body)
    gzipped, _, (gzip_id,) = _mixed_request("gzip", "half-closed-whole")
    for sent, answered in ((whole[:-5], 0),  # in the body
                           (whole + whole[:30], 1),  # after a whole beacon, in the headers
                           (gzipped + whole[:-5], 1)):  # after a body the app reads, in the body
        with socket.create_connection(("127.0.0.1", shared_server.port), timeout=30) as sock:
            started = time.monotonic()
            sock.sendall(sent)
            sock.shutdown(socket.SHUT_WR)
            answers = responses(sock, answered)
            assert sock.recv(100) == b""
            assert time.monotonic() - started < 5
        assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * answered
    assert _count_stored(shared_server, [message_id, gzip_id]) == {message_id: 1, gzip_id: 1}


def test_a_client_that_half_closes_behind_pipelined_requests_leaves_no_error(
        shared_server: Server) -> None:
    """Requests the app answers, pipelined, then the client's end of the connection shut,
    ten times: nothing is logged as an exception in the app (uvloop's transport raises on a
    write once closed, and uvicorn closed the connection at that end of input while the
    first answer was still due), and the server goes on answering."""
    errors = shared_server.logs().count("Exception in ASGI application")
    for n in range(10):
        first, _, _ = _mixed_request("gzip", f"half-closed{n}")
        second, _, _ = _mixed_request("gzip", f"half-closed{n}")
        with socket.create_connection(("127.0.0.1", shared_server.port), timeout=30) as sock:
            sock.sendall(first + second)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
    shared_server.wait_loaded()
    message_id, body = _track("after-half-closed")
    r = shared_server.post("/v1/track", body, KEYS["acme"])
    assert r.status_code == 200
    assert _stored(shared_server, [message_id]) == {message_id}
    time.sleep(1)  # an answer due after the load is written by then
    assert shared_server.logs().count("Exception in ASGI application") == errors, \
        shared_server.logs()[-3000:]


def test_kept_alive_connections_close_after_the_idle_time_not_while_used(
        tmp_path: Path, tenants_file: Path) -> None:
    """The keep-alive deadline of a fast-path answer (the connection's one timer, not one per
    answer): a connection used again in time stays open; an idle one is closed."""
    server = Server(tmp_path, tenants_file, extra_env={
        "DRIFTNET_COLLECTOR__KEEP_ALIVE_S": "2", "DRIFTNET_COLLECTOR__HEADER_TIMEOUT_S": "30"}
    ).start()
    ids = []
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            for _ in range(4):  # 4 s on one connection, a request a second
                message_id, body = _track("kept-alive")
                ids.append(message_id)
                sock.sendall(_request(body))
                ((status, _, _),) = responses(sock, 1)
                assert status == b"HTTP/1.1 200 OK"
                time.sleep(1)
            started = time.monotonic()
            assert sock.recv(100) == b""  # idle: closed by the server
            assert 0.5 < time.monotonic() - started < 10
        assert _stored(server, ids) == set(ids)
    finally:
        assert server.stop() == 0, server.logs()[-3000:]


def test_beacons_the_fast_path_declines_are_answered_by_the_app(shared_server: Server) -> None:
    """Whole bodies that the fast path leaves to the ASGI app (a gzip body, which the app
    reads and inflates; an unknown key; a path with no route), alone and pipelined behind an
    accepted one, over one connection: each gets the app's answer, in order, at once."""
    accepted, _, (message_id,) = _mixed_request("beacon", "declined")
    gzipped, _, (gzip_id,) = _mixed_request("gzip", "declined-gzip")
    no_route, _, _ = _mixed_request("no route", "declined")
    unknown, _, _ = _mixed_request("unknown key", "declined")
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=30) as sock:
        sock.sendall(gzipped)
        answers = responses(sock, 1)
        sock.sendall(accepted + no_route + unknown + gzipped)
        answers += responses(sock, 4)
    assert [(a[0], orjson.loads(a[2])) for a in answers] == [
        (b"HTTP/1.1 200 OK", {"success": True}),
        (b"HTTP/1.1 200 OK", {"success": True}),
        (b"HTTP/1.1 404 Not Found",
         {"error": "no collector endpoint at /v1/nowhere", "status": 404}),
        (b"HTTP/1.1 401 Unauthorized", {"error": "unknown write key", "status": 401}),
        (b"HTTP/1.1 200 OK", {"success": True})]
    assert _stored(shared_server, [message_id, gzip_id]) == {message_id, gzip_id}


def test_expect_100_continue_gets_its_interim_answer(shared_server: Server) -> None:
    """A client that waits for ``100 Continue`` before its body (curl does, for large ones)."""
    message_id, body = _track("continue")
    request = _request(body, "Expect: 100-continue")
    split = request.index(b"\r\n\r\n") + 4
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=30) as sock:
        sock.sendall(request[:split])
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(request[split:])
        ((status, _, answer),) = responses(sock, 1)
    assert (status, answer) == (b"HTTP/1.1 200 OK", b'{"success":true}')
    assert _stored(shared_server, [message_id]) == {message_id}


def test_an_escaped_path_and_a_query_string_are_routed_as_uvicorn_does(
        shared_server: Server) -> None:
    """``%74`` is ``t``: the path is unescaped before routing; a query string is kept apart."""
    message_id, body = _track("escaped")
    request = _request(body).replace(b"POST /v1/track", b"POST /v1/%74rack?source=test")
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=30) as sock:
        sock.sendall(request)
        ((status, _, answer),) = responses(sock, 1)
    assert (status, answer) == (b"HTTP/1.1 200 OK", b'{"success":true}')
    assert _stored(shared_server, [message_id]) == {message_id}


def test_beacons_over_the_connection_cap_get_503(tmp_path: Path, tenants_file: Path) -> None:
    """uvicorn's concurrency cap (``max_connections``) holds for whole beacons too: over it,
    503 and nothing stored; under it again, accepted."""
    server = Server(tmp_path, tenants_file, extra_env={
        "DRIFTNET_COLLECTOR__MAX_CONNECTIONS": "16"}).start()
    refused_id, refused = _track("over-cap")
    accepted_id, accepted = _track("under-cap")
    try:
        with ExitStack() as idle:
            for _ in range(16):
                idle.enter_context(socket.create_connection(("127.0.0.1", server.port),
                                                            timeout=30))
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                sock.sendall(_request(refused))
                ((status, _, _),) = responses(sock, 1)
            assert status == b"HTTP/1.1 503 Service Unavailable"
        time.sleep(1)  # the server sees the idle ones closed
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(_request(accepted))
            ((status, _, _),) = responses(sock, 1)
        assert status == b"HTTP/1.1 200 OK"
        assert _stored(server, [refused_id, accepted_id]) == {accepted_id}
    finally:
        server.stop()
