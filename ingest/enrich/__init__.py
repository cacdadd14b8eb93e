"""Enrichment steps: verbs that turn parsed events into analysis-ready rows.

Each step is a module named after what it does and works set-at-a-time on a DuckDB
relation of canonical events: it receives the relation's name and returns the name of a new
relation with some columns filled in. Steps never drop rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb

Step = Callable[[duckdb.DuckDBPyConnection, str], str]
"""An enrichment step: (connection, input relation) -> output relation."""


@dataclass(frozen=True)
class Chain:
    """Enrichment steps applied in order."""

    steps: Sequence[tuple[str, Step]]

    def apply(self, con: duckdb.DuckDBPyConnection, relation: str) -> str:
        """Run every step; return the final relation's name."""
        for _name, step in self.steps:
            relation = step(con, relation)
        return relation


def default_chain() -> Chain:
    """The enrichment chain the loader runs."""
    from ingest.enrich.derive_timestamps import derive_timestamps
    from ingest.enrich.parse_campaign import parse_campaign

    return Chain((("parse_campaign", parse_campaign), ("derive_timestamps", derive_timestamps)))


def replace_columns(
    con: duckdb.DuckDBPyConnection, relation: str, output: str, exprs: dict[str, str]
) -> str:
    """Create ``output`` as ``relation`` with some columns recomputed by SQL expressions."""
    replaced = ", ".join(f"{expr} AS {col}" for col, expr in exprs.items())
    con.execute(f"CREATE OR REPLACE TEMP VIEW {output} AS "
                f"SELECT * REPLACE ({replaced}) FROM {relation}")
    return output
