"""Analytics bench: a synthetic lake of N events, then SQL, discover and every export recipe.

The lake is written straight into the events Delta table (ingest/lake, EVENT_SCHEMA),
generated with vectorised numpy/pyarrow (no HTTP): 10 million events take about a minute.
The distributions are shaped like a real shop: session lengths are geometric, product
popularity is Zipf, a few percent of the sessions convert (more on desktop, from email and
for A/B variant ``B``), visitors come back, about 3% are bots, and a third of the sessions
carry no client session id (so the analytics fallback sessionisation runs).

Each measured step runs in a fresh child process, so its peak RSS (DuckDB and Arrow
included, from ``wait4``) is its own; the child also reports Arrow's peak allocation.

    python bench/analytics.py --events 1000000               # development size
    python bench/analytics.py --events 10000000 --keep-lake  # the reported run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.lake.files import FileWriter
from ingest.lake.tables import commit, open_for_write
from schemas.event import EVENT_SCHEMA
from schemas.storage import LakeLocation
from schemas.version import PIPELINE_VERSION

# As a script, bench/ comes first on sys.path and this file would shadow the `analytics`
# package that the measured steps import.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DEVICES = ["desktop", "mobile", "tablet"]
DEVICE_P = [0.45, 0.48, 0.07]
BROWSERS = ["Chrome", "Safari", "Firefox", "Edge", "Samsung Internet"]
OSES = ["Windows", "iOS", "Android", "Mac OS X", "Linux"]
CITIES = [("DE", "BE", "Berlin"), ("DE", "HH", "Hamburg"), ("DE", "BY", "Munich"),
          ("FR", "IDF", "Paris"), ("GB", "ENG", "London"), ("NL", "NH", "Amsterdam"),
          ("US", "NY", "New York"), ("AT", "9", "Vienna")]
CITY_P = [0.22, 0.12, 0.12, 0.14, 0.14, 0.08, 0.12, 0.06]
REFERRERS = [("direct", None, None), ("search", "Google", "https://www.google.com/"),
             ("social", "Facebook", "https://www.facebook.com/"),
             ("email", "Newsletter", None), ("paid", "Google Ads", "https://www.google.com/")]
REFERRER_P = [0.35, 0.33, 0.12, 0.08, 0.12]
CONVERSION_BY_DEVICE = np.array([0.05, 0.025, 0.035])
CONVERSION_BY_REFERRER = np.array([1.0, 1.0, 0.6, 2.2, 1.3])
CATEGORIES = ["shoes", "shirts", "trousers", "jackets", "bags", "socks", "hats", "watches"]
BROWSE = np.array(["page_view", "Product List Viewed", "Product Viewed", "Products Searched",
                   "Product Added", "Product Removed"])
BROWSE_P = [0.30, 0.16, 0.38, 0.06, 0.08, 0.02]
ACTION = {"page_view": None, "Product List Viewed": "list_view", "Product Viewed": "view",
          "Products Searched": "search", "Product Added": "add", "Product Removed": "remove",
          "Checkout Started": "checkout", "Order Completed": "purchase"}


def _take(values: list[str | None], idx: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(idx))


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _hex(rng: np.random.Generator, n: int) -> pa.Array:
    return pc.cast(pa.array(rng.integers(0, 2**62, n, dtype=np.int64)), pa.string())


def generate(n_events: int, tenant: str, seed: int = 7, days: int = 60,
             products: int = 50_000, first_session: int = 0, first_offset: int = 0) -> pa.Table:
    """About ``n_events`` canonical events of one tenant, as an Arrow table (EVENT_SCHEMA).

    ``first_session``/``first_offset`` number sessions and lineage offsets after those of
    earlier chunks, so chunks generated one after the other make one consistent lake.
    """
    rng = np.random.default_rng(seed)
    n_sessions = max(1, n_events // 8)
    length = np.minimum(rng.geometric(1 / 8, n_sessions), 200)
    device = rng.choice(3, n_sessions, p=DEVICE_P)
    referrer = rng.choice(len(REFERRERS), n_sessions, p=REFERRER_P)
    variant = rng.choice(3, n_sessions, p=[0.4, 0.4, 0.2])  # A, B, (not in test)
    p_convert = (CONVERSION_BY_DEVICE[device] * CONVERSION_BY_REFERRER[referrer]
                 * np.where(variant == 1, 1.6, 1.0))
    converted = rng.random(n_sessions) < p_convert
    length = np.where(converted, np.maximum(length, 4), length)
    visitors = max(1, int(n_sessions * 0.6))
    visitor = (rng.zipf(1.6, n_sessions) + rng.integers(0, visitors, n_sessions)) % visitors
    start_s = rng.uniform(0, days * 86400, n_sessions)
    start_s -= np.where(rng.random(n_sessions) < 0.5, 0, (start_s % 86400) * 0.3)
    tracked = rng.random(n_sessions) > 0.33
    bot = rng.random(n_sessions) < 0.03
    city = rng.choice(len(CITIES), n_sessions, p=CITY_P)
    logged_in = rng.random(n_sessions) < 0.12

    sess = np.repeat(np.arange(n_sessions), length)
    sess_label = pc.cast(pa.array(sess + first_session), pa.string())
    n = len(sess)
    offsets = np.cumsum(length) - length
    pos = np.arange(n) - np.repeat(offsets, length)
    last = np.repeat(length, length) - 1 - pos
    kind = rng.choice(len(BROWSE), n, p=BROWSE_P)
    names = BROWSE[kind]
    names[pos == 0] = "page_view"
    conv = converted[sess]
    names[conv & (last == 2)] = "Product Added"
    names[conv & (last == 1)] = "Checkout Started"
    names[conv & (last == 0)] = "Order Completed"
    gaps = rng.exponential(40.0, n)
    gaps[pos == 0] = 0
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[offsets], length)
    ts_us = ((start_s[sess] + within) * 1e6).astype(np.int64)
    received = pa.array(ts_us + EPOCH.timestamp().__int__() * 1_000_000 + 150_000,
                        pa.timestamp("us", tz="UTC"))
    client = pa.array(ts_us + int(EPOCH.timestamp()) * 1_000_000, pa.timestamp("us", tz="UTC"))

    product = np.minimum(rng.zipf(1.3, n), products)
    is_product = np.isin(names, ["Product Viewed", "Product Added", "Product Removed"])
    pid = pc.if_else(pa.array(is_product), pc.cast(pa.array(product), pa.string()), None)
    category = _take(CATEGORIES, product % len(CATEGORIES))
    price = np.round(5 + (product % 97) * 1.5, 2)
    all_names = [*BROWSE.tolist(), "Checkout Started", "Order Completed"]
    action = pa.array([ACTION[x] for x in all_names])
    action_names = pa.array(all_names)
    names_arr = pa.array(names)
    product_action = action.take(pc.index_in(names_arr, action_names))
    is_page = pc.equal(names_arr, "page_view")
    is_order = pc.equal(names_arr, "Order Completed")
    is_search = pc.equal(names_arr, "Products Searched")

    session_id = pc.if_else(pa.array(tracked[sess]),
                            _join("s-", sess_label), None)
    anon = _join("a-", pc.cast(pa.array(visitor[sess]), pa.string()))
    user = pc.if_else(pa.array(logged_in[sess]),
                      _join("u-", pc.cast(pa.array(visitor[sess]), pa.string())), None)
    paths = pc.if_else(pa.array(is_product), _join("/p/", pid),
                       _take(["/", "/c/shoes", "/c/shirts", "/search", "/cart", "/sale"],
                             rng.integers(0, 6, n)))
    url = _join("https://shop.example", paths)
    ref = referrer[sess]
    ref_class = _take([r[0] for r in REFERRERS], ref)
    utm_source = _take([None, None, "facebook", "newsletter", "google"], ref)
    var_txt = _take(["A", "B", None], variant[sess])
    order_id = pc.if_else(is_order, _join("o-", sess_label), None)
    revenue = pc.if_else(is_order, pa.array(np.round(price * rng.integers(1, 4, n), 2)), None)
    query = _take(["sneakers", "red shirt", "rain jacket", "socks", "leather bag"],
                  rng.integers(0, 5, n))
    props = pc.if_else(
        pa.array(is_product),
        _join('{"product_id":"', pid, '","category":"', category, '","price":',
              pc.cast(pa.array(price), pa.string()), ',"brand":"b', pc.cast(
                  pa.array(product % 300), pa.string()), '"}'),
        pc.if_else(is_order, _join('{"order_id":"', order_id, '","revenue":',
                                   pc.cast(revenue, pa.string()), ',"currency":"EUR"}'),
                   pc.if_else(is_search, _join('{"query":"', query, '"}'),
                              _join('{"path":"', paths, '"}'))))
    with_variant = pc.is_valid(var_txt)
    props = pc.if_else(with_variant, _join(pc.utf8_slice_codeunits(props, 0, -1),
                                           ',"ab_variant":"', var_txt, '"}'), props)
    device_txt = _take(DEVICES, device[sess])
    browser = _take(BROWSERS, rng.choice(5, n_sessions, p=[0.55, 0.25, 0.08, 0.08, 0.04])[sess])
    os_txt = _take(OSES, rng.choice(5, n_sessions, p=[0.35, 0.25, 0.28, 0.1, 0.02])[sess])
    ua = _join("Mozilla/5.0 (", os_txt, ") ", browser, "/120.0")
    context = _join('{"library":{"name":"analytics.js","version":"4.',
                    pc.cast(pa.array(rng.integers(0, 3, n)), pa.string()),
                    '.0"},"locale":"en-US","page":{"url":"', url, '"},"userAgent":"', ua, '"}')
    cities = city[sess]
    uniform = {
        "tenant": pa.array(np.full(n, tenant)),
        "event_id": _hex(rng, n),
        "event_type": pc.if_else(is_page, "page", "track"),
        "event_name": names_arr,
        "protocol": pa.array(np.full(n, "segment")),
        "platform": pa.array(np.full(n, "web")),
        "client_ts": client, "sent_ts": client, "received_at": received,
        "derived_ts": received,
        "anonymous_id": anon, "user_id": user, "session_id": session_id,
        "page_url": url, "page_host": pa.array(np.full(n, "shop.example")),
        "page_path": paths,
        "referrer": _take([r[2] for r in REFERRERS], ref), "referrer_class": ref_class,
        "referrer_source": _take([r[1] for r in REFERRERS], ref),
        "utm_source": utm_source,
        "utm_medium": _take([None, None, "social", "email", "cpc"], ref),
        "user_agent": ua, "ua_browser": browser, "ua_os": os_txt,
        "ua_device": pc.if_else(pa.array(bot[sess]), "bot", device_txt),
        "is_bot": pa.array(bot[sess]),
        "language": pa.array(np.full(n, "en-US")),
        "geo_country": _take([c[0] for c in CITIES], cities),
        "geo_region": _take([c[1] for c in CITIES], cities),
        "geo_city": _take([c[2] for c in CITIES], cities),
        "product_id": pid,
        "product_category": pc.if_else(pa.array(is_product), category, None),
        "product_action": product_action,
        "price": pc.if_else(pa.array(is_product), pa.array(price), None),
        "currency": pc.if_else(pc.or_(pa.array(is_product), is_order), "EUR", None),
        "order_id": order_id, "revenue": revenue,
        "search_query": pc.if_else(is_search, query, None),
        "properties": props, "context": context,
        "source": pa.array(np.full(n, "log")),
        "source_partition": pa.array(np.zeros(n, np.int32)),
        "source_offset": pa.array(np.arange(first_offset, first_offset + n, dtype=np.int64)),
        "source_index": pa.array(np.zeros(n, np.int32)),
        "item_index": pa.array(np.zeros(n, np.int32)),
        "pipeline_version": pa.array(np.full(n, PIPELINE_VERSION)),
    }
    columns = []
    for field in EVENT_SCHEMA:
        if field.name in uniform:
            columns.append(pc.cast(uniform[field.name], field.type))
        else:
            columns.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(columns, schema=EVENT_SCHEMA)


def write_lake(table: pa.Table, lake: Path, tenant: str, rows_per_file: int = 500_000) -> int:
    """Commit ``table`` to the lake's events table: files of ``rows_per_file`` per UTC date."""
    location = LakeLocation.parse(lake)
    delta = open_for_write(location, "events")
    writer = FileWriter(location)
    day = pc.cast(pc.cast(table["received_at"], pa.timestamp("us")), pa.date32())
    table = table.append_column("_day", day).sort_by([("received_at", "ascending")])
    written = []
    for date in pc.unique(table["_day"]).to_pylist():
        part = table.filter(pc.equal(table["_day"], date)).drop_columns(["_day"])
        for start in range(0, part.num_rows, rows_per_file):
            written.append(writer.write("events", tenant, date,
                                        part.slice(start, rows_per_file)))
    commit(delta, "events", [w.add_action() for w in written], operation="append")
    return len(written)


STEPS: dict[str, str] = {
    "sql: sessions computed from events (group by)": "",
    "store sessions (maintenance build)": "",
    "sql: events per day and name": (
        "SELECT date, event_name, count(*) AS n, count(DISTINCT anonymous_id) AS visitors "
        "FROM events GROUP BY ALL ORDER BY ALL"),
    "sql: conversion by device (sessions view)": (
        "SELECT device, referrer_class, count(*) AS sessions, avg(purchased::INT) AS cr, "
        "sum(revenue) AS revenue FROM sessions GROUP BY ALL ORDER BY ALL"),
    "discover": "",
    "discover --target purchase": "",
    "export sessions": "",
    "export intent": "",
    "export sql": "",
}


def run_step(step: str, lake: Path, tenant: str, out: Path) -> dict[str, object]:
    """Run one step in this process; return what it produced."""
    from analytics import connect
    from analytics.discover import DiscoverOptions, discover
    from analytics.export import ExportSpec, export_to_dir

    t0 = time.perf_counter()
    detail: object
    if step == "store sessions (maintenance build)":
        from analytics.stored_sessions import build_sessions
        shutil.rmtree(lake / "_derived", ignore_errors=True)   # measure a whole build
        built = build_sessions(LakeLocation.parse(lake), dt.datetime.now(dt.UTC), 2)
        detail = built.rebuilt
    elif step == "sql: sessions computed from events (group by)":
        with connect(lake, tenant, stored_sessions=False) as con:
            detail = con.sql(STEPS["sql: conversion by device (sessions view)"]
                             ).to_arrow_table().num_rows
    elif step.startswith("sql"):
        with connect(lake, tenant) as con:
            detail = con.sql(STEPS[step]).to_arrow_table().num_rows
    elif step.startswith("discover"):
        target = "purchase" if "target" in step else None
        with connect(lake, tenant) as con:
            report = discover(con, DiscoverOptions(target=target), tenant=tenant)
        detail = {"fields": len(report.catalog.fields),
                  "top_feature": report.target.features[0].field if report.target else None}
    else:
        recipe = step.split()[1]
        query = ("SELECT device, count(*) AS sessions, avg(purchased::INT) AS cr FROM sessions "
                 "WHERE ($split_start IS NULL OR start >= $split_start) AND "
                 "($split_end IS NULL OR start < $split_end) GROUP BY device")
        spec = ExportSpec(tenant=tenant, recipe=recipe,  # type: ignore[arg-type]
                          train_end=dt.datetime(2026, 2, 15, tzinfo=dt.UTC),
                          valid_end=dt.datetime(2026, 2, 22, tzinfo=dt.UTC),
                          query=query if recipe == "sql" else None)
        manifest = export_to_dir(lake, spec, out / recipe, overwrite=True)
        detail = {o.split: o.rows for o in manifest.outputs}
    return {"seconds": round(time.perf_counter() - t0, 2), "result": detail,
            "peak_rss_mb": _peak_rss_mb(),
            "arrow_peak_mb": round(pa.default_memory_pool().max_memory() / 2**20, 1)}


def _child(step: str, lake: Path, tenant: str, out: Path) -> dict[str, object]:
    proc = subprocess.run([sys.executable, __file__, "--step", step, "--lake", str(lake),
                           "--tenant", tenant, "--out", str(out)],
                          stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1],
                          check=False)
    if proc.returncode:
        raise RuntimeError(f"step {step!r} failed ({proc.returncode})")
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def build_lake(lake: Path, events: int, tenant: str, seed: int,
               chunk_events: int = 2_000_000) -> int:
    """Generate and write ``events`` in chunks (bounded memory); return files written."""
    files = sessions = offset = 0
    for k, start in enumerate(range(0, events, chunk_events)):
        table = generate(min(chunk_events, events - start), tenant, seed + k,
                         first_session=sessions, first_offset=offset)
        sessions += max(1, min(chunk_events, events - start) // 8)
        offset += table.num_rows
        files += write_lake(table, lake, tenant)
        del table
    return files


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM resets at exec, unlike a child's ru_maxrss,
    which on Linux inherits the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    """Generate (or reuse) the lake, then time every step."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--lake", type=Path, default=None,
                        help="Lake directory (default: a temporary one).")
    parser.add_argument("--tenant", default="bench")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-lake", action="store_true", help="Do not delete the lake.")
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="Also write results here.")
    args = parser.parse_args()
    if args.step == "generate":
        files = build_lake(args.lake, args.events, args.tenant, args.seed)
        print(json.dumps({"files": files, "peak_rss_mb": _peak_rss_mb()}))
        return
    if args.step:
        print(json.dumps(run_step(args.step, args.lake, args.tenant, args.out)))
        return
    work = Path(tempfile.mkdtemp(prefix="driftnet-bench-"))
    lake = args.lake or work / "lake"
    try:
        t0 = time.perf_counter()
        if not (lake / "events" / f"tenant={args.tenant}").is_dir():
            # in a child: the generator's memory must not stay in this process
            made = subprocess.run(
                [sys.executable, __file__, "--step", "generate", "--events", str(args.events),
                 "--lake", str(lake), "--tenant", args.tenant, "--seed", str(args.seed)],
                stdout=subprocess.PIPE, check=True)
            info = json.loads(made.stdout)
            print(f"lake: {args.events:,} events, {info['files']} files, "
                  f"{time.perf_counter() - t0:.1f}s, generator peak RSS "
                  f"{info['peak_rss_mb']} MiB", flush=True)
        size = sum(p.stat().st_size for p in lake.rglob("*.parquet"))
        print(f"lake size {size / 2**20:.0f} MiB; cores {os.cpu_count()}", flush=True)
        results = {}
        for step in STEPS:
            r = _child(step, lake, args.tenant, work / "out")
            results[step] = r
            print(f"{step:45s} {r['seconds']:8.2f} s  peak RSS {r['peak_rss_mb']:8.1f} MiB  "
                  f"arrow peak {r['arrow_peak_mb']:7.1f} MiB  {r['result']}", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"events": args.events, "steps": results},
                                            indent=2) + "\n")
    finally:
        if not args.keep_lake:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
