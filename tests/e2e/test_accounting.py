"""Every event is accounted for: received = written + quarantined + flagged duplicate.

A known mix of good events, retries and malformed hits goes through a real `driftnet up`;
the loader's /metrics (parsed with the Prometheus client's parser), `driftnet status` and
SQL on the lake's tables must all tell the same story, per tenant and reason.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from typing import Any

import orjson

from tests.ingest.metrics.scrape import by_label, scrape, value
from tests.support import KEYS, Server, lake_rows

SENT = {
    # tenant: (events written once, retries of them, malformed hits)
    "acme": (6, 1, 2),
    "globex": (3, 1, 1),
}


def _send_mix(server: Server) -> None:
    acme = KEYS["acme"]
    batch = {"batch": [{"type": "track", "event": "Product Viewed", "anonymousId": "a1",
                        "messageId": f"acme-b{i}"} for i in range(5)]}
    assert server.post("/v1/batch", batch, acme).status_code == 200
    one = {"type": "track", "event": "Order Completed", "anonymousId": "a1",
           "messageId": "acme-m1"}
    assert server.post("/v1/track", one, acme).status_code == 200
    assert server.post("/v1/track", one, acme).status_code == 200  # a tracker's retry
    assert server.post("/v1/track", b"this is not json", acme).status_code == 200
    assert server.post("/v1/track", b'{"type": "track", "event"', acme).status_code == 200
    globex = KEYS["globex"]
    for i in range(3):
        page = {"type": "page", "anonymousId": "g1", "messageId": f"globex-p{i}"}
        assert server.post("/v1/page", page, globex).status_code == 200
    retry = {"type": "page", "anonymousId": "g1", "messageId": "globex-p0"}
    assert server.post("/v1/page", retry, globex).status_code == 200
    assert server.post("/v1/page", b"\xff\xfe not utf-8", globex).status_code == 200
    # refused at the door: never an event, never in the lake
    assert server.post("/v1/track", one, "no-such-key").status_code == 401


def _lake_counts(server: Server) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for tenant in SENT:
        events = dict(lake_rows(server.lake, "events", "SELECT coalesce(is_duplicate, false), "
                                "count(*) FROM t GROUP BY 1", tenant))
        reasons = dict(lake_rows(server.lake, "quarantine", "SELECT reason, count(*) FROM t "
                                 "GROUP BY 1", tenant))
        hits = lake_rows(server.lake, "raw", "SELECT count(*) FROM t", tenant)[0][0]
        out[tenant] = {"written": events.get(False, 0), "duplicate": events.get(True, 0),
                       "quarantined": sum(reasons.values()), "reasons": reasons, "hits": hits}
    return out


def test_received_is_written_plus_quarantined_plus_duplicate_everywhere(server: Server
                                                                        ) -> None:
    _send_mix(server)
    server.wait_loaded()
    lake = _lake_counts(server)
    metrics = scrape(f"{server.url}/metrics")
    status = orjson.loads(subprocess.run(
        [sys.executable, "-m", "driftnet", "status", "--lake", str(server.lake), "--format",
         "json"], capture_output=True, check=True).stdout)
    by_tenant = {t["tenant"]: t for t in status["tenants"]}

    for tenant, (once, retries, malformed) in SENT.items():
        counted = lake[tenant]
        # what was sent is what the lake holds
        assert counted["written"] == once, (tenant, counted)
        assert counted["duplicate"] == retries, (tenant, counted)
        assert counted["quarantined"] == malformed, (tenant, counted)
        received = once + retries + malformed
        # /metrics: the identity, and each term equal to SQL on the lake
        m = {k: value(metrics, f"driftnet_loader_events_{k}_total", tenant=tenant)
             for k in ("received", "written", "duplicate")}
        quarantined = {dict(labels)["reason"]: v for (name, labels), v in metrics.items()
                       if name == "driftnet_loader_events_quarantined_total"
                       and dict(labels)["tenant"] == tenant}
        assert m["received"] == received
        assert m["received"] == m["written"] + m["duplicate"] + sum(quarantined.values())
        assert (m["written"], m["duplicate"]) == (counted["written"], counted["duplicate"])
        assert quarantined == counted["reasons"]
        # status: the same identity over its last-day window, equal to SQL on the lake
        day = by_tenant[tenant]["last_day"]
        assert day["received"] == received
        assert day["received"] == day["written"] + day["duplicate"] + day["quarantined"]
        assert (day["written"], day["duplicate"], day["quarantined_by_reason"]) == (
            counted["written"], counted["duplicate"], counted["reasons"])
        assert by_tenant[tenant]["last_hour"] == day  # all of it arrived just now
        # hits: what the collector acknowledged is what raw holds
        assert value(metrics, "driftnet_collector_hits_total", tenant=tenant) == counted["hits"]
        assert value(metrics, "driftnet_loader_hits_total", tenant=tenant) == counted["hits"]
    assert Counter(by_label(metrics, "driftnet_collector_rejected_requests_total",
                            "reason")) == Counter({"unknown_key": 1})
