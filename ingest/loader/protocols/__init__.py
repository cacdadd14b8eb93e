"""Protocol adapters: a noun per wire protocol, each turning hits into canonical events.

An adapter receives the name of a DuckDB relation holding the batch's hits of its protocols
(raw archive columns) and returns two Arrow tables: canonical events (EVENT_SCHEMA) and
quarantine rows (QUARANTINE_SCHEMA). Every hit yields at least one row in one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import duckdb
import pyarrow as pa


@dataclass(frozen=True)
class Limits:
    """Size limits the adapters enforce item by item."""

    max_event_bytes: int
    max_batch_items: int


@dataclass
class Parsed:
    """What an adapter made of its hits."""

    events: pa.Table
    quarantine: pa.Table


def run_stages(con: duckdb.DuckDBPyConnection, stages: str, hits: str, limits: Limits,
               events: str, quarantine: str) -> Parsed:
    """Run an adapter's SQL: ``stages`` (a script that reads relation ``@hits@`` and may use
    ``@max_event_bytes@`` / ``@max_batch_items@``), then its events and quarantine selects."""
    def bind(sql: str) -> str:
        return (sql.replace("@hits@", hits)
                .replace("@max_event_bytes@", str(int(limits.max_event_bytes)))
                .replace("@max_batch_items@", str(int(limits.max_batch_items))))

    con.execute(bind(stages))
    return Parsed(con.sql(bind(events)).to_arrow_table(),
                  con.sql(bind(quarantine)).to_arrow_table())


class Adapter(Protocol):
    """A protocol adapter."""

    @property
    def protocols(self) -> tuple[str, ...]:
        """The envelope ``protocol`` values it parses."""
        ...

    def parse(self, con: duckdb.DuckDBPyConnection, hits: str, limits: Limits) -> Parsed:
        """Parse the hits in relation ``hits``."""
        ...


def adapters() -> list[Adapter]:
    """Every adapter, in dispatch order."""
    from ingest.loader.protocols.ga4 import GA4Adapter
    from ingest.loader.protocols.ga_universal import UniversalAnalyticsAdapter
    from ingest.loader.protocols.pixel import PixelAdapter
    from ingest.loader.protocols.posthog import PostHogAdapter
    from ingest.loader.protocols.segment import SegmentAdapter
    from ingest.loader.protocols.snowplow import SnowplowAdapter

    return [SegmentAdapter(), PixelAdapter(), SnowplowAdapter(), GA4Adapter(),
            UniversalAnalyticsAdapter(), PostHogAdapter()]
