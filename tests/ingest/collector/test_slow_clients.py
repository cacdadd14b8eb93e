"""Slow clients cannot starve the others: a body deadline (408), a connection cap, a header
deadline, and a bound on what a connection that does not read its answers holds."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson

from tests.ingest.metrics.scrape import scrape, total
from tests.support import Server, basic, responses


def test_hundreds_of_trickling_clients_do_not_starve_real_ones(tmp_path: Path,
                                                               tenants_file: Path) -> None:
    server = Server(tmp_path, tenants_file, extra_env={
        "DRIFTNET_COLLECTOR__BODY_TIMEOUT_S": "3"}).start()
    slow: list[socket.socket] = []
    try:
        for _ in range(300):  # each sends its headers and one byte of a 1 KB body, then waits
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            s.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Authorization: " + basic("acme-key").encode() +
                      b"\r\nContent-Length: 1000\r\n\r\n{")
            slow.append(s)
        # real clients are served meanwhile, one after the other
        with httpx.Client(timeout=30) as client:
            for _ in range(20):
                message = {"type": "track", "event": "Real", "anonymousId": "a",
                           "messageId": str(uuid.uuid4())}
                r = client.post(f"{server.url}/v1/track", content=orjson.dumps(message),
                                headers={"Authorization": basic("acme-key")})
                assert r.status_code == 200
        # and the trickling ones are answered 408 and closed once the deadline passed
        time.sleep(3.5)
        answers = []
        for s in slow[:20]:
            s.settimeout(30)
            answers.append(s.recv(200).split(b"\r\n", 1)[0])
        assert set(answers) == {b"HTTP/1.1 408 Request Timeout"}, answers
    finally:
        for s in slow:
            s.close()
        assert server.stop() == 0, server.logs()[-3000:]


def test_connections_whose_headers_never_complete_are_closed(tmp_path: Path,
                                                             tenants_file: Path) -> None:
    """Slowloris: connect and send nothing, or trickle header bytes; the connection is closed
    once the header deadline passed, and real clients are served meanwhile."""
    server = Server(tmp_path, tenants_file, extra_env={
        "DRIFTNET_COLLECTOR__HEADER_TIMEOUT_S": "2"}).start()
    silent, trickling = [], []
    try:
        for _ in range(100):
            silent.append(socket.create_connection(("127.0.0.1", server.port), timeout=30))
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            s.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
            trickling.append(s)
        with httpx.Client(timeout=30) as client:
            assert client.get(f"{server.url}/healthz").status_code == 200
        for _ in range(3):  # a header line every second: still not complete after 2 s
            time.sleep(1.0)
            for s in trickling:
                s.sendall(b"X-Slow: 1\r\n")
    except OSError:
        pass  # the server closed a trickling connection while we wrote: what we expect
    try:
        for s in silent[:10] + trickling[:10]:
            s.settimeout(30)
            with contextlib.suppress(ConnectionResetError):  # reset: closed too
                assert s.recv(100) == b""  # closed by the server
    finally:
        for s in silent + trickling:
            s.close()
        assert server.stop() == 0, server.logs()[-3000:]


def _sockets(server_port: int, client_port: int) -> dict[str, tuple[int, int, int]]:
    """The two ends of a loopback connection as the kernel has them (/proc/net/tcp): for
    "server" and "client", its TCP state (1: established), its send queue (bytes not yet
    delivered to the other end's kernel) and its receive queue (not yet read by its
    process). An end already gone is missing."""
    ends = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
        tx_queue, rx_queue = (int(q, 16) for q in fields[4].split(":"))
        for end, ports in (("server", (server_port, client_port)),
                           ("client", (client_port, server_port))):
            if (local, remote) == ports:
                ends[end] = (int(fields[3], 16), tx_queue, rx_queue)
    return ends


def test_a_client_that_never_reads_its_answers_holds_a_bounded_backlog(
        tmp_path: Path, tenants_file: Path) -> None:
    """A client pipelining thousands of requests without reading the answers: the collector
    stops reading the connection while requests wait behind the one it answers, so what it
    has read and not answered stays within about one read (uvloop reads 256 KB at a time;
    512 KB allowed). uvicorn read on after every answer: all 1.9 MB sent here were parsed and
    held at once, 1.3 MB of them unanswered. Once the client reads, every request is answered
    in order (every tenth has an unknown key: 401) and every accepted hit is stored once."""
    # the client does not read for a few seconds: the header deadline (re-armed by each answer)
    # would close a connection whose answers stop for that long
    server = Server(tmp_path, tenants_file, extra_env={
        "DRIFTNET_COLLECTOR__HEADER_TIMEOUT_S": "60"}).start()
    requests, statuses, ids = [], [], []
    for n in range(8_000):
        message_id = f"unread-{n:05d}-{uuid.uuid4()}"
        body = orjson.dumps({"type": "track", "event": "Unread", "anonymousId": "a",
                             "messageId": message_id})
        key = "acme-key" if n % 10 else "nobody"
        requests.append(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                        b"\r\nAuthorization: " + basic(key).encode() + b"\r\nContent-Length: "
                        + str(len(body)).encode() + b"\r\n\r\n" + body)
        statuses.append(200 if n % 10 else 401)
        if n % 10:
            ids.append(message_id)
    stream = b"".join(requests)
    size = len(requests[1])
    assert all(len(r) == size for r in requests)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
            sent = 0
            with contextlib.suppress(TimeoutError):  # no progress for 3 s: the server stopped
                while sent < len(stream):
                    sent += sock.send(stream[sent:sent + 65536])
            client_port = sock.getsockname()[1]
            read, before = 0, -1
            while read != before:  # until the server reads no more (or has read everything)
                time.sleep(1)
                ends = _sockets(server.port, client_port)
                before, read = read, sent - ends["server"][2] - ends["client"][1]
            answered = total(scrape(f"{server.url}/metrics"), "driftnet_collector_requests_total",
                             route="/v1/track")  # scraped last: a later count only lowers it
            unanswered = read - answered * size
            assert unanswered <= 512 * 1024, (read, answered, sent)

            sock.settimeout(60)
            rest = threading.Thread(target=sock.sendall, args=(stream[sent:],), daemon=True)
            rest.start()
            answers = responses(sock, len(requests))
            rest.join(60)
        assert [int(status.split()[1]) for status, _, _ in answers] == statuses
        server.wait_loaded(timeout_s=120)
        rows = server.query("acme", "SELECT event_id, count(*) FROM events_all "
                                    "WHERE event_id LIKE 'unread-%' GROUP BY event_id")
        assert sorted(rows) == [(i, 1) for i in ids]
    finally:
        assert server.stop() == 0, server.logs()[-3000:]


def test_a_client_that_never_reads_its_answers_is_disconnected(tmp_path: Path,
                                                               tenants_file: Path) -> None:
    """Slow read: pipelined GETs of dn.js (5 KB answers) from a client that reads nothing.
    Once its answers wait unsent for the header deadline, the connection is closed (uvicorn
    kept it, with the request whose answer waits to be written, for as long as the client
    stayed), and the others are served as before."""
    server = Server(tmp_path, tenants_file, extra_env={
        "DRIFTNET_COLLECTOR__HEADER_TIMEOUT_S": "2"}).start()
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
            sock.connect(("127.0.0.1", server.port))
            sock.settimeout(3)
            with contextlib.suppress(TimeoutError):  # the server may stop reading first
                sock.sendall(b"GET /dn.js HTTP/1.1\r\nHost: x\r\n\r\n" * 3000)
            client_port = sock.getsockname()[1]
            started = time.monotonic()
            while _sockets(server.port, client_port).get("server", (0,))[0] == 1:
                assert time.monotonic() - started < 30, "the server keeps the connection"
                time.sleep(0.5)
        with httpx.Client(timeout=30) as client:
            assert client.get(f"{server.url}/healthz").status_code == 200
    finally:
        assert server.stop() == 0, server.logs()[-3000:]
    assert "Exception in ASGI application" not in server.logs(), server.logs()[-3000:]
