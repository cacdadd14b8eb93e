"""Group commit (ingest/collector/group_commit.py) on the real embedded log: which requests
share a durable write, and that closing commits every queued frame.

The log's writes wait behind a gate the test opens, so that which frames are queued while a
write is in progress does not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ingest.collector.group_commit import PROBE_EVERY, GroupCommitter
from ingest.transport.config import EmbeddedLogSettings
from ingest.transport.embedded import EmbeddedProducer
from schemas.envelope import encode_frame, iter_frames
from schemas.errors import TransportError

WAIT_S = 30

T = TypeVar("T")


class GatedLog:
    """The embedded log; each write first waits until the test opens the gate."""

    partitions = 1
    source = "log"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log = EmbeddedProducer(EmbeddedLogSettings(path=path))
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def produce(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        self.waiting.set()
        assert self.gate.wait(WAIT_S), "the test never opened the gate"
        self.log.produce(records)

    def close(self) -> None:
        self.log.close()

    def groups(self) -> list[list[bytes]]:
        """The bodies of each stored record's frames, in log order."""
        return _stored_groups(self.path)


def _stored_groups(path: Path) -> list[list[bytes]]:
    """The bodies of the frames of each record of the log at ``path``, in log order."""
    with closing(sqlite3.connect(path)) as conn:
        values = [row[0] for row in conn.execute('SELECT value FROM records ORDER BY "offset"')]
    return [[body for _, body in iter_frames(value)] for value in values]


def _run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(scenario())`` on a thread of its own: the suite's browser tests keep an
    event loop running on the main thread."""
    result: list[T] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            result.append(asyncio.run(scenario()))
        except BaseException as exc:  # re-raised on the test's thread
            errors.append(exc)

    thread = threading.Thread(target=main, name="group-commit-test", daemon=True)
    thread.start()
    thread.join(WAIT_S * 3)
    assert not thread.is_alive(), "the scenario did not finish"
    if errors:
        raise errors[0]
    return result[0]


def _frame(name: str) -> bytes:
    return encode_frame({"v": 1, "tenant": "acme"}, name.encode())


async def _writing_a(log: GatedLog) -> tuple[GroupCommitter, asyncio.Future[None]]:
    """A committer on ``log`` writing frame "a" (its writer waits at the gate), and the
    future of "a"."""
    committer = GroupCommitter(log, max_bundle_bytes=1 << 20)
    committer.start()
    first = committer.submit(_frame("a"))
    while not log.waiting.is_set():
        await asyncio.sleep(0.01)
    log.waiting.clear()
    return committer, first


def test_requests_of_the_turn_after_a_write_join_the_next_group(tmp_path: Path) -> None:
    log = GatedLog(tmp_path / "log.sqlite")

    async def scenario() -> GroupCommitter:
        committer, first = await _writing_a(log)
        queued = [committer.submit(_frame(n)) for n in ("b", "c")]
        log.gate.set()
        await first  # resumed on the turn after the one "a"'s write ended on
        # "a" is answered; the next write has not started yet: "d" joins "b" and "c"
        late = committer.submit(_frame("d"))
        await asyncio.wait_for(asyncio.gather(*queued, late), WAIT_S)
        await asyncio.wait_for(committer.close(), WAIT_S)
        return committer

    committer = _run(scenario)
    assert log.groups() == [[b"a"], [b"b", b"c", b"d"]]
    assert (committer.groups_committed, committer.frames_committed) == (2, 4)


def test_close_commits_a_group_whose_write_was_not_started_yet(tmp_path: Path) -> None:
    log = GatedLog(tmp_path / "log.sqlite")

    async def scenario() -> None:
        committer, first = await _writing_a(log)
        second = committer.submit(_frame("b"))  # waits for "a"'s write to end
        log.gate.set()
        # Closing while "a" is written and "b"'s write is due a turn or two after it.
        await asyncio.wait_for(committer.close(), WAIT_S)
        assert first.done() and first.exception() is None
        assert second.done() and second.exception() is None

    _run(scenario)
    assert log.groups() == [[b"a"], [b"b"]]


class ThreadLog:
    """The embedded log; records which thread made each write, and can wait on the
    "device" (a sleep: time that costs no CPU) or fail its next write."""

    partitions = 1
    source = "log"

    def __init__(self, path: Path, device_wait_s: float = 0.0) -> None:
        self.path = path
        self.log = EmbeddedProducer(EmbeddedLogSettings(path=path))
        self.device_wait_s = device_wait_s
        self.threads: list[int] = []
        self.fail_next = False

    def produce(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        self.threads.append(threading.get_ident())
        if self.fail_next:
            self.fail_next = False
            raise TransportError("the disk is full")
        time.sleep(self.device_wait_s)
        self.log.produce(records)

    def close(self) -> None:
        self.log.close()

    def stored(self) -> list[bytes]:
        return [body for group in _stored_groups(self.path) for body in group]


async def _write_one_by_one(log: ThreadLog, cores: int, frames: int) -> tuple[GroupCommitter, str]:
    """``frames`` groups of one frame each on a committer for ``cores`` CPUs, each awaited
    before the next; which thread wrote each: "L" the loop's, "W" another."""
    committer = GroupCommitter(log, max_bundle_bytes=1 << 20, cores=cores)
    committer.start()
    loop_thread = threading.get_ident()
    for n in range(frames):
        await asyncio.wait_for(committer.submit(_frame(str(n))), WAIT_S)
    await asyncio.wait_for(committer.close(), WAIT_S)
    return committer, "".join("L" if t == loop_thread else "W" for t in log.threads)


@pytest.mark.parametrize("cores", [1, 2])
def test_on_one_core_groups_are_written_on_the_loop_thread(tmp_path: Path, cores: int) -> None:
    log = ThreadLog(tmp_path / "log.sqlite")
    committer, threads = _run(lambda: _write_one_by_one(log, cores, 20))
    if cores == 1:
        # The first six whatever the disk: the average wait of five writes, each counted
        # at most 2 x INLINE_MAX_WAIT_S, stays under the limit. On a slow disk (or a busy
        # machine) later writes may go to the thread; the next test covers that.
        assert threads.startswith("L" * 6), threads
        assert committer.inline_writes == threads.count("L")
    else:
        assert threads == "W" * 20
        assert committer.inline_writes == 0
    assert log.stored() == [str(n).encode() for n in range(20)]


def test_writes_that_wait_on_the_device_go_back_to_the_writer_thread(tmp_path: Path) -> None:
    # Each write waits 10 ms: after a few inline writes their average wait passes the limit
    # (2 ms), the thread takes over, and one write in PROBE_EVERY is still made inline.
    log = ThreadLog(tmp_path / "log.sqlite", device_wait_s=0.01)
    frames = 12 + PROBE_EVERY
    _, threads = _run(lambda: _write_one_by_one(log, 1, frames))
    inline = len(threads) - len(threads.lstrip("L"))
    assert 1 <= inline <= 10, threads
    assert threads == "L" * inline + "W" * (PROBE_EVERY - 1) + "L" + "W" * (frames - inline
                                                                         - PROBE_EVERY)
    assert len(log.stored()) == frames


def test_a_failed_inline_write_fails_its_group_only(tmp_path: Path) -> None:
    log = ThreadLog(tmp_path / "log.sqlite")

    async def scenario() -> None:
        committer = GroupCommitter(log, max_bundle_bytes=1 << 20, cores=1)
        committer.start()
        log.fail_next = True
        with pytest.raises(TransportError, match="the disk is full"):
            await asyncio.wait_for(committer.submit(_frame("lost")), WAIT_S)
        await asyncio.wait_for(committer.submit(_frame("kept")), WAIT_S)
        await asyncio.wait_for(committer.close(), WAIT_S)
        assert committer.inline_writes == 2

    _run(scenario)
    assert log.stored() == [b"kept"]
