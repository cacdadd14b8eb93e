"""kill -9 a loader in the middle of a batch while traffic flows: still exactly once.

"Middle of a batch" is made certain, not left to chance: a batch is committed table by table
(quarantine, events, raw: ingest/lake/writer.py), so the test watches the events table's
Delta log for a commit of one of the victim's partitions, freezes the victim (SIGSTOP) at
once, and kills it (SIGKILL) only if raw does not hold that batch yet; otherwise it lets it
go on (SIGCONT) and waits for the next batch.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import orjson
from deltalake import DeltaTable

from ingest.transport.config import KafkaSettings
from schemas.lake import loader_app_id
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


def _txns(commit: Path) -> dict[str, int]:
    out = {}
    for line in commit.read_bytes().splitlines():
        action = orjson.loads(line)
        if "txn" in action:
            out[action["txn"]["appId"]] = int(action["txn"]["version"])
    return out


def _raw_holds(lake: Path, app_id: str) -> int:
    version = DeltaTable(str(lake / "raw")).transaction_version(app_id)
    return -1 if version is None else int(version)


def _kill_mid_batch(victim: Driftnet, partitions: list[int], settings: KafkaSettings,
                    lake: Path, timeout_s: float = 30.0) -> tuple[str, int]:
    """SIGKILL ``victim`` once events holds a batch of its partitions that raw does not.

    Returns the partition's application id and the offset events held at the kill."""
    assert victim.proc is not None
    ids = {loader_app_id(settings.raw_topic, p) for p in partitions}
    log_dir = lake / "events" / "_delta_log"
    seen = set(log_dir.glob("*.json")) if log_dir.exists() else set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = sorted(set(log_dir.glob("*.json")) - seen) if log_dir.exists() else []
        for commit in new:
            seen.add(commit)
            try:
                txns = {a: v for a, v in _txns(commit).items() if a in ids}
            except (OSError, orjson.JSONDecodeError):
                seen.discard(commit)  # still being written
                continue
            if not txns:
                continue
            os.kill(victim.proc.pid, signal.SIGSTOP)
            for app_id, version in txns.items():
                if _raw_holds(lake, app_id) < version:
                    victim.kill()
                    return app_id, version
            os.kill(victim.proc.pid, signal.SIGCONT)  # too late: raw has it; try the next one
        time.sleep(0.001)
    raise TimeoutError(f"no half-committed batch of {victim.name} caught:\n"
                       f"{victim.logs()[-3000:]}")


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
        traffic.start()
        app_id, held = _kill_mid_batch(a, victim_partitions, settings, lake)
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
    # the killed batch was read again, and its events, already held, were not written twice
    print("killed mid-batch: events held", app_id, "up to", held, "raw did not")
    assert "already held" in b.logs() + a2.logs()
