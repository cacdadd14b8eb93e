"""Replay rebuilds days from raw with the current code and recovers quarantined hits."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from deltalake import DeltaTable

from analytics import connect
from schemas.version import PIPELINE_VERSION
from tests.support import Server


def test_replay_after_a_limit_change_recovers_quarantined_hits(tmp_path: Path,
                                                               tenants_file: Path) -> None:
    # Loaded with a too small event limit: the bigger events are quarantined for size.
    server = Server(tmp_path, tenants_file,
                    extra_env={"DRIFTNET_LOADER__MAX_EVENT_BYTES": "300"}).start()
    ids = [str(uuid.uuid4()) for _ in range(6)]
    batch = [{"type": "track", "event": "Replay", "anonymousId": "a", "messageId": i,
              "properties": {"pad": "x" * (10 if n % 2 else 500)}} for n, i in enumerate(ids)]
    batch.append({"type": "track", "event": "Retry", "anonymousId": "a", "messageId": ids[1]})
    assert server.post("/v1/batch", {"batch": batch}, key="acme-key").status_code == 200
    server.wait_loaded()
    assert server.stop() == 0
    with connect(server.lake, "acme") as con:
        before = con.execute("SELECT count(*) FROM events WHERE event_name = 'Replay'"
                             ).fetchall()[0][0]
        sizes = con.execute("SELECT count(*) FROM quarantine WHERE reason = 'size'"
                            ).fetchall()[0][0]
    assert (before, sizes) == (3, 3)

    today = dt.datetime.now(dt.UTC).date().isoformat()
    out = subprocess.run(
        [sys.executable, "-m", "driftnet", "replay", "--lake", str(server.lake), "--tenant",
         "acme", "--from", today, "--to", today, "--force", "--tenants", str(tenants_file)],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "7 hits" not in out.stdout and "1 hits -> 7 events" in out.stdout

    with connect(server.lake, "acme") as con:
        rows = con.execute("SELECT event_id, pipeline_version FROM events "
                           "WHERE event_name = 'Replay'").fetchall()
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0]
        dups = con.execute("SELECT count(*) FROM events_all WHERE is_duplicate").fetchall()[0][0]
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert {r[1] for r in rows} == {PIPELINE_VERSION}
    assert quarantined == 0
    assert dups == 1


def test_replay_refuses_today_without_force(tmp_path: Path, tenants_file: Path) -> None:
    (tmp_path / "lake").mkdir()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    command = [sys.executable, "-m", "driftnet", "replay", "--lake", str(tmp_path / "lake"),
               "--tenant", "acme", "--from", today, "--to", today]
    out = subprocess.run([*command, "--tenants", str(tenants_file)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert "refusing to replay today" in out.stderr
    # without the tenants file (the tenant's IP mode and enrichment), or a tenant not in it
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "Missing option '--tenants'" in out.stderr
    out = subprocess.run([*command[:-5], "nobody", *command[-4:], "--tenants",
                          str(tenants_file)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 2 and "nobody is not in" in out.stderr, out.stderr


def test_a_replay_that_fails_after_swapping_events_keeps_their_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Maintenance may change the day's quarantine files between replay's two swaps: the
    quarantine swap fails, and the events files already committed must stay (deleting
    them left the events table naming files that no longer exist). The error says to
    replay the day again, which then completes."""
    from ingest.lake.writer import LakeWriter
    from ingest.loader import replay as replay_module
    from ingest.loader.config import LoaderSettings
    from ingest.loader.pipeline import Pipeline
    from ingest.loader.replay import ReplayError, replay
    from ingest.transport.base import Record
    from schemas.envelope import encode_bundle
    from schemas.storage import LakeLocation
    from tests.ingest.loader.helpers import envelope

    lake = tmp_path / "lake"
    lake.mkdir()
    frames = [envelope("segment", orjson.dumps({"type": "track", "event": "E",
                                                "anonymousId": "a", "messageId": f"m{i}"}),
                       "/v1/track") for i in range(3)]
    frames.append(envelope("segment", b"{broken", "/v1/track"))
    pipeline = Pipeline(LoaderSettings(lake=str(lake)))
    try:
        out = pipeline.process([Record(0, 1, encode_bundle(frames))], "log")
    finally:
        pipeline.close()
    LakeWriter(LakeLocation.parse(lake)).append(
        "log", {"raw": out.raw, "events": out.events, "quarantine": out.quarantine}, {0: 1})
    today = dt.datetime.now(dt.UTC).date()
    swap = replay_module._DayReplay._swap

    def failing_quarantine_swap(self: Any, table: str, old: Any, new: Any) -> None:
        if table == "quarantine":
            raise ReplayError("files of the day were changed by maintenance meanwhile")
        swap(self, table, old, new)

    monkeypatch.setattr(replay_module._DayReplay, "_swap", failing_quarantine_swap)
    with pytest.raises(ReplayError, match="events were replaced, its quarantine not"):
        replay(lake, "acme", today, today, LoaderSettings(lake=str(lake)), force=True)
    files = DeltaTable(str(lake / "events")).file_uris()
    assert files and all(Path(f).exists() for f in files)
    with connect(lake, "acme") as con:
        assert con.sql("SELECT count(*) FROM events").fetchall() == [(3,)]
    monkeypatch.setattr(replay_module._DayReplay, "_swap", swap)
    replay(lake, "acme", today, today, LoaderSettings(lake=str(lake)), force=True)
    with connect(lake, "acme") as con:
        assert con.sql("SELECT count(*) FROM events").fetchall() == [(3,)]
        assert con.sql("SELECT count(*) FROM quarantine").fetchall() == [(1,)]


def test_replaying_one_day_continues_the_sessions_of_the_days_before(tmp_path: Path) -> None:
    """A replay of day D alone assigns the sessions a replay of the days up to D assigned
    (as the live loader did): a visit across midnight goes on, indexes go on."""
    from ingest.lake.writer import append_rows
    from ingest.loader.config import LoaderSettings
    from ingest.loader.replay import replay
    from schemas.storage import LakeLocation
    from tests.ingest.lake.rows import raw_row, table

    day = dt.date(2026, 3, 10)
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    hits = [  # (visitor, minutes from D's midnight)
        ("a", -2 * 1440 + 600), ("a", -1440 + 540),       # sessions 1 and 2
        ("a", -10), ("a", 10),                            # session 3, across midnight
        ("a", 300),                                       # session 4
        ("b", 480),                                       # b's first
        ("c", -1440 + 60), ("c", 60), ("c", 62)]          # c: 1 the day before, 2 on D
    rows = []
    for n, (visitor, minutes) in enumerate(hits):
        at = midnight + dt.timedelta(minutes=minutes)
        body = orjson.dumps({"type": "track", "event": "V", "anonymousId": visitor,
                             "messageId": f"m{n}", "timestamp": at.isoformat()})
        rows.append(raw_row("acme", n, at, body=body))
    lake = LakeLocation.parse(tmp_path)
    append_rows(lake, "raw", table("raw", rows))

    def sessions() -> list[tuple[str, str, int]]:
        with connect(tmp_path, "acme") as con:
            return [(r[0], r[1], int(r[2])) for r in con.execute(
                "SELECT event_id, session_id, session_index FROM events "
                f"WHERE date = DATE '{day}' ORDER BY event_id").fetchall()]

    settings = LoaderSettings()
    replay(tmp_path, "acme", day - dt.timedelta(days=2), day, settings)
    whole = sessions()
    assert [r[2] for r in whole] == [3, 4, 1, 2, 2]  # m3, m4 (a), m5 (b), m7, m8 (c)
    replay(tmp_path, "acme", day, day, settings)
    assert sessions() == whole
