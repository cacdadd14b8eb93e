"""What a row that an enrichment step raises on costs the loader (docs/enrichment.md, "Failures").

    .venv/bin/python bench/fallback.py [--events 50000] [--failing 0,1,3,30]

One flush of Segment batches (50 events a body) through ``Pipeline.process``, DuckDB on one
thread, with the default chain plus a step whose Python raises on one user agent ("boom":
the test suite's LazyBug), carried by the given number of events spread over the flush. CPU
seconds of the flush (after a warm-up flush); each failing row is quarantined, the rest
enriched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.enrich import Chain, default_chain  # noqa: E402
from ingest.loader.config import LoaderSettings  # noqa: E402
from ingest.loader.pipeline import Pipeline  # noqa: E402
from ingest.transport.base import Record  # noqa: E402
from schemas.envelope import encode_bundle, encode_frame  # noqa: E402
from tests.ingest.enrich.test_fallback import LazyBug  # noqa: E402


def records(events: int, failing: set[int]) -> list[Record]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    received = time.time_ns() // 1000
    out = []
    for b in range(events // 50):
        batch = [{"type": "track", "event": "Product Viewed",
                  "anonymousId": f"v{(b * 50 + i) % 997}", "messageId": f"m{b * 50 + i}",
                  "timestamp": (start + dt.timedelta(seconds=i)).isoformat(),
                  "context": {"userAgent": "boom" if b * 50 + i in failing else "Mozilla/5.0"}}
                 for i in range(50)]
        header = {"v": 1, "tenant": "acme", "received_at": received, "protocol": "segment",
                  "method": "POST", "path": "/v1/batch", "query": "", "headers": {}, "ip": None}
        out.append(Record(0, b, encode_bundle([encode_frame(header,
                                                            orjson.dumps({"batch": batch}))])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--failing", default="0,1,3,30")
    args = parser.parse_args()
    print(f"one flush of {args.events:,} events, one core, CPU seconds")
    for count in (int(n) for n in args.failing.split(",")):
        base = default_chain()  # its session store closes with the pipeline
        steps = list(base.steps)
        steps.insert(2, ("raises", LazyBug()))
        failing = {round(i * args.events / count) for i in range(count)} if count else set()
        pipeline = Pipeline(LoaderSettings(duckdb_threads=1),
                            chain=Chain(steps, resources=base.resources))
        try:
            pipeline.process(records(100, set()), "log")  # warm-up
            batch = records(args.events, failing)
            started = time.process_time()
            out = pipeline.process(batch, "log")
            seconds = time.process_time() - started
        finally:
            pipeline.close()
        assert out.quarantine.num_rows == count, out.quarantine.num_rows
        print(f"  {count:>3} failing rows  {seconds:6.2f} s  ({out.events.num_rows:,} events, "
              f"{out.quarantine.num_rows} quarantined)")


if __name__ == "__main__":
    main()
