"""Dedupe under retries: the same (tenant, event_id) appears once in `events`."""

from __future__ import annotations

import uuid
from pathlib import Path

from analytics import connect
from tests.support import Server


def _counts(server: Server, event_id: str, tenant: str = "acme") -> tuple[int, int]:
    server.wait_loaded()
    with connect(server.lake, tenant) as con:
        visible = con.execute("SELECT count(*) FROM events WHERE event_id = ?",
                              [event_id]).fetchall()[0][0]
        stored = con.execute("SELECT count(*) FROM events_all WHERE event_id = ?",
                             [event_id]).fetchall()[0][0]
    return int(visible), int(stored)


def _track(event_id: str) -> dict[str, str]:
    return {"type": "track", "event": "Retry", "anonymousId": "a", "messageId": event_id}


def test_retries_in_one_batch_in_later_batches_and_after_restart(tmp_path: Path,
                                                                 tenants_file: Path) -> None:
    server = Server(tmp_path, tenants_file).start()
    try:
        same_batch = str(uuid.uuid4())
        body = {"batch": [_track(same_batch), _track(same_batch)]}
        assert server.post("/v1/batch", body, key="acme-key").status_code == 200
        assert _counts(server, same_batch) == (1, 2)

        later = str(uuid.uuid4())
        assert server.post("/v1/track", _track(later), key="acme-key").status_code == 200
        server.wait_loaded()
        assert server.post("/v1/track", _track(later), key="acme-key").status_code == 200
        assert _counts(server, later) == (1, 2)

        # The same id under another tenant is another event.
        assert server.post("/v1/track", _track(later), key="globex-key").status_code == 200
        assert _counts(server, later, "globex") == (1, 1)
        assert server.stop() == 0

        server.start()  # the window is rebuilt from the lake
        assert server.post("/v1/track", _track(later), key="acme-key").status_code == 200
        assert _counts(server, later) == (1, 3)
    finally:
        assert server.stop() == 0
    with connect(server.lake, "acme") as con:
        first = con.execute("SELECT is_duplicate FROM events_all WHERE event_id = ? "
                            "ORDER BY received_at", [later]).fetchall()
    assert [r[0] for r in first] == [False, True, True]


def test_a_retry_after_the_window_is_not_a_duplicate_however_long_the_keys_stay() -> None:
    """The window's keys are pruned only every ten minutes (and a replay of old days runs
    in less): a key older than the window before an event must not flag it, or the same
    raw days replayed give other duplicates than the live loader did."""
    import datetime as dt

    import duckdb
    import pyarrow as pa

    from ingest.loader.dedupe import Deduper
    from schemas.event import EVENT_SCHEMA
    from tests.analytics.lakes import event

    deduper = Deduper(duckdb.connect(), window_hours=48)
    t0 = dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)

    def at(received: dt.datetime, offset: int) -> pa.Table:
        row = event(event_id="m-1", received_at=received, source_offset=offset)
        return pa.Table.from_pylist([row], schema=EVENT_SCHEMA)

    flagged, keys = deduper.flag(at(t0, 1))
    assert flagged["is_duplicate"].to_pylist() == [False] and keys is not None
    deduper.remember(keys)
    later = [deduper.flag(at(t0 + dt.timedelta(days=d), 2 + d))[0]["is_duplicate"].to_pylist()
             for d in (1, 4)]
    assert later == [[True], [False]]   # within 48 hours: a retry; 4 days later: not


def test_a_backlog_older_than_the_window_sees_its_retries(tmp_path: Path) -> None:
    """A loader down for days starts with a window seeded from the last 48 hours; the
    backlog's retries of events written before the outage must still be flagged."""
    import datetime as dt

    import duckdb
    import pyarrow as pa

    from ingest.loader.dedupe import Deduper
    from schemas.event import EVENT_SCHEMA
    from schemas.storage import LakeLocation
    from tests.analytics.lakes import event, write_events

    now = dt.datetime.now(dt.UTC)
    before = now - dt.timedelta(days=5)          # written just before the outage
    write_events(tmp_path, [event(event_id="old-1", received_at=before),
                            event(event_id="old-2", received_at=before - dt.timedelta(days=3)),
                            event(event_id="new-1", received_at=now - dt.timedelta(hours=1))])
    deduper = Deduper(duckdb.connect(), window_hours=48)
    assert deduper.seed(LakeLocation.parse(tmp_path)) == 1      # only new-1 is recent

    def batch(*rows: tuple[str, dt.datetime]) -> list[bool]:
        table = pa.Table.from_pylist(
            [event(event_id=i, received_at=r, source_offset=n) for n, (i, r) in enumerate(rows)],
            schema=EVENT_SCHEMA)
        flagged, keys = deduper.flag(table)
        if keys is not None:
            deduper.remember(keys)
        return [bool(f) for f in flagged["is_duplicate"].to_pylist()]

    # The backlog, received an hour after the outage began: old-1 retried (a retry),
    # old-2 retried (3 days after it: not one), a new event. The window is pruned after
    # this batch (as every ten minutes): from the backlog's position, not the newest key.
    deduper._last_prune = float("-inf")
    backlog = before + dt.timedelta(hours=1)
    assert batch(("old-1", backlog), ("old-2", backlog), ("fresh", backlog)) == [
        True, False, False]
    # Later backlog and live traffic still see what came before.
    assert batch(("fresh", backlog + dt.timedelta(hours=5)), ("new-1", now)) == [True, True]


def test_the_window_holds_what_a_running_loader_remembers(tmp_path: Path) -> None:
    """A loader remembers the keys of the rows it keeps, not of the retries it flags, and a
    retry within one batch is a duplicate only within the window: a seed from the lake and a
    batch holding a day (a replay) flag what batches of one row flag."""
    import datetime as dt

    import duckdb
    import pyarrow as pa

    from ingest.loader.dedupe import Deduper
    from schemas.event import EVENT_SCHEMA
    from tests.analytics.lakes import event, write_events

    t0 = dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
    hours = dt.timedelta(hours=1)

    def table(*received: dt.datetime) -> pa.Table:
        return pa.Table.from_pylist([event(event_id="m1", received_at=r, source_offset=n)
                                     for n, r in enumerate(received)], schema=EVENT_SCHEMA)

    # m1 kept at t0, its retry flagged at t0 + 25 h: a copy at t0 + 50 h is past the
    # window of the only key the loader remembered
    write_events(tmp_path, [event(event_id="m1", received_at=t0, is_duplicate=False),
                            event(event_id="m1", received_at=t0 + 25 * hours,
                                  is_duplicate=True)])
    deduper = Deduper(duckdb.connect(), window_hours=48)
    files = [str(p) for p in sorted(tmp_path.glob("events/**/*.parquet"))]
    assert deduper.seed_files(files, until=t0 + 50 * hours) == 0
    assert deduper.flag(table(t0 + 50 * hours))[0]["is_duplicate"].to_pylist() == [False]

    six = Deduper(duckdb.connect(), window_hours=6)
    assert six.flag(table(t0, t0 + 9 * hours))[0]["is_duplicate"].to_pylist() == [False, False]
    assert six.flag(table(t0, t0 + 5 * hours))[0]["is_duplicate"].to_pylist() == [False, True]
