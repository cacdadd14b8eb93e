"""The collector's HTTP protocol pieces: the response writer and the body-arrived check."""

from __future__ import annotations

from typing import Any

from ingest.collector.http import ResponseWriter, body_received


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:  # as uvloop's transports do
            raise RuntimeError("unable to perform operation: the handler is closed")
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n"


def writer() -> tuple[ResponseWriter, FakeTransport]:
    transport = FakeTransport()
    return ResponseWriter(transport), transport  # type: ignore[arg-type]


def test_head_and_body_leave_in_one_write() -> None:
    w, t = writer()
    w.write(HEAD)
    assert t.writes == []
    w.write(b'{"success":true}')
    assert t.writes == [HEAD + b'{"success":true}']


def test_a_head_without_body_leaves_on_flush_or_close() -> None:
    w, t = writer()
    w.write(HEAD)
    w.flush()
    assert t.writes == [HEAD]
    w.flush()
    assert t.writes == [HEAD]
    w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    w.close()
    assert t.writes == [HEAD, b"HTTP/1.1 204 No Content\r\n\r\n"] and t.closed


def test_interim_answers_and_bodies_are_never_held() -> None:
    w, t = writer()
    w.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the client waits for it to send its body
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    w.write(b"some body bytes")
    assert t.writes[-1] == b"some body bytes"
    assert w.get_extra_info("peername") == "info:peername"
    assert not w.is_closing()


def test_writes_once_the_transport_closes_are_dropped() -> None:
    """A response still being written when its connection went (a pipelined request's, when
    the client left): dropped, as asyncio's transports drop it, not raised."""
    w, t = writer()
    w.write(HEAD)
    t.close()
    w.write(b'{"success":true}')
    w.write(HEAD)
    w.flush()
    w.close()
    assert t.writes == [] and w.is_closing()


def test_body_received_reads_the_server_cycle() -> None:
    class Cycle:
        more_body = True

        async def receive(self) -> dict[str, Any]:
            return {}

    cycle = Cycle()
    assert not body_received(cycle.receive)  # still arriving: read under the deadline
    cycle.more_body = False
    assert body_received(cycle.receive)

    async def other_server_receive() -> dict[str, Any]:
        return {}

    assert not body_received(other_server_receive)  # unknown server: keep the deadline
