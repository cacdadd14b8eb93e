"""sessionize: server-side sessions, stitched across batches, restarts and re-runs."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from ingest.enrich import Chain
from ingest.enrich.session_store import SessionStore
from ingest.enrich.sessionize import Sessionize
from tests.ingest.enrich.helpers import NOW, event, run_chain

M = dt.timedelta(minutes=1)


def _at(i: int, minutes: float, offset: int = 0, visitor: str | None = "anon-1",
        **fields: Any) -> dict[str, Any]:
    return event(i, anonymous_id=visitor, derived_ts=NOW + minutes * M, source_offset=offset,
                 **fields)


def _run(step: Sessionize, rows: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    out = run_chain(Chain([("sessionize", step)]), rows)
    return [(r["session_id"], r["session_index"]) for r in out]


def _expected_id(tenant: str, visitor: str, first: dt.datetime) -> str:
    micros = round(first.timestamp() * 1_000_000)
    return hashlib.md5(f"{tenant}\x00{visitor}\x00{micros}".encode()).hexdigest()


def test_thirty_minutes_of_inactivity_end_a_session() -> None:
    out = _run(Sessionize(), [_at(0, 0), _at(1, 10), _at(2, 39.9), _at(3, 80), _at(4, 81)])
    first, second = _expected_id("acme", "a:anon-1", NOW), _expected_id("acme", "a:anon-1",
                                                                        NOW + 80 * M)
    assert out == [(first, 1)] * 3 + [(second, 2)] * 2


def test_visitors_and_tenants_are_separate_and_user_id_is_the_fallback() -> None:
    rows = [_at(0, 0), _at(1, 1, visitor="anon-2"), _at(2, 2, tenant="globex"),
            _at(3, 3, visitor=None, user_id="u-7"), _at(4, 4, visitor=None)]
    out = _run(Sessionize(), rows)
    assert len({sid for sid, _ in out[:4]}) == 4 and [i for _, i in out[:4]] == [1] * 4
    assert out[3][0] == _expected_id("acme", "u:u-7", NOW + 3 * M)
    assert out[4] == (None, None)  # nobody to sessionize


def test_client_sessions_are_kept() -> None:
    rows = [_at(0, 0, session_id="client-s1", session_index=4),
            _at(1, 1, session_id="client-s1"), _at(2, 2)]
    out = _run(Sessionize(), rows)
    assert out[:2] == [("client-s1", 4), ("client-s1", None)]
    assert out[2] == (_expected_id("acme", "a:anon-1", NOW + 2 * M), 1)


def test_sessions_continue_across_batches(tmp_path: Path) -> None:
    step = Sessionize(SessionStore(tmp_path / "s.sqlite"))
    b1 = _run(step, [_at(0, 0, offset=10), _at(1, 10, offset=10)])
    b2 = _run(step, [_at(0, 25, offset=20)])  # 15 min after the last event: same session
    b3 = _run(step, [_at(0, 100, offset=30), _at(1, 200, offset=30)])
    assert b2 == [b1[0]] and b1 == [b1[0]] * 2
    assert [i for _, i in b3] == [2, 3]
    assert b3[0][0] == _expected_id("acme", "a:anon-1", NOW + 100 * M)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite"
    store = SessionStore(path)
    first = _run(Sessionize(store), [_at(0, 0, offset=1)])
    store.close()
    again = SessionStore(path)  # a new loader process
    assert _run(Sessionize(again), [_at(0, 20, offset=2), _at(1, 60, offset=2)]) == [
        first[0], (_expected_id("acme", "a:anon-1", NOW + 60 * M), 2)]
    journal = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchall()
    assert journal == [("wal",)]
    again.close()


def test_late_events_open_their_own_session(tmp_path: Path) -> None:
    step = Sessionize(SessionStore(tmp_path / "s.sqlite"))
    current = _run(step, [_at(0, 600, offset=1)])
    late = _run(step, [_at(0, 0, offset=2), _at(1, 590, offset=2)])
    # 10 minutes before the current session: joins it; 10 hours before: a session of its own.
    assert late[1] == current[0]
    assert late[0] == (_expected_id("acme", "a:anon-1", NOW), 2)
    assert _run(step, [_at(0, 700, offset=3)])[0][1] == 3


def test_per_tenant_timeout() -> None:
    step = Sessionize(timeout_minutes=30, tenant_timeouts={"globex": 60})
    out = _run(step, [_at(0, 0), _at(1, 45), _at(2, 0, tenant="globex"),
                      _at(3, 45, tenant="globex")])
    assert [i for _, i in out] == [1, 2, 1, 1]


def test_many_visitors_in_one_batch(tmp_path: Path) -> None:
    step = Sessionize(SessionStore(tmp_path / "s.sqlite"))
    rows = [_at(i, (i % 7) * 50, visitor=f"v{i % 500}") for i in range(5000)]
    out = _run(step, rows)
    by_visitor: dict[str, set[tuple[Any, Any]]] = {}
    for row, session in zip(rows, out, strict=True):
        by_visitor.setdefault(row["anonymous_id"], set()).add(session)
    assert len(by_visitor) == 500
    assert all(len(s) == len({i for _, i in s}) for s in by_visitor.values())
    assert max(i for _, i in out) == 7


def test_a_retry_with_its_originals_timestamp_joins_its_originals_session() -> None:
    """Tied timestamps (a retried event) after a gap: both copies open the same new session,
    whichever order the window functions see the tie in."""
    for copies in (2, 3, 8):
        step = Sessionize()
        _run(step, [_at(0, 0, offset=1)])
        rows = [_at(1, 4, offset=2)] + [_at(2, 90, offset=3 + k) for k in range(copies)]
        out = _run(step, [*rows, _at(3, 91, offset=20)])
        new = (_expected_id("acme", "a:anon-1", NOW + 90 * M), 2)
        assert out[1:] == [new] * (copies + 1), out
