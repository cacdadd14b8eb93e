"""The collector's /metrics over real HTTP: what it answered, by route, status and reason."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import orjson

from tests.ingest.metrics.scrape import by_label, scrape, total, value
from tests.support import KEYS, Server, basic


def test_requests_bytes_latency_and_refusals_match_what_was_sent(server: Server) -> None:
    bodies = [orjson.dumps({"type": "track", "event": f"E{i}", "anonymousId": "a1",
                            "messageId": f"m{i}"}) for i in range(3)]
    for body in bodies:
        assert server.post("/v1/track", body, KEYS["acme"]).status_code == 200
    globex = orjson.dumps({"type": "page", "anonymousId": "g1", "messageId": "g-1"})
    assert server.post("/v1/page", globex, KEYS["globex"]).status_code == 200
    zipped = gzip.compress(bodies[0])
    assert server.post("/v1/track", zipped, KEYS["acme"],
                       {"Content-Encoding": "gzip"}).status_code == 200
    assert server.post("/v1/track", bodies[0], "no-such-key").status_code == 401
    assert httpx.get(f"{server.url}/nowhere", timeout=10).status_code == 404
    assert server.post("/v1/track", b"x" * 40_000, KEYS["acme"]).status_code == 413
    assert httpx.delete(f"{server.url}/v1/track", timeout=10).status_code == 405
    for vendor in ("com.acme", "io.example.tracker"):  # any vendor path: one route label
        assert httpx.get(f"{server.url}/{vendor}/v1?aid=nope", timeout=10).status_code == 401

    m = scrape(f"{server.url}/metrics")
    ok = {"route": "/v1/track", "protocol": "segment", "status": "200"}
    assert value(m, "driftnet_collector_requests_total", **ok) == 4
    assert value(m, "driftnet_collector_requests_total", route="/v1/page", protocol="segment",
                 status="200") == 1
    assert value(m, "driftnet_collector_requests_total", route="/v1/track",
                 protocol="segment", status="401") == 1
    assert value(m, "driftnet_collector_requests_total", route="unmatched", protocol="none",
                 status="404") == 1
    assert value(m, "driftnet_collector_requests_total", route="/{vendor}/{version}",
                 protocol="snowplow", status="401") == 2
    assert by_label(m, "driftnet_collector_rejected_requests_total", "reason") == {
        "unknown_key": 3, "no_route": 1, "too_large": 1, "method_not_allowed": 1}
    # bytes as received (the gzip body compressed) and as handed over (inflated)
    received = sum(len(b) for b in bodies) + len(globex) + len(zipped) + len(bodies[0])
    assert value(m, "driftnet_collector_request_bytes_total", protocol="segment") >= received
    handed = sum(len(b) for b in bodies) + len(globex) + len(bodies[0])
    assert value(m, "driftnet_collector_event_bytes_total", protocol="segment") == handed
    assert value(m, "driftnet_collector_ack_seconds_count", protocol="segment") == 5
    assert value(m, "driftnet_collector_ack_seconds_bucket", protocol="segment", le="+Inf") == 5
    assert 0 < value(m, "driftnet_collector_ack_seconds_sum", protocol="segment") < 5 * 10
    assert by_label(m, "driftnet_collector_hits_total", "tenant") == {"acme": 4, "globex": 1}
    # the scrape itself is counted by the next one
    again = scrape(f"{server.url}/metrics")
    assert total(again, "driftnet_collector_requests_total", route="/metrics") >= 1


def test_request_bytes_count_what_arrived_before_the_limit_check(server: Server) -> None:
    body = orjson.dumps({"type": "track", "event": "E", "anonymousId": "a"})
    r = httpx.post(f"{server.url}/v1/track", content=body,
                   headers={"Authorization": basic(KEYS["acme"]),
                            "Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200
    m = scrape(f"{server.url}/metrics")
    assert value(m, "driftnet_collector_request_bytes_total", protocol="segment") == len(body)


def test_tenant_labels_are_bounded(tmp_path: Path, tenants_file: Path) -> None:
    srv = Server(tmp_path, tenants_file,
                 extra_env={"DRIFTNET_METRICS__TOP_TENANTS": "1"}).start()
    try:
        for tenant in ("acme", "globex", "initech", "globex"):
            body = {"type": "track", "event": "E", "anonymousId": "a", "messageId": tenant}
            assert srv.post("/v1/track", body, KEYS[tenant]).status_code == 200
        srv.wait_loaded()
        m = scrape(f"{srv.url}/metrics")
    finally:
        assert srv.stop() == 0, srv.logs()[-3000:]
    assert by_label(m, "driftnet_collector_hits_total", "tenant") == {"acme": 1, "other": 3}
    loaded = by_label(m, "driftnet_loader_hits_total", "tenant")
    assert sum(loaded.values()) == 4 and len(loaded) <= 2 and set(loaded) <= {
        "acme", "globex", "initech", "other"}


def test_metrics_can_be_turned_off(tmp_path: Path, tenants_file: Path) -> None:
    srv = Server(tmp_path, tenants_file,
                 extra_env={"DRIFTNET_METRICS__ENABLED": "false"}).start()
    try:
        assert httpx.get(f"{srv.url}/metrics", timeout=10).status_code == 404
    finally:
        assert srv.stop() == 0, srv.logs()[-3000:]


def test_the_kafka_spool_is_reported_while_the_broker_is_away(tmp_path: Path,
                                                              tenants_file: Path) -> None:
    from ingest.transport.config import KafkaSettings
    from tests.kafka_broker import Driftnet
    from tests.support import free_port

    spool = tmp_path / "spool.sqlite"
    collector = Driftnet("collector", tmp_path / "collector", tenants_file, {
        "DRIFTNET_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nobody listens
        "DRIFTNET_KAFKA__SPOOL_PATH": str(spool)})
    try:
        collector.start()
        for i in range(3):
            body = orjson.dumps({"type": "track", "event": "E", "anonymousId": "a",
                                 "messageId": f"s{i}"})
            r = httpx.post(f"{collector.url}/v1/track", content=body, timeout=30,
                           headers={"Authorization": basic(KEYS["acme"]),
                                    "Content-Type": "application/json"})
            assert r.status_code == 200, r.text
        m = scrape(f"{collector.url}/metrics")
    finally:
        assert collector.stop() == 0, collector.logs()[-3000:]
    assert 1 <= value(m, "driftnet_collector_spool_records") <= 3
    assert value(m, "driftnet_collector_spool_bytes") > 3 * 50
    assert value(m, "driftnet_collector_spool_limit_bytes") == KafkaSettings().spool_max_bytes
    assert 0 < value(m, "driftnet_collector_spool_oldest_age_seconds") < 120
    assert value(m, "driftnet_collector_hits_total", tenant="acme") == 3


def test_the_embedded_log_has_no_spool(server: Server) -> None:
    names = {name for name, _ in scrape(f"{server.url}/metrics")}
    assert not any(n.startswith("driftnet_collector_spool_") for n in names)
    assert "driftnet_loader_records_total" in names  # `driftnet up`: the loader's too
