"""Helpers for enrichment tests: canonical event rows, running steps, transport records."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from ingest.enrich import Chain, Step
from ingest.loader.config import LoaderSettings
from ingest.transport.base import Record
from schemas.envelope import encode_bundle, encode_frame
from schemas.event import EVENT_SCHEMA

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)

CHROME_WIN = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")


def event(i: int = 0, **fields: Any) -> dict[str, Any]:
    """A canonical event row with the required columns filled; ``i`` makes lineage unique."""
    row: dict[str, Any] = {
        "tenant": "acme", "event_id": str(uuid.uuid4()), "event_type": "track",
        "event_name": "Product Viewed", "protocol": "segment", "received_at": NOW,
        "derived_ts": NOW, "source": "log", "source_partition": 0, "source_offset": 0,
        "source_index": i, "item_index": 0, "pipeline_version": "test",
    }
    row.update(fields)
    return row


def events_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows as a table of the canonical event schema."""
    return pa.Table.from_pylist(list(rows), schema=EVENT_SCHEMA)


def run_chain(chain: Chain, rows: Sequence[dict[str, Any]],
              con: duckdb.DuckDBPyConnection | None = None,
              hits: pa.Table | None = None) -> list[dict[str, Any]]:
    """The chain over ``rows`` (in input order), on a fresh UTC connection unless given."""
    own = con is None
    con = con or connection()
    con.register("test_events", events_table(rows))
    if hits is not None:
        con.register("test_hits", hits)
    try:
        out = chain.apply(con, "test_events", hits="test_hits" if hits is not None else None)
        return con.sql(f"SELECT * FROM {out} ORDER BY source_partition, source_offset, "
                       f"source_index, item_index").to_arrow_table().to_pylist()
    finally:
        con.unregister("test_events")
        if own:
            con.close()


def run_step(name: str, step: Step, rows: Sequence[dict[str, Any]],
             **kwargs: Any) -> list[dict[str, Any]]:
    """One step over ``rows``."""
    return run_chain(Chain([(name, step)]), rows, **kwargs)


def no_lake() -> LoaderSettings:
    """Loader settings whose lake does not exist: session state stays in memory, so tests do
    not share a store (the default lake, ./lake, may exist in a working tree)."""
    return LoaderSettings(lake=Path(tempfile.gettempdir()) / f"no-lake-{uuid.uuid4().hex}")


def connection() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up like the loader's."""
    con = duckdb.connect(config={"threads": 1})
    con.execute("SET TimeZone = 'UTC'")
    return con


def frame(body: Any, *, tenant: str = "acme", path: str = "/v1/track",
          protocol: str = "segment", ip: str | None = "203.0.113.7",
          headers: dict[str, str] | None = None, received_at: dt.datetime | None = None) -> bytes:
    """One envelope, as the collector writes it."""
    ts = received_at or dt.datetime.now(dt.UTC)
    header = {"v": 1, "tenant": tenant, "received_at": int(ts.timestamp() * 1e6),
              "protocol": protocol, "method": "POST", "path": path, "query": "",
              "headers": headers or {}, "ip": ip}
    return encode_frame(header, body if isinstance(body, bytes) else orjson.dumps(body))


def records(*frames: bytes, partition: int = 0, offset: int = 1) -> list[Record]:
    """One transport record holding ``frames``."""
    return [Record(partition, offset, encode_bundle(list(frames)))]


def track(**fields: Any) -> dict[str, Any]:
    """A Segment track message."""
    return {"type": "track", "event": "Product Viewed", "anonymousId": "anon-1",
            "messageId": str(uuid.uuid4()), "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            **fields}


GEO_NETWORKS: dict[str, dict[str, Any]] = {
    "81.2.69.0/24": {"country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
                     "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
                     "city": {"names": {"en": "London"}}},
    "89.160.20.0/24": {"country": {"iso_code": "SE", "names": {"en": "Sweden"}},
                       "subdivisions": [{"iso_code": "E", "names": {"en": "Östergötland"}}],
                       "city": {"names": {"en": "Linköping"}}},
    "2001:480::/32": {"country": {"iso_code": "US", "names": {"en": "United States"}},
                      "subdivisions": [{"iso_code": "CA", "names": {"en": "California"}}],
                      "city": {"names": {"en": "San Diego"}}},
    # DB-IP lite style: subdivision names only, no codes.
    "5.145.96.0/20": {"country": {"iso_code": "DE", "names": {"en": "Germany"}},
                      "subdivisions": [{"names": {"en": "Bavaria"}}],
                      "city": {"names": {"en": "Munich"}}},
}
"""Networks of the test GeoIP database (addresses from MaxMind's own test data ranges)."""


def build_mmdb(path: Path, networks: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write a small GeoIP2-City-layout database (IPv6 tree with IPv4 mapped) to ``path``."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City",
                        languages=["en"], description="driftnet test database")
    for network, record in (networks or GEO_NETWORKS).items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


def wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` until true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)
