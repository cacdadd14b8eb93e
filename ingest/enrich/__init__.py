"""Enrichment steps: verbs that turn parsed events into analysis-ready rows.

Each step is a module named after what it does and works set-at-a-time on a DuckDB
relation of canonical events: it receives the relation's name and returns the name of a new
relation (usually a view) with some columns filled in. Steps never drop rows. Work that
needs Python (a user-agent parser, a GeoIP reader) runs once per *distinct* value of a
batch, with a cache across batches, and is joined back (see lookup.py).

The chain runs in this order, each step relying on the ones before it::

    parse_campaign -> parse_referrer -> parse_user_agent -> detect_bot -> geolocate
      -> anonymize_ip -> derive_timestamps -> sessionize

geolocate reads the full IP, so it runs before anonymize_ip; sessionize needs derived_ts
and is the only step with a side effect (its state store), so it runs last: a unit of work
that fails earlier never reaches it (see fallback.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import duckdb
import pyarrow as pa

from schemas.sql import quote

if TYPE_CHECKING:
    from ingest.enrich.config import EnrichSettings
    from ingest.enrich.fallback import Enriched
    from schemas.tenants import Tenants

ROW_COLUMN = "_enrich_row"
"""A column the loader adds to the events it hands the chain: each row's place in the
batch, so that what the chain returns can be matched with what it never saw."""

UNTOUCHED_COLUMNS: frozenset[str] = frozenset({
    "properties", "traits", "extra", "items", "page_title", "search_query", "event_type",
    "event_name", "product_id", "product_name", "product_category", "product_action",
    "price", "currency", "quantity", "order_id", "revenue", "screen", "viewport",
    "language", "timezone",
})
"""Event columns no step reads or writes. The loader keeps them out of the chain (its
views then carry the narrow rest of each row through DuckDB, not the JSON payloads) and
puts them back by :data:`ROW_COLUMN`. A step that reads one of these fails on a missing
column, never silently: take the column out of this set first."""


@dataclass
class Batch:
    """What a step may need to know about the batch besides its events."""

    hits: str | None = None
    """Relation of the batch's raw hits (lineage columns, ``headers``), or None."""
    key: str = ""
    """Identifies the batch across re-runs after a crash: its transport partitions and first
    offsets (the same records are read again from the committed offset)."""
    memo: dict[str, Any] = field(default_factory=dict)
    """Results steps share within the batch (e.g. whether hits sent client hints)."""
    _on_success: list[Callable[[], None]] = field(default_factory=list)
    _on_unit_success: list[Callable[[], None]] = field(default_factory=list)

    def on_success(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the whole batch went through the chain (e.g. save state)."""
        self._on_success.append(action)

    def on_unit_success(self, action: Callable[[], None]) -> None:
        """Run ``action`` if the unit of work being enriched (the batch, or a part of it when
        a step failed) is computed without error; forget it if it is not."""
        self._on_unit_success.append(action)

    def unit_done(self, ok: bool) -> None:
        """Called by the chain once a unit's rows are computed (``ok``) or failed."""
        actions, self._on_unit_success = self._on_unit_success, []
        for action in actions if ok else ():
            action()

    def succeeded(self) -> None:
        """Called by the chain when every row of the batch is enriched or quarantined."""
        actions, self._on_success = self._on_success, []
        for action in actions:
            action()


Step = Callable[[duckdb.DuckDBPyConnection, str, Batch], str]
"""An enrichment step: (connection, input relation, batch) -> output relation."""


class Resource(Protocol):
    """Something a step holds open (a database file) that the chain closes."""

    def close(self) -> None:
        """Release it."""
        ...


def batch_key(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    """The batch's identity: ``source/partition@first_offset`` of each partition it holds."""
    rows = con.sql(f"SELECT source, source_partition, min(source_offset) FROM {relation} "
                   f"GROUP BY ALL ORDER BY ALL").fetchall()
    return ",".join(f"{s}/{p}@{o}" for s, p, o in rows)


@dataclass
class Chain:
    """Enrichment steps applied in order.

    ``skip`` maps a step name to the tenants that opted out of it (their rows bypass it).
    """

    steps: Sequence[tuple[str, Step]]
    skip: Mapping[str, frozenset[str]] = field(default_factory=dict)
    resources: Sequence[Resource] = ()

    @property
    def names(self) -> list[str]:
        """Step names in order."""
        return [name for name, _ in self.steps]

    def begin(self, con: duckdb.DuckDBPyConnection, relation: str,
              hits: str | None = None) -> Batch:
        """The Batch for the events in ``relation``."""
        return Batch(hits=hits, key=batch_key(con, relation))

    def run_step(self, con: duckdb.DuckDBPyConnection, index: int, relation: str,
                 batch: Batch) -> str:
        """Step number ``index`` over ``relation``, bypassed by the tenants that skip it."""
        name, step = self.steps[index]
        skipped = self.skip.get(name)
        if not skipped:
            return step(con, relation, batch)
        tenants = ", ".join(quote(t) for t in sorted(skipped))
        con.execute(f"CREATE OR REPLACE TEMP VIEW enrich_take_{index} AS SELECT * FROM "
                    f"{relation} WHERE tenant NOT IN ({tenants})")
        out = step(con, f"enrich_take_{index}", batch)
        con.execute(f"CREATE OR REPLACE TEMP VIEW enrich_skip_{index} AS SELECT * FROM {out} "
                    f"UNION ALL BY NAME SELECT * FROM {relation} WHERE tenant IN ({tenants})")
        return f"enrich_skip_{index}"

    def run_steps(self, con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
        """Every step over ``relation``; the final relation's name. Raises what a step raises."""
        for index in range(len(self.steps)):
            relation = self.run_step(con, index, relation, batch)
        return relation

    def apply(self, con: duckdb.DuckDBPyConnection, relation: str,
              hits: str | None = None) -> str:
        """Run every step over the whole batch; return the final relation's name.

        A failing step raises; use :meth:`run` to quarantine failing rows instead.
        """
        batch = self.begin(con, relation, hits)
        out = self.run_steps(con, relation, batch)
        batch.unit_done(ok=True)
        batch.succeeded()
        return out

    def run(self, con: duckdb.DuckDBPyConnection, relation: str,
            hits: str | None = None, columns: Sequence[str] | None = None,
            originals: pa.Table | None = None) -> Enriched:
        """Like :meth:`apply`, but rows a step cannot enrich become quarantine rows.

        ``columns``: the columns to read back when every row is enriched (all by default);
        rows enriched after a failure come back with all the relation's columns.
        ``originals``: the whole events when ``relation`` holds some of their columns and
        :data:`ROW_COLUMN` (the payload of a quarantined event is its original row).
        """
        from ingest.enrich.fallback import run_with_fallback

        return run_with_fallback(self, con, relation, hits, columns, originals)

    def close(self) -> None:
        """Close what the steps hold open."""
        for resource in self.resources:
            resource.close()


def default_chain(settings: EnrichSettings | None = None, tenants: Tenants | None = None,
                  lake: str | Path | None = None) -> Chain:
    """The enrichment chain the loader runs, as configured.

    ``lake`` is the lake the chain's data goes to. Session state is held in memory; the
    loader loads and saves it in the lake's state table (ingest/lake/state.py).
    """
    from ingest.enrich.chain import build_chain

    return build_chain(settings, tenants, lake)


def replace_columns(
    con: duckdb.DuckDBPyConnection, relation: str, output: str, exprs: dict[str, str]
) -> str:
    """Create ``output`` as ``relation`` with some columns recomputed by SQL expressions."""
    replaced = ", ".join(f"{expr} AS {col}" for col, expr in exprs.items())
    con.execute(f"CREATE OR REPLACE TEMP VIEW {output} AS "
                f"SELECT * REPLACE ({replaced}) FROM {relation}")
    return output


def per_distinct(con: duckdb.DuckDBPyConnection, relation: str, output: str, key: str,
                 exprs: dict[str, str]) -> str:
    """Create the table ``output``: one row per distinct non-NULL ``key`` of ``relation``
    with ``exprs`` computed on it, for a step to join back by ``key``. A batch holds far
    fewer distinct page URLs or contexts than events, so SQL that is costly per row (regular
    expressions, JSON reads) runs once per value."""
    computed = ", ".join(f"{expr} AS {col}" for col, expr in exprs.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {output} AS SELECT {key}, {computed} "
                f"FROM (SELECT DISTINCT {key} FROM {relation} WHERE {key} IS NOT NULL)")
    return output
