"""Group commit: concurrent requests share one durable write.

Each request appends its envelope frame to the open group and waits. One writer thread at a
time turns the open group into bundles (transport records), makes them durable, and wakes
every waiter at once. While it writes, the next group fills up, so the cost of durability
(an fsync, a Kafka ack) is paid per group, not per request.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from ingest.transport.base import Producer
from schemas.envelope import encode_bundle
from schemas.errors import DriftnetError, TransportError

log = logging.getLogger(__name__)


class _Group:
    """Frames waiting for the next durable write, and one future per waiting request.

    Each request waits on its own future: a client that disconnects cancels only its own
    wait, never the group's write.
    """

    __slots__ = ("frames", "nbytes", "waiters")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.nbytes = 0
        self.waiters: list[asyncio.Future[None]] = []

    def resolve(self, error: BaseException | None) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)


def split_bundles(frames: list[bytes], max_bytes: int) -> list[tuple[bytes | None, bytes]]:
    """Pack frames, in order, into records of at most ``max_bytes`` (one frame may exceed it)."""
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
    """Makes envelope frames durable in groups; ``submit`` returns once its frame is durable."""

    def __init__(self, producer: Producer, max_bundle_bytes: int) -> None:
        self._producer = producer
        self._max_bundle_bytes = max_bundle_bytes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-commit")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open: _Group | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.groups_committed = 0
        self.frames_committed = 0

    def start(self) -> None:
        """Start the writer task on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._open = _Group()
        self._task = self._loop.create_task(self._run(), name="group-commit")

    @property
    def running(self) -> bool:
        """True while the writer accepts frames."""
        return self._task is not None and not self._task.done() and not self._closing

    async def submit(self, frame: bytes) -> None:
        """Queue ``frame`` in the open group and wait until the group is durable."""
        group = self._open
        if group is None or self._closing or self._loop is None:
            raise TransportError("collector is shutting down")
        waiter = self._loop.create_future()
        group.frames.append(frame)
        group.nbytes += len(frame)
        group.waiters.append(waiter)
        self._wake.set()
        await waiter

    async def _run(self) -> None:
        assert self._loop is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            group = self._open
            if group is None or not group.frames:
                if self._closing:
                    return
                continue
            self._open = _Group()
            try:
                await self._loop.run_in_executor(self._executor, self._write, group.frames)
            except DriftnetError as exc:
                log.warning("group commit of %d hits failed: %s", len(group.frames), exc)
                group.resolve(exc)
            except Exception as exc:  # a bug in a transport must not hang every request
                log.exception("group commit crashed")
                group.resolve(TransportError(f"transport failure: {exc!r}"))
            else:
                self.groups_committed += 1
                self.frames_committed += len(group.frames)
                group.resolve(None)
            if self._open.frames:
                self._wake.set()

    def _write(self, frames: list[bytes]) -> None:
        self._producer.produce(split_bundles(frames, self._max_bundle_bytes))

    async def close(self) -> None:
        """Commit what is queued, stop the writer, release the thread."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)
