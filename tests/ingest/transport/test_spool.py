"""The disk spool: bounded, durable, first in first out, one owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.transport.spool import Spool, SpoolDepth, SpoolFullError
from schemas.errors import ConfigError, TransportError


def test_records_come_back_in_order_and_leave_when_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=1 << 20)
    spool.append([(None, b"a"), (b"k", b"bb")])
    spool.append([(None, b"ccc")])
    assert spool.depth == SpoolDepth(3, 1 + 3 + 3)
    first = spool.peek(10, 1 << 20)
    assert [(r.key, r.value) for r in first] == [(None, b"a"), (b"k", b"bb"), (None, b"ccc")]
    spool.remove(first[:2])
    assert [r.value for r in spool.peek(10, 1 << 20)] == [b"ccc"]
    assert spool.depth == SpoolDepth(1, 3)
    spool.close()


def test_peek_stops_at_max_bytes_but_gives_at_least_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=1 << 20)
    spool.append([(None, b"x" * 100), (None, b"y" * 100), (None, b"z" * 100)])
    assert [r.value[:1] for r in spool.peek(10, 250)] == [b"x", b"y"]
    assert [r.value[:1] for r in spool.peek(10, 10)] == [b"x"]
    assert [r.value[:1] for r in spool.peek(1, 1 << 20)] == [b"x"]
    spool.close()


def test_a_full_spool_refuses_all_of_an_append(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=1000)
    spool.append([(None, b"a" * 600)])
    with pytest.raises(SpoolFullError) as caught:
        spool.append([(None, b"b" * 100), (None, b"c" * 400)])
    assert isinstance(caught.value, TransportError) and caught.value.transient
    assert caught.value.values["held_bytes"] == 600
    assert caught.value.values["refused_bytes"] == 500
    assert spool.depth == SpoolDepth(1, 600)
    spool.append([(None, b"d" * 400)])  # what fits still goes in
    assert spool.depth == SpoolDepth(2, 1000)
    spool.close()


def test_what_was_spooled_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_bytes=1 << 20)
    spool.append([(None, b"one"), (None, b"two")])
    spool.remove(spool.peek(1, 1 << 20))
    spool.close()
    again = Spool(path, max_bytes=1 << 20)
    assert again.depth == SpoolDepth(1, 3)
    assert [r.value for r in again.peek(10, 1 << 20)] == [b"two"]
    again.close()


def test_a_second_owner_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_bytes=1 << 20)
    with pytest.raises(ConfigError, match="another collector"):
        Spool(path, max_bytes=1 << 20)
    spool.close()
    Spool(path, max_bytes=1 << 20).close()  # released on close
