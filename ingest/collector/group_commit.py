"""Group commit: concurrent requests share one durable write.

Each request appends its envelope frame to the open group and waits. One writer thread at a
time turns the open group into bundles (transport records), makes them durable, and wakes
every waiter at once. While it writes, the next group fills up, so the cost of durability
(an fsync, a Kafka ack) is paid per group, not per request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from ingest.transport.base import Producer
from schemas.envelope import encode_bundle
from schemas.errors import DriftnetError, TransportError

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0002

INLINE_MAX_BYTES = 256 * 1024
"""The largest group written on the event loop's thread (:meth:`GroupCommitter._inline`): a
larger write keeps the loop from its sockets for milliseconds, and the part of it spent
waiting on the device overlaps parsing when the thread does it (50-event bodies, measured:
0.43x the bare app written inline, 0.47x by the thread)."""

INLINE_MAX_WAIT_S = 2e-3
"""Inline writes go on while the time they wait on the device (wall time less the thread's
CPU time, a moving average) stays under this. Throughput alone would keep them inline even
then (measured with 0.2-1 ms added to each write, at 64 and 256 connections: inline 10-20%
ahead of the thread, bench/collector_results.md), but while a write waits inline the loop
answers nothing else: health checks, preflights, refusals. Writes that wait longer (a
spinning disk, a network volume) go to the thread. One sample counts at most twice this, so
that a rare slow write (an SQLite checkpoint) does not switch to the thread alone."""

PROBE_EVERY = 256
"""Groups written by the thread between two inline writes that measure the wait again."""


Done = Callable[[BaseException | None], None]
"""Called on the loop once a frame's group is durable (None) or failed (the error)."""


class _Group:
    """Frames waiting for the next durable write, and one future or callback per request.

    Each request waits on its own future: a client that disconnects cancels only its own
    wait, never the group's write. Callbacks (the HTTP fast path) are called directly when
    the group is done: no future, no further loop iteration.
    """

    __slots__ = ("callbacks", "frames", "nbytes", "routes", "waiters")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.routes: list[int] = []
        self.nbytes = 0
        self.waiters: list[asyncio.Future[None]] = []
        self.callbacks: list[Done] = []

    def resolve(self, error: BaseException | None) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
        for callback in self.callbacks:
            try:
                callback(error)
            except Exception:  # one request's answer must not keep the others waiting
                log.exception("answering a committed hit failed")


def split_bundles(frames: list[bytes], max_bytes: int, routes: list[int] | None = None,
                  partitions: int = 1) -> list[tuple[bytes | None, bytes]]:
    """Pack frames, in order, into records of at most ``max_bytes`` (one frame may exceed it).

    With ``partitions`` > 1, frames are packed per partition (``route % partitions``, the
    route being the hash of the frame's visitor) and each record is keyed with its
    partition's index, 4 bytes big-endian; order is kept within a partition.
    """
    if partitions > 1 and routes is not None:
        by_partition: dict[int, list[bytes]] = {}
        for frame, route in zip(frames, routes, strict=True):
            by_partition.setdefault(route % partitions, []).append(frame)
        return [(p.to_bytes(4, "big"), value)
                for p, group in sorted(by_partition.items())
                for _, value in split_bundles(group, max_bytes)]
    records: list[tuple[bytes | None, bytes]] = []
    current: list[bytes] = []
    size = 0
    for frame in frames:
        if current and size + len(frame) > max_bytes:
            records.append((None, encode_bundle(current)))
            current, size = [], 0
        current.append(frame)
        size += len(frame)
    if current:
        records.append((None, encode_bundle(current)))
    return records


class GroupCommitter:
    """Makes envelope frames durable in groups; ``submit`` returns once its frame is durable.

    No task and no event per group: the first submission of an idle loop iteration schedules
    a write with ``call_soon`` (so every request parsed in that iteration joins the group).
    When a write ends and frames queued up meanwhile, the next write starts two turns of the
    loop later, once this group is answered and the requests already waiting on their
    sockets have joined the next one: fewer, larger groups (bench/collector_results.md: 32 →
    57 hits a group at 64 connections, 12-14% more req/s). On one core, small groups are
    written on the loop's thread while writes wait little on the device (:meth:`_inline`).
    ``cores``: the CPUs the process may run on (default: its affinity).
    """

    def __init__(self, producer: Producer, max_bundle_bytes: int,
                 cores: int | None = None) -> None:
        self._producer = producer
        self._max_bundle_bytes = max_bundle_bytes
        self.partitions = max(1, int(getattr(producer, "partitions", 1)))
        """Partitions frames are routed over (1: no routing, the embedded log)."""
        # One core, and a producer that writes synchronously (Kafka's produce_async needs no
        # writer thread anyway): the only case where groups may be written inline.
        self._may_inline = ((usable_cores() if cores is None else cores) == 1
                            and not hasattr(producer, "produce_async"))
        self._wait_s = 0.0  # inline writes' wait on the device, a moving average
        self._since_probe = 0
        self.inline_writes = 0
        """Groups written on the event loop's thread (:meth:`_inline`)."""
        # One thread of its own, fed by a queue: a thread pool's future, work item and
        # worker bookkeeping are Python the writer thread would run, holding the GIL the
        # event loop needs, once per group.
        self._writes: queue.SimpleQueue[tuple[_Group, list[tuple[bytes | None, bytes]]] | None]
        self._writes = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="group-commit",
                                        daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open = _Group()
        self._writing = False
        self._scheduled = False
        self._closing = False
        self._idle: asyncio.Event | None = None
        self.groups_committed = 0
        self.frames_committed = 0

    def start(self) -> None:
        """Bind to the running loop."""
        # The event loop thread holds the GIL while it serves requests; with the default 5 ms
        # switch interval the writer thread could wait that long to start each durable write,
        # and every in-flight request with it. A short interval hands it over promptly.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self._loop = asyncio.get_running_loop()
        if self._may_inline:
            log.info("one core: small groups are written on the event loop's thread while "
                     "writes wait under %.0f ms on the device", INLINE_MAX_WAIT_S * 1e3)
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer.start()

    @property
    def running(self) -> bool:
        """True while the writer accepts frames."""
        return self._loop is not None and not self._closing

    def submit(self, frame: bytes, route: int = 0) -> asyncio.Future[None]:
        """Queue ``frame`` in the open group; the future is done once the group is durable.
        ``route`` (the hash of the hit's visitor) picks its partition when there are several.

        A plain function returning the future, not a coroutine: one object and one frame less
        per request; awaiting it is the same."""
        group = self._add(frame, route)
        assert self._loop is not None
        waiter = self._loop.create_future()
        group.waiters.append(waiter)
        return waiter

    def submit_callback(self, frame: bytes, route: int, done: Done) -> None:
        """:meth:`submit`, with ``done`` called (on the loop) instead of a future resolved."""
        self._add(frame, route).callbacks.append(done)

    def _add(self, frame: bytes, route: int) -> _Group:
        """Put ``frame`` in the open group (its write starts on the loop's next turn, or
        two turns after the write in progress ends) and return that group."""
        loop = self._loop
        if loop is None or self._closing:
            raise TransportError("collector is shutting down")
        group = self._open
        group.frames.append(frame)
        group.routes.append(route)
        group.nbytes += len(frame)
        if not self._writing and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._begin)
        return group

    def _begin_later(self) -> None:
        """Start the open group's write two turns of the loop from now (the loop reads its
        sockets on each): a durable write costs about the same CPU for 30 hits as for 60,
        and the writer thread takes that CPU from the event loop on a busy core. One turn
        measured slightly slower, three no faster."""
        loop = self._loop
        if loop is not None and not self._scheduled:
            self._scheduled = True
            loop.call_soon(loop.call_soon, self._begin)

    def _begin(self) -> None:
        self._scheduled = False
        group = self._open
        if self._writing or not group.frames:
            return
        assert self._loop is not None and self._idle is not None
        self._open = _Group()
        self._writing = True
        self._idle.clear()
        # Bundles are built here, on the loop thread that holds the GIL anyway: the writer
        # thread should only wait on I/O, not on the GIL.
        records = split_bundles(group.frames, self._max_bundle_bytes, group.routes,
                                self.partitions)
        # A producer that can start a write without blocking (Kafka: produce_async) saves the
        # writer thread's hops; its future is done on the client's network thread and wakes
        # the loop once, straight into _finish.
        produce_async = getattr(self._producer, "produce_async", None)
        if produce_async is None:
            if self._inline(group):
                self._write_inline(group, records)
            else:
                self._writes.put((group, records))
            return
        loop = self._loop
        assert loop is not None
        future: Future[None] = produce_async(records)
        future.add_done_callback(
            lambda done: loop.call_soon_threadsafe(self._finish, group, _error_of(done)))

    def _inline(self, group: _Group) -> bool:
        """Whether ``group`` is written on the loop's thread instead of the writer thread.

        Only when the process runs on one core: there the writer thread cannot run beside
        the loop, and handing it each group (a queue wake-up, the GIL taken twice, the
        loop's wake-up, context switches) costs ~200 µs of CPU a group here, about as much
        as a small SQLite commit with its fsync (bench/collector_results.md). While a
        write waits on the device, a blocked loop reads nothing, but the requests it did
        not read make the next group larger. A group goes inline when it is small
        (:data:`INLINE_MAX_BYTES`) and inline writes have not been waiting long
        (:data:`INLINE_MAX_WAIT_S`); when they have, one group in :data:`PROBE_EVERY` is
        still written inline, to measure again.
        """
        if not self._may_inline or group.nbytes > INLINE_MAX_BYTES:
            return False
        if self._wait_s <= INLINE_MAX_WAIT_S:
            return True
        self._since_probe += 1
        if self._since_probe < PROBE_EVERY:
            return False
        self._since_probe = 0
        return True

    def _write_inline(self, group: _Group, records: list[tuple[bytes | None, bytes]]) -> None:
        """Write ``group`` now, on the loop's thread, and answer it."""
        error: BaseException | None = None
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            self._producer.produce(records)
        except Exception as exc:  # noqa: BLE001 - _finish fails the group (and logs a bug)
            error = exc
        wait = (time.perf_counter() - wall) - (time.thread_time() - cpu)
        wait = min(max(wait, 0.0), 2 * INLINE_MAX_WAIT_S)
        self._wait_s += (wait - self._wait_s) / 8
        self.inline_writes += 1
        self._finish(group, error)

    def _write_loop(self) -> None:
        """The writer thread: each write wakes the loop once, straight into _finish."""
        assert self._loop is not None
        loop = self._loop
        produce = self._producer.produce
        while True:
            item = self._writes.get()
            if item is None:
                return
            group, records = item
            error: BaseException | None = None
            try:
                produce(records)
            except Exception as exc:  # noqa: BLE001 - _finish fails the group (and logs a bug)
                error = exc
            loop.call_soon_threadsafe(self._finish, group, error)

    def _finish(self, group: _Group, error: BaseException | None) -> None:
        self._writing = False
        if self._open.frames:
            # The next group's write starts a turn or two later: this group is answered
            # first, and the requests already on their sockets join the next group.
            self._begin_later()
        if error is None:
            self.groups_committed += 1
            self.frames_committed += len(group.frames)
            group.resolve(None)
        elif isinstance(error, DriftnetError):
            log.warning("group commit of %d hits failed: %s", len(group.frames), error)
            group.resolve(error)
        else:  # a bug in a transport must not hang every request
            log.error("group commit crashed: %r", error)
            group.resolve(TransportError(f"transport failure: {error!r}"))
        if not self._writing and not self._open.frames and self._idle is not None:
            self._idle.set()  # idle: no write in progress and none to start

    async def close(self) -> None:
        """Commit what is queued, stop accepting, release the thread."""
        self._closing = True
        while self._idle is not None and (self._writing or self._open.frames):
            if not self._writing:
                self._begin()  # now, not on a later turn
            await self._idle.wait()
        if self._writer.is_alive():
            self._writes.put(None)
            self._writer.join()


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity; the machine's count elsewhere).

    A CPU quota (``docker run --cpus=1``) is deliberately not counted: with other cores to
    run on, the writer thread's fsync waits there while the loop goes on, which measured
    faster than inline writes (docs/ARCHITECTURE.md, "Group commit")."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _error_of(done: Future[None]) -> BaseException | None:
    """What a finished write future says: None when it succeeded."""
    return TransportError("write cancelled") if done.cancelled() else done.exception()
