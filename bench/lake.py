"""Lake bench: 500 tenants on Delta tables, file counts under continuous maintenance,
one tenant's queries, the loader with many tenants, commit latency, forget.

    .venv/bin/python bench/lake.py [--tenants 500] [--hours 2] [--rate 200]

1. **A simulated day, faster than real time.** 500 tenants with Zipf-distributed traffic
   (exponent 1.1, ``--rate`` events/s in all) are appended to the lake by the real lake
   writer (ingest/lake/writer.py: data files, Delta commits with transport offsets), one
   flush at a time with the loader's adaptive flush interval (one file per table and
   tenant-day a flush; 500 tenants make it flush about every 25 simulated seconds), while the
   real maintenance task runs a pass every 10 simulated seconds on a simulated clock. The
   busiest ``--hours`` of the day are simulated flush by flush (all compaction tiers fill in
   that time; after it, a busy tenant-day only gains a 256 MB file about hourly); then the
   clock moves past the day's close and maintenance sorts the day. Reported: files per
   tenant-day while the day is open (max over the run and at the end, all tenants and the
   busiest) and once closed; commit latency p50/p95 of the appends.
2. **One tenant among 500**: ``analytics.connect``, ``count(*)`` of events and a GROUP BY
   over the current (open) day, for the busiest tenant and a median one.
3. **Loader with 500 active tenants vs one**: the real loader drains an embedded log of the
   same simulated envelopes, once all for one tenant, once spread over 500 (Zipf); events/s
   (best of three alternating runs) and their ratio (the goal: >= 0.8).
4. **forget across 500 tenant-days**: one tenant with 500 days of history (one sorted file a
   day, as maintenance leaves closed days), a visitor present on 50 of them.

Figures go to stdout (JSON) and bench/results/lake.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import simulated_frames  # noqa: E402
from ingest.lake.config import MaintainSettings  # noqa: E402
from ingest.lake.forget import Forgetter, Identifier  # noqa: E402
from ingest.lake.maintain import Maintainer  # noqa: E402
from ingest.lake.writer import LakeWriter, append_rows  # noqa: E402
from ingest.loader.config import LoaderSettings  # noqa: E402
from ingest.loader.loop import Loader  # noqa: E402
from ingest.transport.config import EmbeddedLogSettings  # noqa: E402
from ingest.transport.embedded import EmbeddedConsumer, EmbeddedProducer, log_lag  # noqa: E402
from schemas.delta import table_snapshot  # noqa: E402
from schemas.envelope import encode_bundle, encode_frame, iter_frames  # noqa: E402
from schemas.event import EVENT_SCHEMA  # noqa: E402
from schemas.lake import ROW_SCHEMAS  # noqa: E402
from schemas.storage import LakeLocation  # noqa: E402
from schemas.tenants import load_tenants  # noqa: E402
from schemas.version import PIPELINE_VERSION  # noqa: E402

DAY = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
PAGE = "https://shop-{t}.example/products/{p}?utm_source=newsletter&utm_medium=email"
UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/131.0.0.0 Safari/537.36")


def _zipf_weights(n: int, s: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


def _tenant(k: int) -> str:
    return f"t{k:03d}"


def _flush_tables(rng: np.random.Generator, counts: np.ndarray, start: dt.datetime,
                  seconds: float, offset: int) -> tuple[dict[str, pa.Table], int]:
    """One flush's raw, events and quarantine rows: counts[k] events of tenant k."""
    tenants: list[str] = []
    for k, c in enumerate(counts):
        tenants += [_tenant(k)] * int(c)
    n = len(tenants)
    offsets = np.arange(offset, offset + n)
    base = int(start.timestamp() * 1e6)
    received = base + np.sort(rng.integers(0, int(seconds * 1e6), n))
    visitors = rng.integers(0, 20_000, n)
    products = rng.integers(0, 3_000, n)
    ts = pa.array(received, pa.timestamp("us", tz="UTC"))
    ids = [f"e-{o}" for o in offsets]
    names = rng.choice(["page_view", "Product Viewed", "Product Added", "Order Completed"], n,
                       p=[0.5, 0.35, 0.12, 0.03])
    events = {
        "tenant": tenants, "event_id": ids, "event_type": ["track"] * n,
        "event_name": names.tolist(), "protocol": ["segment"] * n,
        "received_at": ts, "derived_ts": ts, "client_ts": ts,
        "anonymous_id": [f"v-{t}-{v}" for t, v in zip(tenants, visitors, strict=True)],
        "page_url": [PAGE.format(t=t, p=p) for t, p in zip(tenants, products, strict=True)],
        "user_agent": [UA] * n, "product_id": [f"sku-{p}" for p in products],
        "properties": [orjson.dumps({"product_id": f"sku-{p}", "price": float(p % 97) + 0.9,
                                     "currency": "EUR"}).decode() for p in products],
        "is_duplicate": [False] * n, "source": ["bench"] * n, "source_partition": [0] * n,
        "source_offset": offsets, "source_index": [0] * n, "item_index": [0] * n,
        "pipeline_version": [PIPELINE_VERSION] * n,
    }
    raw = {
        "tenant": tenants, "received_at": ts, "envelope_version": [1] * n,
        "protocol": ["segment"] * n, "method": ["POST"] * n, "path": ["/v1/track"] * n,
        "query": [""] * n, "headers": ['{"user-agent": "' + UA + '"}'] * n,
        "ip": ["203.0.113.0"] * n,
        "body": [orjson.dumps({"type": "track", "event": str(e), "messageId": i,
                               "properties": {"p": int(p)}}) for e, i, p
                 in zip(names, ids, products, strict=True)],
        "source": ["bench"] * n, "source_partition": [0] * n, "source_offset": offsets,
        "source_index": [0] * n,
    }
    out = {}
    for name, columns in (("events", events), ("raw", raw)):
        schema = ROW_SCHEMAS[name]  # type: ignore[index]
        arrays = [pa.array(columns[f.name], f.type) if f.name in columns
                  else pa.nulls(n, f.type) for f in schema]
        out[name] = pa.Table.from_arrays(arrays, schema=schema)
    out["quarantine"] = ROW_SCHEMAS["quarantine"].empty_table()
    return out, offset + n


def _files_per_partition(lake: LakeLocation, table: str = "events") -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in table_snapshot(lake, table).files:  # type: ignore[arg-type]
        key = f"{f.tenant}/{f.date}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def simulate_day(workdir: Path, tenants: int, hours: float, rate: float) -> dict[str, object]:
    lake = LakeLocation.parse(workdir / "day-lake")
    rng = np.random.default_rng(7)
    weights = _zipf_weights(tenants)
    loader = LoaderSettings()
    settings = MaintainSettings()
    clock = {"now": DAY}
    writer = LakeWriter(lake)
    maintainer = Maintainer(lake, settings, clock=lambda: clock["now"])
    commit_ms: list[float] = []
    open_max: list[int] = []
    busiest: list[int] = []
    interval = loader.flush_interval_s
    offset = 0
    flushes = 0
    events = 0
    last_pass = DAY
    append_s = maintain_s = 0.0
    started = time.perf_counter()
    end = DAY + dt.timedelta(hours=hours)
    while clock["now"] < end:
        counts = rng.poisson(weights * rate * interval)
        tables, new_offset = _flush_tables(rng, counts, clock["now"], interval, offset)
        if new_offset > offset:
            t0 = time.perf_counter()
            result = writer.append("bench", tables, {0: new_offset - 1})
            append_s += time.perf_counter() - t0
            commit_ms += [s * 1000 for s in result.commit_seconds.values()]
            events += new_offset - offset
            offset = new_offset
            flushes += 1
            tenant_days = max((len(f) for f in result.files.values()), default=0)
            interval = min(loader.max_flush_interval_s,
                           max(loader.flush_interval_s, tenant_days / loader.target_files_per_s))
        clock["now"] += dt.timedelta(seconds=interval)
        if (clock["now"] - last_pass).total_seconds() >= settings.interval_s:
            t0 = time.perf_counter()
            maintainer.run_once(vacuum=False)
            maintain_s += time.perf_counter() - t0
            last_pass = clock["now"]
            counts_now = _files_per_partition(lake)
            open_max.append(max(counts_now.values()))
            busiest.append(counts_now.get(f"{_tenant(0)}/{DAY.date()}", 0))
    simulated_s = (clock["now"] - DAY).total_seconds()
    elapsed = time.perf_counter() - started
    at_end = _files_per_partition(lake)
    queries = {"busiest": _queries(lake, _tenant(0)),
               "median": _queries(lake, _tenant(tenants // 2))}
    # close the day: past midnight plus closed_after_hours, then sort every tenant-day
    clock["now"] = DAY + dt.timedelta(days=1, hours=settings.closed_after_hours, minutes=5)
    closer = Maintainer(lake, settings.model_copy(update={"max_closed_days_per_pass": 10_000}),
                        clock=lambda: clock["now"])
    close_started = time.perf_counter()
    closer.run_once(vacuum=False)
    close_s = time.perf_counter() - close_started
    closed = _files_per_partition(lake)
    commit_ms.sort()
    return {
        "tenants": tenants, "events_per_s": rate, "simulated_hours": round(simulated_s / 3600, 2),
        "wall_s": round(elapsed, 1), "speedup_vs_real_time": round(simulated_s / elapsed, 1),
        "flushes": flushes, "events": events, "final_flush_interval_s": interval,
        "append_s": round(append_s, 1), "maintenance_s": round(maintain_s, 1),
        "append_share_of_real_time": round(append_s / simulated_s, 3),
        "maintenance_share_of_real_time": round(maintain_s / simulated_s, 3),
        "open_files_per_tenant_day_max_over_run": max(open_max, default=0),
        "open_files_busiest_tenant_max_over_run": max(busiest, default=0),
        "open_files_per_tenant_day_at_end_max": max(at_end.values()),
        "open_files_per_tenant_day_at_end_median": statistics.median(at_end.values()),
        "closed_files_per_tenant_day_max": max(closed.values()),
        "closed_files_per_tenant_day_median": statistics.median(closed.values()),
        "close_the_day_s": round(close_s, 1),
        "commit_ms_p50": round(commit_ms[len(commit_ms) // 2], 1),
        "commit_ms_p95": round(commit_ms[int(0.95 * (len(commit_ms) - 1))], 1),
        "queries_open_day": queries,
        "queries_closed_day": {"busiest": _queries(lake, _tenant(0)),
                               "median": _queries(lake, _tenant(tenants // 2))},
    }


def _queries(lake: LakeLocation, tenant: str) -> dict[str, float]:
    from analytics import connect

    out: dict[str, float] = {}
    for _ in range(2):  # the second run is the one reported: a warm page cache
        started = time.perf_counter()
        con = connect(lake, tenant)
        out["connect_s"] = time.perf_counter() - started
        started = time.perf_counter()
        out["events"] = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        out["count_s"] = time.perf_counter() - started
        started = time.perf_counter()
        con.execute("SELECT event_name, count(*), count(DISTINCT anonymous_id) FROM events "
                    "WHERE date = (SELECT max(date) FROM events) GROUP BY 1").fetchall()
        out["group_by_day_s"] = time.perf_counter() - started
        con.close()
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def _tenants_file(path: Path, tenants: int) -> Path:
    lines = []
    for k in range(tenants):
        lines += ["[[tenant]]", f'id = "{_tenant(k)}"', f'write_keys = ["key-{k}"]',
                  'ip_mode = "truncate"', ""]
    path.write_text("\n".join(lines))
    return path


def loader_ratio(workdir: Path, tenants: int, sessions: int) -> dict[str, float]:
    frames, events = simulated_frames(sessions)
    weights = _zipf_weights(tenants)
    rng = np.random.default_rng(11)
    tenants_path = _tenants_file(workdir / "tenants.toml", tenants)
    out: dict[str, float] = {}
    best: dict[str, float] = {}
    for run, (label, spread) in enumerate([("one_tenant", False), ("many_tenants", True)] * 3):
        log = EmbeddedLogSettings(path=workdir / f"{label}-{run}.sqlite")
        producer = EmbeddedProducer(log)
        owners = rng.choice(tenants, len(frames), p=weights) if spread else np.zeros(
            len(frames), dtype=int)
        rewritten = []
        for frame, owner in zip(frames, owners, strict=True):
            (header, body), = iter_frames(encode_bundle([frame]))
            rewritten.append(encode_frame({**orjson.loads(header), "tenant": _tenant(int(owner))},
                                          body))
        for i in range(0, len(rewritten), 40):
            producer.produce([(None, encode_bundle(rewritten[i:i + 40]))])
        producer.close()
        settings = LoaderSettings(lake=workdir / f"{label}-{run}-lake", duckdb_threads=1)
        loader = Loader(lambda listener, log=log: EmbeddedConsumer(log, listener=listener),
                        settings, load_tenants(tenants_path))
        stop = threading.Event()
        thread = threading.Thread(target=loader.run, args=(stop,))
        started = time.perf_counter()
        thread.start()
        while log_lag(log) > 0:
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        stop.set()
        thread.join()
        best[label] = max(best.get(label, 0.0), events / elapsed)
        out[f"loader_{label}_events_per_s"] = round(best[label])
        out[f"loader_{label}_files"] = loader.stats.files
        out[f"loader_{label}_flushes"] = loader.stats.flushes
    out["loader_events"] = events
    out["loader_ratio_many_to_one"] = round(out["loader_many_tenants_events_per_s"]
                                            / out["loader_one_tenant_events_per_s"], 3)
    return out


def forget_bench(workdir: Path, days: int, per_day: int) -> dict[str, float]:
    lake = LakeLocation.parse(workdir / "forget-lake")
    rng = np.random.default_rng(3)
    person = "visitor-7f3a9c51e2d4"
    for d in range(days):
        day = DAY - dt.timedelta(days=days - d)
        n = per_day
        ts = pa.array([int((day.timestamp() + i * 86_400 / n) * 1e6) for i in range(n)],
                      pa.timestamp("us", tz="UTC"))
        visitors = [f"v-{v}" for v in rng.integers(0, 5_000, n)]
        if d % (days // 50 or 1) == 0:
            visitors[0] = person
        columns = {"tenant": ["acme"] * n, "event_id": [f"{d}-{i}" for i in range(n)],
                   "event_type": ["track"] * n, "event_name": ["page_view"] * n,
                   "protocol": ["segment"] * n, "received_at": ts, "derived_ts": ts,
                   "anonymous_id": visitors, "is_duplicate": [False] * n,
                   "source": ["bench"] * n, "source_partition": [0] * n,
                   "source_offset": list(range(d * n, (d + 1) * n)), "source_index": [0] * n,
                   "item_index": [0] * n, "pipeline_version": [PIPELINE_VERSION] * n}
        arrays = [pa.array(columns[f.name], f.type) if f.name in columns
                  else pa.nulls(n, f.type) for f in EVENT_SCHEMA]
        append_rows(lake, "events", pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA))
    forgetter = Forgetter(lake)
    started = time.perf_counter()
    receipt = forgetter.forget("acme", [Identifier("anonymous_id", person)])
    elapsed = time.perf_counter() - started
    forgetter.close()
    return {"forget_tenant_days": days, "forget_events_scanned": days * per_day,
            "forget_rows_removed": receipt.rows_removed,
            "forget_files_rewritten": sum(t.files_rewritten for t in receipt.tables.values()),
            "forget_s": round(elapsed, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--hours", type=float, default=1.0,
                        help="Simulated hours of the day, flush by flush.")
    parser.add_argument("--rate", type=float, default=200.0, help="Events/s, all tenants.")
    parser.add_argument("--sessions", type=int, default=8000,
                        help="Simulated sessions for the loader ratio.")
    parser.add_argument("--forget-days", type=int, default=500)
    parser.add_argument("--forget-per-day", type=int, default=2000)
    parser.add_argument("--skip", action="append", default=[],
                        choices=["day", "loader", "forget"])
    args = parser.parse_args()
    results: dict[str, object] = {}
    work = Path(tempfile.mkdtemp(prefix="driftnet-lake-bench-"))
    try:
        if "loader" not in args.skip:
            results.update(loader_ratio(work, args.tenants, args.sessions))
            print(json.dumps(results), flush=True)
        if "forget" not in args.skip:
            results.update(forget_bench(work, args.forget_days, args.forget_per_day))
            print(json.dumps(results), flush=True)
        if "day" not in args.skip:
            results["day"] = simulate_day(work, args.tenants, args.hours, args.rate)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "lake.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
