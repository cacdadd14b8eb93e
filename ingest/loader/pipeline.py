"""One batch of transport records -> the raw, events and quarantine tables to write.

decode (split bundles) -> raw (envelope headers as columns) -> protocol adapters ->
enrichment chain -> tables conformed to the schemas. All set-at-a-time in DuckDB/Arrow.
An adapter that fails on a batch is retried hit by hit, and a hit it still cannot parse is
quarantined with the error: no exception about *data* escapes this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ingest.enrich import ROW_COLUMN, UNTOUCHED_COLUMNS, Chain, default_chain
from ingest.enrich.anonymize_ip import IpAnonymizer
from ingest.enrich.config import EnrichSettings
from ingest.enrich.scrub_payloads import scrub_payloads
from ingest.enrich.session_store import SessionStore
from ingest.enrich.sessionize import Sessionize
from ingest.failures import environmental, unavailable
from ingest.loader.config import LoaderSettings
from ingest.loader.decode import decode_records
from ingest.loader.dedupe import Deduper
from ingest.loader.protocols import Adapter, Limits, Parsed, adapters
from ingest.loader.sql import select_quarantine, select_raw
from ingest.transport.base import Record
from schemas.event import EVENT_SCHEMA
from schemas.lake import UNATTRIBUTED_TENANT
from schemas.quarantine import QUARANTINE_SCHEMA, ReasonCode
from schemas.raw import RAW_SCHEMA
from schemas.sql import quote
from schemas.storage import LakeLocation
from schemas.tenants import TENANT_ID_PATTERN, Tenants
from schemas.version import PIPELINE_VERSION

log = logging.getLogger(__name__)

_HEADER_SPEC = orjson.dumps({
    "v": "INTEGER", "tenant": "VARCHAR", "received_at": "BIGINT", "protocol": "VARCHAR",
    "method": "VARCHAR", "path": "VARCHAR", "query": "VARCHAR", "headers": "JSON",
    "ip": "VARCHAR",
}).decode()

_RAW_SQL = f"""
CREATE OR REPLACE TEMP TABLE raw_all AS
SELECT *, coalesce(  -- never NULL: a row neither in raw nor in quarantine would be lost
    regexp_full_match(h.tenant, {quote(TENANT_ID_PATTERN[1:-1])}) AND h.v IS NOT NULL
    AND h.received_at BETWEEN 0 AND 253402300799999999  -- 1970 to 9999 (Python's datetime)
    AND h.protocol IS NOT NULL AND coalesce(json_type(h.headers) = 'OBJECT', TRUE),
  FALSE) AS header_ok
FROM (SELECT try(json_transform(hdr, {quote(_HEADER_SPEC)})) AS h, * FROM hits)
"""
_RAW_SELECT = select_raw({
    "tenant": "h.tenant",
    "received_at": "make_timestamp(h.received_at)::TIMESTAMPTZ",
    "envelope_version": "h.v",
    "protocol": "h.protocol",
    "method": "coalesce(h.method, '')",
    "path": "coalesce(h.path, '')",
    "query": "coalesce(h.query, '')",
    "headers": "coalesce(h.headers, '{}')",
    "ip": "h.ip",
    "body": "body",
    "source": "$source",
    "source_partition": "source_partition",
    "source_offset": "source_offset",
    "source_index": "source_index",
})
_BAD_HEADER_SELECT = select_quarantine({
    "tenant": quote(UNATTRIBUTED_TENANT),
    "received_at": "now()",
    "reason": quote(ReasonCode.TRANSPORT.value),
    "detail": "'envelope header is not valid: ' || left(hdr, 200)",
    "protocol": "coalesce(h.protocol, 'unknown')",
    "payload": "body",
    "source": "$source",
    "source_partition": "source_partition",
    "source_offset": "source_offset",
    "source_index": "source_index",
    "pipeline_version": quote(PIPELINE_VERSION),
})
_ORPHAN_SELECT = select_quarantine({
    "tenant": "tenant", "received_at": "received_at",
    "reason": quote(ReasonCode.PROTOCOL_VIOLATION.value),
    "detail": "'no parser for protocol ' || protocol", "protocol": "protocol",
    "payload": "body", "source": "source", "source_partition": "source_partition",
    "source_offset": "source_offset", "source_index": "source_index",
    "pipeline_version": quote(PIPELINE_VERSION),
})


@dataclass
class BatchTables:
    """The three tables one batch produces."""

    raw: pa.Table
    events: pa.Table
    quarantine: pa.Table
    dedupe_keys: pa.Table | None = None
    """Keys to add to the dedupe window once the batch is durable (Pipeline.remember)."""

    def for_partition(self, partition: int) -> BatchTables:
        """The rows of one transport partition."""
        def rows(table: pa.Table) -> pa.Table:
            return table.filter(pc.equal(table["source_partition"], partition))

        return BatchTables(rows(self.raw), rows(self.events), rows(self.quarantine),
                           None if self.dedupe_keys is None else rows(self.dedupe_keys))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, order and types."""
    table = table.select(schema.names)
    if table.schema.equals(schema):  # most hand-offs already conform: skip the cast
        return table
    return table.cast(schema)


class Pipeline:
    """Turns transport records into lake tables. Not thread-safe: one per loader."""

    def __init__(self, settings: LoaderSettings, tenants: Tenants | None = None,
                 chain: Chain | None = None, adapter_list: list[Adapter] | None = None,
                 enrich: EnrichSettings | None = None) -> None:
        self.tenants = tenants
        self.limits = Limits(settings.max_event_bytes, settings.max_batch_items)
        self.chain = chain or default_chain(enrich, tenants, settings.lake)
        # Raw is anonymised even when the chain has no anonymize_ip; else share its cache.
        self.ip = next((s for _, s in self.chain.steps if isinstance(s, IpAnonymizer)),
                       IpAnonymizer(tenants))
        self.adapters = adapter_list if adapter_list is not None else adapters()
        self.con = duckdb.connect(config={"threads": settings.duckdb_threads})
        self.con.execute("SET TimeZone = 'UTC'")
        self.deduper = Deduper(self.con, settings.dedupe_window_hours)

    def close(self) -> None:
        """Close the DuckDB connection and what the enrichment chain holds open."""
        self.chain.close()
        self.con.close()

    def seed_dedupe(self, lake: LakeLocation) -> int:
        """(Re)load the dedupe window from the lake (on every partition assignment)."""
        return self.deduper.seed(lake)

    @property
    def session_store(self) -> SessionStore | None:
        """The sessionize step's state store (None when sessions are off)."""
        for _, step in self.chain.steps:
            if isinstance(step, Sessionize):
                return step.store
        return None

    def remember(self, tables: BatchTables) -> None:
        """Tell dedupe that a batch is durable: its events now count as seen."""
        if tables.dedupe_keys is not None:
            self.deduper.remember(tables.dedupe_keys)

    def process(self, records: list[Record], source: str) -> BatchTables:
        """Decode, parse, validate, enrich and dedupe one batch of transport records."""
        con = self.con
        decoded = decode_records(records, source)
        con.register("hits", decoded.hits)
        try:
            con.execute(_RAW_SQL)
            params = {"source": source}
            raw = con.sql(f"SELECT {_RAW_SELECT} FROM raw_all WHERE header_ok",
                          params=params).to_arrow_table()
            bad = con.sql(f"SELECT {_BAD_HEADER_SELECT} FROM raw_all WHERE NOT header_ok",
                          params=params).to_arrow_table()
        finally:
            con.unregister("hits")
        quarantine: list[pa.Table] = [bad]
        if decoded.corrupt:
            quarantine.append(pa.Table.from_pylist(decoded.corrupt, schema=QUARANTINE_SCHEMA))
        return self.process_raw(conform(raw, RAW_SCHEMA), quarantine)

    def process_raw(self, raw: pa.Table, quarantine: list[pa.Table] | None = None) -> BatchTables:
        """Parse, validate, enrich and dedupe hits of the raw archive (replay starts here)."""
        con = self.con
        quarantine = list(quarantine or [])
        con.register("raw_batch", raw)
        events: list[pa.Table] = []
        handled: list[str] = []
        present = set(pc.unique(raw["protocol"]).to_pylist())
        try:
            for adapter in self.adapters:
                handled.extend(adapter.protocols)
                if not present.intersection(adapter.protocols):
                    continue
                where = " OR ".join(f"protocol = {quote(p)}" for p in adapter.protocols)
                con.execute(f"CREATE OR REPLACE TEMP VIEW adapter_hits AS "
                            f"SELECT * FROM raw_batch WHERE {where}")
                parsed = self._parse(adapter, "adapter_hits")
                events.append(conform(parsed.events, EVENT_SCHEMA))
                quarantine.append(conform(parsed.quarantine, QUARANTINE_SCHEMA))
            known = " AND ".join(f"protocol <> {quote(p)}" for p in handled) or "TRUE"
            quarantine.append(con.sql(
                f"SELECT {_ORPHAN_SELECT} FROM raw_batch WHERE {known}").to_arrow_table())
        finally:
            con.unregister("raw_batch")
        all_events = canonical_values(
            pa.concat_tables(events) if events else EVENT_SCHEMA.empty_table())
        enriched, failed = self._enrich(all_events, raw)
        enriched = self.ip.anonymize_payloads(enriched)  # properties and extra skip the chain
        quarantine.append(failed)
        flagged, keys = self._dedupe(enriched)
        # After parsing: geolocate needed the full IP. Idempotent, so replays are safe.
        anonymized = scrub_payloads(con, self.ip, self.ip.anonymize_raw(con, raw), all_events,
                                    raw, ("body", "query"))
        quarantined = conform(pa.concat_tables(
            [conform(q, QUARANTINE_SCHEMA) for q in quarantine]), QUARANTINE_SCHEMA)
        return BatchTables(
            raw=conform(anonymized, RAW_SCHEMA),
            events=flagged,
            quarantine=scrub_payloads(con, self.ip, quarantined, all_events, raw,
                                      ("payload", "detail")),
            dedupe_keys=keys,
        )

    def _parse(self, adapter: Adapter, relation: str) -> Parsed:
        try:
            return adapter.parse(self.con, relation, self.limits)
        except Exception as exc:
            if environmental(exc):
                raise unavailable(exc, f"{type(adapter).__name__}") from exc
            log.warning("%s adapter failed on a batch (%s); retrying on halves of it",
                        type(adapter).__name__, exc)
        hits = self.con.sql(f"SELECT * FROM {relation}").to_arrow_table()
        events: list[pa.Table] = []
        quarantine: list[pa.Table] = []
        half = hits.num_rows // 2  # it failed whole: its halves
        self._bisect_parse(adapter, hits.slice(0, half), events, quarantine)
        self._bisect_parse(adapter, hits.slice(half), events, quarantine)
        return Parsed(
            pa.concat_tables(events) if events else EVENT_SCHEMA.empty_table(),
            pa.concat_tables(quarantine) if quarantine else QUARANTINE_SCHEMA.empty_table(),
        )

    def _enrich(self, events: pa.Table, raw: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Enriched events, and quarantine rows for events a step failed on."""
        if events.num_rows == 0:
            return events, QUARANTINE_SCHEMA.empty_table()
        # The chain sees the columns it works on and each row's place; the JSON payloads and
        # other columns no step touches skip the round trip through DuckDB.
        seen = [name for name in events.column_names if name not in UNTOUCHED_COLUMNS]
        places = pa.array(np.arange(events.num_rows, dtype=np.int64))
        self.con.register("parsed_events", events.select(seen).append_column(ROW_COLUMN, places))
        self.con.register("enrich_hits", raw)  # request headers (client hints) by lineage
        try:
            enriched = self.chain.run(self.con, "parsed_events", hits="enrich_hits",
                                      columns=[*seen, ROW_COLUMN], originals=events)
        finally:
            self.con.unregister("parsed_events")
            self.con.unregister("enrich_hits")
        out = enriched.events
        rows = out[ROW_COLUMN].combine_chunks()
        in_place = rows.equals(places)  # the usual case: rows come back in their order
        for name in events.column_names:
            if name not in out.column_names:
                column = events[name]
                out = out.append_column(events.field(name),
                                        column if in_place else column.take(rows))
        return conform(out, EVENT_SCHEMA), enriched.quarantine


    def _bisect_parse(self, adapter: Adapter, hits: pa.Table, events: list[pa.Table],
                      quarantine: list[pa.Table]) -> None:
        """Parse ``hits``; when that fails, each half of it, down to single hits, which
        become ``parser error`` quarantine rows. One bad hit among 1,000 costs about 20
        parses, not 1,000 (a parse has a fixed cost of tens of ms)."""
        if hits.num_rows == 0:
            return
        self.con.register("parse_unit", hits)
        try:
            parsed = adapter.parse(self.con, "parse_unit", self.limits)
            events.append(conform(parsed.events, EVENT_SCHEMA))
            quarantine.append(conform(parsed.quarantine, QUARANTINE_SCHEMA))
            return
        except Exception as exc:
            if environmental(exc):
                raise unavailable(exc, f"{type(adapter).__name__}") from exc
            if hits.num_rows == 1:
                quarantine.append(_parser_error(hits.to_pylist()[0], exc))
                return
        finally:
            self.con.unregister("parse_unit")
        half = hits.num_rows // 2
        self._bisect_parse(adapter, hits.slice(0, half), events, quarantine)
        self._bisect_parse(adapter, hits.slice(half), events, quarantine)

    def _dedupe(self, events: pa.Table) -> tuple[pa.Table, pa.Table | None]:
        return self.deduper.flag(events)


MONEY_COLUMNS = ("price", "quantity", "revenue")
"""The events' numbers (``double``); ``items`` holds ``price`` and ``quantity`` too."""


def _finite(values: pa.Array) -> pa.Array | None:
    """``values`` with NaN and ±infinity as NULL, or None when it holds none."""
    finite = pc.is_finite(values)  # NULL stays NULL
    if pc.all(finite).as_py() is not False:
        return None
    return pc.if_else(finite, values, pa.scalar(None, values.type))


def _currency_code(values: pa.Array) -> pa.Array | None:
    """``values`` as currency codes (ISO 4217 is upper case: ``eur`` is ``EUR``, spaces
    trimmed, an empty one NULL), or None when they already are."""
    codes = pc.utf8_upper(pc.utf8_trim_whitespace(values))
    codes = pc.if_else(pc.equal(codes, ""), pa.scalar(None, pa.string()), codes)
    return None if codes.equals(values) else codes


_CANONICAL: dict[str, Callable[[pa.Array], pa.Array | None]] = {
    **dict.fromkeys(MONEY_COLUMNS, _finite), "currency": _currency_code}
"""What :func:`canonical_values` does to each column (and to the items' fields of the same
name)."""


def canonical_values(events: pa.Table) -> pa.Table:
    """Events whose prices, quantities and revenue (and those of their items) are finite
    numbers or NULL, and whose currencies are upper-case codes, for every protocol at once
    (one pass over five columns).

    Every adapter reads the numbers as DOUBLE, and a JSON number past the double range
    (``1e400``), or a string such as ``"NaN"`` or ``"Infinity"``, reads as ±infinity or
    NaN, which would poison every sum over the column: such a value is NULL, as any other
    value the field cannot hold. A currency sent as ``eur`` would be a currency of its own
    in every per-currency total, and convert at no rate. The payload in ``properties`` and
    the raw archive keep what was sent."""
    for name, canonical in _CANONICAL.items():
        fixed = canonical(events[name].combine_chunks())
        if fixed is not None:
            events = events.set_column(events.schema.get_field_index(name),
                                       events.field(name), fixed)
    items = events["items"].combine_chunks()
    if len(items.values) == 0:
        return events
    lines = items.values  # the struct of every item, as the offsets index it
    children = [lines.field(i) for i in range(lines.type.num_fields)]
    changed = False
    for i, field in enumerate(lines.type):
        of_item = _CANONICAL.get(field.name)
        fixed = of_item(children[i]) if of_item is not None else None
        if fixed is not None:
            children[i], changed = fixed, True
    if not changed:
        return events
    lines = pa.StructArray.from_arrays(children, fields=list(lines.type),
                                       mask=lines.is_null())
    items = pa.ListArray.from_arrays(items.offsets, lines, type=items.type,
                                     mask=items.is_null())
    return events.set_column(events.schema.get_field_index("items"), events.field("items"),
                             items)


def _parser_error(hit: dict[str, Any], exc: Exception) -> pa.Table:
    row = {
        "tenant": hit["tenant"], "received_at": hit["received_at"],
        "reason": ReasonCode.PAYLOAD_FORMAT.value,
        "detail": f"parser error: {type(exc).__name__}: {str(exc)[:500]}",
        "protocol": hit["protocol"], "payload": hit["body"], "source": hit["source"],
        "source_partition": hit["source_partition"], "source_offset": hit["source_offset"],
        "source_index": hit["source_index"], "pipeline_version": PIPELINE_VERSION,
    }
    return pa.Table.from_pylist([row], schema=QUARANTINE_SCHEMA)
