"""Slow clients cannot starve the others: a body deadline (408) and a connection cap."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from pathlib import Path

import httpx
import orjson

from tests.support import Server, basic


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
