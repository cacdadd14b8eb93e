"""Refuse SQL statements that write files, before they reach a tenant-scoped connection.

A tenant connection reaches no path of the lake (analytics/connect.py), so ``COPY ... TO``,
``ATTACH`` and ``EXPORT DATABASE`` into the lake fail there anyway. Every SQL entry point
(``driftnet sql``, the REPL, the ``sql`` export recipe) still parses the text with DuckDB
and rejects these statement types up front, with a message that says why, instead of a
permission error about a path. Objects created in the session (temp tables, views, macros)
stay in memory and are allowed.
"""

from __future__ import annotations

import re

import duckdb

from analytics.errors import TenantScopeError

DENIED_STATEMENTS = frozenset({
    "COPY", "COPY_DATABASE", "ATTACH", "DETACH", "EXPORT", "LOAD", "UPDATE_EXTENSIONS",
})
"""Statement types that write files, attach databases or load code."""

# IMPORT DATABASE parses as a PRAGMA; it runs the SQL files of a directory.
_IMPORT = re.compile(r"\bimport[\s_]+database\b", re.IGNORECASE)


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise TenantScopeError if ``sql`` holds a statement that could write or load files."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error:
        return  # not parseable: executing it fails with DuckDB's own message
    for statement in statements:
        kind = str(statement.type).rsplit(".", 1)[-1]
        text = str(statement.query)
        if kind in DENIED_STATEMENTS or (kind == "PRAGMA" and _IMPORT.search(text)):
            raise TenantScopeError("statement not allowed in an analytics session: the lake is "
                                   "read-only from SQL", statement=kind,
                                   sql=text.strip()[:120])
