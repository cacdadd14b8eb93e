"""Compaction merges a day's files into one without changing a row."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path

from analytics import connect
from tests.support import Server


def _snapshot(lake: Path) -> dict[str, list[tuple[object, ...]]]:
    with connect(lake, "acme") as con:
        return {view: con.execute(f"SELECT * EXCLUDE (date) FROM {view} ORDER BY ALL").fetchall()
                for view in ("events_all", "raw", "quarantine")}


def test_compaction_keeps_every_row(tmp_path: Path, tenants_file: Path) -> None:
    server = Server(tmp_path, tenants_file, flush_interval=0.05).start()
    for _ in range(8):  # one flush each: many small files
        batch = [{"type": "track", "event": "Compact", "anonymousId": "a",
                  "messageId": str(uuid.uuid4())} for _ in range(5)]
        batch.append(batch[0])  # a retry, flagged
        assert server.post("/v1/batch", {"batch": batch}, key="acme-key").status_code == 200
        assert server.post("/v1/track", b"{broken", key="acme-key").status_code == 200
        server.wait_loaded()
    assert server.stop() == 0
    before = _snapshot(server.lake)
    day = server.lake / "events" / "tenant=acme" / f"date={dt.datetime.now(dt.UTC).date()}"
    assert len(list(day.glob("*.parquet"))) >= 8

    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    out = subprocess.run([sys.executable, "-m", "driftnet", "compact", "--lake",
                          str(server.lake), "--before", tomorrow, "--force"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "compacted 3 table-days" in out.stdout
    assert len(list(day.glob("*.parquet"))) == 1
    assert _snapshot(server.lake) == before

    refused = subprocess.run([sys.executable, "-m", "driftnet", "compact", "--lake",
                              str(server.lake), "--before", tomorrow],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1 and "refusing" in refused.stderr
