"""Two loaders on Kafka: their /metrics add up to what the lake holds, and each reports the
lag of the partitions it owns."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.ingest.metrics.scrape import Samples, by_label, scrape, total, value
from tests.kafka_broker import (
    Driftnet,
    Traffic,
    kafka_env,
    kafka_test_settings,
    lake_counts,
    stop_all,
    wait_lake,
)
from tests.support import free_port


def _settled(urls: list[str], events: int, timeout_s: float = 60.0) -> list[Samples]:
    """Scrape until the loaders' written events add up to ``events`` and their lag is 0."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            scraped = [scrape(u) for u in urls]
        except httpx.HTTPError:
            scraped = []
        if scraped and sum(total(m, "driftnet_loader_events_written_total")
                           for m in scraped) >= events and all(
                total(m, "driftnet_loader_lag_records") == 0
                and by_label(m, "driftnet_loader_lag_records", "partition") for m in scraped):
            return scraped
        if time.monotonic() > deadline:
            raise TimeoutError(f"loaders never settled at {events} events: {scraped}")
        time.sleep(0.5)


def test_loader_metrics_add_up_to_the_lake(kafka_bootstrap: str, tmp_path: Path,
                                           tenants_file: Path) -> None:
    settings = kafka_test_settings(kafka_bootstrap, tmp_path, partitions=4,
                                   max_poll_interval_ms=2_000, session_timeout_ms=6_000,
                                   heartbeat_interval_ms=1_000)
    env = kafka_env(settings)
    lake = tmp_path / "lake"
    ports = [free_port(), free_port()]
    collector = Driftnet("collector", tmp_path / "collector", tenants_file, env)
    loaders = [Driftnet("loader", tmp_path / name, tenants_file,
                        {**env, "DRIFTNET_KAFKA__CLIENT_ID": name,
                         "DRIFTNET_METRICS__PORT": str(port)}, lake=lake, name=name)
               for name, port in zip(("loader-a", "loader-b"), ports, strict=True)]
    try:
        for process in (collector, *loaders):
            process.start()
        for loader in loaders:
            loader.wait_log("assigned partitions")
        traffic = Traffic(collector.url).send(60)
        assert traffic.refused == []
        hits, events, _ = wait_lake(lake, traffic.accepted_requests)
        scraped = _settled([f"http://127.0.0.1:{p}/metrics" for p in ports], events)
        front = scrape(f"{collector.url}/metrics")
    finally:
        codes = stop_all(*loaders, collector)
    assert codes == [0, 0, 0], "\n".join(p.logs()[-2000:] for p in (*loaders, collector))
    assert (hits, events) == lake_counts(lake)[:2]
    assert sum(value(m, "driftnet_loader_events_written_total", tenant="acme")
               for m in scraped) == events == 60 * traffic.events_per_request
    assert sum(value(m, "driftnet_loader_hits_total", tenant="acme") for m in scraped) == hits
    assert value(front, "driftnet_collector_hits_total", tenant="acme") == hits
    # each loader reports the partitions it owns, together all of them, none twice
    owned = [set(by_label(m, "driftnet_loader_lag_records", "partition")) for m in scraped]
    assert all(owned) and not owned[0] & owned[1], owned
    assert owned[0] | owned[1] == {"0", "1", "2", "3"}
