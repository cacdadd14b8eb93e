"""A step that fails must cost the rows it cannot enrich, never the batch.

The chain first runs over the whole batch. When that raises (a step's Python, or a SQL
expression when the lazy views are computed), the batch is run again row group by row
group; a row group that fails is halved until the failing rows are alone (a single row is
run step by step, each step's result computed at once so the failing step is known); a row
that still fails becomes a quarantine row with reason
``enrichment_failure``, the step and the error as detail, and the canonical event as JSON
as payload (the hit itself is in the raw archive, for ``driftnet replay``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import orjson
import pyarrow as pa

from ingest.enrich import ROW_COLUMN
from ingest.failures import environmental, unavailable
from schemas.errors import DriftnetError
from schemas.quarantine import QUARANTINE_SCHEMA, ReasonCode
from schemas.sql import quote_ident
from schemas.version import PIPELINE_VERSION

if TYPE_CHECKING:
    from ingest.enrich import Batch, Chain

log = logging.getLogger(__name__)

ROW_GROUP = 1024
"""Rows per unit of the first fallback pass."""
_UNIT = "enrich_unit"


class EnrichmentError(DriftnetError):
    """An enrichment step failed on some events (they are quarantined, not lost)."""


@dataclass
class Enriched:
    """The chain's output: enriched events, and quarantine rows for events it could not do."""

    events: pa.Table
    quarantine: pa.Table


def run_with_fallback(chain: Chain, con: duckdb.DuckDBPyConnection, relation: str,
                      hits: str | None = None,
                      columns: Sequence[str] | None = None,
                      originals: pa.Table | None = None) -> Enriched:
    """Run ``chain`` over ``relation``; quarantine the rows a step fails on.

    ``columns``: what to read back when the whole batch succeeds (every column by default).
    ``originals``: the events whole, when ``relation`` holds only some of their columns and
    their :data:`ROW_COLUMN`: a quarantined event's payload is its original row."""
    batch = chain.begin(con, relation, hits)
    select = ", ".join(quote_ident(c) for c in columns) if columns is not None else "*"
    try:
        out = chain.run_steps(con, relation, batch)
        events = con.sql(f"SELECT {select} FROM {out}").to_arrow_table()
        batch.unit_done(ok=True)
        quarantine = QUARANTINE_SCHEMA.empty_table()
    except Exception as exc:
        batch.unit_done(ok=False)
        if environmental(exc):
            raise unavailable(exc, "enrichment") from exc
        log.warning("enrichment failed on a batch (%s: %s); retrying row group by row group",
                    type(exc).__name__, exc)
        rows = con.sql(f"SELECT * FROM {relation}").to_arrow_table()
        done: list[pa.Table] = []
        failed: list[tuple[dict[str, Any], Exception]] = []
        for start in range(0, rows.num_rows, ROW_GROUP):
            _bisect(chain, con, rows.slice(start, ROW_GROUP), batch, done, failed)
        events = (pa.concat_tables(done, promote_options="permissive") if done
                  else rows.schema.empty_table())
        quarantine = (pa.concat_tables([_quarantine_row(_original(event, originals), error)
                                        for event, error in failed])
                      if failed else QUARANTINE_SCHEMA.empty_table())
        if quarantine.num_rows:
            log.warning("quarantined %d events that enrichment failed on", quarantine.num_rows)
    batch.succeeded()
    return Enriched(events, quarantine)


def _bisect(chain: Chain, con: duckdb.DuckDBPyConnection, unit: pa.Table, batch: Batch,
            done: list[pa.Table], failed: list[tuple[dict[str, Any], Exception]]) -> None:
    """Enrich ``unit``; when that fails, each half of it, down to single rows.

    One bad row among 1,024 costs about 20 runs of the chain, not 1,024.
    """
    single = unit.num_rows == 1
    try:
        done.append(_run_unit(chain, con, unit, batch, check_each_step=single))
        batch.unit_done(ok=True)
        return
    except Exception as exc:
        batch.unit_done(ok=False)
        if environmental(exc):
            raise unavailable(exc, "enrichment") from exc
        if single:
            failed.append((unit.to_pylist()[0], exc))
            return
    half = unit.num_rows // 2
    _bisect(chain, con, unit.slice(0, half), batch, done, failed)
    _bisect(chain, con, unit.slice(half), batch, done, failed)


def _run_unit(chain: Chain, con: duckdb.DuckDBPyConnection, unit: pa.Table, batch: Batch,
              check_each_step: bool) -> pa.Table:
    con.register(_UNIT, unit)
    try:
        relation = _UNIT
        if not check_each_step:
            relation = chain.run_steps(con, relation, batch)
            return con.sql(f"SELECT * FROM {relation}").to_arrow_table()
        table = unit
        for index, name in enumerate(chain.names):
            try:
                relation = chain.run_step(con, index, relation, batch)
                table = con.sql(f"SELECT * FROM {relation}").to_arrow_table()
            except Exception as exc:
                raise EnrichmentError(f"{name}: {type(exc).__name__}: {exc}", step=name) from exc
            # Each step starts from computed rows, so a lazy view cannot hide the culprit.
            con.unregister(_UNIT)
            con.register(_UNIT, table)
            relation = _UNIT
        return table
    finally:
        con.unregister(_UNIT)


def _original(event: dict[str, Any], originals: pa.Table | None) -> dict[str, Any]:
    """The event as the chain received it, with the columns it did not see."""
    if originals is None or event.get(ROW_COLUMN) is None:
        return event
    row: dict[str, Any] = originals.slice(event[ROW_COLUMN], 1).to_pylist()[0]
    return row


def _quarantine_row(event: dict[str, Any], exc: Exception) -> pa.Table:
    detail = exc.message if isinstance(exc, EnrichmentError) else f"{type(exc).__name__}: {exc}"
    row = {
        "tenant": event["tenant"], "received_at": event["received_at"],
        "reason": ReasonCode.ENRICHMENT_FAILURE.value,
        "detail": f"enrichment step {detail}"[:1000],
        "protocol": event["protocol"], "event_id": event.get("event_id"),
        "payload": orjson.dumps({k: v for k, v in event.items() if k != ROW_COLUMN},
                                default=str),
        "source": event["source"],
        "source_partition": event["source_partition"], "source_offset": event["source_offset"],
        "source_index": event["source_index"], "item_index": event.get("item_index"),
        "pipeline_version": PIPELINE_VERSION,
    }
    return pa.Table.from_pylist([row], schema=QUARANTINE_SCHEMA)
