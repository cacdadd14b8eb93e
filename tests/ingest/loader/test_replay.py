"""Replay rebuilds days from raw with the current code and recovers quarantined hits."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path

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
         "acme", "--from", today, "--to", today, "--force"],
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


def test_replay_refuses_today_without_force(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    out = subprocess.run(
        [sys.executable, "-m", "driftnet", "replay", "--lake", str(tmp_path / "lake"),
         "--tenant", "acme", "--from", today, "--to", today],
        capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert "refusing to replay today" in out.stderr
