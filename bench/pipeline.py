"""Walking-pipeline bench: collector vs a bare ASGI app, loader throughput, beacon latency.

    .venv/bin/python bench/pipeline.py [--seconds 10] [--connections 64]

Figures (all measured in this run, on this machine):
- collector requests/s with durable acks (embedded log, synchronous=FULL) as a ratio of a
  bare uvicorn ASGI app that parses the same body and answers 204 (bench/bare_app.py);
- the same for 50-event batch bodies, as events/s;
- loader events/s on one core (DuckDB threads=1) draining a pre-filled embedded log;
- beacon-to-queryable latency p50/p95 through `driftnet up` (flush interval 1 s).
Needs wrk (Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    AUTH,
    TENANTS,
    event,
    free_port,
    lake_event_ids,
    simulated_frames,
    stop,
    wait_port,
    wrk,
)
from ingest.loader.config import LoaderSettings  # noqa: E402
from ingest.loader.loop import Loader  # noqa: E402
from ingest.transport.config import EmbeddedLogSettings  # noqa: E402
from ingest.transport.embedded import EmbeddedConsumer, EmbeddedProducer, log_lag  # noqa: E402
from schemas.envelope import encode_bundle  # noqa: E402
from schemas.tenants import load_tenants  # noqa: E402


def serve(args: list[str], port: int, workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / f"server-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    wait_port(port)
    return proc


def bench_collector(seconds: int, connections: int, workdir: Path) -> dict[str, float]:
    single = orjson.dumps(event(1))
    batch = orjson.dumps({"batch": [event(i) for i in range(50)]})
    results: dict[str, float] = {"single_body_bytes": len(single), "batch_body_bytes": len(batch)}
    port = free_port()
    bare = serve([sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench"),
                  "bare_app:app", "--port", str(port), "--loop", "uvloop", "--http",
                  "httptools", "--no-access-log", "--log-level", "warning"], port, workdir)
    try:
        results["bare_single_rps"] = wrk(f"http://127.0.0.1:{port}/v1/track", single, seconds,
                                         connections, workdir)
        results["bare_batch_rps"] = wrk(f"http://127.0.0.1:{port}/v1/batch", batch, seconds,
                                        connections, workdir)
    finally:
        stop(bare)
    port = free_port()
    collector = serve([sys.executable, "-m", "driftnet", "collector", "--tenants", str(TENANTS),
                       "--port", str(port), "--log", str(workdir / "bench-log.sqlite")],
                      port, workdir)
    try:
        results["collector_single_rps"] = wrk(f"http://127.0.0.1:{port}/v1/track", single,
                                              seconds, connections, workdir)
        results["collector_batch_rps"] = wrk(f"http://127.0.0.1:{port}/v1/batch", batch,
                                             seconds, connections, workdir)
    finally:
        stop(collector)
    results["single_ratio"] = results["collector_single_rps"] / results["bare_single_rps"]
    results["batch_ratio"] = results["collector_batch_rps"] / results["bare_batch_rps"]
    results["collector_batch_events_per_s"] = results["collector_batch_rps"] * 50
    results["bare_batch_events_per_s"] = results["bare_batch_rps"] * 50
    return results


def bench_loader(sessions: int, workdir: Path) -> dict[str, float]:
    """Fill an embedded log with simulated traffic as the collector would, then drain it."""
    frames, events = simulated_frames(sessions)
    log = EmbeddedLogSettings(path=workdir / "loader-log.sqlite")
    producer = EmbeddedProducer(log)
    for i in range(0, len(frames), 40):  # ~40 hits per group commit, as under load
        producer.produce([(None, encode_bundle(frames[i:i + 40]))])
    producer.close()
    settings = LoaderSettings(lake=workdir / "loader-lake", duckdb_threads=1,
                              max_batch_records=1000, flush_interval_s=0.2)
    loader = Loader(lambda listener: EmbeddedConsumer(log, listener=listener), settings,
                    load_tenants(TENANTS))
    stop_event = threading.Event()
    thread = threading.Thread(target=loader.run, args=(stop_event,))
    started = time.perf_counter()
    thread.start()
    while log_lag(log) > 0:  # cheap, but it opens the log: not too often
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    stop_event.set()
    thread.join()
    return {"loader_hits": len(frames), "loader_events": events,
            "loader_seconds": elapsed, "loader_events_per_s": events / elapsed,
            "loader_hits_per_s": len(frames) / elapsed}


def bench_latency(beacons: int, rate: float, workdir: Path) -> dict[str, float]:
    port = free_port()
    lake = workdir / "latency-lake"
    server = serve([sys.executable, "-m", "driftnet", "up", "--tenants", str(TENANTS),
                    "--lake", str(lake), "--port", str(port), "--log",
                    str(workdir / "latency-log.sqlite")], port, workdir)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() or len(seen) < len(sent):
            found = lake_event_ids(lake, "acme")
            now = time.perf_counter()
            for event_id in found:
                seen.setdefault(event_id, now)
            if done.is_set() and time.perf_counter() - last_send > 30:
                break
            time.sleep(0.02)

    last_send = time.perf_counter()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            auth = {"Authorization": AUTH}
            for i in range(beacons):
                message = event(i)
                sent[str(message["messageId"])] = time.perf_counter()
                client.post("/v1/track", content=orjson.dumps(message), headers=auth)
                last_send = time.perf_counter()
                time.sleep(max(0.0, 1 / rate - (time.perf_counter() - last_send)))
        done.set()
        watcher.join()
    finally:
        stop(server)
    latencies = sorted(seen[k] - t for k, t in sent.items() if k in seen)
    if len(latencies) != len(sent):
        raise RuntimeError(f"{len(sent) - len(latencies)} beacons never became queryable")

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {"latency_beacons": len(latencies), "latency_p50_s": pct(0.5),
            "latency_p95_s": pct(0.95), "latency_max_s": latencies[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument("--beacons", type=int, default=300)
    parser.add_argument("--only", choices=["collector", "loader", "latency"])
    args = parser.parse_args()
    if shutil.which("wrk") is None and args.only in (None, "collector"):
        sys.exit("bench needs wrk: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="driftnet-bench-"))
    results: dict[str, float] = {}
    try:
        if args.only in (None, "collector"):
            results.update(bench_collector(args.seconds, args.connections, workdir))
        if args.only in (None, "loader"):
            results.update(bench_loader(args.sessions, workdir))
        if args.only in (None, "latency"):
            results.update(bench_latency(args.beacons, 100.0, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({k: round(v, 3) for k, v in results.items()}, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
