"""uvicorn's httptools protocol with a header deadline, bounded pipelining and half-closes.

uvicorn bounds idle keep-alive connections but not a request's headers: a client that opens
a connection and sends nothing, or trickles a header byte every few seconds (slowloris),
would hold it forever. Here each request's headers must be complete within
``header_timeout_s`` of the connection opening (or of the previous response); otherwise the
connection is closed. Bodies have their own deadline in the app (408).

uvicorn also reads on while requests wait behind the one being answered (it resumes reading
after every response), so a client pipelining requests without reading the answers grows the
server's memory without bound; here a connection is read only while at most one request read
from it waits to start and its unsent answers are under the transport's high-water mark
(:class:`BoundedFlow`), and it is closed when they wait unsent for ``header_timeout_s``. A
client that half-closes its side after its requests still gets their answers (uvicorn
closes the connection at the end of its input).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol, cast
from urllib.parse import unquote

import httptools
from uvicorn._types import HTTPScope
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

log = logging.getLogger(__name__)

Headers = Sequence[tuple[bytes, bytes]]


class ReadyCollector(Protocol):
    """The app side of the fast path (:meth:`ingest.collector.app.CollectorApp.collect_ready`)."""

    def collect_ready(self, scope: Any, body: bytes,
                      respond: Callable[[int, Headers, bytes], None]) -> bool:
        """Take a request whose body is whole, answering it with ``respond`` later; or False."""
        ...


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
    ``close``.

    Writes to a closing transport are dropped, as asyncio's own transports do. uvloop's
    raise instead, and uvicorn only stops the response of the connection's *last* request
    when the connection goes: a pipelined request still being answered when the client
    half-closes or leaves (its task awaiting the durable write) would otherwise end in
    "Exception in ASGI application". Nothing else is changed: other calls reach the
    transport.
    """

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        """Send ``data``, after a held head; hold it if it is a response's head; drop both
        once the transport is closing."""
        head = self._head
        if self._transport.is_closing():
            self._head = None
        elif head is not None:
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
            if not self._transport.is_closing():
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


class BoundedFlow(FlowControl):
    """uvicorn's flow control for a connection, with a bound on what it holds unanswered.

    uvicorn pauses reading when a request arrives behind one still being answered, but resumes
    after every response (and whenever the running request asks for its body), while the
    requests read ahead still wait: a client pipelining without reading its answers grew the
    queue of parsed requests, and the answers no one reads, without bound. Here reading
    resumes only while at most one request waits (the one about to start: uvicorn resumes
    before it starts the next), the transport's unsent answers are under its high-water mark
    (asyncio's ``pause_writing``/``resume_writing``, which now pause and resume reading too)
    and the client has not ended its input. A connection so holds its running request, the
    requests of one read (the event loop's reads are 256 KB at most) and about 64 KB of
    answers.

    Pipelined requests are answered one after the other in any case, so reading further ahead
    would not answer them sooner; a client that neither reads its answers nor stops sending
    finds its writes blocked (TCP's own flow control), and if its answers wait unsent for
    ``header_timeout_s``, the connection is closed (the protocol's ``pause_writing``).
    """

    def __init__(self, transport: asyncio.Transport, waiting: deque[Any]) -> None:
        super().__init__(transport)
        self._waiting = waiting  # the protocol's ``pipeline``: requests read, not started
        self.input_ended = False
        """The client half-closed: nothing more to read (uvloop must not read again)."""

    def resume_reading(self) -> None:
        """Read again, unless requests wait, answers are unsent or the input has ended."""
        if (self.read_paused and not self.write_paused and len(self._waiting) <= 1
                and not self.input_ended):
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        """The transport's unsent answers are over its high-water mark: stop reading too."""
        super().pause_writing()
        self.pause_reading()

    def resume_writing(self) -> None:
        """The answers drained: read again if nothing else holds it."""
        super().resume_writing()
        self.resume_reading()


class _NoEvent:
    """What a light request has for uvicorn's ``message_event``: nothing waits on it."""

    __slots__ = ()

    def set(self) -> None:
        """Nothing to wake."""


class _Pending:
    """A POST to the collector as uvicorn's parser callbacks fill it, before it is known
    whether its body is whole (the fast path) or not (then a ``RequestResponseCycle``)."""

    __slots__ = ("body", "disconnected", "keep_alive", "more_body", "response_complete",
                 "response_started", "scope", "waiting_for_100_continue")
    message_event = _NoEvent()

    def __init__(self, scope: dict[str, Any], keep_alive: bool, expect_100: bool) -> None:
        self.scope = scope
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100
        self.body = bytearray()
        self.more_body = True
        self.disconnected = False
        self.response_started = False
        self.response_complete = False


MAX_CACHED_HEADS = 256
"""Response heads the fast path keeps (fixed answers by date second; cleared when full)."""


def _head(status: int, default: Headers, headers: Headers, body_bytes: int,
          keep_alive: bool) -> tuple[bytes, bool]:
    """A response's status line and headers as uvicorn's ``send`` writes them (its default
    headers first, Content-Length when none is given, Connection: close when the connection
    ends), and whether the connection stays open after it."""
    closing = False
    sized = status in (204, 304)
    parts = [STATUS_LINE[status]]
    for name, value in (*default, *headers):
        if name == b"content-length":
            sized = True
        elif name == b"connection" and b"close" in value.lower():
            keep_alive, closing = False, True
        parts += (name, b": ", value, b"\r\n")
    if not sized:
        parts += (b"content-length: ", str(body_bytes).encode(), b"\r\n")
    if not keep_alive and not closing:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), keep_alive


def guarded_protocol(header_timeout_s: float,
                     collector: ReadyCollector | None = None) -> type[HttpToolsProtocol]:
    """A protocol class closing connections whose headers take over ``header_timeout_s``.

    With ``collector`` (the ASGI app uvicorn serves), a POST whose whole body arrived with
    its headers (the usual beacon) is handed to ``collector.collect_ready`` instead of an ASGI
    task, and answered from here once durable: no task, no ``receive``/``send`` messages, one
    transport write (docs/ARCHITECTURE.md, "The collector alone"). Such a POST is parsed
    without uvicorn's per-request objects (its ASGI scope, a ``RequestResponseCycle`` and an
    ``asyncio.Event``): a :class:`_Pending` holds what the parser reads, and becomes them only
    if the app is to answer after all. Whatever the fast path declines, and every other
    request, goes through the ASGI app as before.
    """

    heads: dict[tuple[Any, ...], tuple[Any, bytes, bool]] = {}

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        # One timer per connection, not one per request: a request's headers only set or
        # clear ``_header_deadline``, a fast-path response sets ``_idle_deadline`` (uvicorn's
        # keep-alive timeout) and the next bytes clear it (float stores); the timer, when it
        # fires, closes the connection if a deadline passed, or sleeps until the next one.
        _header_timer: asyncio.TimerHandle | None = None
        _header_deadline: float | None = None
        _idle_deadline: float | None = None
        _timer_at = 0.0
        _write_deadline: float | None = None
        _writer: ResponseWriter | None = None
        _deferred: _Pending | None = None
        flow: BoundedFlow

        def data_received(self, data: bytes) -> None:
            self._idle_deadline = None
            super().data_received(data)
            pending = self._deferred
            if pending is not None:
                self._deferred = None
                self._take(pending)

        def on_message_begin(self) -> None:
            # No scope yet: a POST to the collector gets a light one (on_headers_complete),
            # anything else uvicorn's.
            self.url = b""
            self.expect_100_continue = False
            self.headers = []
            self.scope = None  # type: ignore[assignment]

        def _over_limit(self) -> bool:
            """Whether uvicorn would answer 503 for the concurrency limit."""
            limit = self.limit_concurrency
            return limit is not None and (len(self.connections) >= limit
                                          or len(self.tasks) >= limit)

        def _uvicorn_scope(self) -> HTTPScope:
            """A scope as uvicorn's ``on_message_begin`` makes it (the parser's state kept)."""
            kept = self.url, self.headers, self.expect_100_continue, self.scope
            super().on_message_begin()
            scope = self.scope
            self.url, self.headers, self.expect_100_continue, self.scope = kept
            return scope

        def on_headers_complete(self) -> None:
            self._disarm()
            parser = self.parser
            if (collector is not None and self._deferred is None
                    and self.app is collector and not self._over_limit()
                    and parser.get_method() == b"POST" and not parser.should_upgrade()
                    and (self.cycle is None or self.cycle.response_complete)):
                http_version = parser.get_http_version()
                parsed = httptools.parse_url(self.url)
                path = parsed.path.decode("ascii")
                if "%" in path:
                    path = unquote(path)
                scope = {"method": "POST", "path": self.root_path + path,
                         "raw_path": self.root_path.encode("ascii") + parsed.path,
                         "query_string": parsed.query or b"", "headers": self.headers,
                         "client": self.client, "http_version": http_version}
                pending = _Pending(scope, http_version != "1.0" and parser.should_keep_alive(),
                                   self.expect_100_continue)
                self.cycle = self._deferred = pending  # type: ignore[assignment]
                return
            headers = self.headers
            self.scope = self._uvicorn_scope()
            self.scope["headers"] = headers
            super().on_headers_complete()
            if self.cycle is not None and self._writer is not None:
                self.cycle.transport = self._writer  # type: ignore[assignment]

        def _take(self, pending: _Pending) -> None:
            assert collector is not None
            taken = False
            if not (pending.more_body or pending.disconnected or pending.waiting_for_100_continue
                    or self.access_log or self.transport.is_closing()):
                try:
                    taken = collector.collect_ready(pending.scope, bytes(pending.body),
                                                    partial(self._answer, pending))
                except Exception:  # a bug: nothing was queued; the ASGI path meets it again
                    log.exception("the fast path failed; the request goes to the ASGI app")
            if not taken:
                # A body still on its way (read under the app's deadline), a refusal, anything
                # unusual: the ASGI app, as for every other request (a bug there: uvicorn's 500).
                self._to_app(pending)

        def _to_app(self, pending: _Pending) -> None:
            """Hand a light request to the ASGI app: the scope and ``RequestResponseCycle``
            uvicorn would have made, holding what the parser has read of the body."""
            scope = cast(HTTPScope, {**self._uvicorn_scope(), **pending.scope})
            cycle = RequestResponseCycle(
                scope=scope, transport=cast(asyncio.Transport, self._writer or self.transport),
                flow=self.flow, logger=self.logger, access_logger=self.access_logger,
                access_log=self.access_log,
                default_headers=self.server_state.default_headers, message_event=asyncio.Event(),
                expect_100_continue=pending.waiting_for_100_continue,
                keep_alive=pending.keep_alive, on_response=self.on_response_complete)
            cycle.body = pending.body
            cycle.more_body = pending.more_body
            if pending.body or not pending.more_body:
                cycle.message_event.set()  # as uvicorn's on_body / on_message_complete did
            if self.cycle is pending:  # type: ignore[comparison-overlap]
                self.cycle = cycle
            super()._start_asgi_task(cycle, self.app)

        def _answer(self, cycle: _Pending, status: int, headers: Headers,
                    body: bytes) -> None:
            """Send a fast-path response and complete its cycle, as uvicorn's ``send`` would."""
            if cycle.disconnected or self.transport.is_closing():
                return
            try:
                self._send(cycle, status, headers, body)
            except Exception:  # as uvicorn does when an app fails mid-answer: close, log
                log.exception("answering a collected hit failed; closing its connection")
                self.transport.close()

        def _send(self, cycle: _Pending, status: int, headers: Headers,
                  body: bytes) -> None:
            default = self.server_state.default_headers  # the date: a new list each second
            key = None
            if type(headers) is tuple:  # a fixed answer's: its head is built once a second
                key = (status, headers, len(body), cycle.keep_alive, id(default))
                found = heads.get(key)
            else:
                found = None
            if found is None:
                head, keep_alive = _head(status, default, headers, len(body), cycle.keep_alive)
                if key is not None:
                    if len(heads) >= MAX_CACHED_HEADS:
                        heads.clear()
                    heads[key] = (default, head, keep_alive)  # holds ``default``: its id stays
            else:
                _, head, keep_alive = found
            self.transport.write(head + body)
            cycle.response_started = True
            cycle.response_complete = True
            cycle.keep_alive = keep_alive
            if not keep_alive:
                self.transport.close()
            self._completed()

        def _completed(self) -> None:
            """uvicorn's ``on_response_complete`` for a fast-path response, with the keep-alive
            deadline kept by the connection's one timer instead of a timer armed per response
            and cancelled by the next request."""
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            self.flow.resume_reading()
            if self.pipeline:  # its headers are complete: no deadline for them
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            elif self.flow.input_ended:
                self.transport.close()  # the client half-closed: this was its last answer
            else:
                self._arm()  # the next request's headers
                self._idle_until(self.loop.time() + self.timeout_keep_alive)

        def _arm(self) -> None:
            self._header_deadline = self.loop.time() + header_timeout_s
            if self._header_timer is None:
                self._timer_at = self._header_deadline
                self._header_timer = self.loop.call_at(self._timer_at, self._check)

        def _disarm(self) -> None:
            self._header_deadline = None

        def _idle_until(self, deadline: float) -> None:
            """Close the connection at ``deadline`` unless a byte arrives before (the
            keep-alive deadline of a fast-path response; uvicorn arms a timer per response)."""
            self._idle_deadline = deadline
            self._check_by(deadline)

        def _check_by(self, deadline: float) -> None:
            """Have the connection's timer fire by ``deadline``."""
            if self._header_timer is not None and self._timer_at <= deadline:
                return  # it fires in time, and re-checks
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._timer_at = deadline
            self._header_timer = self.loop.call_at(deadline, self._check)

        def pause_writing(self) -> None:
            # The client does not read its answers (or too slowly): they may wait unsent for
            # ``header_timeout_s``, then the connection goes (a slow read, slowloris's mirror).
            super().pause_writing()
            self._write_deadline = self.loop.time() + header_timeout_s
            self._check_by(self._write_deadline)

        def resume_writing(self) -> None:
            super().resume_writing()
            self._write_deadline = None

        def _check(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():  # closed: unless answers wait for a client that
                deadlines = [self._write_deadline]  # does not read them, it is gone at once
            else:
                deadlines = [self._header_deadline, self._idle_deadline, self._write_deadline]
            pending = [d for d in deadlines if d is not None]
            if not pending:
                return
            if self.loop.time() < min(pending):
                self._timer_at = min(pending)
                self._header_timer = self.loop.call_at(self._timer_at, self._check)
            elif self.flow.write_paused:
                self.transport.abort()  # close() would wait for the unsent answers forever
            else:
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.flow = BoundedFlow(transport, self.pipeline)
            self._writer = ResponseWriter(transport)
            self._arm()

        def eof_received(self) -> bool:  # type: ignore[override]
            """The client half-closed its side: answer the requests it sent, then close (with
            False the transport closes at once, and uvicorn returns False: their answers were
            lost). A last request that is not whole can no longer be: not yet started, it is
            dropped; being answered (reading its body), the connection closes at once."""
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                return False  # nothing to answer
            if cycle.more_body:
                if not (self.pipeline and self.pipeline[0][0] is cycle):
                    return False  # the request being answered: none before it waits
                self.pipeline.popleft()  # never started: the requests before it are answered
            self.flow.input_ended = True
            return True

        def connection_lost(self, exc: Exception | None) -> None:
            self._header_deadline = None
            self._idle_deadline = None
            self._write_deadline = None
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            if self._writer is not None:
                self._writer.flush()
            last = not self.pipeline
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if last and self.flow.input_ended:
                self.transport.close()  # the client half-closed: this was its last answer
            else:
                self._arm()  # the next request's headers, on a kept-alive connection

    return GuardedHttpToolsProtocol
