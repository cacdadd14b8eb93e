"""Many loaders, correct state: sessions and duplicate flags equal a one-loader run.

One collector produces to a topic of 4 partitions. Two consumer groups read it: one with a
single loader (lake A), one whose loaders join, leave and die during the run (lake B: one,
then two, then three loaders, then one of them killed with SIGKILL). Each visitor's events
arrive through many requests, across sessions, with retries. Both lakes must hold the
same session id, session index and duplicate flag for every event.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.kafka_broker import Driftnet, kafka_env, kafka_test_settings, stop_all, wait_lake
from tests.support import lake_rows

VISITORS = 40
MINUTES = (0, 4, 9, 55, 58, 140, 141, 300)
"""When each visitor's events happen: three or four sessions of 30-minute inactivity."""


def _requests(wave: int, waves: int) -> list[list[dict[str, Any]]]:
    """Per visitor, the wave's Segment track calls in time order; every 5th is sent twice
    (a retry, right after the original, as a tracker retries a timed-out request)."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=8)
    per_visitor = []
    for v in range(VISITORS):
        calls = []
        for i, minute in enumerate(MINUTES):
            if i * waves // len(MINUTES) != wave:  # each wave continues where the last ended
                continue
            ts = start + dt.timedelta(minutes=minute + v % 3)
            body = {"type": "track", "event": "Product Viewed", "anonymousId": f"visitor-{v}",
                    "messageId": f"v{v}-e{i}", "timestamp": ts.isoformat()}
            calls.append(body)
            if (v + i) % 5 == 0:
                calls.append(body)
        per_visitor.append(calls)
    return per_visitor


def _send(url: str, per_visitor: list[list[dict[str, Any]]], threads: int = 4) -> int:
    """Post every call, each visitor's in order (visitors spread over threads)."""
    sent = [0] * threads
    failures: list[str] = []

    def work(k: int) -> None:
        with httpx.Client(auth=("acme-key", ""), timeout=30) as client:
            for calls in per_visitor[k::threads]:
                for body in calls:
                    r = client.post(f"{url}/v1/track", json=body)
                    if r.status_code != 200:
                        failures.append(r.text)
                    sent[k] += 1

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []
    return sum(sent)


def _sessions(lake: Path) -> dict[tuple[str, int, int], tuple[str, int, bool]]:
    rows = lake_rows(lake, "events", "SELECT event_id, source_partition, source_offset, "
                     "session_id, session_index, is_duplicate FROM t")
    return {(str(e), int(p), int(o)): (str(s), int(i), bool(d)) for e, p, o, s, i, d in rows}


def test_loaders_joining_leaving_and_dying_give_the_sessions_of_one_loader(
        kafka_bootstrap: str, tmp_path: Path, tenants_file: Path) -> None:
    # Tansu answers a join only after the group's rebalance timeout (max_poll_interval_ms):
    # requests must be allowed longer than that, or a busy machine never lets a loader join.
    settings = kafka_test_settings(kafka_bootstrap, tmp_path, partitions=4,
                                   max_poll_interval_ms=2_000, session_timeout_ms=6_000,
                                   heartbeat_interval_ms=1_000, request_timeout_ms=10_000,
                                   delivery_timeout_ms=20_000)
    env = kafka_env(settings)
    solo_lake, group_lake = tmp_path / "solo", tmp_path / "group"
    collector = Driftnet("collector", tmp_path / "collector", tenants_file, env)
    solo = Driftnet("loader", tmp_path / "solo-loader", tenants_file,
                    {**env, "DRIFTNET_KAFKA__GROUP_ID": f"solo-{uuid.uuid4().hex[:6]}"},
                    lake=solo_lake, name="solo")
    group = [Driftnet("loader", tmp_path / name, tenants_file,
                      {**env, "DRIFTNET_KAFKA__CLIENT_ID": name}, lake=group_lake, name=name)
             for name in ("loader-1", "loader-2", "loader-3")]
    waves = 4
    hits = 0
    try:
        collector.start()
        solo.start()
        group[0].start()
        for loader in (solo, group[0]):
            loader.wait_log("assigned partitions", timeout_s=90)
        hits += _send(collector.url, _requests(0, waves))
        group[1].start()
        group[1].wait_log("assigned partitions", timeout_s=90)
        hits += _send(collector.url, _requests(1, waves))
        group[2].start()
        group[2].wait_log("assigned partitions", timeout_s=90)
        hits += _send(collector.url, _requests(2, waves))
        last = _requests(3, waves)
        sender = threading.Thread(target=lambda: sent.append(_send(collector.url, last)))
        sent: list[int] = []
        sender.start()
        time.sleep(0.5)
        group[1].kill()  # mid-stream; its partitions move to the others after the timeout
        sender.join()
        hits += sent[0]
        solo_counts = wait_lake(solo_lake, hits, timeout_s=120)
        group_counts = wait_lake(group_lake, hits, timeout_s=120)
    finally:
        codes = stop_all(solo, *group, collector)
    logs = "\n".join(p.logs()[-3000:] for p in (solo, *group))
    assert codes[:2] + codes[3:] == [0, 0, 0, 0], logs  # loader-2 was killed
    assert solo_counts[0] == group_counts[0] == hits, logs
    solo_rows, group_rows = _sessions(solo_lake), _sessions(group_lake)
    assert len(solo_rows) == hits  # every event once (retries are events flagged duplicate)
    assert group_rows == solo_rows
    # the traffic exercised what it should: several sessions per visitor, and duplicates
    indexes = {i for _, i, _ in solo_rows.values()}
    assert indexes >= {1, 2, 3}, indexes
    assert sum(d for _, _, d in solo_rows.values()) > 10
    # the group really shared the work: every loader took partitions at some point
    for loader in group:
        assert "assigned partitions" in loader.logs(), loader.name
    # and the session state lives in the lake, not beside it
    assert (group_lake / "_state" / "sessions" / "_delta_log").is_dir()
    assert not list(group_lake.rglob("*.sqlite"))
