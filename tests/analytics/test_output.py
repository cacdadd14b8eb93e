"""`driftnet sql` output never crashes on what a tenant's data may hold."""

from __future__ import annotations

import csv
import io

import duckdb
import orjson
import pytest

from analytics.output import write_result


def _con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def test_csv_writes_lists_structs_and_maps_as_json_text() -> None:
    rel = _con().sql("SELECT [1, 2] AS l, {'a': 'x,y'} AS s, MAP {'k': 1} AS m, "
                     "[{'p': 'sku-1', 'q': 2}] AS items, 'plain' AS t")
    out = io.BytesIO()
    assert write_result(rel, "csv", out) == 1
    header, row = list(csv.reader(io.StringIO(out.getvalue().decode())))
    assert header == ["l", "s", "m", "items", "t"]
    assert [orjson.loads(v) for v in row[:4]] == [[1, 2], {"a": "x,y"}, {"k": 1},
                                                  [{"p": "sku-1", "q": 2}]]
    assert row[4] == "plain"


def test_json_writes_timestamps_outside_pythons_range() -> None:
    """A client with a broken clock sent year 0 or 275760: the row still prints, faithfully."""
    rel = _con().sql("SELECT make_timestamp(-62167219200000000)::TIMESTAMPTZ AS t0, "
                     "make_timestamp(8639977881600000000)::TIMESTAMPTZ AS t1, "
                     "TIMESTAMPTZ '2026-01-01 00:00:00.5+00' AS ok, DATE '2026-01-02' AS d, "
                     "NULL::TIMESTAMPTZ AS n, 7 AS i")
    out = io.BytesIO()
    assert write_result(rel, "json", out) == 1
    (row,) = orjson.loads(out.getvalue())
    assert row == {"t0": "0000-01-01T00:00:00.000000+00:00",
                   "t1": "275760-01-01T00:00:00.000000+00:00",
                   "ok": "2026-01-01T00:00:00.500000+00:00", "d": "2026-01-02", "n": None,
                   "i": 7}


def test_json_of_ordinary_timestamps_is_unchanged() -> None:
    rel = _con().sql("SELECT TIMESTAMPTZ '2026-01-01 00:00:00.5+00' AS ok")
    out = io.BytesIO()
    write_result(rel, "json", out)
    assert orjson.loads(out.getvalue()) == [{"ok": "2026-01-01T00:00:00.500000+00:00"}]


def test_the_table_shows_reordering_characters_escaped(capfd: pytest.CaptureFixture[str]
                                                       ) -> None:
    """A shopper's text with U+202E (right-to-left override) or a line separator would
    reorder or break the analyst's terminal: the table shows them escaped, as DuckDB's box
    already does with control characters."""
    rel = duckdb.connect().sql("SELECT 'gpj' || chr(8238) || 'exe' || chr(8232) || 'x' AS v, "
                               "1 AS n")
    write_result(rel, "table")
    shown = capfd.readouterr().out
    assert "gpj\\u202eexe\\u2028x" in shown
    assert "\u202e" not in shown and "\u2028" not in shown
