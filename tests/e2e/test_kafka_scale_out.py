"""Collector -> Kafka -> two loader processes in one consumer group -> every event exactly once."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from deltalake import DeltaTable

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


def test_two_loaders_in_one_group_land_every_event_exactly_once(
        kafka_bootstrap: str, tmp_path: Path, tenants_file: Path) -> None:
    settings = kafka_test_settings(kafka_bootstrap, tmp_path, partitions=4,
                                   max_poll_interval_ms=2_000, session_timeout_ms=6_000,
                                   heartbeat_interval_ms=1_000)
    env = kafka_env(settings)
    lake = tmp_path / "lake"
    collector = Driftnet("collector", tmp_path / "collector", tenants_file, env)
    loaders = [Driftnet("loader", tmp_path / name, tenants_file,
                        {**env, "DRIFTNET_KAFKA__CLIENT_ID": name}, lake=lake, name=name)
               for name in ("loader-a", "loader-b")]
    try:
        for process in (collector, *loaders):
            process.start()
        for loader in loaders:
            loader.wait_log("assigned partitions")
        traffic = Traffic(collector.url).send(240)
        assert traffic.refused == []
        hits, events, distinct = wait_lake(lake, traffic.accepted_requests)
    finally:
        codes = stop_all(*loaders, collector)
    assert codes == [0, 0, 0], "\n".join(p.logs()[-2000:] for p in (*loaders, collector))
    assert hits == traffic.accepted_requests == 240
    assert Counter(lake_event_ids(lake)) == Counter(traffic.accepted_ids)
    assert events == distinct == 240 * traffic.events_per_request
    # both loaders took partitions, and the lake records every partition's progress
    assigned = [set(map(int, re.findall(r"\d+", found[-1])))
                for found in (re.findall(r"assigned partitions \[([\d, ]*)\]", p.logs())
                              for p in loaders) if found]
    assert len(assigned) == 2 and all(assigned), assigned
    raw = DeltaTable(str(lake / "raw"))
    for p in range(4):
        assert raw.transaction_version(loader_app_id(settings.raw_topic, p)) is not None, p
