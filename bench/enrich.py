"""Enrichment bench: loader events/s with the chain on, off, and without each step.

    .venv/bin/python bench/enrich.py [--sessions 1500] [--batch-records 2000]

Builds transport records of realistic simulated traffic (driftnet.simulate.build_requests:
six browsers and 3% bots, search/social/email/paid/direct landings, batches, pixels, retries,
malformed hits; one client IP per visitor, 80% IPv4 and 20% IPv6; the example tenants, so
truncate, hash and none IP modes) and runs Pipeline.process over them with DuckDB on one
thread, after a warm-up pass (caches filled as in a long-running loader). A GeoIP database
covering the simulated IPs and a session store file in a temporary lake make every step do
its real work. Times are CPU seconds of this process (less noisy than wall time on a shared
machine), best of a few passes. The cost of each step is measured on one batch: the step
over its input (the previous steps' output, computed) and the final SELECT, minus that
SELECT alone; steps build lazy views computed in one pass, so the costs add up.

The issue's goal: the chain costs no more than half of the loader's throughput without it,
i.e. events/s with the chain >= 0.5 x events/s without it.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import duckdb
import orjson
import pyarrow as pa
from mmdb_writer import MMDBWriter
from netaddr import IPSet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from driftnet.simulate import SimulationConfig, build_requests  # noqa: E402
from ingest.collector.routes import find_route  # noqa: E402
from ingest.enrich import Batch, Chain, default_chain  # noqa: E402
from ingest.enrich.config import EnrichSettings  # noqa: E402
from ingest.loader.config import LoaderSettings  # noqa: E402
from ingest.loader.pipeline import Pipeline  # noqa: E402
from ingest.transport.base import Record  # noqa: E402
from schemas.envelope import encode_bundle, encode_frame  # noqa: E402
from schemas.tenants import Tenants, load_tenants  # noqa: E402

TENANTS = ROOT / "examples" / "tenants.toml"


def _visitor(body: bytes | None, params: dict[str, str] | None) -> str:
    if params and "a" in params:
        return params["a"]
    try:
        doc = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        return "malformed"
    if isinstance(doc, dict) and isinstance(doc.get("batch"), list) and doc["batch"]:
        doc = doc["batch"][0]
    return str(doc.get("anonymousId", "unknown")) if isinstance(doc, dict) else "unknown"


def client_ip(visitor: str) -> str:
    """A stable public-looking IP per visitor: 80% IPv4, 20% IPv6."""
    digest = hashlib.sha256(visitor.encode()).digest()
    if digest[0] < 205:
        return str(ipaddress.IPv4Address(bytes([digest[1] % 200 + 20, *digest[2:5]])))
    return str(ipaddress.IPv6Address(b"\x20\x01\x0d\xb8" + digest[4:16]))


def build_records(tenants: Tenants, sessions: int, seed: int) -> tuple[list[Record], int]:
    """Transport records (bundles of 1-8 envelopes, as group commit makes them)."""
    requests = build_requests(SimulationConfig(url="http://bench", tenants=tenants,
                                               sessions=sessions, seed=seed))
    now = int(time.time() * 1e6)
    frames: list[bytes] = []
    for r in requests:
        route = find_route(r.path)
        if route is None:
            continue
        headers = {k.lower(): v for k, v in r.headers.items() if k.lower() != "authorization"}
        query = urlencode(r.params or {})
        visitor = _visitor(r.body, {k: v[0] for k, v in parse_qs(query).items()})
        header = {"v": 1, "tenant": r.tenant, "received_at": now, "protocol": route.protocol,
                  "method": r.method, "path": r.path, "query": query, "headers": headers,
                  "ip": client_ip(visitor)}
        frames.append(encode_frame(header, r.body or b""))
    rng = random.Random(seed)
    records: list[Record] = []
    i = 0
    while i < len(frames):
        n = rng.randint(1, 8)
        records.append(Record(0, len(records), encode_bundle(frames[i:i + n])))
        i += n
    return records, len(frames)


def build_geo_database(path: Path) -> None:
    """A GeoLite2-City-layout file covering the simulated address space."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    countries = ["DE", "FR", "GB", "US", "ES", "NL", "SE", "IT"]
    for first in range(20, 220, 4):
        c = countries[first % len(countries)]
        writer.insert_network(IPSet([f"{first}.0.0.0/6"]), {
            "country": {"iso_code": c}, "subdivisions": [{"iso_code": "R1"}],
            "city": {"names": {"en": f"City {first}"}}})
    writer.insert_network(IPSet(["2001:db8::/32"]), {"country": {"iso_code": "US"},
                                                     "city": {"names": {"en": "Somewhere"}}})
    writer.to_db_file(str(path))


def measure(settings: LoaderSettings, tenants: Tenants, chain: Chain,
            records: list[Record], batch_records: int, passes: int) -> tuple[float, int]:
    """Best CPU seconds of ``passes`` passes over ``records`` (after a warm-up pass)."""
    pipeline = Pipeline(settings, tenants, chain=chain)
    try:
        for k in range(0, len(records), batch_records):  # warm-up: caches, DuckDB plans
            pipeline.process(records[k:k + batch_records], "log")
        best, events = float("inf"), 0
        for _ in range(passes):
            events = 0
            started = time.process_time()
            for k in range(0, len(records), batch_records):
                events += pipeline.process(records[k:k + batch_records], "log").events.num_rows
            best = min(best, time.process_time() - started)
        return best, events
    finally:
        pipeline.close()


def step_costs(chain: Chain, records: list[Record], settings: LoaderSettings,
               tenants: Tenants, repeat: int) -> tuple[int, list[tuple[str, float]]]:
    """Marginal CPU seconds of each step on one batch: the step over its (computed) input
    and the final SELECT, minus the same SELECT without the step; best of ``repeat``."""
    captured: dict[str, pa.Table] = {}

    def capture(con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
        captured["events"] = con.sql(f"SELECT * FROM {relation}").to_arrow_table()
        if batch.hits is not None:
            captured["hits"] = con.sql(f"SELECT * FROM {batch.hits}").to_arrow_table()
        return relation

    pipeline = Pipeline(settings, tenants, chain=Chain([("capture", capture)]))
    try:
        pipeline.process(records, "log")
    finally:
        pipeline.close()
    con = duckdb.connect(config={"threads": 1})
    con.execute("SET TimeZone = 'UTC'")
    con.register("bench_hits", captured["hits"])

    def best(action: Callable[[], object]) -> float:
        times = []
        for _ in range(repeat):
            started = time.process_time()
            action()
            times.append(time.process_time() - started)
        return min(times)

    costs: list[tuple[str, float]] = []
    table = captured["events"]
    for index, name in enumerate(chain.names):
        con.register("bench_in", table)

        def with_step(index: int = index) -> pa.Table:
            batch = chain.begin(con, "bench_in", "bench_hits")
            out = con.sql(f"SELECT * FROM {chain.run_step(con, index, 'bench_in', batch)}"
                          ).to_arrow_table()
            batch.unit_done(ok=True)
            batch.succeeded()
            return out

        table = with_step()  # also warms the step's caches, as in a running loader
        without = best(lambda: con.sql("SELECT * FROM bench_in").to_arrow_table())
        costs.append((name, best(with_step) - without))
        con.unregister("bench_in")
    con.close()
    return captured["events"].num_rows, costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000, help="simulated sessions")
    parser.add_argument("--batch-records", type=int, default=2000,
                        help="transport records per Pipeline.process call (the loader's "
                             "max_batch_records)")
    parser.add_argument("--passes", type=int, default=2, help="measured passes (best counts)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    tenants = load_tenants(TENANTS)
    records, hits = build_records(tenants, args.sessions, args.seed)
    with tempfile.TemporaryDirectory(prefix="enrich-bench-") as tmp:
        lake = Path(tmp) / "lake"
        lake.mkdir()
        geo = Path(tmp) / "city.mmdb"
        build_geo_database(geo)
        settings = LoaderSettings(lake=lake, duckdb_threads=1)
        enrich = EnrichSettings.model_validate({"geo": {"database": str(geo)}})

        print(f"{len(records)} records, {hits} hits, batches of {args.batch_records} records, "
              f"DuckDB threads=1, CPU time, best of {args.passes} passes")
        off_s, events = measure(settings, tenants, Chain(()), records, args.batch_records,
                                args.passes)
        on_s, _ = measure(settings, tenants, default_chain(enrich, tenants, lake), records,
                          args.batch_records, args.passes)
        print(f"{events} events per pass")
        for label, value in (("chain off", off_s), ("chain on", on_s)):
            print(f"{label:10s}: {events / value:10,.0f} events/s  "
                  f"({value * 1e6 / events:5.1f} us/event)")
        ratio = off_s / on_s
        print(f"on/off    : {ratio:10.2f}  (goal >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
        chain = default_chain(enrich, tenants, lake)
        n, costs = step_costs(chain, records[:args.batch_records], settings, tenants, 5)
        chain.close()
        print(f"cost of each step on one batch of {n} events (best of 5):")
        for name, seconds in costs:
            print(f"  {name:18s} {seconds * 1e6 / n:6.2f} us/event")
        print(f"  {'sum':18s} {sum(c for _, c in costs) * 1e6 / n:6.2f} us/event")


if __name__ == "__main__":
    main()
