"""Loader bench: events/s of the loader's batch work on one core, stage by stage.

    .venv/bin/python bench/loader.py [--sessions 4000] [--passes 3] [--baseline DIR] [--parquet]
        [--statements] [--steps]

What a loader does with one flush, on transport records as the collector writes them
(~40 envelopes a bundle, 1,000 bundles a batch): ``Pipeline.process`` (decode, envelope
headers, protocol adapters, enrichment, dedupe, IP scrubbing) and ``LakeWriter.append``
(Parquet files, fsync, the three Delta commits) into a lake in a temporary directory.
Three workloads: simulated shopper traffic (driftnet.simulate, as bench/pipeline.py)
with the default enrichment chain and without it, and 50-event Segment batch bodies.

Each workload runs in a child process pinned to one core, with DuckDB on one thread, after
a warm-up pass; events/s is events over the CPU seconds of the process (all its threads:
the Parquet writer's pool too), best of ``--passes``, which is steadier than wall time on
a machine shared with other work. ``--baseline DIR`` (a checkout of another commit, e.g.
``git worktree add /tmp/base main``) runs that tree's loader on the same records in the
same run, alternating with this tree's, and checks that both made the same rows: events
and quarantine, every column but the quarantine's ``received_at`` (the time of the
quarantining for a record that is not a bundle). ``--steps`` adds the cost of each
enrichment step on the first flush of each workload (bench/enrich.py's ``step_costs``: the
step over its computed input and a SELECT of the result, minus that SELECT alone).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Not this folder: bench/kafka.py would stand in for the kafka package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

GOALS = {"enrichment on": 60_000.0, "enrichment off": 100_000.0, "segment batches": 150_000.0}
"""The issue's goals, events/s on one core."""

BUNDLE = 40
"""Envelopes a transport record holds (~ a group commit under load)."""


def _batch_body(i: int, size: int) -> bytes:
    from bench.common import event

    events = [event(i * size + k) for k in range(size)]
    return json.dumps({"batch": events, "sentAt": "2026-11-26T10:00:01.000Z"}).encode()


def build(sessions: int) -> dict[str, list[tuple[int, int, bytes]]]:
    """Transport records (partition, offset, value) of each workload."""
    from bench.common import simulated_frames
    from schemas.envelope import encode_bundle, encode_frame

    frames, _ = simulated_frames(sessions)
    now = time.time_ns() // 1000
    batches = []
    for i in range(max(1, sessions // 3)):
        header = {"v": 1, "tenant": "acme", "received_at": now + i, "protocol": "segment",
                  "method": "POST", "path": "/v1/batch", "query": "", "ip": "203.0.113.9",
                  "headers": {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
                              "content-type": "application/json"}}
        batches.append(encode_frame(header, _batch_body(i, 50)))

    def records(frames: list[bytes]) -> list[tuple[int, int, bytes]]:
        return [(0, n, encode_bundle(frames[k:k + BUNDLE]))
                for n, k in enumerate(range(0, len(frames), BUNDLE))]

    simulated = records(frames)
    return {"enrichment on": simulated, "enrichment off": simulated,
            "segment batches": records(batches)}


def _digest(table: Any, drop: tuple[str, ...] = ()) -> str:
    """A hash of a table's rows in lineage order."""
    import pyarrow.compute as pc

    keys = [(c, "ascending") for c in ("source_partition", "source_offset", "source_index",
                                        "item_index") if c in table.column_names]
    table = table.take(pc.sort_indices(table, sort_keys=keys, null_placement="at_start"))
    table = table.drop_columns([c for c in drop if c in table.column_names])
    digest = hashlib.sha256()
    for batch in table.to_batches(max_chunksize=4096):
        digest.update(json.dumps(batch.to_pylist(), default=str, sort_keys=True).encode())
    return digest.hexdigest()


def time_statements(stages: dict[str, float]) -> None:
    """Time each statement of the SQL adapters (``run_stages``) into ``stages``, keyed
    ``sql <relation>`` (a stage's table or view: a view costs where it is read) and
    ``sql <adapter> events`` / ``quarantine`` (the two selects)."""
    import re

    from ingest.loader import protocols

    def run_stages(con: Any, sql: str, hits: str, limits: Any, events: str,
                   quarantine: str) -> Any:
        def timed(label: str, run: Callable[[], Any]) -> Any:
            started = time.process_time()
            try:
                return run()
            finally:
                stages[f"sql {label}"] = (stages.get(f"sql {label}", 0.0)
                                          + time.process_time() - started)

        names = []
        for statement in protocols._STATEMENT_END.split(sql.replace("@hits@", hits)):
            if statement.strip():
                name = re.search(r"(?:TABLE|VIEW)\s+(\w+)", statement)
                names.append(name.group(1) if name else "?")
                timed(names[-1], lambda s=statement: con.execute(
                    s, protocols.bound(s, limits)))
        prefix = names[0].split("_")[0] if names else "?"
        selects = {kind: select.replace("@hits@", hits)
                   for kind, select in (("events", events), ("quarantine", quarantine))}
        tables = [timed(f"{prefix} {kind}", lambda q=select:
                        con.sql(q, params=protocols.bound(q, limits)).to_arrow_table())
                  for kind, select in selects.items()]
        return protocols.Parsed(*tables)

    protocols.run_stages = run_stages


def worker(records_file: Path, workload: str, batch_records: int, passes: int,
           statements: bool = False, steps: bool = False) -> dict[str, Any]:
    """Run one workload in this process (pinned to one core) and report its figures
    (``statements``: each SQL adapter statement's time too, see :func:`time_statements`;
    ``steps``: each enrichment step's cost on the first flush)."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from bench.common import TENANTS
    from ingest.enrich import Chain
    from ingest.lake.writer import LakeWriter
    from ingest.loader import pipeline as P
    from ingest.loader.config import LoaderSettings
    from ingest.transport.base import Record
    from schemas.storage import LakeLocation
    from schemas.tenants import load_tenants

    records = [Record(p, o, v) for p, o, v in pickle.loads(records_file.read_bytes())[workload]]
    stages: dict[str, float] = {}

    def timed(owner: Any, name: str, label: str) -> None:
        if not hasattr(owner, name):
            return
        inner: Callable[..., Any] = getattr(owner, name)

        @functools.wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                stages[label] = stages.get(label, 0.0) + time.process_time() - started

        setattr(owner, name, wrapper)

    timed(P, "decode_records", "decode")
    timed(P.Pipeline, "process_raw", "after headers")
    timed(P.Pipeline, "_parse", "adapters")
    timed(P.Pipeline, "_enrich", "enrichment")
    timed(P.Pipeline, "_dedupe", "dedupe")
    timed(P, "scrub_payloads", "IP scrubbing")
    timed(LakeWriter, "append", "lake append")
    if statements:
        time_statements(stages)

    tenants = load_tenants(TENANTS)
    with tempfile.TemporaryDirectory(prefix="loader-bench-") as tmp:
        settings = LoaderSettings(lake=Path(tmp) / "lake", duckdb_threads=1)
        chain = Chain(()) if workload == "enrichment off" else None
        pipeline = P.Pipeline(settings, tenants, chain=chain)
        writer = LakeWriter(LakeLocation.parse(settings.lake), settings.zstd_level)
        best = float("inf")
        events = quarantined = 0
        digests: list[str] = []
        best_stages: dict[str, float] = {}
        offset = 0
        for n in range(passes + 1):  # the first pass warms caches and DuckDB up
            stages.clear()
            started = time.process_time()
            events = quarantined = 0
            for k in range(0, len(records), batch_records):
                batch = [Record(r.partition, offset + i, r.value)
                         for i, r in enumerate(records[k:k + batch_records])]
                offset += len(batch)
                tables = pipeline.process(batch, "log")
                writer.append("bench", {"raw": tables.raw, "events": tables.events,
                                        "quarantine": tables.quarantine},
                              {0: batch[-1].offset})
                pipeline.remember(tables)
                events += tables.events.num_rows
                quarantined += tables.quarantine.num_rows
                if n == 0:
                    digests.append(_digest(tables.events))
                    digests.append(_digest(tables.quarantine, ("received_at",)))
            elapsed = time.process_time() - started
            if n and elapsed < best:
                best, best_stages = elapsed, dict(stages)
        pipeline.close()
    process = best_stages.pop("after headers", 0.0)
    total_pipeline = best - best_stages.get("lake append", 0.0)
    headers = total_pipeline - process - best_stages.get("decode", 0.0)
    sql = {k: v for k, v in best_stages.items() if k.startswith("sql ")}
    parts = {"decode": best_stages.get("decode", 0.0), "envelope headers": headers,
             **{k: v for k, v in best_stages.items() if k != "decode" and k not in sql}}
    accounted = sum(parts.values())
    parts["other"] = best - accounted
    step_seconds: dict[str, float] = {}
    if steps and workload != "enrichment off":
        from bench.enrich import step_costs
        from ingest.enrich import default_chain

        with tempfile.TemporaryDirectory(prefix="loader-bench-") as tmp:
            settings = LoaderSettings(lake=Path(tmp) / "lake", duckdb_threads=1)
            chain = default_chain(None, tenants, settings.lake)
            _, costs = step_costs(chain, records[:batch_records], settings, tenants, 3)
            chain.close()
        step_seconds = dict(costs)
    return {"events": events, "quarantined": quarantined, "cpu_s": best,
            "events_per_s": events / best, "stages": parts, "statements": sql,
            "steps": step_seconds,
            "digest": hashlib.sha256("".join(digests).encode()).hexdigest()}


PARQUET_OPTIONS: dict[str, dict[str, Any]] = {
    "loader (snappy, no dictionary)": {"compression": "snappy", "use_dictionary": False},
    "snappy + dictionary": {"compression": "snappy", "use_dictionary": True},
    "no compression": {"compression": "none", "use_dictionary": False},
    "zstd 1": {"compression": "zstd", "compression_level": 1, "use_dictionary": False},
    "zstd 3 + dictionary": {"compression": "zstd", "compression_level": 3},
    "zstd 3 + dictionary, 64k-row groups": {"compression": "zstd", "compression_level": 3,
                                            "row_group_size": 65_536},
}
"""Parquet settings whose cost --parquet measures on one batch (the first is what the
loader's flush files use, ingest/lake/files.py; zstd 3 with dictionaries is what
compaction writes)."""


def parquet_costs(records_file: Path, batch_records: int) -> None:
    """CPU time and bytes of one batch's events and raw written with each of PARQUET_OPTIONS
    (in memory: the encoding's cost, not the disk's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.common import TENANTS
    from ingest.loader.config import LoaderSettings
    from ingest.loader.pipeline import Pipeline
    from ingest.transport.base import Record
    from schemas.lake import STATS_COLUMNS
    from schemas.tenants import load_tenants

    records = [Record(p, o, v) for p, o, v in
               pickle.loads(records_file.read_bytes())["enrichment on"][:batch_records]]
    with tempfile.TemporaryDirectory(prefix="loader-bench-") as tmp:
        pipeline = Pipeline(LoaderSettings(lake=Path(tmp) / "lake", duckdb_threads=1),
                            load_tenants(TENANTS))
        tables = pipeline.process(records, "log")
        pipeline.close()
    print(f"\nParquet settings, one batch ({tables.events.num_rows} events, "
          f"{tables.raw.num_rows} raw rows), best of 5, CPU ms per 10k events and MB:")
    for name, options in PARQUET_OPTIONS.items():
        line = []
        for table_name, rows in (("events", tables.events), ("raw", tables.raw)):
            opts = {"row_group_size": 1024 * 1024, "store_schema": False,
                    "write_statistics": list(STATS_COLUMNS[table_name]), **options}
            best, size = float("inf"), 0
            for _ in range(5):
                sink = pa.BufferOutputStream()
                started = time.process_time()
                pq.write_table(rows, sink, **opts)
                best = min(best, time.process_time() - started)
                size = sink.tell()
            line.append(f"{table_name} {best * 1e3 * 10_000 / tables.events.num_rows:5.1f} ms "
                        f"{size / 1e6:5.2f} MB")
        print(f"  {name:38s} " + "   ".join(line))


def run(tree: Path, records_file: Path, workload: str, batch_records: int,
        passes: int, statements: bool = False, steps: bool = False) -> dict[str, Any]:
    """Run the worker of this file against the source tree ``tree`` in a child process."""
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", workload, "--records-file", str(records_file),
         "--batch-records", str(batch_records), "--passes", str(passes),
         *(["--statements"] if statements else []), *(["--steps"] if steps else [])],
        capture_output=True, text=True, env=env, cwd=tree, check=False)
    if out.returncode:
        raise RuntimeError(f"worker failed for {tree}:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4000, help="simulated sessions")
    parser.add_argument("--batch-records", type=int, default=1000,
                        help="transport records a flush takes (bundles of ~40 envelopes)")
    parser.add_argument("--passes", type=int, default=3, help="measured passes (best counts)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of A/B (best counts)")
    parser.add_argument("--baseline", type=Path, help="another source tree to compare with")
    parser.add_argument("--only", choices=sorted(GOALS), help="one workload")
    parser.add_argument("--parquet", action="store_true",
                        help="also measure Parquet settings on one batch")
    parser.add_argument("--statements", action="store_true",
                        help="also time each statement of the SQL adapters (adds a little "
                             "overhead; views cost where they are read)")
    parser.add_argument("--steps", action="store_true",
                        help="also measure each enrichment step on the first flush")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--records-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.records_file, args.worker, args.batch_records,
                                args.passes, args.statements, args.steps)))
        return
    sys.path.insert(0, str(ROOT))
    trees = {"this tree": ROOT}
    if args.baseline:
        trees = {"baseline": args.baseline.resolve(), **trees}
    workloads = [args.only] if args.only else list(GOALS)
    with tempfile.TemporaryDirectory(prefix="loader-bench-") as tmp:
        records_file = Path(tmp) / "records.pickle"
        records = build(args.sessions)
        records_file.write_bytes(pickle.dumps(records))
        print(f"one core, DuckDB threads=1, {args.batch_records} records a flush, CPU time, "
              f"best of {args.passes} passes x {args.rounds} rounds")
        for workload in workloads:
            best: dict[str, dict[str, Any]] = {}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    result = run(tree, records_file, workload, args.batch_records, args.passes,
                                 args.statements, args.steps)
                    if name not in best or result["cpu_s"] < best[name]["cpu_s"]:
                        best[name] = result
            print(f"\n{workload}: {len(records[workload])} records, "
                  f"{best['this tree']['events']} events, "
                  f"{best['this tree']['quarantined']} quarantined "
                  f"(goal {GOALS[workload]:,.0f} events/s)")
            for name, result in best.items():
                stages = ", ".join(f"{k} {v:.2f}" for k, v in result["stages"].items())
                print(f"  {name:9s} {result['events_per_s']:9,.0f} events/s  "
                      f"({result['cpu_s']:.2f} s: {stages})")
                if result.get("statements"):
                    print("            adapter SQL: " + ", ".join(
                        f"{k[4:]} {v:.3f}" for k, v in result["statements"].items()))
                if result.get("steps"):
                    print(f"  {'':9s} enrichment steps, first flush: " + ", ".join(
                        f"{k} {v:.3f}" for k, v in result["steps"].items()))
            if "baseline" in best:
                same = best["baseline"]["digest"] == best["this tree"]["digest"]
                ratio = best["this tree"]["events_per_s"] / best["baseline"]["events_per_s"]
                print(f"  ratio {ratio:.2f}x, same rows as baseline: {'yes' if same else 'NO'}")
        if args.parquet:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
            parquet_costs(records_file, args.batch_records)


if __name__ == "__main__":
    main()
