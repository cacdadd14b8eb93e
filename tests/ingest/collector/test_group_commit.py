"""Group commit (ingest/collector/group_commit.py) on the real embedded log: which requests
share a durable write, and that closing commits every queued frame.

The log's writes wait behind a gate the test opens, so that which frames are queued while a
write is in progress does not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

from ingest.collector.group_commit import GroupCommitter
from ingest.transport.config import EmbeddedLogSettings
from ingest.transport.embedded import EmbeddedProducer
from schemas.envelope import encode_frame, iter_frames

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
        with closing(sqlite3.connect(self.path)) as conn:
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
