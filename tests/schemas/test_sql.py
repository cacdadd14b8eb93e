"""One literal and one identifier quoting helper for the whole code base (schemas/sql.py)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
from hypothesis import given
from hypothesis import strategies as st

from schemas.sql import quote, quote_ident
from tests.support import ROOT

# The two idioms of quoting: doubling the quote character of a literal or of an identifier.
_QUOTING = re.compile(r"""\.replace\(\s*(["'])(['"])\1\s*,\s*(["'])\2\2\3\s*\)""")
_PACKAGES = ("schemas", "ingest", "analytics", "driftnet", "bench", "tests")


def _quoting_places() -> list[str]:
    return [f"{path.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}"
            for package in _PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
            if path != Path(__file__)
            for text in [path.read_text()] for m in _QUOTING.finditer(text)]


def test_the_quoting_idiom_is_recognised() -> None:
    assert _QUOTING.search("""value.replace("'", "''")""")
    assert _QUOTING.search("""name.replace('"', '""')""")
    assert not _QUOTING.search("""value.replace("'", "")""")


def test_only_schemas_sql_quotes() -> None:
    assert _quoting_places() == ["schemas/sql.py:12", "schemas/sql.py:17"]




_CON = duckdb.connect()
_TEXT = st.text(min_size=1).filter(lambda s: "\x00" not in s)


@given(_TEXT)
def test_a_quoted_literal_reads_back(value: str) -> None:
    assert _CON.execute(f"SELECT {quote(value)}").fetchone() == (value,)


@given(_TEXT)
def test_a_quoted_identifier_reads_back(name: str) -> None:
    cursor = _CON.execute(f"SELECT 1 AS {quote_ident(name)}")
    assert [d[0] for d in cursor.description] == [name]
