"""Protocol adapters: a noun per wire protocol, each turning hits into canonical events.

An adapter receives the name of a DuckDB relation holding the batch's hits of its protocols
(raw archive columns) and returns two Arrow tables: canonical events (EVENT_SCHEMA) and
quarantine rows (QUARANTINE_SCHEMA). Every hit yields at least one row in one of them.
"""

from __future__ import annotations

import re
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


_STATEMENT_END = re.compile(r";[ \t]*\n")


def bound(sql: str, limits: Limits) -> dict[str, int] | None:
    """The parameters statement ``sql`` names: ``$max_event_bytes``, ``$max_batch_items``."""
    values = {"max_event_bytes": int(limits.max_event_bytes),
              "max_batch_items": int(limits.max_batch_items)}
    return {name: value for name, value in values.items() if f"${name}" in sql} or None


def run_stages(con: duckdb.DuckDBPyConnection, stages: str, hits: str, limits: Limits,
               events: str, quarantine: str) -> Parsed:
    """Run an adapter's SQL: ``stages`` (statements, each ending ``;`` at the end of a line,
    that read relation ``@hits@``), then its events and quarantine selects.

    The limits are bound as parameters, statement by statement (DuckDB binds the last
    statement of a script only, and no view): a stage that uses one is a table.
    """
    for statement in _STATEMENT_END.split(stages.replace("@hits@", hits)):
        if statement.strip():
            con.execute(statement, bound(statement, limits))
    events, quarantine = (sql.replace("@hits@", hits) for sql in (events, quarantine))
    return Parsed(con.sql(events, params=bound(events, limits)).to_arrow_table(),
                  con.sql(quarantine, params=bound(quarantine, limits)).to_arrow_table())


class SqlAdapter:
    """An adapter declared in SQL: a subclass names its ``protocols`` and its SQL, ``stages``
    (see :func:`run_stages`), ``events`` and ``quarantine`` (the selects of its two tables).

    docs/adapters.md shows how to write one with the adapter kit (``kit.py``).
    """

    protocols: tuple[str, ...]
    stages: str
    events: str
    quarantine: str

    def parse(self, con: duckdb.DuckDBPyConnection, hits: str, limits: Limits) -> Parsed:
        """Parse the hits in relation ``hits``."""
        return run_stages(con, self.stages, hits, limits, self.events, self.quarantine)


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
