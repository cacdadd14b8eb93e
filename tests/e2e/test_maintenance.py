"""Inside `driftnet up`, maintenance keeps file counts bounded while traffic flows, without
anyone running a command, and never costs ingestion an event."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from schemas.delta import table_snapshot
from schemas.storage import LakeLocation
from tests.e2e.test_crash import Traffic
from tests.support import Server, lake_rows


def _max_files_per_tenant_day(lake: Path) -> int:
    counts: Counter[tuple[str, str]] = Counter()
    for table in ("raw", "events"):
        for f in table_snapshot(LakeLocation.parse(lake), table).files:
            counts[(table, f"{f.tenant}/{f.date}")] += 1
    return max(counts.values(), default=0)


def _commits(lake: Path) -> int:
    return sum(1 for _ in (lake / "raw" / "_delta_log").glob("*.json"))


def test_file_counts_stay_bounded_under_traffic(tmp_path: Path, tenants_file: Path) -> None:
    server = Server(tmp_path, tenants_file, flush_interval=0.05, extra_env={
        "DRIFTNET_MAINTAIN__INTERVAL_S": "0.5", "DRIFTNET_MAINTAIN__FANOUT": "4",
        "DRIFTNET_MAINTAIN__SMALL_FILE_BYTES": "4096"}).start()
    traffic = Traffic(server.url, threads=3)
    samples: list[int] = []
    traffic.start()
    try:
        # Until the loader made 30 commits (a busy CI machine flushes less often than this
        # one: count commits, not seconds), at least 10 s, at most 180 s.
        started = time.monotonic()
        while (time.monotonic() - started < 10 or _commits(server.lake) < 30) \
                and time.monotonic() - started < 180:
            time.sleep(1.0)
            samples.append(_max_files_per_tenant_day(server.lake))
    finally:
        traffic.stop()
    server.wait_loaded()
    time.sleep(2.0)  # a last pass or two
    final = _max_files_per_tenant_day(server.lake)
    logs = server.logs()
    assert server.stop() == 0, logs[-3000:]
    flushes = len(table_snapshot(LakeLocation.parse(server.lake), "raw").files)
    commits = _commits(server.lake)
    # The loader really wrote many small files (a commit per flush), and maintenance kept
    # each tenant-day at a few tiers of at most three files (4 KB, 16 KB, 64 KB, ...), plus
    # the files that landed since the last pass.
    assert commits >= 20, commits
    assert max(samples) <= 18, samples
    assert final <= 14 and flushes <= 14 and final < commits - 5, (final, flushes, commits)
    assert "maintenance pass failed" not in logs
    stored = [r[0] for r in lake_rows(server.lake, "events", "SELECT event_id FROM t", "acme")]
    assert len(stored) == len(set(stored)), "an event was written twice"
    assert traffic.acked and not traffic.acked - set(stored)
