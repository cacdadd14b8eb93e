"""kill -9 a loader in the middle of a batch while traffic flows: still exactly once.

"Middle of a batch" is made certain, not left to chance: the test watches the batch intents
(ingest/loader/writer.py) of the victim's partitions, freezes the victim (SIGSTOP) as soon as
one changes, and kills it (SIGKILL) only if that batch's offsets are not committed yet;
otherwise it lets it go on (SIGCONT) and waits for the next batch.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaAdminClient

from ingest.transport.config import KafkaSettings
from schemas.lake import LOADER_STATE_DIR, safe_source
from tests.kafka_broker import (
    Driftnet,
    Traffic,
    kafka_env,
    kafka_test_settings,
    lake_event_ids,
    stop_all,
    wait_lake,
)


def _assigned(loader: Driftnet) -> list[int]:
    found = re.findall(r"assigned partitions \[([\d, ]*)\]", loader.logs())
    return [int(p) for p in found[-1].split(",") if p.strip()] if found else []


def _committed(settings: KafkaSettings, partition: int) -> int | None:
    assert settings.bootstrap_servers is not None
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        offsets = admin.list_group_offsets({settings.group_id: None})[settings.group_id]
    finally:
        admin.close()
    for tp, meta in offsets.items():
        if tp.topic == settings.raw_topic and tp.partition == partition:
            return int(meta.offset)
    return None


def _kill_mid_batch(victim: Driftnet, intents: dict[int, Path], settings: KafkaSettings,
                    lake: Path, timeout_s: float = 30.0) -> tuple[dict[str, Any], list[Path]]:
    """SIGKILL ``victim`` once a batch has files in the lake but no committed offsets.

    Returns that batch's intent and the files of it that were on disk at the kill.
    """
    assert victim.proc is not None
    seen = {p: path.stat().st_mtime_ns if path.exists() else 0 for p, path in intents.items()}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p, path in intents.items():
            try:
                mtime = path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if mtime == seen[p]:
                continue
            seen[p] = mtime
            intent = orjson.loads(path.read_bytes())
            files = [lake / f for f in intent["files"]]
            spin_until = time.monotonic() + 1.0  # the batch writes its first file
            while not any(f.exists() for f in files) and time.monotonic() < spin_until:
                pass
            os.kill(victim.proc.pid, signal.SIGSTOP)
            committed = _committed(settings, p)
            on_disk = [f for f in files if f.exists()]
            if on_disk and (committed is None or intent["first"] >= committed):
                victim.kill()
                return intent, on_disk
            os.kill(victim.proc.pid, signal.SIGCONT)  # too late: committed; try the next one
        time.sleep(0.001)
    raise TimeoutError(f"no uncommitted batch of {victim.name} caught:\n{victim.logs()[-3000:]}")


def test_kill_9_of_a_loader_mid_batch_loses_and_duplicates_nothing(
        kafka_bootstrap: str, tmp_path: Path, tenants_file: Path) -> None:
    settings = kafka_test_settings(kafka_bootstrap, tmp_path, partitions=4,
                                   max_poll_interval_ms=2_000, session_timeout_ms=3_000,
                                   heartbeat_interval_ms=1_000)
    env = kafka_env(settings)
    lake = tmp_path / "lake"
    collector = Driftnet("collector", tmp_path / "collector", tenants_file, env)

    def loader(name: str) -> Driftnet:
        return Driftnet("loader", tmp_path / name, tenants_file,
                        {**env, "DRIFTNET_KAFKA__CLIENT_ID": name}, lake=lake, name=name)

    a, b = loader("loader-a"), loader("loader-b")
    a2: Driftnet | None = None
    traffic = Traffic(collector.url, threads=3)
    try:
        for process in (collector, a, b):
            process.start()
        deadline = time.monotonic() + 30
        while not (_assigned(a) and _assigned(b)) and time.monotonic() < deadline:
            time.sleep(0.05)
        victim_partitions = _assigned(a)
        assert victim_partitions and _assigned(b), a.logs()[-2000:] + b.logs()[-2000:]
        state = lake / LOADER_STATE_DIR / safe_source(settings.raw_topic)
        intents = {p: state / f"p{p:04d}.json" for p in victim_partitions}
        traffic.start()
        intent, on_disk = _kill_mid_batch(a, intents, settings, lake)
        # b takes the partitions over (after the session timeout) while traffic flows on
        b.wait_log("assigned partitions " + str(sorted({*_assigned(b), *victim_partitions})))
        a2 = loader("loader-a").start()
        a2.wait_log("assigned partitions", timeout_s=30)
        time.sleep(1.0)
        traffic.stop()
        assert traffic.refused == []
        hits, _, _ = wait_lake(lake, traffic.accepted_requests)
    finally:
        traffic.stop()
        codes = stop_all(a2, b, collector)
        if a.proc is not None and a.proc.poll() is None:  # failed before the kill
            a.kill()
    assert a2 is not None
    assert codes == [0, 0, 0], b.logs()[-3000:]
    assert hits == traffic.accepted_requests
    assert Counter(lake_event_ids(lake)) == Counter(traffic.accepted_ids)
    # the killed batch's files were removed by the recovery, not left beside the re-load
    assert on_disk and not [path for path in on_disk if path.exists()], intent
    print("killed mid-batch", intent, "files on disk at the kill:", len(on_disk))
    assert "removed" in b.logs() + a2.logs()
