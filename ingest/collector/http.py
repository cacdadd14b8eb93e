"""uvicorn's httptools protocol with a header deadline.

uvicorn bounds idle keep-alive connections but not a request's headers: a client that opens
a connection and sends nothing, or trickles a header byte every few seconds (slowloris),
would hold it forever. Here each request's headers must be complete within
``header_timeout_s`` of the connection opening (or of the previous response); otherwise the
connection is closed. Bodies have their own deadline in the app (408).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def body_received(receive: Any) -> bool:
    """True when the server already holds the request's whole body, so reading it cannot
    wait on the client: uvicorn's ``RequestResponseCycle`` (whose method ``receive`` is)
    turns ``more_body`` False once its parser saw the end of the message. For any other
    server, False: the caller then reads under its deadline."""
    return getattr(getattr(receive, "__self__", None), "more_body", True) is False


class ResponseWriter:
    """The transport a request's response cycle writes to: a response's head is held until
    its body (or the response's end), so that head and body leave in one transport write
    instead of two (uvicorn writes them separately).

    Only a head (``HTTP/1.1 <status ≥ 200> ...\r\n\r\n``, uvicorn's first write of a
    response) is held, never an interim ``100 Continue``; whatever is held goes out with the
    next write, on ``flush`` (the protocol calls it when the response is complete) and before
    ``close``. Nothing else is changed: other calls reach the transport.
    """

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        """Send ``data``, after a held head; hold it if it is a response's head."""
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif data[:9] == b"HTTP/1.1 " and data[9:10] != b"1" and data[-4:] == b"\r\n\r\n":
            self._head = data
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Send a held head (a response without body: HEAD, 204)."""
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        """Flush, then close the transport."""
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        """Whether the transport is closing."""
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(header_timeout_s: float) -> type[HttpToolsProtocol]:
    """A protocol class closing connections whose headers take over ``header_timeout_s``."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        # One timer per connection, not one per request: a request's headers only set or
        # clear ``_header_deadline`` (a float store); the timer, when it fires, closes the
        # connection if the deadline passed, or sleeps until the deadline if one is set.
        _header_timer: asyncio.TimerHandle | None = None
        _header_deadline: float | None = None
        _writer: ResponseWriter | None = None

        def _arm(self) -> None:
            self._header_deadline = self.loop.time() + header_timeout_s
            if self._header_timer is None:
                self._header_timer = self.loop.call_at(self._header_deadline, self._check)

        def _disarm(self) -> None:
            self._header_deadline = None

        def _check(self) -> None:
            self._header_timer = None
            deadline = self._header_deadline
            if deadline is None or self.transport.is_closing():
                return
            if self.loop.time() >= deadline:
                self.transport.close()
            else:
                self._header_timer = self.loop.call_at(deadline, self._check)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._writer = ResponseWriter(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._header_deadline = None
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            if self.cycle is not None and self._writer is not None:
                self.cycle.transport = self._writer  # type: ignore[assignment]

        def on_response_complete(self) -> None:
            if self._writer is not None:
                self._writer.flush()
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers, on a kept-alive connection

    return GuardedHttpToolsProtocol
