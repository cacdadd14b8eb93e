"""A step that fails must cost the rows it cannot enrich, never the batch.

The chain first runs over the whole batch. When that raises (a step's Python, or a SQL
expression when the lazy views are computed), the batch is run again step by step, each
step's result computed at once so the failing step is known; a step that fails is run
again on its input row group by row group, and a row group that fails is halved until the
failing rows are alone. Only that step runs on the parts, not the whole chain. A row that
still fails becomes a quarantine row with reason ``enrichment_failure``, the step and the
error as detail, and the canonical event as JSON as payload (the hit itself is in the raw
archive, for ``driftnet replay``); the other rows go on to the next step.
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
        log.warning("enrichment failed on a batch (%s: %s); retrying step by step",
                    type(exc).__name__, exc)
        table = con.sql(f"SELECT * FROM {relation}").to_arrow_table()
        failed: list[tuple[dict[str, Any], Exception]] = []
        for index in range(len(chain.steps)):
            table = _step(chain, con, index, table, batch, failed)
        events = table
        quarantine = (pa.concat_tables([_quarantine_row(_original(event, originals), error)
                                        for event, error in failed])
                      if failed else QUARANTINE_SCHEMA.empty_table())
        if quarantine.num_rows:
            log.warning("quarantined %d events that enrichment failed on", quarantine.num_rows)
    batch.succeeded()
    return Enriched(events, quarantine)


def _step(chain: Chain, con: duckdb.DuckDBPyConnection, index: int, table: pa.Table,
          batch: Batch, failed: list[tuple[dict[str, Any], Exception]]) -> pa.Table:
    """Step ``index`` over the computed rows ``table``; the rows it fails on go to ``failed``.

    Only this step runs on the parts of a failing table, not the whole chain: a step's fixed
    cost is a fraction of the chain's, and the steps before it are not computed again."""
    try:
        out = _run_step(chain, con, index, table, batch)
        batch.unit_done(ok=True)
        return out
    except Exception as exc:
        batch.unit_done(ok=False)
        if environmental(exc):
            raise unavailable(exc, "enrichment") from exc
        log.warning("enrichment step %s failed (%s: %s); retrying row group by row group",
                    chain.names[index], type(exc).__name__, exc)
    done: list[pa.Table] = []
    for start in range(0, table.num_rows, ROW_GROUP):
        _bisect(chain, con, index, table.slice(start, ROW_GROUP), batch, done, failed)
    return (pa.concat_tables(done, promote_options="permissive") if done
            else table.schema.empty_table())


def _bisect(chain: Chain, con: duckdb.DuckDBPyConnection, index: int, unit: pa.Table,
            batch: Batch, done: list[pa.Table],
            failed: list[tuple[dict[str, Any], Exception]]) -> None:
    """Step ``index`` over ``unit``; when that fails, over each half of it, down to single rows.

    One bad row among 1,024 costs about 20 runs of the step, not 1,024.
    """
    try:
        done.append(_run_step(chain, con, index, unit, batch))
        batch.unit_done(ok=True)
        return
    except Exception as exc:
        batch.unit_done(ok=False)
        if environmental(exc):
            raise unavailable(exc, "enrichment") from exc
        if unit.num_rows == 1:
            name = chain.names[index]
            failed.append((unit.to_pylist()[0], EnrichmentError(
                f"{name}: {type(exc).__name__}: {exc}", step=name)))
            return
    half = unit.num_rows // 2
    _bisect(chain, con, index, unit.slice(0, half), batch, done, failed)
    _bisect(chain, con, index, unit.slice(half), batch, done, failed)


def _run_step(chain: Chain, con: duckdb.DuckDBPyConnection, index: int, unit: pa.Table,
              batch: Batch) -> pa.Table:
    """Step ``index`` over ``unit``, computed (a lazy view cannot hide the culprit)."""
    con.register(_UNIT, unit)
    try:
        relation = chain.run_step(con, index, _UNIT, batch)
        return con.sql(f"SELECT * FROM {relation}").to_arrow_table()
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
