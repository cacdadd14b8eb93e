"""`driftnet loader` and `driftnet maintain` serve /metrics on a port of their own."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson

from tests.ingest.metrics.scrape import Samples, scrape, total, value
from tests.kafka_broker import Driftnet, stop_all
from tests.support import KEYS, basic, free_port, lake_files


def _wait_for(url: str, ready: str, timeout_s: float = 60.0) -> Samples:
    """Scrape ``url`` until the sample ``ready`` is positive."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            samples = scrape(url)
            if total(samples, ready) > 0:
                return samples
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} never had {ready}")
        time.sleep(0.2)


def test_loader_and_maintain_listeners(tmp_path: Path, tenants_file: Path) -> None:
    lake = tmp_path / "lake"
    env = {"DRIFTNET_EMBEDDED__PATH": str(tmp_path / "log.sqlite")}
    loader_port, maintain_port = free_port(), free_port()
    collector = Driftnet("collector", tmp_path / "collector", tenants_file, env)
    loader = Driftnet("loader", tmp_path / "loader", tenants_file,
                      {**env, "DRIFTNET_METRICS__PORT": str(loader_port)}, lake=lake)
    maintain: Driftnet | None = None
    try:
        collector.start()
        loader.start()
        for i in range(3):
            r = httpx.post(f"{collector.url}/v1/track", timeout=10,
                           content=orjson.dumps({"type": "track", "event": "E",
                                                 "anonymousId": "a", "messageId": f"m{i}"}),
                           headers={"Authorization": basic(KEYS["acme"]),
                                    "Content-Type": "application/json"})
            assert r.status_code == 200
        m = _wait_for(f"http://127.0.0.1:{loader_port}/metrics",
                      "driftnet_loader_events_written_total")
        assert value(m, "driftnet_loader_events_written_total", tenant="acme") == 3
        assert value(m, "driftnet_loader_events_received_total", tenant="acme") == 3
        assert value(m, "driftnet_loader_batch_seconds_count") >= 1
        assert value(m, "driftnet_loader_commit_seconds_count", table="events") >= 1
        assert ("driftnet_loader_lag_records", frozenset({("partition", "0")})) in m
        assert not any(name.startswith("driftnet_collector_") for name, _ in m)
        assert "loader metrics on http://127.0.0.1:" in loader.logs()

        maintain = Driftnet("maintain", tmp_path / "maintain", tenants_file, env, lake=lake)
        maintain.workdir.mkdir()
        maintain.spawn(["maintain", "--lake", str(lake), "--tenants", str(tenants_file)],
                       maintain.workdir, {**env, "DRIFTNET_METRICS__PORT": str(maintain_port),
                                          "DRIFTNET_MAINTAIN__INTERVAL_S": "1"})
        m = _wait_for(f"http://127.0.0.1:{maintain_port}/metrics",
                      "driftnet_maintain_passes_total")
        for table in ("raw", "events"):
            assert value(m, "driftnet_lake_files", table=table) >= 1
        assert value(m, "driftnet_maintain_pass_failures_total") == 0
        # a pass's count of files is the snapshot's after it (a pass may merge meanwhile)
        deadline = time.monotonic() + 30
        while (value(m, "driftnet_lake_files", table="events") != len(lake_files(lake, "events"))
               and time.monotonic() < deadline):
            time.sleep(0.5)
            m = scrape(f"http://127.0.0.1:{maintain_port}/metrics")
        assert value(m, "driftnet_lake_files", table="events") == len(lake_files(lake, "events"))
    finally:
        codes = stop_all(collector, loader, maintain)
    assert codes == [0, 0, 0], loader.logs()[-3000:]


def test_a_taken_metrics_port_is_a_clear_error(tmp_path: Path, tenants_file: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        loader = Driftnet("loader", tmp_path / "loader", tenants_file,
                          {"DRIFTNET_EMBEDDED__PATH": str(tmp_path / "log.sqlite"),
                           "DRIFTNET_METRICS__PORT": str(port)}, lake=tmp_path / "lake")
        loader.start()
        assert loader.proc is not None
        assert loader.proc.wait(timeout=60) == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in loader.logs()
    assert "Traceback" not in loader.logs()
