"""What counting costs: the collector's metrics per request, the loader's per batch.

    .venv/bin/python bench/metrics.py [--requests 200000] [--events 2000] [--tenants 50]

In process, no HTTP: the collector's calls for one acknowledged hit (bytes in, bytes out,
the ack latency histogram, the tenant's hit, the request by route/protocol/status), in µs
per request; and the loader's accounting of one batch (LoaderMetrics.batch: per-tenant
written/duplicate/quarantined-by-reason counts from the Arrow tables a commit added), in
µs per batch and per event. bench/collector.py with ``--baseline`` measures the collector's
cost end to end (CPU per request, with and without). Prints JSON and writes
bench/results/metrics.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from ingest.collector.routes import route_name  # noqa: E402
from ingest.metrics.collector import CollectorMetrics  # noqa: E402
from ingest.metrics.loader import LoaderMetrics  # noqa: E402
from ingest.metrics.tenants import TenantLabels  # noqa: E402


def collector_us(requests: int) -> float:
    metrics = CollectorMetrics(CollectorRegistry(), TenantLabels(50))
    started = time.perf_counter()
    for i in range(requests):
        t = time.perf_counter()
        metrics.received("segment", 635)
        metrics.acknowledged("segment", "acme" if i % 2 else "globex", 700, t)
        metrics.request(route_name("/v1/track"), "segment", 200)
    return (time.perf_counter() - started) / requests * 1e6


def batch_tables(events: int, tenants: int) -> dict[str, pa.Table]:
    now = dt.datetime.now(dt.UTC)
    names = [f"t{i % tenants:03d}" for i in range(events)]
    ev = pa.table({"tenant": names, "is_duplicate": [i % 40 == 0 for i in range(events)]})
    bad = events // 50
    quarantine = pa.table({"tenant": names[:bad],
                           "reason": ["payload_format" if i % 2 else "size" for i in range(bad)]})
    raw = pa.table({"tenant": names[: events // 5],
                    "source_partition": pa.array([i % 6 for i in range(events // 5)], pa.int32()),
                    "received_at": pa.array([now] * (events // 5), pa.timestamp("us", "UTC"))})
    return {"raw": raw, "events": ev, "quarantine": quarantine}


def loader_us(events: int, tenants: int, batches: int = 200) -> float:
    metrics = LoaderMetrics(CollectorRegistry(), TenantLabels(50))
    tables = batch_tables(events, tenants)
    files = {"raw": tenants, "events": tenants, "quarantine": tenants}
    commits = {"raw": 0.01, "events": 0.02, "quarantine": 0.01}
    started = time.perf_counter()
    for _ in range(batches):
        metrics.batch(tables, {}, files, commits)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / batches * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--tenants", type=int, default=50)
    args = parser.parse_args()
    per_batch = loader_us(args.events, args.tenants)
    results = {
        "collector_us_per_request": round(collector_us(args.requests), 2),
        "loader_events_per_batch": args.events,
        "loader_tenants_per_batch": args.tenants,
        "loader_us_per_batch": round(per_batch, 1),
        "loader_us_per_event": round(per_batch / args.events, 3),
    }
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
